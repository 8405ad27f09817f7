"""Dice per image and structure: the paper's empty-image convention, hand values, torchmetrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raddino.eval.dice import (
    dice_per_image,
    format_mean_std,
    mean_std,
    paired_difference,
    summarize_dice,
)


def _masks(*arrays):
    return torch.tensor(np.asarray(arrays, dtype=bool))


def test_perfect_empty_and_disjoint_predictions():
    full = np.ones((4, 4), dtype=bool)
    empty = np.zeros((4, 4), dtype=bool)
    truth = _masks([full, empty, full, empty])  # (1, 4, 4, 4)
    pred = _masks([full, empty, empty, full])
    dice = dice_per_image(pred, truth)
    # perfect = 1; empty on empty = 1 (paper convention); empty on non-empty = 0; spurious = 0
    np.testing.assert_array_equal(dice, [[1.0, 1.0, 0.0, 0.0]])


def test_against_hand_computation():
    truth = np.zeros((5, 5), dtype=bool)
    truth[0, 0:2] = True  # |T| = 2
    pred = np.zeros((5, 5), dtype=bool)
    pred[0, 1:4] = True  # |P| = 3, |P ∩ T| = 1
    dice = dice_per_image(_masks([pred]), _masks([truth]))
    assert dice[0, 0] == pytest.approx(2 * 1 / (2 + 3))


def test_matches_torchmetrics_on_non_empty_masks():
    torchmetrics_dice = pytest.importorskip("torchmetrics.functional.segmentation").dice_score
    generator = torch.Generator().manual_seed(3)
    truth = torch.rand((6, 3, 16, 16), generator=generator) > 0.6
    pred = torch.rand((6, 3, 16, 16), generator=generator) > 0.5
    truth[..., 0, 0] = True  # every (image, structure) non-empty: torchmetrics gives NaN otherwise
    ours = dice_per_image(pred, truth)
    reference = torchmetrics_dice(
        pred.long(), truth.long(), num_classes=3, average="none", input_format="one-hot"
    )
    np.testing.assert_allclose(ours, reference.numpy(), rtol=1e-6)


def test_undefined_structures_are_nan_and_left_out_of_the_summary():
    truth = _masks([np.ones((2, 2)), np.ones((2, 2))], [np.ones((2, 2)), np.zeros((2, 2))])
    pred = _masks([np.ones((2, 2)), np.zeros((2, 2))], [np.ones((2, 2)), np.zeros((2, 2))])
    defined = torch.tensor([[True, True], [True, False]])
    dice = dice_per_image(pred, truth, defined)
    assert np.isnan(dice[1, 1]) and dice[0, 1] == 0.0
    summary = summarize_dice(dice, ["a", "b"])
    assert summary["b"] == {"mean": 0.0, "std": 0.0, "n": 1}
    assert summary["a"]["n"] == 2 and summary["a"]["mean"] == 1.0


def test_groups_average_members_per_image_then_over_images():
    dice = np.array([[1.0, 0.5], [0.0, 1.0], [np.nan, 1.0]])
    summary = summarize_dice(dice, ["left_lung", "right_lung"])
    # per image: 0.75, 0.5, (dropped: left lung undefined)
    assert summary["lungs"]["n"] == 2
    assert summary["lungs"]["mean"] == pytest.approx(0.625)
    assert summary["lungs"]["std"] == pytest.approx(0.125)
    assert "lung_zones" not in summary  # no member present


def test_paired_difference_pairs_images_and_bootstraps_the_mean():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.8, size=(60, 2))
    shifted = base + 0.1 + rng.normal(0, 0.01, size=base.shape)
    shifted[0, 0] = np.nan  # undefined for one image: that image leaves only left_lung's pairs
    result = paired_difference(shifted, base, ["left_lung", "right_lung"], n_resamples=500)
    assert result["left_lung"]["n"] == 59 and result["lungs"]["n"] == 59
    for stats in result.values():
        # the per-image spread of base (std ~0.17) cancels in the pairing: a tight interval
        assert stats["low"] < stats["mean"] < stats["high"]
        assert stats["mean"] == pytest.approx(0.1, abs=0.005)
        assert stats["high"] - stats["low"] < 0.01
    # an unpaired reading of the same numbers could not tell: the spread swamps 0.1
    assert np.nanstd(base[:, 0]) > 0.1
    same = paired_difference(base, base, ["left_lung", "right_lung"])
    assert same["lungs"] == {"mean": 0.0, "low": 0.0, "high": 0.0, "n": 60}
    empty = paired_difference(np.full((3, 1), np.nan), np.zeros((3, 1)), ["heart"])
    assert empty["heart"]["n"] == 0 and np.isnan(empty["heart"]["mean"])
    with pytest.raises(ValueError, match="2 structures"):
        paired_difference(np.zeros((3, 2)), np.zeros((4, 2)), ["left_lung", "right_lung"])


def test_mean_std_and_format():
    stats = mean_std(np.array([0.9, 1.0, np.nan]))
    assert stats["n"] == 2 and stats["mean"] == pytest.approx(0.95)
    assert format_mean_std(stats) == "95.0 (5.0)"
    assert mean_std(np.array([np.nan]))["n"] == 0


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="differs from truth shape"):
        dice_per_image(
            torch.zeros((1, 1, 4, 4), dtype=torch.bool), torch.zeros((1, 1, 4, 5)).bool()
        )
    with pytest.raises(ValueError, match="must be bool"):
        dice_per_image(torch.zeros((1, 1, 4, 4)), torch.zeros((1, 1, 4, 4)).bool())
    with pytest.raises(ValueError, match=r"\(N, S, H, W\)"):
        dice_per_image(torch.zeros((4, 4)).bool(), torch.zeros((4, 4)).bool())
    with pytest.raises(ValueError, match="defined mask shape"):
        dice_per_image(
            torch.zeros((1, 2, 4, 4)).bool(), torch.zeros((1, 2, 4, 4)).bool(), torch.ones(2).bool()
        )
    with pytest.raises(ValueError, match="does not match 3 structures"):
        summarize_dice(np.zeros((2, 2)), ["a", "b", "c"])
