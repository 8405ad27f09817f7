"""iBOT block masking: statistics as official MaskingGenerator; collate outputs exactly official.

Our generator draws from a torch.Generator in batches, official from Python's `random` one block at
a time, so masks cannot be bitwise equal: we compare distributions over many seeded draws, and the
derived indices / weights / bounds exactly given the same masks.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from scipy import ndimage

from raddino.ssl.masking import (
    BlockMaskGenerator,
    masks_to_indices_and_weights,
    sample_ibot_masks,
    sample_mask_targets,
)

official_masking = pytest.importorskip("dinov2.data.masking")
official_collate = pytest.importorskip("dinov2.data.collate")


def _official_collate(n_images, n_tokens, ratio, probability, mask_generator):
    samples = [({"global_crops": [torch.zeros(1)] * 2, "local_crops": [torch.zeros(1)]}, None)]
    samples = samples * (n_images // 2)
    return official_collate.collate_data_and_cast(
        samples, ratio, probability, torch.float32, n_tokens=n_tokens, mask_generator=mask_generator
    )


@pytest.mark.parametrize(
    "n_images, n_tokens, ratio, probability",
    [(16, 256, (0.1, 0.5), 0.5), (80, 1369, (0.1, 0.5), 0.5), (6, 100, (0.2, 0.3), 1.0)],
)
def test_targets_and_upperbound_follow_official_collate(n_images, n_tokens, ratio, probability):
    requested = []

    def recording_generator(num_masking_patches=0):
        requested.append(num_masking_patches)
        return np.zeros((1, n_tokens), dtype=bool)

    random.seed(0)
    official = _official_collate(n_images, n_tokens, ratio, probability, recording_generator)
    targets, upperbound = sample_mask_targets(
        n_images, n_tokens, ratio, probability, torch.Generator().manual_seed(0)
    )
    assert upperbound == official["upperbound"]
    n_masked_images = int(n_images * probability)
    official_targets = requested[:n_masked_images]
    assert requested[n_masked_images:] == [0] * (n_images - n_masked_images)
    assert int((targets > 0).sum()) == n_masked_images == len(official_targets)
    edges = torch.linspace(*ratio, n_masked_images + 1)
    lows, highs = (n_tokens * edges[:-1]).long(), (n_tokens * edges[1:]).long()
    for i in range(n_masked_images):  # image i of the masked ones: one draw in bin i
        assert lows[i] <= targets[i] <= highs[i]
        assert lows[i] <= official_targets[i] <= highs[i]
    assert int(targets.sum()) <= upperbound


def test_target_ratios_are_uniform_within_each_bin():
    gen = torch.Generator().manual_seed(1)
    n_tokens, draws = 10_000, 4000
    targets = torch.stack(
        [sample_mask_targets(8, n_tokens, generator=gen)[0] for _ in range(draws)]
    )
    ratios = targets[:, :4].double() / n_tokens  # 4 masked images, bins of width 0.1
    bin_low = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    torch.testing.assert_close(ratios.mean(0), bin_low + 0.05, atol=0.003, rtol=0)
    torch.testing.assert_close(
        ratios.std(0), torch.full((4,), 0.1 / 12**0.5, dtype=torch.float64), atol=0.002, rtol=0
    )
    assert (ratios >= bin_low - 1e-4).all() and (ratios <= bin_low + 0.1).all()
    assert (targets[:, 4:] == 0).all()


def test_indices_weights_and_counts_equal_official_collate_given_the_same_masks(monkeypatch):
    ours = sample_ibot_masks(12, (6, 7), generator=torch.Generator().manual_seed(2))
    queue = list(ours.masks_bn.view(12, 6, 7).numpy())

    def replaying_generator(num_masking_patches=0):
        return queue.pop(0)

    monkeypatch.setattr(official_collate.random, "shuffle", lambda items: None)
    official = _official_collate(12, 42, (0.1, 0.5), 0.5, replaying_generator)
    assert torch.equal(official["collated_masks"], ours.masks_bn)
    assert torch.equal(official["mask_indices_list"], ours.mask_indices_m)
    assert torch.equal(official["masks_weight"], ours.masks_weight_m)
    assert torch.equal(official["n_masked_patches"], ours.n_masked_patches)
    assert official["upperbound"] == ours.upperbound
    assert ours.masks_weight_m.dtype == torch.float32


def test_masked_images_are_shuffled_over_the_batch():
    gen = torch.Generator().manual_seed(3)
    masked_positions = torch.zeros(16)
    for _ in range(50):
        masked_positions += sample_ibot_masks(16, 8, generator=gen).masks_bn.any(dim=1).float()
    # unshuffled, images 8..15 would never be masked
    assert masked_positions[8:].sum() > 0.3 * masked_positions.sum()


def test_masks_never_exceed_their_target():
    gen = torch.Generator().manual_seed(4)
    generator = BlockMaskGenerator((9, 13), max_num_patches=0.5 * 9 * 13)
    targets = torch.randint(0, 60, (400,), generator=gen)
    counts = generator(targets, gen).flatten(1).sum(1)
    assert (counts <= targets).all()
    assert (counts[targets == 0] == 0).all()
    assert (counts == targets).float().mean() > 0.85  # falls short only when 10 attempts fail


def _mask_statistics(masks_rhw: np.ndarray, target: int) -> np.ndarray:
    counts = masks_rhw.reshape(len(masks_rhw), -1).sum(1)
    components = [ndimage.label(mask)[1] for mask in masks_rhw]
    return np.array([counts.mean() / target, (counts == target).mean(), np.mean(components)])


@pytest.mark.parametrize("grid, target", [((14, 14), 20), ((14, 14), 78), ((10, 16), 50)])
def test_mask_statistics_match_official_generator(grid, target):
    n_tokens, repeats = grid[0] * grid[1], 300
    official = official_masking.MaskingGenerator(grid, max_num_patches=0.5 * n_tokens)
    random.seed(5)
    official_masks = np.stack([official(target) for _ in range(repeats)])
    ours = BlockMaskGenerator(grid, max_num_patches=0.5 * n_tokens)
    our_masks = ours(torch.full((repeats,), target), torch.Generator().manual_seed(5)).numpy()
    ours_stats = _mask_statistics(our_masks, target)
    official_stats = _mask_statistics(official_masks, target)
    # mean fill ratio, fraction reaching the target exactly, mean number of blobs
    assert np.all(np.abs(ours_stats - official_stats) <= [0.01, 0.07, 0.3]), (
        ours_stats,
        official_stats,
    )


def test_block_shapes_follow_log_uniform_aspect_and_uniform_area():
    generator = BlockMaskGenerator((200, 200))
    heights, widths, tops, lefts = generator.draw_blocks(
        torch.full((20000,), 100.0, dtype=torch.float64), torch.Generator().manual_seed(6)
    )
    log_aspect = torch.log(heights.double() / widths.double())
    area = (heights * widths).double()
    assert abs(float(log_aspect.mean())) < 0.02  # symmetric in (0.3, 1/0.3)
    large = log_aspect[area >= 50]  # rounding h and w distorts the aspect of tiny blocks only
    assert float(large.abs().max()) <= np.log(1 / 0.3) + 0.15
    assert float(large.abs().max()) > np.log(1 / 0.3) - 0.15  # the whole range is used
    assert abs(float(area.mean()) - (4 + 100) / 2) < 1.5  # area ~ U(4, 100) up to rounding
    assert int(area.min()) >= 3  # round(sqrt(4 * 2)) x round(sqrt(4 / 2)) = 3 x 1 (as official)
    assert (tops >= 0).all() and (tops + heights <= 200).all()
    assert (lefts >= 0).all() and (lefts + widths <= 200).all()


def test_indices_and_weights_by_hand():
    masks = torch.tensor([[True, False, True], [False, False, False], [False, True, False]])
    indices, weights = masks_to_indices_and_weights(masks)
    assert indices.tolist() == [0, 2, 7]
    assert weights.tolist() == [0.5, 0.5, 1.0]


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="mask_ratio_min_max"):
        sample_mask_targets(4, 16, (0.5, 0.1))
    with pytest.raises(ValueError, match="mask_probability"):
        sample_mask_targets(4, 16, (0.1, 0.5), 1.5)
    with pytest.raises(ValueError, match="grid"):
        sample_ibot_masks(4, 8, mask_generator=BlockMaskGenerator(7))
