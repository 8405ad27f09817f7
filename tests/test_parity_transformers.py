"""Numerical parity with transformers' `Dinov2Model` / `Dinov2WithRegistersModel`.

Seeded random models (parameters perturbed so tiny inits hide nothing) are written with
`save_pretrained` and read back with `load_backbone`; cls and patch tokens must agree.
"""

from __future__ import annotations

import pytest
import torch
from transformers import (
    Dinov2Config,
    Dinov2Model,
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
)

from raddino.models.weights import load_backbone

RTOL = 1e-4


def perturb_(module: torch.nn.Module, seed: int, scale: float = 0.05) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)


def saved_hf_model(folder, config, model_class=Dinov2Model, seed: int = 0):
    torch.manual_seed(seed)
    model = model_class(config).eval()
    perturb_(model, seed)
    model.save_pretrained(folder)
    return model


def assert_relative_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Max abs error relative to the reference's scale (max |value|) within RTOL."""
    scale = expected.abs().max().clamp_min(1e-12)
    error = (actual - expected).abs().max() / scale
    assert error <= RTOL, f"relative error {error:.2e} > {RTOL:.0e}"


def compare(ours, reference, x, num_registers: int = 0, masks=None) -> None:
    with torch.no_grad():
        want = reference(pixel_values=x, bool_masked_pos=masks)
        got = ours.forward_features(x, masks)
    assert_relative_close(got["cls"], want.pooler_output)
    assert_relative_close(got["cls"], want.last_hidden_state[:, 0])
    patches_want = want.last_hidden_state[:, 1 + num_registers :]
    assert_relative_close(got["patch"].flatten(1, 2), patches_want)
    if num_registers:
        assert_relative_close(got["registers"], want.last_hidden_state[:, 1 : 1 + num_registers])


def tiny_config(**overrides) -> Dinov2Config:
    options = dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=224,
        patch_size=14,
        layerscale_value=1.0,
    )
    options.update(overrides)
    return Dinov2Config(**options)


@pytest.mark.parametrize("swiglu", [False, True])
def test_tiny_dinov2_model_parity(tmp_path, swiglu):
    reference = saved_hf_model(tmp_path, tiny_config(use_swiglu_ffn=swiglu))
    ours = load_backbone(tmp_path)
    assert ours.pos_embed_interpolation == "transformers"
    assert ours.config["ffn"] == ("swiglu" if swiglu else "mlp")
    generator = torch.Generator().manual_seed(1)
    for height, width in [(224, 224), (280, 336), (112, 70)]:
        x = torch.randn(2, 3, height, width, generator=generator)
        compare(ours, reference, x)
    masks = torch.rand(2, 20 * 24, generator=generator) < 0.4
    compare(ours, reference, torch.randn(2, 3, 280, 336, generator=generator), masks=masks)


def test_dinov2_mode_differs_from_transformers_at_non_native_size(tmp_path):
    """The two interpolation modes are distinguishable, so the parity above is meaningful."""
    reference = saved_hf_model(tmp_path, tiny_config())
    ours = load_backbone(tmp_path)
    ours.pos_embed_interpolation = "dinov2"
    x = torch.randn(1, 3, 280, 336, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = reference(pixel_values=x).last_hidden_state[:, 1:]
        got = ours.forward_features(x)["patch"].flatten(1, 2)
    assert (got - want).abs().max() / want.abs().max() > 1e-3


def test_dinov2_with_registers_parity(tmp_path):
    config = Dinov2WithRegistersConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=224,
        patch_size=14,
        num_register_tokens=4,
    )
    reference = saved_hf_model(tmp_path, config, Dinov2WithRegistersModel, seed=3)
    ours = load_backbone(tmp_path)
    assert ours.num_register_tokens == 4 and ours.pos_embed_antialias
    generator = torch.Generator().manual_seed(4)
    for height, width in [(224, 224), (154, 322)]:
        compare(ours, reference, torch.randn(2, 3, height, width, generator=generator), 4)


def rad_dino_config() -> Dinov2Config:
    """microsoft/rad-dino's config.json architecture (ViT-B/14 at 518, LayerScale, no registers)."""
    return Dinov2Config(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        image_size=518,
        patch_size=14,
        mlp_ratio=4,
        layerscale_value=1.0,
        layer_norm_eps=1e-6,
        qkv_bias=True,
        use_swiglu_ffn=False,
    )


@pytest.mark.slow
def test_rad_dino_architecture_parity(tmp_path):
    """The real ViT-B/14 at 518 (batch 1) and at 224: ~10 s CPU, 30 s+ on a busy 2-core box."""
    folder = tmp_path / "rad-dino"
    reference = saved_hf_model(folder, rad_dino_config(), seed=5)
    ours = load_backbone(folder)
    assert ours.preprocessing.name == "rad-dino"  # folder name says rad-dino, no processor json
    assert (ours.embed_dim, ours.depth, ours.num_heads, ours.patch_size) == (768, 12, 12, 14)
    generator = torch.Generator().manual_seed(6)
    compare(ours, reference, torch.randn(1, 3, 518, 518, generator=generator))
    compare(ours, reference, torch.randn(2, 3, 224, 224, generator=generator))


@pytest.mark.parametrize("swiglu", [False, True])
def test_transformers_v5_key_names_load_too(tmp_path, swiglu):
    """In-memory v5 modules are named q_proj/o_proj/gate_proj/...; a file in that layout loads."""
    from safetensors.torch import save_file

    reference = saved_hf_model(tmp_path, tiny_config(use_swiglu_ffn=swiglu), seed=7)
    state = reference.state_dict()
    assert any(".q_proj." in k for k in state)
    assert any(".gate_proj." in k for k in state) == swiglu
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "model.safetensors"))
    ours = load_backbone(tmp_path)
    compare(ours, reference, torch.randn(1, 3, 196, 252, generator=torch.Generator()))


def test_config_without_mask_token(tmp_path):
    reference = saved_hf_model(tmp_path, tiny_config(use_mask_token=False), seed=8)
    ours = load_backbone(tmp_path)
    assert torch.equal(ours.mask_token, torch.zeros(1, 64))
    compare(ours, reference, torch.randn(1, 3, 224, 224, generator=torch.Generator()))
