"""RAD-DINO multi-crop augmentation for single-channel X-rays (paper App. C.1), seeded explicitly.

Crops are SQUARE with side a uniform fraction of the image's shorter side: global crops
U(0.5, 1.0) (RAD-DINO: U(259, 518) px of a 518 image) resized to `global_crops_size` (518), local
crops U(0.2, 0.5) (U(104, 259) px) resized to `local_crops_size` (196); at other resolutions the
fractions stay and the sizes scale. Photometric jitter suited to grayscale radiographs replaces
DINOv2's colour jitter/grayscale: brightness and contrast factors and a gamma, applied together
with probability 0.8. Gaussian blur with probability p and sigma proportional to the crop size
(DINOv2's 0.1-2 px at 224 px). RAD-DINO gives the teacher-side view less blur: global crop 1 is
blurred rarely (p 0.1) and gently, global crop 2 and local crops with p 0.5. Horizontal flips are
off by default (laterality carries meaning on chest X-rays). Solarisation is off by default.

Beyond the paper, `random_borders_p` draws bright bands along a crop's edges, per crop (off by
default). Collimation borders are the easiest way to tell one radiograph from another, so an
encoder trained to tell images apart learns to keep them: on the phantoms the shipped class
tokens read "has borders" at 0.95 accuracy (random init 0.84) and findings at chance. Borders
that come and go between two crops of one image are something the encoder must ignore instead.

Official DINOv2's `GaussianBlur(p)` wraps `RandomApply(p=1 - p)`, i.e. blurs with probability
1 - p (dinov2 PR #411); we blur with probability p, as the method intends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode


@dataclass(frozen=True)
class PhotometricJitter:
    """Grayscale photometric augmentation of one crop and its probabilities."""

    jitter_p: float = 0.8  # brightness/contrast/gamma applied together with this probability
    brightness: float = 0.4  # factor ~ U(1 - b, 1 + b)
    contrast: float = 0.4  # factor ~ U(1 - c, 1 + c), around the crop mean
    gamma: float = 1.5  # gamma ~ log-uniform(1 / g, g)
    blur_p: float = 0.5
    blur_sigma_at_224: tuple[float, float] = (0.1, 2.0)  # px at a 224 px crop, scaled by size
    solarize_p: float = 0.0

    def scaled(self, strength: float) -> PhotometricJitter:
        """Brightness, contrast and log-gamma ranges times `strength` (0: none, 1: as is)."""
        return replace(
            self,
            brightness=self.brightness * strength,
            contrast=self.contrast * strength,
            gamma=self.gamma**strength,
        )


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def _coin(generator: torch.Generator, p: float) -> bool:
    return float(torch.rand((), generator=generator, dtype=torch.float64)) < p


def random_square_crop(
    image_chw: torch.Tensor,
    side_fraction: tuple[float, float],
    out_size: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Square crop with side U(side_fraction) x shorter image side, uniform position, resized."""
    height, width = image_chw.shape[-2:]
    side = round(_uniform(generator, *side_fraction) * min(height, width))
    side = min(max(side, 1), height, width)
    top = int(torch.randint(0, height - side + 1, (), generator=generator))
    left = int(torch.randint(0, width - side + 1, (), generator=generator))
    crop = TF.resized_crop(
        image_chw, top, left, side, side, [out_size, out_size],
        interpolation=InterpolationMode.BICUBIC, antialias=True,
    )  # fmt: skip
    return crop.clamp_(0.0, 1.0)  # bicubic overshoots


def photometric(
    crop_chw: torch.Tensor, jitter: PhotometricJitter, generator: torch.Generator
) -> torch.Tensor:
    """Intensity jitter, blur and optional solarisation of one crop in [0, 1]."""
    if _coin(generator, jitter.jitter_p):
        crop_chw = TF.adjust_brightness(
            crop_chw, _uniform(generator, 1 - jitter.brightness, 1 + jitter.brightness)
        )
        crop_chw = TF.adjust_contrast(
            crop_chw, _uniform(generator, 1 - jitter.contrast, 1 + jitter.contrast)
        )
        log_gamma = math.log(jitter.gamma)
        crop_chw = TF.adjust_gamma(crop_chw, math.exp(_uniform(generator, -log_gamma, log_gamma)))
    if _coin(generator, jitter.blur_p):
        scale = crop_chw.shape[-1] / 224
        sigma = _uniform(generator, *jitter.blur_sigma_at_224) * scale
        kernel = 2 * math.ceil(3 * sigma) + 1
        crop_chw = TF.gaussian_blur(crop_chw, [kernel, kernel], [sigma, sigma])
    if _coin(generator, jitter.solarize_p):
        crop_chw = TF.solarize(crop_chw, 0.5)
    return crop_chw.clamp(0.0, 1.0)


@dataclass(frozen=True)
class RandomBorders:
    """Collimation-like bright bands drawn on a crop: with probability `p`, each edge with
    probability `edge_p` gets a band U(width) of the crop side at a level U(level)."""

    p: float = 0.0
    edge_p: float = 0.6
    width: tuple[float, float] = (0.01, 0.08)
    level: tuple[float, float] = (0.85, 1.0)

    def __call__(self, crop_chw: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The crop with bands drawn (a copy); draws nothing from `generator` when p is 0, so a
        recipe without borders keeps its crops bit for bit."""
        if self.p <= 0.0 or not _coin(generator, self.p):
            return crop_chw
        crop_chw = crop_chw.clone()
        side = crop_chw.shape[-1]
        for edge in ("top", "bottom", "left", "right"):
            if not _coin(generator, self.edge_p):
                continue
            band = max(1, round(_uniform(generator, *self.width) * side))
            level = _uniform(generator, *self.level)
            if edge == "top":
                crop_chw[..., :band, :] = level
            elif edge == "bottom":
                crop_chw[..., -band:, :] = level
            elif edge == "left":
                crop_chw[..., :, :band] = level
            else:
                crop_chw[..., :, -band:] = level
        return crop_chw


def proportional_local_size(global_crops_size: int, patch_size: int = 14) -> int:
    """Local crop size keeping RAD-DINO's 196 / 518 ratio, rounded to whole patches (>= 1)."""
    return max(1, round(global_crops_size * 196 / 518 / patch_size)) * patch_size


class MultiCropAugmentation:
    """(1, H, W) image in [0, 1] -> {"global": 2 crops, "local": n_local crops}, all in [0, 1]."""

    def __init__(
        self,
        global_crops_size: int = 518,
        local_crops_size: int | None = None,
        global_crops_side: tuple[float, float] = (0.5, 1.0),
        local_crops_side: tuple[float, float] = (0.2, 0.5),
        n_local_crops: int = 8,
        horizontal_flip: bool = False,
        global1_jitter: PhotometricJitter | None = None,
        global2_jitter: PhotometricJitter | None = None,
        local_jitter: PhotometricJitter | None = None,
        photometric_strength: float = 1.0,
        random_borders_p: float = 0.0,
    ) -> None:
        for name, (low, high) in (
            ("global_crops_side", global_crops_side),
            ("local_crops_side", local_crops_side),
        ):
            if not 0.0 < low <= high <= 1.0:
                raise ValueError(f"{name} must satisfy 0 < min <= max <= 1, got ({low}, {high})")
        if not 0.0 <= random_borders_p <= 1.0:
            raise ValueError(f"random_borders_p must be in [0, 1], got {random_borders_p}")
        if global_crops_size < 1 or n_local_crops < 0:
            raise ValueError("global_crops_size must be >= 1 and n_local_crops >= 0")
        self.global_crops_size = int(global_crops_size)
        self.local_crops_size = int(local_crops_size or proportional_local_size(global_crops_size))
        self.global_crops_side = global_crops_side
        self.local_crops_side = local_crops_side
        self.n_local_crops = int(n_local_crops)
        self.horizontal_flip = horizontal_flip
        self.random_borders = RandomBorders(p=random_borders_p)
        # strength 1.0 leaves every range as it is, bit for bit (PhotometricJitter.scaled)
        self.global1_jitter = (
            global1_jitter or PhotometricJitter(blur_p=0.1, blur_sigma_at_224=(0.1, 1.0))
        ).scaled(photometric_strength)
        self.global2_jitter = (global2_jitter or PhotometricJitter(blur_p=0.5)).scaled(
            photometric_strength
        )
        self.local_jitter = (local_jitter or PhotometricJitter(blur_p=0.5)).scaled(
            photometric_strength
        )

    @classmethod
    def from_config(cls, crops: dict) -> MultiCropAugmentation:
        """The augmentation of a pretraining config's `crops` section (trainer and figures)."""
        return cls(
            # configs written before the key existed (e.g. the shipped release manifests) mean 1.0
            photometric_strength=float(crops.get("photometric_strength", 1.0)),
            random_borders_p=float(crops.get("random_borders_p", 0.0)),
            global_crops_size=crops["global_crops_size"],
            local_crops_size=crops["local_crops_size"],
            global_crops_side=tuple(crops["global_crops_side"]),
            local_crops_side=tuple(crops["local_crops_side"]),
            n_local_crops=crops["local_crops_number"],
            horizontal_flip=crops["horizontal_flip"],
        )

    def _view(
        self,
        image_chw: torch.Tensor,
        side: tuple[float, float],
        size: int,
        jitter: PhotometricJitter,
        generator: torch.Generator,
    ) -> torch.Tensor:
        crop = random_square_crop(image_chw, side, size, generator)
        if self.horizontal_flip and _coin(generator, 0.5):
            crop = TF.horizontal_flip(crop)
        # bands before the jitter, so they are shown through the same window as real borders
        return photometric(self.random_borders(crop, generator), jitter, generator)

    def __call__(
        self, image_chw: torch.Tensor, generator: torch.Generator
    ) -> dict[str, list[torch.Tensor]]:
        """All crops of one image; the same generator state gives the same crops."""
        if image_chw.ndim != 3 or image_chw.shape[0] != 1 or not image_chw.is_floating_point():
            raise ValueError(
                f"image must be a float (1, H, W) tensor in [0, 1], got {image_chw.dtype} "
                f"{tuple(image_chw.shape)}"
            )
        g_size, l_size = self.global_crops_size, self.local_crops_size
        image = image_chw.float()
        global_crops = [
            self._view(image, self.global_crops_side, g_size, self.global1_jitter, generator),
            self._view(image, self.global_crops_side, g_size, self.global2_jitter, generator),
        ]
        local_crops = [
            self._view(image, self.local_crops_side, l_size, self.local_jitter, generator)
            for _ in range(self.n_local_crops)
        ]
        return {"global": global_crops, "local": local_crops}
