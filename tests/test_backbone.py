"""The backbone API: configs, token layout, masking, interpolation modes, attention maps."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from timm.layers import DropPath

from raddino.models.backbone import (
    BACKBONE_CONFIGS,
    build_backbone,
    build_backbone_from_config,
    swiglu_hidden_features,
)
from raddino.models.preprocessing import RAD_DINO


def seeded_images(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def pico_with_registers():
    torch.manual_seed(0)
    model = build_backbone("vit_pico", num_register_tokens=2).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # make LayerScale / registers / mask token non-trivial
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.1)
    return model


def test_named_configs_have_dinov2_architecture():
    expected = {
        "vit_small": (384, 12, 6),
        "vit_base": (768, 12, 12),
        "vit_large": (1024, 24, 16),
        "vit_giant2": (1536, 40, 24),
        "vit_tiny": (192, 6, 3),
        "vit_pico": (64, 2, 2),
    }
    for name, (dim, depth, heads) in expected.items():
        config = BACKBONE_CONFIGS[name]
        assert (config["embed_dim"], config["depth"], config["num_heads"]) == (dim, depth, heads)
    assert BACKBONE_CONFIGS["vit_giant2"]["ffn"] == "swiglu"


def test_swiglu_width_rule():
    assert swiglu_hidden_features(4 * 1536) == 4096
    model = build_backbone("vit_pico", ffn="swiglu")
    assert model.blocks[0].mlp.fc2.in_features == swiglu_hidden_features(256) == 176
    assert model.blocks[0].mlp.fc1.out_features == 2 * 176


def test_config_round_trip_and_attributes():
    model = build_backbone("vit_pico", num_register_tokens=3, drop_path_rate=0.1)
    config = json.loads(json.dumps(model.config))  # JSON-serialisable
    rebuilt = build_backbone_from_config(config)
    assert rebuilt.config == model.config
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in rebuilt.state_dict().items()}
    assert (model.patch_size, model.embed_dim, model.depth, model.num_heads) == (14, 64, 2, 2)
    assert model.num_register_tokens == 3
    assert model.preprocessing == RAD_DINO
    assert model.pos_embed_interpolation == "dinov2"
    assert model.reg_token.shape == (1, 3, 64) and model.mask_token.shape == (1, 64)
    assert model.pos_embed.shape == (1, 1 + 16 * 16, 64)  # class position + 224/14 squared


def test_unknown_config_and_option_errors():
    with pytest.raises(ValueError, match="unknown backbone config 'vit_huge'"):
        build_backbone("vit_huge")
    with pytest.raises(ValueError, match="unknown backbone option.*'emb_dim'"):
        build_backbone("vit_pico", emb_dim=3)
    with pytest.raises(ValueError, match="ffn"):
        build_backbone("vit_pico", ffn="geglu")


def test_forward_features_shapes(pico_with_registers):
    x = seeded_images(2, 98, 126)
    with torch.no_grad():
        out = pico_with_registers.forward_features(x)
    assert out["cls"].shape == (2, 64)
    assert out["patch"].shape == (2, 7, 9, 64)
    assert out["registers"].shape == (2, 2, 64)
    assert out["prenorm"].shape == (2, 1 + 2 + 63, 64)
    normed = pico_with_registers.norm(out["prenorm"])
    torch.testing.assert_close(out["cls"], normed[:, 0])
    torch.testing.assert_close(out["patch"].flatten(1, 2), normed[:, 3:])
    torch.testing.assert_close(pico_with_registers(x), out["cls"])


def test_patch_grid_is_row_major(pico_with_registers):
    """patch[:, i, j] comes from image rows 14i..14i+13 and columns 14j..14j+13."""
    x = seeded_images(1, 56, 84)
    with torch.no_grad():
        embedded = pico_with_registers.patch_embed(x)  # (1, 4, 6, 64)
        manual = F.conv2d(
            x[:, :, 14:28, 42:56],
            pico_with_registers.patch_embed.proj.weight,
            pico_with_registers.patch_embed.proj.bias,
        )
    torch.testing.assert_close(embedded[0, 1, 3], manual[0, :, 0, 0])


def test_patch_embedding_as_matmul_equals_the_convolution():
    """The CUDA path (reshape + one matmul) computes the conv's numbers, in its patch order."""
    model = build_backbone("vit_small").eval()
    x = seeded_images(2, 98, 126)
    with torch.no_grad():
        conv_bhwd = model.embed_patches(x, as_matmul=False)
        matmul_bhwd = model.embed_patches(x, as_matmul=True)
    assert matmul_bhwd.shape == conv_bhwd.shape == (2, 7, 9, 384)
    torch.testing.assert_close(matmul_bhwd, conv_bhwd, atol=1e-5, rtol=1e-5)
    # and it is differentiable like the conv: the same weight gradient
    grads = []
    for as_matmul in (False, True):
        model.zero_grad()
        model.embed_patches(x, as_matmul=as_matmul).square().sum().backward()
        grads.append(model.patch_embed.proj.weight.grad.clone())
    torch.testing.assert_close(grads[1], grads[0], atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("size", [(100, 112), (112, 13)])
def test_input_size_must_be_multiple_of_patch(pico_with_registers, size):
    with pytest.raises(ValueError, match="not a multiple of the patch size 14"):
        pico_with_registers.forward_features(seeded_images(1, *size))


def test_mask_token_replaces_masked_patches_before_position_embedding(pico_with_registers):
    model = pico_with_registers
    x = seeded_images(2, 56, 56)
    masks = torch.zeros(2, 16, dtype=torch.bool)
    masks[0, [1, 5]] = True
    tokens, _, _ = model.prepare_tokens(x, masks)
    plain, _, _ = model.prepare_tokens(x)
    pos = model.interpolated_pos_embed(4, 4)
    first = 1 + model.num_register_tokens
    expected = model.mask_token[0] + pos[0, 1 + 5]
    torch.testing.assert_close(tokens[0, first + 5], expected)
    unmasked = ~masks.flatten()
    torch.testing.assert_close(
        tokens[:, first:].flatten(0, 1)[unmasked], plain[:, first:].flatten(0, 1)[unmasked]
    )
    with pytest.raises(ValueError, match="masks_bn must be bool"):
        model.forward_features(x, masks.float())
    with pytest.raises(ValueError, match="masks_bn must be bool"):
        model.forward_features(x, masks[:, :3])


def test_mask_token_receives_gradient(pico_with_registers):
    model = pico_with_registers.train()
    masks = torch.zeros(1, 16, dtype=torch.bool)
    masks[0, 0] = True
    model.forward_features(seeded_images(1, 56, 56), masks)["patch"].sum().backward()
    assert model.mask_token.grad is not None and model.mask_token.grad.abs().sum() > 0


def test_registers_take_no_position_embedding(pico_with_registers):
    tokens, _, _ = pico_with_registers.prepare_tokens(seeded_images(2, 56, 42))
    torch.testing.assert_close(tokens[:, 1:3], pico_with_registers.reg_token.expand(2, -1, -1))
    cls_expected = pico_with_registers.cls_token[0, 0] + pico_with_registers.pos_embed[0, 0]
    torch.testing.assert_close(tokens[:, 0], cls_expected.expand(2, -1))


def test_native_grid_uses_pos_embed_unchanged(pico_with_registers):
    model = pico_with_registers
    assert model.interpolated_pos_embed(16, 16) is model.pos_embed


def test_interpolation_modes_follow_their_references(pico_with_registers):
    model = pico_with_registers
    grid_1chw = model.pos_embed[:, 1:].reshape(1, 16, 16, 64).permute(0, 3, 1, 2)
    want_dinov2 = F.interpolate(
        grid_1chw, scale_factor=(9.1 / 16, 12.1 / 16), mode="bicubic", align_corners=False
    )
    want_hf = F.interpolate(grid_1chw, size=(9, 12), mode="bicubic", align_corners=False)
    results = {}
    for mode in ("dinov2", "transformers"):
        model.pos_embed_interpolation = mode
        pos = model.interpolated_pos_embed(9, 12)
        assert pos.shape == (1, 1 + 9 * 12, 64)
        torch.testing.assert_close(pos[:, 0], model.pos_embed[:, 0])
        results[mode] = pos[:, 1:].reshape(1, 9, 12, 64).permute(0, 3, 1, 2)
    torch.testing.assert_close(results["dinov2"], want_dinov2)
    torch.testing.assert_close(results["transformers"], want_hf)
    assert (results["dinov2"] - results["transformers"]).abs().max() > 1e-4
    model.pos_embed_interpolation = "nearest"
    with pytest.raises(ValueError, match="pos_embed_interpolation"):
        model.interpolated_pos_embed(9, 12)


def test_interpolation_runs_in_float32_for_half_weights(pico_with_registers):
    model = pico_with_registers
    expected = model.interpolated_pos_embed(9, 12)
    model.pos_embed.data = model.pos_embed.data.to(torch.bfloat16)
    got = model.interpolated_pos_embed(9, 12)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected, atol=2e-2, rtol=2e-2)


def test_intermediate_layers(pico_with_registers):
    model = build_backbone("vit_tiny").eval()
    x = seeded_images(1, 56, 70)
    with torch.no_grad():
        last_two = model.get_intermediate_layers(x, layers=2)
        chosen = model.get_intermediate_layers(x, layers=[5, -6, 2])
        raw = model.get_intermediate_layers(x, layers=[5], norm=False)
        final = model.forward_features(x)
    assert len(last_two) == 2 and len(chosen) == 3
    assert last_two[0]["patch"].shape == (1, 4, 5, 192)
    torch.testing.assert_close(last_two[1]["cls"], final["cls"])
    torch.testing.assert_close(chosen[0]["patch"], final["patch"])  # asked order is kept
    torch.testing.assert_close(chosen[1]["cls"], model.get_intermediate_layers(x, [0])[0]["cls"])
    torch.testing.assert_close(raw[0]["cls"], final["prenorm"][:, 0])
    with pytest.raises(ValueError, match="out of range"):
        model.get_intermediate_layers(x, layers=[6])
    with pytest.raises(ValueError, match="depth"):
        model.get_intermediate_layers(x, layers=7)


def test_last_self_attention_is_a_manual_softmax(pico_with_registers):
    model = pico_with_registers
    x = seeded_images(2, 42, 70)
    attention = model.last_self_attention(x)
    assert attention.shape == (2, 2, 3, 5)
    totals = attention.flatten(2).sum(-1)
    assert torch.all(totals <= 1 + 1e-6) and torch.all(totals > 0)
    # manual: tokens entering the last block, its qkv projection, scaled dot product, softmax
    with torch.no_grad():
        tokens, _, _ = model.prepare_tokens(x)
        tokens = model.blocks[0](tokens)
        last = model.blocks[1]
        qkv = F.linear(last.norm1(tokens), last.attn.qkv.weight, last.attn.qkv.bias)
        q, k, _ = qkv.reshape(2, tokens.shape[1], 3, 2, 32).permute(2, 0, 3, 1, 4)
        logits = q[:, :, 0:1] @ k.transpose(-2, -1) / math.sqrt(32)
        manual = logits.softmax(-1)[:, :, 0, 3:].reshape(2, 2, 3, 5)
    torch.testing.assert_close(attention, manual)


def test_drop_path_is_uniform_and_only_active_in_training():
    model = build_backbone("vit_pico", drop_path_rate=0.3)
    rates = [b.drop_path1.drop_prob for b in model.blocks if isinstance(b.drop_path1, DropPath)]
    assert rates == [0.3, 0.3]
    linear = build_backbone("vit_pico", drop_path_rate=0.3, drop_path_uniform=False)
    assert isinstance(linear.blocks[0].drop_path1, torch.nn.Identity)  # rate 0 in block 0
    x = seeded_images(4, 28, 28)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))
        model.train()
        torch.manual_seed(0)
        first = model(x)
        torch.manual_seed(1)
        second = model(x)
    assert not torch.allclose(first, second)


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    model = build_backbone("vit_pico")
    x = seeded_images(1, 28, 42)
    model.forward_features(x)["patch"].square().sum().backward()
    plain = model.blocks[0].attn.qkv.weight.grad.clone()
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model.forward_features(x)["patch"].square().sum().backward()
    torch.testing.assert_close(model.blocks[0].attn.qkv.weight.grad, plain)


def test_xformers_code_path_layout(monkeypatch, pico_with_registers):
    """The guarded xformers branch (CUDA only) feeds (B, N, heads, d) and gets the same result.

    xformers is not installed here: a stand-in with memory_efficient_attention's documented
    layout and default scale replaces it, and the CUDA check is forced.
    """
    from raddino.models import backbone

    def fake_memory_efficient_attention(q_bnhd, k_bnhd, v_bnhd, p=0.0):
        q, k, v = (t.transpose(1, 2) for t in (q_bnhd, k_bnhd, v_bnhd))
        probs = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1)
        return (probs @ v).transpose(1, 2)

    x = seeded_images(2, 42, 56)
    with torch.no_grad():
        expected = pico_with_registers.forward_features(x)["patch"]
        monkeypatch.setattr(backbone, "_xformers_attention", fake_memory_efficient_attention)
        monkeypatch.setattr(backbone, "_xformers_usable", lambda tensor: True)
        got = pico_with_registers.forward_features(x)["patch"]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
