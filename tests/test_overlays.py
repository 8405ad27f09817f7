"""Overlay figures render to PNG (segmentation Fig. A.5, correspondence Fig. 3, attention Fig. A.2)
and refuse inputs of the wrong shape."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from PIL import Image

from raddino.viz.overlays import (
    attention_figure,
    correspondence_figure,
    save_png,
    segmentation_overlay,
)


def _image(seed=0, shape=(56, 56)):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def _disc(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def _check_png(path, min_width=100):
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] >= min_width
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.std() > 0  # something was drawn


def test_segmentation_overlay_png(tmp_path):
    shape = (56, 56)
    truth = [np.stack([_disc(shape, (28, 20), 10), np.zeros(shape, bool)]) for _ in range(2)]
    predicted = [np.stack([_disc(shape, (30, 22), 9), _disc(shape, (5, 5), 2)]) for _ in range(2)]
    figure = segmentation_overlay(
        [_image(0), _image(1)],
        truth,
        predicted,
        ["left_lung", "chest_tube"],
        dice_ns=np.array([[0.8, 0.0], [0.8, np.nan]]),
    )
    assert len(figure.axes) == 4
    assert figure.axes[0].get_title() == "left lung\nDice 0.80"
    assert figure.axes[3].get_title() == "chest tube"  # NaN (undefined) is not printed
    save_png(figure, tmp_path / "seg.png")
    _check_png(tmp_path / "seg.png")


def test_segmentation_overlay_rejects_mismatched_masks():
    with pytest.raises(ValueError, match="expected"):
        segmentation_overlay(
            [_image()], [np.zeros((1, 10, 10), bool)], [np.zeros((1, 56, 56), bool)], ["heart"]
        )
    with pytest.raises(ValueError, match="at least one"):
        segmentation_overlay([], [], [], ["heart"])


def test_correspondence_figure_png(tmp_path):
    maps = np.random.default_rng(0).random((2, 4, 4))
    figure = correspondence_figure(
        [_image(0)] * 2,
        [_image(1)] * 2,
        np.array([[10.0, 12.0], [40.0, 30.0]]),
        maps,
        np.array([[14.0, 14.0], [42.0, 28.0]]),
        np.array([[12.0, 12.0], [40.0, 31.0]]),
        labels=["carina", "apex left"],
    )
    assert figure.axes[0].get_title() == "query: carina"
    save_png(figure, tmp_path / "corr.png")
    _check_png(tmp_path / "corr.png")
    with pytest.raises(ValueError, match="one query image"):
        correspondence_figure([_image()], [_image()], np.zeros((2, 2)), maps, np.zeros((2, 2)))


def test_attention_figure_png(tmp_path):
    maps = np.random.default_rng(0).random((3, 4, 4))
    figure = attention_figure(_image(), maps, heads=[0, 2], mask_hw=_disc((56, 56), (20, 20), 8))
    assert [ax.get_title() for ax in figure.axes] == ["image", "head 0", "head 2"]
    save_png(figure, tmp_path / "attn.png")
    _check_png(tmp_path / "attn.png")
    with pytest.raises(ValueError, match="out of range"):
        attention_figure(_image(), maps, heads=[5])
    with pytest.raises(ValueError, match=r"\(heads, h, w\)"):
        attention_figure(_image(), maps[0])
