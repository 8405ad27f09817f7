"""The ViT backbone in the DINOv2 layout, built on timm's VisionTransformer.

One API serves the SSL trainer and every evaluator: `forward_features` (cls / patch / register
tokens), `get_intermediate_layers`, `last_self_attention`. Parameter names follow timm
(`cls_token`, `reg_token`, `pos_embed`, `patch_embed.proj`, `blocks.{i}.attn.qkv`, `ls1.gamma`,
`norm`) plus DINOv2's `mask_token`; `pos_embed` holds the class-token position as in DINOv2.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Literal

import torch
import torch.nn.functional as F
from timm.layers import Attention, DropPath, Mlp, SwiGLUPacked
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from raddino.models.preprocessing import RAD_DINO, Preprocessing

try:  # optional: memory-efficient attention on CUDA (the GPU environment installs xformers)
    from xformers.ops import memory_efficient_attention as _xformers_attention
except ImportError:  # CPU installs: PyTorch SDPA is used instead
    _xformers_attention = None

PosEmbedInterpolation = Literal["dinov2", "transformers"]
POS_EMBED_INTERPOLATIONS: tuple[str, ...] = ("dinov2", "transformers")

# Architecture of each named backbone; every other option comes from DEFAULT_OPTIONS.
BACKBONE_CONFIGS: dict[str, dict[str, Any]] = {
    "vit_pico": {"embed_dim": 64, "depth": 2, "num_heads": 2, "img_size": 224},
    "vit_tiny": {"embed_dim": 192, "depth": 6, "num_heads": 3, "img_size": 224},
    "vit_small": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "vit_base": {"embed_dim": 768, "depth": 12, "num_heads": 12},
    "vit_large": {"embed_dim": 1024, "depth": 24, "num_heads": 16},
    "vit_giant2": {"embed_dim": 1536, "depth": 40, "num_heads": 24, "ffn": "swiglu"},
}

DEFAULT_OPTIONS: dict[str, Any] = {
    "patch_size": 14,
    "img_size": 518,  # native resolution: size of the learned position-embedding grid (37 x 37)
    "in_chans": 3,
    "mlp_ratio": 4.0,
    "ffn": "mlp",  # "mlp" (GELU) or "swiglu" (DINOv2 giant)
    "mlp_hidden_features": None,  # None: from mlp_ratio (SwiGLU: DINOv2's 2/3 rule, multiple of 8)
    "qkv_bias": True,
    "layerscale_init": 1e-5,  # None: no LayerScale
    "num_register_tokens": 0,
    "layer_norm_eps": 1e-6,
    "drop_path_rate": 0.0,
    "drop_path_uniform": True,  # DINOv2's SSL default: same rate in every block
}


def swiglu_hidden_features(hidden_features: int) -> int:
    """DINOv2's SwiGLU width: two thirds of the MLP width, rounded up to a multiple of 8."""
    return (int(hidden_features * 2 / 3) + 7) // 8 * 8


def _xformers_usable(x: torch.Tensor) -> bool:
    return _xformers_attention is not None and x.is_cuda


class DinoAttention(Attention):
    """timm attention (PyTorch SDPA); xformers memory-efficient attention on CUDA if installed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fused_attn = True  # always SDPA, whatever TIMM_FUSED_ATTN says

    def forward(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False) -> torch.Tensor:
        if not _xformers_usable(x) or attn_mask is not None or is_causal:
            return super().forward(x, attn_mask=attn_mask, is_causal=is_causal)
        batch, tokens, _ = x.shape
        qkv_bn3hd = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
        q_bnhd, k_bnhd, v_bnhd = qkv_bn3hd.unbind(2)
        dropout = self.attn_drop.p if self.training else 0.0
        # xformers takes (B, N, heads, head_dim) and scales by 1/sqrt(head_dim) by default
        out_bnhd = _xformers_attention(q_bnhd, k_bnhd, v_bnhd, p=dropout)
        return self.proj_drop(self.proj(out_bnhd.reshape(batch, tokens, self.attn_dim)))

    def attention_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Explicit softmax(q k^T / sqrt(d)): (B, heads, N, N). Used only for attention maps."""
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
        q_bhnd, k_bhnd, _ = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        q_bhnd, k_bhnd = self.q_norm(q_bhnd), self.k_norm(k_bhnd)
        return ((q_bhnd * self.scale) @ k_bhnd.transpose(-2, -1)).softmax(dim=-1)


def _swiglu_ffn(in_features: int, hidden_features: int, **kwargs: Any) -> nn.Module:
    """timm's packed SwiGLU (fc1 = [gate; value]) sized as DINOv2's SwiGLUFFNFused."""
    kwargs.pop("act_layer", None)
    return SwiGLUPacked(in_features, hidden_features=2 * hidden_features, **kwargs)


def resolve_options(name: str, **overrides: Any) -> dict[str, Any]:
    """Full option dict (name + architecture + defaults + overrides); raises on unknown keys."""
    if name not in BACKBONE_CONFIGS:
        raise ValueError(
            f"unknown backbone config {name!r}; available: {', '.join(sorted(BACKBONE_CONFIGS))}"
        )
    options = {**DEFAULT_OPTIONS, **BACKBONE_CONFIGS[name]}
    unknown = sorted(set(overrides) - set(options))
    if unknown:
        raise ValueError(
            f"unknown backbone option(s) {unknown} for {name!r}; known: {sorted(options)}"
        )
    options.update(overrides)
    if options["ffn"] not in ("mlp", "swiglu"):
        raise ValueError(f"backbone option 'ffn' must be 'mlp' or 'swiglu', got {options['ffn']!r}")
    if options["embed_dim"] % options["num_heads"]:
        raise ValueError(
            f"embed_dim={options['embed_dim']} is not divisible by num_heads={options['num_heads']}"
        )
    if options["num_register_tokens"] < 0:
        raise ValueError("num_register_tokens must be >= 0")
    for key in ("img_size", "patch_size"):  # square grids, as every DINOv2 checkpoint
        if not isinstance(options[key], int) or options[key] <= 0:
            raise ValueError(
                f"backbone option {key!r} must be a positive int, got {options[key]!r}"
            )
    return {"name": name, **options}


class DinoVisionBackbone(VisionTransformer):
    """ViT with DINOv2 token layout: [cls, registers..., patches], mask token, resizable inputs.

    Use the methods below; timm's own `forward_intermediates` / `forward_head` / `_pos_embed`
    assume timm's register layout and are not part of this API.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        options = {k: v for k, v in config.items() if k != "name"}
        embed_dim = options["embed_dim"]
        hidden = options["mlp_hidden_features"] or int(embed_dim * options["mlp_ratio"])
        if options["ffn"] == "swiglu":
            hidden = options["mlp_hidden_features"] or swiglu_hidden_features(hidden)
            mlp_layer, act_layer = _swiglu_ffn, nn.SiLU
        else:
            mlp_layer, act_layer = Mlp, nn.GELU
        super().__init__(
            img_size=options["img_size"],
            patch_size=options["patch_size"],
            in_chans=options["in_chans"],
            num_classes=0,
            embed_dim=embed_dim,
            depth=options["depth"],
            num_heads=options["num_heads"],
            mlp_ratio=(hidden + 0.5)
            / embed_dim,  # timm's Block takes int(dim * mlp_ratio) == hidden
            qkv_bias=options["qkv_bias"],
            init_values=options["layerscale_init"],
            class_token=True,
            reg_tokens=0,  # registers are added below: they take no position embedding (DINOv2)
            dynamic_img_size=True,
            drop_path_rate=options["drop_path_rate"],
            norm_layer=partial(nn.LayerNorm, eps=options["layer_norm_eps"]),
            act_layer=act_layer,
            mlp_layer=mlp_layer,
            attn_layer=DinoAttention,
        )
        for block in self.blocks:  # guard against float rounding in int(dim * mlp_ratio)
            if block.mlp.fc2.in_features != hidden:
                raise ValueError(f"internal: MLP width {block.mlp.fc2.in_features} != {hidden}")
        if options["drop_path_uniform"] and options["drop_path_rate"] > 0:
            for block in self.blocks:
                block.drop_path1 = DropPath(options["drop_path_rate"])
                block.drop_path2 = DropPath(options["drop_path_rate"])

        self.config: dict[str, Any] = dict(config)  # JSON-serialisable: enough to rebuild
        self.patch_size: int = options["patch_size"]
        self.depth: int = options["depth"]
        self.num_heads: int = options["num_heads"]
        self.num_register_tokens: int = options["num_register_tokens"]
        self.num_reg_tokens = self.num_register_tokens
        self.num_prefix_tokens = 1 + self.num_register_tokens
        registers = self.num_register_tokens
        self.reg_token = nn.Parameter(torch.zeros(1, registers, embed_dim)) if registers else None
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))  # (1, C), as in DINOv2
        if self.reg_token is not None:
            nn.init.normal_(self.reg_token, std=1e-6)
        self.preprocessing: Preprocessing = RAD_DINO
        self.pos_embed_interpolation: PosEmbedInterpolation = "dinov2"
        # Antialiased resize: what transformers' Dinov2WithRegisters (and DINOv2's reg4 hub
        # models) do; only read in "transformers" mode.
        self.pos_embed_antialias: bool = False

    # ----------------------------------------------------------------------------- tokens
    def interpolated_pos_embed(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """Position embeddings (1, 1 + grid_h * grid_w, C) for a grid, resampled per the mode."""
        num_native = self.pos_embed.shape[1] - 1
        side = int(math.sqrt(num_native))
        if side * side != num_native:
            raise ValueError(f"pos_embed has {num_native} patch positions, not a square grid")
        if grid_h == grid_w == side:  # both references skip resampling at the native grid
            return self.pos_embed
        if self.pos_embed_interpolation not in POS_EMBED_INTERPOLATIONS:
            raise ValueError(
                f"pos_embed_interpolation must be one of {POS_EMBED_INTERPOLATIONS}, "
                f"got {self.pos_embed_interpolation!r}"
            )
        pos_embed = self.pos_embed.float()
        dim = pos_embed.shape[-1]
        patch_pos_1chw = pos_embed[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
        if self.pos_embed_interpolation == "dinov2":
            # Official DINOv2: the +0.1 offset goes into the scale factor, which also sets
            # the sampling coordinates (so this differs from size=(grid_h, grid_w)).
            scale = ((grid_h + 0.1) / math.sqrt(num_native), (grid_w + 0.1) / math.sqrt(num_native))
            resized_1chw = F.interpolate(patch_pos_1chw, scale_factor=scale, mode="bicubic")
        else:
            resized_1chw = F.interpolate(
                patch_pos_1chw,
                size=(grid_h, grid_w),
                mode="bicubic",
                align_corners=False,
                antialias=self.pos_embed_antialias,
            )
        if tuple(resized_1chw.shape[-2:]) != (grid_h, grid_w):
            raise ValueError(f"internal: resampled grid {tuple(resized_1chw.shape[-2:])}")
        patch_pos_1nc = resized_1chw.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, dim)
        return torch.cat((pos_embed[:, :1], patch_pos_1nc), dim=1).to(self.pos_embed.dtype)

    def embed_patches(self, x_bchw: torch.Tensor, as_matmul: bool | None = None) -> torch.Tensor:
        """(B, C, H, W) -> (B, h, w, D) with `patch_embed.proj`'s weights.

        A p x p convolution of stride p is a linear map of non-overlapping patches. cuDNN runs
        that convolution slowly (on an H200, 18 ms of a 400-ms gpu-paper step for ~0.3 TFLOP), so
        on CUDA (`as_matmul=None`) the patches are cut by reshaping and projected with one matmul;
        on CPU the convolution stays, which sums in the official code's order (parity to 1e-5)."""
        proj, p = self.patch_embed.proj, self.patch_size
        if not (x_bchw.is_cuda if as_matmul is None else as_matmul):
            return self.patch_embed(x_bchw)
        batch, channels, height, width = x_bchw.shape
        grid_h, grid_w = height // p, width // p
        patches_bhwk = (
            x_bchw.reshape(batch, channels, grid_h, p, grid_w, p)
            .permute(0, 2, 4, 1, 3, 5)
            .reshape(batch, grid_h, grid_w, channels * p * p)
        )  # k = (channel, row, column), the order of the flattened conv weight
        weight_dk = proj.weight.reshape(proj.out_channels, -1)
        return self.patch_embed.norm(F.linear(patches_bhwk, weight_dk, proj.bias))

    def prepare_tokens(
        self, x_bchw: torch.Tensor, masks_bn: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, int, int]:
        """Patch-embed, mask, add positions, insert registers: (tokens (B, 1+R+N, C), h, w)."""
        if x_bchw.ndim != 4:
            raise ValueError(f"expected images (B, C, H, W), got shape {tuple(x_bchw.shape)}")
        batch, _, height, width = x_bchw.shape
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"input size {height}x{width} is not a multiple of the patch size "
                f"{self.patch_size}; resize or crop to e.g. "
                f"{height // self.patch_size * self.patch_size}x"
                f"{width // self.patch_size * self.patch_size}"
            )
        grid_h, grid_w = height // self.patch_size, width // self.patch_size
        patches_bnc = self.embed_patches(x_bchw).reshape(batch, grid_h * grid_w, -1)
        if masks_bn is not None:
            if masks_bn.shape != (batch, grid_h * grid_w) or masks_bn.dtype != torch.bool:
                raise ValueError(
                    f"masks_bn must be bool of shape {(batch, grid_h * grid_w)}, "
                    f"got {masks_bn.dtype} {tuple(masks_bn.shape)}"
                )
            mask_token_11c = self.mask_token.to(patches_bnc.dtype).unsqueeze(0)
            patches_bnc = torch.where(masks_bn.unsqueeze(-1), mask_token_11c, patches_bnc)
        tokens = torch.cat((self.cls_token.expand(batch, -1, -1), patches_bnc), dim=1)
        tokens = tokens + self.interpolated_pos_embed(grid_h, grid_w).to(tokens.dtype)
        if self.reg_token is not None:
            registers_brc = self.reg_token.expand(batch, -1, -1)
            tokens = torch.cat((tokens[:, :1], registers_brc, tokens[:, 1:]), dim=1)
        return tokens, grid_h, grid_w

    def _run_block(self, block: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(block, tokens, use_reentrant=False)
        return block(tokens)

    def _split(self, normed_bnc: torch.Tensor, grid_h: int, grid_w: int) -> dict[str, torch.Tensor]:
        first_patch = 1 + self.num_register_tokens
        batch, _, dim = normed_bnc.shape
        return {
            "cls": normed_bnc[:, 0],
            "patch": normed_bnc[:, first_patch:].reshape(batch, grid_h, grid_w, dim),
            "registers": normed_bnc[:, 1:first_patch],
        }

    # ----------------------------------------------------------------------------- public API
    def forward_features(
        self, x_bchw: torch.Tensor, masks_bn: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Final-normed `cls` (B, C), `patch` (B, h, w, C), `registers` (B, R, C); `prenorm`."""
        tokens, grid_h, grid_w = self.prepare_tokens(x_bchw, masks_bn)
        for block in self.blocks:
            tokens = self._run_block(block, tokens)
        out = self._split(self.norm(tokens), grid_h, grid_w)
        out["prenorm"] = tokens
        return out

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        """Final-normed class token (B, C)."""
        return self.forward_features(x_bchw)["cls"]

    def get_intermediate_layers(
        self, x_bchw: torch.Tensor, layers: int | list[int] = 1, norm: bool = True
    ) -> list[dict[str, torch.Tensor]]:
        """Outputs of chosen blocks as dicts (cls (B, C), patch (B, h, w, C)), optionally normed.

        As official DINOv2: an int n takes the last n blocks; a list names block indices
        (negative allowed). Results come in the order asked.
        """
        if isinstance(layers, int):
            if not 1 <= layers <= self.depth:
                raise ValueError(f"layers={layers}: need 1 <= n <= depth ({self.depth})")
            indices = list(range(self.depth - layers, self.depth))
        else:
            indices = []
            for index in layers:
                if not -self.depth <= int(index) < self.depth:
                    raise ValueError(f"layer index {index} out of range for depth {self.depth}")
                indices.append(int(index) % self.depth)
        tokens, grid_h, grid_w = self.prepare_tokens(x_bchw)
        taken: dict[int, torch.Tensor] = {}
        for block_index, block in enumerate(self.blocks[: max(indices) + 1]):
            tokens = self._run_block(block, tokens)
            if block_index in indices:
                taken[block_index] = tokens
        outputs = []
        for index in indices:
            out = self._split(self.norm(taken[index]) if norm else taken[index], grid_h, grid_w)
            outputs.append({"cls": out["cls"], "patch": out["patch"]})
        return outputs

    @torch.no_grad()
    def last_self_attention(self, x_bchw: torch.Tensor) -> torch.Tensor:
        """Last block's class-token -> patch attention probabilities, (B, heads, h, w)."""
        tokens, grid_h, grid_w = self.prepare_tokens(x_bchw)
        for block in self.blocks[:-1]:
            tokens = block(tokens)
        last = self.blocks[-1]
        probs_bhnn = last.attn.attention_probs(last.norm1(tokens))
        first_patch = 1 + self.num_register_tokens
        cls_to_patch_bhn = probs_bhnn[:, :, 0, first_patch:]
        return cls_to_patch_bhn.reshape(tokens.shape[0], self.num_heads, grid_h, grid_w)


def build_backbone(name: str, **overrides: Any) -> DinoVisionBackbone:
    """Build a named backbone (`BACKBONE_CONFIGS`) with option overrides; randomly initialised."""
    return DinoVisionBackbone(resolve_options(name, **overrides))


def build_backbone_from_config(config: dict[str, Any]) -> DinoVisionBackbone:
    """Rebuild a backbone from its `config` attribute (name + options)."""
    if "name" not in config:
        raise ValueError(f"backbone config has no 'name': {sorted(config)}")
    options = {k: v for k, v in config.items() if k != "name"}
    return build_backbone(config["name"], **options)
