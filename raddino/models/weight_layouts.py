"""Key layouts of foreign backbone weights (transformers, official DINOv2, timm) -> ours.

Pure functions on state dicts and config dicts: renames, q/k/v packing, option inference from
tensor shapes, and the Hugging Face image-processor JSON -> `Preprocessing`. `weights.py` uses
them to load strictly.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import torch

from raddino.models.backbone import BACKBONE_CONFIGS, swiglu_hidden_features
from raddino.models.preprocessing import DINOV2_IMAGENET, RAD_DINO, Preprocessing

Tensors = dict[str, torch.Tensor]
_PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def convert_hf_state_dict(state: Tensors) -> Tensors:
    """transformers `Dinov2Model` keys (legacy or v5 names) -> our layout; unknown keys kept."""
    out: Tensors = {}
    # target key -> role -> (source key, tensor); concatenated along dim 0 once complete
    pieces: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    renames = [
        (r"^embeddings\.cls_token$", "cls_token"),
        (r"^embeddings\.mask_token$", "mask_token"),
        (r"^embeddings\.position_embeddings$", "pos_embed"),
        (r"^embeddings\.register_tokens$", "reg_token"),
        (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
        (r"^layernorm\.", "norm."),
        (r"^encoder\.layer\.(\d+)\.(norm[12])\.", r"blocks.\1.\2."),
        (r"^encoder\.layer\.(\d+)\.attention\.(output\.dense|o_proj)\.", r"blocks.\1.attn.proj."),
        (r"^encoder\.layer\.(\d+)\.layer_scale([12])\.lambda1$", r"blocks.\1.ls\2.gamma"),
        (r"^encoder\.layer\.(\d+)\.mlp\.(fc[12])\.", r"blocks.\1.mlp.\2."),
        (r"^encoder\.layer\.(\d+)\.mlp\.weights_in\.", r"blocks.\1.mlp.fc1."),
        (r"^encoder\.layer\.(\d+)\.mlp\.(weights_out|down_proj)\.", r"blocks.\1.mlp.fc2."),
    ]
    # split projections: q,k,v -> packed qkv; SwiGLU gate,up -> packed fc1 ([gate; up])
    split = re.compile(
        r"^encoder\.layer\.(\d+)\.(?:attention\.attention\.(query|key|value)|"
        r"attention\.(q_proj|k_proj|v_proj)|mlp\.(gate_proj|up_proj))\.(weight|bias)$"
    )
    for key, tensor in state.items():
        match = split.match(key)
        if match:
            layer, legacy, modern, swiglu, kind = match.groups()
            role = (legacy or modern or swiglu)[0]  # q / k / v / g(ate) / u(p)
            target = f"blocks.{layer}.{'attn.qkv' if role in 'qkv' else 'mlp.fc1'}.{kind}"
            pieces.setdefault(target, {})[role] = (key, tensor)
            continue
        for pattern, replacement in renames:
            if re.search(pattern, key):
                out[re.sub(pattern, replacement, key)] = tensor
                break
        else:
            out[key] = tensor  # unknown: reported as unexpected by the strict loader
    for target, roles in pieces.items():
        order = "qkv" if ".attn.qkv." in target else "gu"
        if set(roles) == set(order):
            out[target] = torch.cat([roles[role][1] for role in order], dim=0)
        else:  # incomplete: keep the pieces under their own names so the error lists them
            out.update(dict(roles.values()))
    return out


def convert_official_state_dict(state: Tensors) -> Tensors:
    """Official DINOv2 keys (chunked `blocks.c.i.`, SwiGLU `w12/w3`, `register_tokens`) -> ours."""
    out: Tensors = {}
    for key, tensor in state.items():
        key = re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", key)
        key = re.sub(r"\.mlp\.w12\.", ".mlp.fc1.", key)
        key = re.sub(r"\.mlp\.w3\.", ".mlp.fc2.", key)
        out["reg_token" if key == "register_tokens" else key] = tensor
    return out


def convert_timm_state_dict(state: Tensors) -> Tensors:
    """timm DINOv2 state dict -> ours; timm's reg4 layout (no class position) gets one back."""
    out = dict(state)
    pos = out.get("pos_embed")
    if pos is not None and pos.ndim == 3 and math.isqrt(pos.shape[1]) ** 2 == pos.shape[1]:
        # timm folds the class position into cls_token (no_embed_class): a zero row is exact.
        out["pos_embed"] = torch.cat((torch.zeros_like(pos[:, :1]), pos), dim=1)
    return out


def options_from_state_dict(state: Tensors, origin: str) -> dict[str, Any]:
    """Backbone options from tensor shapes (our layout); heads from a matching named config."""
    required = ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.mlp.fc1.weight")
    absent = [k for k in required if k not in state]
    if absent:
        raise ValueError(f"{origin}: cannot infer the backbone; missing keys {absent}")
    embed_dim = state["cls_token"].shape[-1]
    proj = state["patch_embed.proj.weight"]  # (C, in_chans, p, p)
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    num_positions = state["pos_embed"].shape[1] - 1
    side = math.isqrt(num_positions)
    if side * side != num_positions:
        raise ValueError(f"{origin}: pos_embed has {num_positions} patch positions, not a square")
    fc1_rows, fc2_cols = (
        state["blocks.0.mlp.fc1.weight"].shape[0],
        state["blocks.0.mlp.fc2.weight"].shape[1],
    )
    ffn = "swiglu" if fc1_rows == 2 * fc2_cols else "mlp"
    name = next(
        (
            n
            for n, c in BACKBONE_CONFIGS.items()
            if (c["embed_dim"], c["depth"]) == (embed_dim, depth)
        ),
        "vit_base",
    )
    num_heads = BACKBONE_CONFIGS[name]["num_heads"]
    if BACKBONE_CONFIGS[name]["embed_dim"] != embed_dim or BACKBONE_CONFIGS[name]["depth"] != depth:
        if embed_dim % 64:
            raise ValueError(
                f"{origin}: cannot infer the number of heads for embed_dim={embed_dim}, "
                f"depth={depth}; save it with raddino's save_backbone (config in metadata)"
            )
        num_heads = embed_dim // 64  # every DINOv2 model uses 64-dim heads
    default_hidden = int(embed_dim * 4.0)
    if ffn == "swiglu":
        default_hidden = swiglu_hidden_features(default_hidden)
    return {
        "name": name,
        "embed_dim": embed_dim,
        "depth": depth,
        "num_heads": num_heads,
        "patch_size": proj.shape[-1],
        "img_size": side * proj.shape[-1],
        "in_chans": proj.shape[1],
        "ffn": ffn,
        "mlp_ratio": 4.0,
        "mlp_hidden_features": None if fc2_cols == default_hidden else fc2_cols,
        "qkv_bias": "blocks.0.attn.qkv.bias" in state,
        "layerscale_init": 1.0 if "blocks.0.ls1.gamma" in state else None,
        "num_register_tokens": state["reg_token"].shape[1] if "reg_token" in state else 0,
    }


def options_from_hf_config(hf_config: dict[str, Any], origin: str) -> dict[str, Any]:
    """Backbone options from a transformers `Dinov2Config` / `Dinov2WithRegistersConfig` dict."""
    model_type = hf_config.get("model_type")
    if model_type not in ("dinov2", "dinov2_with_registers"):
        raise ValueError(f"{origin}: model_type {model_type!r} is not dinov2[_with_registers]")
    swiglu = bool(hf_config.get("use_swiglu_ffn", False))
    if not swiglu and hf_config.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"{origin}: hidden_act {hf_config['hidden_act']!r} unsupported (gelu)")
    sizes = {}
    for key in ("image_size", "patch_size"):
        value = hf_config.get(key, 518 if key == "image_size" else 14)
        value = list(value) if isinstance(value, list | tuple) else [value, value]
        if value[0] != value[1]:
            raise ValueError(f"{origin}: non-square {key} {value} is not supported")
        sizes[key] = int(value[0])
    embed_dim, depth = int(hf_config["hidden_size"]), int(hf_config["num_hidden_layers"])
    name = next(
        (
            n
            for n, c in BACKBONE_CONFIGS.items()
            if (c["embed_dim"], c["depth"]) == (embed_dim, depth)
        ),
        "vit_base",
    )
    return {
        "name": name,
        "embed_dim": embed_dim,
        "depth": depth,
        "num_heads": int(hf_config["num_attention_heads"]),
        "patch_size": sizes["patch_size"],
        "img_size": sizes["image_size"],
        "in_chans": int(hf_config.get("num_channels", 3)),
        "mlp_ratio": float(hf_config.get("mlp_ratio", 4)),
        "ffn": "swiglu" if swiglu else "mlp",
        "qkv_bias": bool(hf_config.get("qkv_bias", True)),
        "layerscale_init": float(hf_config.get("layerscale_value", 1.0)),
        "num_register_tokens": int(hf_config.get("num_register_tokens", 0))
        if model_type == "dinov2_with_registers"
        else 0,
        "layer_norm_eps": float(hf_config.get("layer_norm_eps", 1e-6)),
        "drop_path_rate": float(hf_config.get("drop_path_rate", 0.0)),
    }


def preprocessing_from_hf_processor(path: Path) -> Preprocessing:
    """`Preprocessing` from a transformers image-processor JSON (BitImageProcessor, as rad-dino)."""
    cfg = json.loads(path.read_text())
    size, crop = cfg.get("size") or {}, cfg.get("crop_size") or {}
    resize = None
    if cfg.get("do_resize", True):
        if "shortest_edge" not in size:
            raise ValueError(f"{path}: 'size' {size} unsupported; need {{'shortest_edge': N}}")
        resize = int(size["shortest_edge"])
    crop_size = None
    if cfg.get("do_center_crop", False):
        if crop.get("height") != crop.get("width"):
            raise ValueError(f"{path}: non-square 'crop_size' {crop} unsupported")
        crop_size = int(crop["height"])
    mean, std = cfg.get("image_mean", [0.0] * 3), cfg.get("image_std", [1.0] * 3)
    if not cfg.get("do_normalize", True):
        mean, std = [0.0] * 3, [1.0] * 3
    parsed = Preprocessing(
        name=f"hf:{path.parent.name}",
        resize_shortest_edge=resize,
        crop_size=crop_size,
        resample=_PIL_RESAMPLE.get(cfg.get("resample", 3), "bicubic"),
        rescale=float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        rgb=bool(cfg.get("do_convert_rgb", True)),
    )
    for known in (RAD_DINO, DINOV2_IMAGENET):  # same recipe: use the named constant
        if {**parsed.to_dict(), "name": known.name} == known.to_dict():
            return known
    return parsed
