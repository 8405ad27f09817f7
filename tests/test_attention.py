"""Class-token attention maps: shape and mass, the attention-inside-mask score against hand
values, refusal for encoders without attention maps, and the phantom finding score."""

from __future__ import annotations

import pytest
import torch

from raddino.data.dataset_folder import write_phantom_folder
from raddino.data.phantom.config import PhantomConfig
from raddino.eval.attention import (
    attention_mass_inside,
    attention_on_findings,
    class_attention_maps,
    mask_coverage,
    upsample_maps,
)
from raddino.eval.patch_grids import load_patch_encoder


@pytest.fixture(scope="session")
def attention_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("attention") / "phantom"
    config = PhantomConfig(
        size=112, prevalence={"support_devices": 0.8, "chest_tube": 0.7, "pneumothorax": 0.5}
    )
    return write_phantom_folder(root, 8, config, seed=4, progress=False)


def test_maps_have_one_grid_per_head_and_sum_below_one():
    encoder = load_patch_encoder("random:vit_pico")
    images = torch.randn(2, 3, 56, 70, generator=torch.Generator().manual_seed(0))
    maps = class_attention_maps(encoder, images)
    assert maps.shape == (2, encoder.model.num_heads, 4, 5)
    sums = maps.sum(dim=(2, 3))
    assert (maps >= 0).all() and (sums > 0).all() and (sums < 1).all()  # the rest: class token
    # the backbone itself is accepted too, with the same answer
    torch.testing.assert_close(class_attention_maps(encoder.model, images), maps)
    assert upsample_maps(maps, (56, 70)).shape == (2, encoder.model.num_heads, 56, 70)


def test_encoder_without_attention_is_refused():
    with pytest.raises(ValueError, match="need a raddino backbone"):
        class_attention_maps(load_patch_encoder("pixels:16"), torch.zeros(1, 1, 16, 16))


def test_share_inside_mask_against_hand_values():
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, :4, :4] = True  # exactly patch (0, 0) of a 2 x 2 grid of 4-pixel patches
    mask[0, 4:6, 4:8] = True  # half of patch (1, 1)
    coverage = mask_coverage(mask, (2, 2))
    torch.testing.assert_close(coverage, torch.tensor([[[1.0, 0.0], [0.0, 0.5]]]))
    maps = torch.tensor(
        [
            [
                [[0.25, 0.25], [0.25, 0.25]],  # uniform: share = area fraction
                [[0.9, 0.0], [0.0, 0.0]],  # all on the covered patch (unnormalised)
                [[0.0, 0.3], [0.3, 0.0]],  # all outside
                [[0.0, 0.0], [0.0, 0.2]],  # on the half-covered patch
            ]
        ]
    )
    share = attention_mass_inside(maps, mask)
    area = mask.float().mean().item()
    torch.testing.assert_close(share, torch.tensor([[area, 1.0, 0.0, 0.5]]))
    with pytest.raises(ValueError, match="not a multiple of the grid"):
        mask_coverage(torch.zeros(1, 7, 8, dtype=torch.bool), (2, 2))
    with pytest.raises(ValueError, match="2 attention maps but 1 masks"):
        attention_mass_inside(maps.expand(2, -1, -1, -1), mask)


def test_attention_on_findings_counts_images_with_the_finding(attention_folder):
    result = attention_on_findings(
        "random:vit_pico",
        str(attention_folder.root),
        ("chest_tube", "left_lung"),
        size=112,
        progress=False,
    )
    lungs = result["structures"]["left_lung"]
    assert lungs["n_images"] == 8  # every frontal phantom has a left lung
    expected_tubes = sum(
        attention_folder.read_mask("chest_tube", i).any() for i in range(len(attention_folder))
    )
    tubes = result["structures"]["chest_tube"]
    assert expected_tubes > 0 and tubes["n_images"] == expected_tubes
    for stats in (lungs, tubes):
        assert 0 <= stats["mean_share"] <= 1 and 0 < stats["area_fraction"] < 1
        assert stats["lift"] == pytest.approx(stats["mean_share"] / stats["area_fraction"])
        assert stats["best_head_share"] >= stats["mean_share"] - 1e-6


def test_unknown_structure_is_named(attention_folder):
    with pytest.raises(ValueError, match="spleen"):
        attention_on_findings("random:vit_pico", str(attention_folder.root), ("spleen",))
