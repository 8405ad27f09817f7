"""Class-token shift stability: the shift itself, the standardised cosine, and the score telling a
token that reads its image from one that hashes it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raddino.eval.stability import shift_stability, shifted_right, standardised_cosines


def test_shifted_right_moves_content_and_replicates_the_edge():
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    moved = shifted_right(image, 1)
    np.testing.assert_array_equal(moved[:, 1:], image[:, :-1])
    np.testing.assert_array_equal(moved[:, 0], image[:, 0])  # no wrap-around from the right edge
    with pytest.raises(ValueError, match="shift must be in"):
        shifted_right(image, 4)


def test_standardised_cosines_are_one_for_unmoved_tokens_and_near_zero_between_images():
    tokens = np.random.default_rng(0).normal(size=(400, 16))
    np.testing.assert_allclose(standardised_cosines(tokens, tokens, tokens), 1.0)
    between = standardised_cosines(tokens, np.roll(tokens, 1, axis=0), tokens)
    assert abs(between.mean()) < 0.05


class _PooledEncoder:
    """A toy `Encoder`: the class token is the image pooled to grid x grid (coarse: stable), or
    the fine detail (image minus its 8 x 8 block means) of a corner, which changes completely
    under a one-pixel shift."""

    def __init__(self, grid: int | None) -> None:
        self.grid = grid

    def prepare(self, images_hw, size=None) -> torch.Tensor:
        return torch.from_numpy(np.stack(images_hw))[:, None]

    def features(self, x_b1hw: torch.Tensor) -> dict:
        if self.grid is None:
            blocks = torch.nn.functional.avg_pool2d(x_b1hw, 8)
            detail = x_b1hw - torch.nn.functional.interpolate(blocks, scale_factor=8.0)
            return {"cls": detail[:, 0, 8:14, 8:14].flatten(1)}
        pooled = torch.nn.functional.adaptive_avg_pool2d(x_b1hw, self.grid)
        return {"cls": pooled.flatten(1)}


def test_shift_stability_tells_a_reading_token_from_a_hashing_one():
    rng = np.random.default_rng(0)
    # smooth per-image structure (what a reading token should see) plus pixel noise
    coarse = rng.random((40, 4, 4)).astype(np.float32)
    images = [np.kron(c, np.ones((8, 8), np.float32)) for c in coarse]
    images = [i + 0.05 * rng.standard_normal(i.shape).astype(np.float32) for i in images]

    reading = shift_stability(_PooledEncoder(grid=4), images, shifts=(1, 4))
    hashing = shift_stability(_PooledEncoder(grid=None), images, shifts=(1, 4))
    assert reading["shift_1px"] > 0.9 and reading["shift_1px"] > reading["shift_4px"]
    assert hashing["shift_1px"] < 0.2  # fine noise moves: the token changes like another image
    assert abs(reading["other_image"]) < 0.2 and abs(hashing["other_image"]) < 0.2
    with pytest.raises(ValueError, match="at least 3 images"):
        shift_stability(_PooledEncoder(grid=4), images[:2])


def test_plot_shift_stability_draws_a_line_per_encoder_and_needs_shift_columns():
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from raddino.viz.pretraining import plot_shift_stability

    table = pd.DataFrame(
        {"shift_1px": [0.95, 0.3], "shift_4px": [0.9, 0.2], "other_image": [0.1, 0.0]},
        index=["random", "phantom"],
    )
    figure = plot_shift_stability(table)
    lines = figure.axes[0].get_lines()
    assert len(lines) == 5  # a curve and its other-image level per encoder, the legend's key
    np.testing.assert_allclose(lines[2].get_ydata(), [0.3, 0.2])
    with pytest.raises(ValueError, match="no shift_<k>px columns"):
        plot_shift_stability(table[["other_image"]])
