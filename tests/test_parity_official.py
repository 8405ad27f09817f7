"""Numerical parity with the official DINOv2 ViT (`dinov2.models.vision_transformer`).

Same seeded, perturbed random weights in both models; the official state dict goes through our
loader (`load_backbone` on a saved .pth), so key conversion is checked too.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from dinov2.models.vision_transformer import DinoVisionTransformer
from torch import nn

from raddino.models.backbone import build_backbone
from raddino.models.weights import (
    convert_official_state_dict,
    load_backbone,
    load_state_dict_strict,
)

ATOL = 1e-5
PATCH = 14


def perturb_(module: nn.Module, seed: int, scale: float = 0.1) -> None:
    """Add seeded noise to every parameter, so LayerScale/zero inits do not hide differences."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)


def official_vit(**kwargs) -> DinoVisionTransformer:
    options = dict(
        img_size=112, patch_size=PATCH, embed_dim=128, depth=3, num_heads=2, init_values=1e-5
    )  # 64-dim heads like every DINOv2 model: the loader infers num_heads = embed_dim / 64
    options.update(kwargs)
    model = DinoVisionTransformer(**options).eval()
    perturb_(model, seed=1)
    return model


class OfficialWithRegisters(DinoVisionTransformer):
    """Re-derived reference for register tokens (the PyPI dinov2 snapshot predates them).

    Subclasses the official model and changes only what the newer official code changes:
    a `register_tokens` parameter inserted after the class token, after the position embedding,
    and outputs that skip the registers. Position-embedding interpolation stays the snapshot's.
    """

    def __init__(self, num_register_tokens: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_register_tokens = num_register_tokens
        self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, self.embed_dim))

    def prepare_tokens_with_masks(self, x, masks=None):
        x = super().prepare_tokens_with_masks(x, masks)
        registers = self.register_tokens.expand(x.shape[0], -1, -1)
        return torch.cat((x[:, :1], registers, x[:, 1:]), dim=1)

    def forward_features(self, x, masks=None):
        x = self.prepare_tokens_with_masks(x, masks)
        for blk in self.blocks:
            x = blk(x)
        x_norm = self.norm(x)
        return {
            "x_norm_clstoken": x_norm[:, 0],
            "x_norm_regtokens": x_norm[:, 1 : self.num_register_tokens + 1],
            "x_norm_patchtokens": x_norm[:, self.num_register_tokens + 1 :],
            "x_prenorm": x,
        }


def random_masks(batch: int, num_patches: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, num_patches, generator=generator) < 0.4


def images(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, height, width, generator=generator)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float = ATOL) -> None:
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


def check_forward_features(ours, reference, x, masks=None) -> None:
    with torch.no_grad():
        want = reference.forward_features(x, masks=masks)
        got = ours.forward_features(x, masks)
    batch, grid_h, grid_w = x.shape[0], x.shape[2] // PATCH, x.shape[3] // PATCH
    assert got["patch"].shape == (batch, grid_h, grid_w, ours.embed_dim)
    assert_close(got["cls"], want["x_norm_clstoken"])
    assert_close(got["patch"].flatten(1, 2), want["x_norm_patchtokens"])
    assert_close(got["prenorm"], want["x_prenorm"])
    if "x_norm_regtokens" in want:
        assert_close(got["registers"], want["x_norm_regtokens"])


@pytest.mark.parametrize("block_chunks", [0, 3])
@pytest.mark.parametrize("height,width", [(112, 112), (126, 168)])  # native and non-native
def test_forward_features_match_official(tmp_path, block_chunks, height, width):
    reference = official_vit(block_chunks=block_chunks)
    path = tmp_path / "dinov2_vitpico14_pretrain.pth"
    torch.save(reference.state_dict(), path)
    ours = load_backbone(path)
    assert ours.pos_embed_interpolation == "dinov2"
    x = images(2, height, width)
    check_forward_features(ours, reference, x)
    masks = random_masks(2, (height // PATCH) * (width // PATCH), seed=3)
    check_forward_features(ours, reference, x, masks)


def test_swiglu_giant_style_ffn_matches_official(tmp_path):
    reference = official_vit(ffn_layer="swiglufused", embed_dim=192, num_heads=3)
    path = tmp_path / "swiglu.pth"
    torch.save(reference.state_dict(), path)
    ours = load_backbone(path)
    assert ours.config["ffn"] == "swiglu"
    check_forward_features(ours, reference, images(1, 98, 140))


@pytest.mark.parametrize("name", ["vit_small", "vit_base", "vit_large", "vit_giant2"])
def test_named_configs_have_official_parameter_shapes(name):
    """Built on the meta device (no memory): every converted official tensor fits ours."""
    from dinov2.models import vision_transformer as official

    ffn = "swiglufused" if name == "vit_giant2" else "mlp"
    with torch.device("meta"):
        reference = getattr(official, name)(
            patch_size=14,
            img_size=518,
            init_values=1e-5,
            ffn_layer=ffn,
            block_chunks=0,
            drop_path_uniform=True,  # the snapshot's linspace path calls .item(), not on meta
        )
        ours = build_backbone(name)
    want = {k: v.shape for k, v in convert_official_state_dict(reference.state_dict()).items()}
    assert want == {k: v.shape for k, v in ours.state_dict().items()}


def test_intermediate_layers_match_official(tmp_path):
    reference = official_vit(depth=4)
    path = tmp_path / "official.pth"
    torch.save(reference.state_dict(), path)
    ours = load_backbone(path)
    x = images(2, 126, 98)
    for layers in (2, [0, 2]):
        for norm in (True, False):
            with torch.no_grad():
                want = reference.get_intermediate_layers(
                    x, n=layers, return_class_token=True, norm=norm
                )
                got = ours.get_intermediate_layers(x, layers=layers, norm=norm)
            assert len(got) == len(want)
            for (patch_ref, cls_ref), out in zip(want, got, strict=True):
                assert out["patch"].shape == (2, 9, 7, 128)
                assert_close(out["patch"].flatten(1, 2), patch_ref)
                assert_close(out["cls"], cls_ref)


@pytest.mark.parametrize("height,width", [(112, 112), (126, 168)])
def test_registers_match_rederived_reference(height, width):
    reference = OfficialWithRegisters(
        num_register_tokens=3,
        img_size=112,
        patch_size=PATCH,
        embed_dim=64,
        depth=2,
        num_heads=2,
        init_values=1e-5,
        block_chunks=0,
    ).eval()
    perturb_(reference, seed=5)
    ours = build_backbone("vit_pico", img_size=112, num_register_tokens=3).eval()
    load_state_dict_strict(ours, convert_official_state_dict(reference.state_dict()), "reference")
    x = images(2, height, width, seed=4)
    check_forward_features(ours, reference, x)
    masks = random_masks(2, (height // PATCH) * (width // PATCH), seed=6)
    check_forward_features(ours, reference, x, masks)


def test_official_register_checkpoint_uses_size_antialias_resampling(tmp_path):
    """Official reg4 models resample by size with antialias (interpolate_offset=0): re-derived."""
    reference = OfficialWithRegisters(
        num_register_tokens=2, img_size=112, patch_size=PATCH, embed_dim=64, depth=2, num_heads=2
    ).eval()
    perturb_(reference, seed=7)
    path = tmp_path / "dinov2_reg.pth"
    torch.save(reference.state_dict(), path)
    ours = load_backbone(path)
    assert (ours.pos_embed_interpolation, ours.pos_embed_antialias) == ("transformers", True)
    side = int(math.sqrt(reference.pos_embed.shape[1] - 1))
    grid_pos = reference.pos_embed[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    want = F.interpolate(grid_pos, size=(9, 12), mode="bicubic", antialias=True)
    got = ours.interpolated_pos_embed(9, 12)[:, 1:].reshape(1, 9, 12, -1).permute(0, 3, 1, 2)
    assert_close(got, want)
