"""Segmentation heads on frozen patch features (linear, ViTDet, UPerNet) and the U-Net upper bound.

Frozen heads take cached features `(B, L, C, h, w)` (L intermediate layers, last one last) and
return logits `(B, S, h', w')` on some grid; the trainer upsamples them bilinearly to the mask
size, as DINOv2's linear head does. The U-Net takes model-frame images `(B, 1, H, W)` instead.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

HeadKind = Literal["linear", "vitdet", "upernet", "unet"]
HEAD_KINDS: tuple[str, ...] = ("linear", "vitdet", "upernet", "unet")
# How many intermediate layers each frozen head reads (paper Table 6, "# Features").
LAYERS_PER_HEAD: dict[str, int] = {"linear": 1, "vitdet": 4, "upernet": 4, "unet": 0}


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over channels of a (B, C, H, W) map (ViTDet normalises its pyramid this way)."""

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        return super().forward(x_bchw.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class LinearHead(nn.Module):
    """DINOv2's linear segmentation head: BatchNorm + 1x1 conv on the last layer's patch tokens."""

    def __init__(self, embed_dim: int, num_structures: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(embed_dim)
        self.classifier = nn.Conv2d(embed_dim, num_structures, kernel_size=1)

    def forward(self, features_blchw: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.norm(features_blchw[:, -1]))


def _pyramid_widths(embed_dim: int) -> tuple[int, int, int, int]:
    """Channels of the x4, x2, x1, x1/2 levels (ViTDet halves the width per upsampling)."""
    return (max(embed_dim // 4, 1), max(embed_dim // 2, 1), embed_dim, embed_dim)


class SimpleFeaturePyramid(nn.Module):
    """ViTDet's simple pyramid over 4 layers: deconv x4, deconv x2, identity, max-pool x1/2.

    As in BEiT/mmseg's ViT necks, layer i of the last four feeds level i (shallow -> fine).
    """

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        quarter, half, _, _ = _pyramid_widths(embed_dim)
        self.up4 = nn.Sequential(
            nn.ConvTranspose2d(embed_dim, half, kernel_size=2, stride=2),
            LayerNorm2d(half),
            nn.GELU(),
            nn.ConvTranspose2d(half, quarter, kernel_size=2, stride=2),
        )
        self.up2 = nn.ConvTranspose2d(embed_dim, half, kernel_size=2, stride=2)
        self.down2 = nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)

    def forward(self, features_blchw: torch.Tensor) -> list[torch.Tensor]:
        if features_blchw.shape[1] != 4:
            raise ValueError(f"the feature pyramid needs 4 layers, got {features_blchw.shape[1]}")
        layers = features_blchw.unbind(1)
        return [self.up4(layers[0]), self.up2(layers[1]), layers[2], self.down2(layers[3])]


class ViTDetHead(nn.Module):
    """Simple pyramid -> per-level 1x1 + 3x3 convs with LayerNorm (ViTDet) -> fused at x4.

    The fusion (upsample every level to the finest, sum, conv, classify) follows Panoptic FPN's
    semantic branch; ViTDet itself defines only the pyramid.
    """

    def __init__(self, embed_dim: int, num_structures: int, channels: int = 128) -> None:
        super().__init__()
        self.pyramid = SimpleFeaturePyramid(embed_dim)
        self.level_convs = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(width, channels, kernel_size=1, bias=False),
                LayerNorm2d(channels),
                nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
                LayerNorm2d(channels),
            )
            for width in _pyramid_widths(embed_dim)
        )
        self.fuse = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Conv2d(channels, num_structures, kernel_size=1)

    def forward(self, features_blchw: torch.Tensor) -> torch.Tensor:
        levels = [
            conv(level)
            for conv, level in zip(self.level_convs, self.pyramid(features_blchw), strict=True)
        ]
        finest_hw = levels[0].shape[-2:]
        fused = sum(
            F.interpolate(level, size=finest_hw, mode="bilinear", align_corners=False)
            for level in levels
        )
        return self.classifier(self.fuse(fused))


class UPerNetHead(nn.Module):
    """Simple pyramid -> segmentation_models_pytorch's UPerNet decoder (PPM + FPN) -> classifier."""

    def __init__(self, embed_dim: int, num_structures: int, channels: int = 128) -> None:
        from segmentation_models_pytorch.decoders.upernet.decoder import UPerNetDecoder

        super().__init__()
        self.pyramid = SimpleFeaturePyramid(embed_dim)
        # smp's decoder expects encoder outputs at strides [1, 2, 4, 8, 16, 32] and reads
        # only the last four; the first two entries are placeholders it never touches.
        self.decoder = UPerNetDecoder(
            encoder_channels=(1, 1, *_pyramid_widths(embed_dim)),
            encoder_depth=5,
            decoder_channels=channels,
        )
        self.classifier = nn.Conv2d(channels, num_structures, kernel_size=1)

    def forward(self, features_blchw: torch.Tensor) -> torch.Tensor:
        placeholder = features_blchw.new_empty(0)
        levels = self.pyramid(features_blchw)
        return self.classifier(self.decoder([placeholder, placeholder, *levels]))


class UNetHead(nn.Module):
    """End-to-end U-Net (smp, random init: offline) on model-frame images, padded to 32k pixels."""

    def __init__(self, num_structures: int, encoder_name: str = "resnet18") -> None:
        import segmentation_models_pytorch as smp

        super().__init__()
        self.encoder_name = encoder_name
        self.net = smp.Unet(
            encoder_name=encoder_name, encoder_weights=None, in_channels=1, classes=num_structures
        )
        self.multiple = 32

    def forward(self, images_b1hw: torch.Tensor) -> torch.Tensor:
        height, width = images_b1hw.shape[-2:]
        pad_h, pad_w = -height % self.multiple, -width % self.multiple
        padded = F.pad(images_b1hw, (0, pad_w, 0, pad_h))
        return self.net(padded)[..., :height, :width]


def build_head(
    kind: str,
    embed_dim: int,
    num_structures: int,
    *,
    channels: int = 128,
    unet_encoder: str = "resnet18",
) -> nn.Module:
    """A head of `kind` for features of `embed_dim` channels predicting `num_structures` maps."""
    if kind not in HEAD_KINDS:
        raise ValueError(f"unknown head {kind!r}; choose one of {', '.join(HEAD_KINDS)}")
    if num_structures < 1:
        raise ValueError(f"need at least one structure to segment, got {num_structures}")
    if kind == "linear":
        return LinearHead(embed_dim, num_structures)
    if kind == "vitdet":
        return ViTDetHead(embed_dim, num_structures, channels)
    if kind == "upernet":
        return UPerNetHead(embed_dim, num_structures, channels)
    return UNetHead(num_structures, unet_encoder)
