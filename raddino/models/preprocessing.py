"""Each weights family's own preprocessing, as data (what the model expects of its pixels)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:  # torch is imported inside functions so that light modules can import this one
    import torch


@dataclass(frozen=True)
class Preprocessing:
    """Resize/crop/normalise recipe of one weights family; JSON-serialisable via `to_dict`."""

    name: str
    resize_shortest_edge: int | None  # resize so the shorter side has this length; None: keep
    crop_size: int | None  # centre crop to a square of this side; None: no crop
    resample: str = "bicubic"
    rescale: float = 1.0 / 255.0  # applied to 0..255 pixel values
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    rgb: bool = True  # grayscale is replicated to 3 channels

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        data = dict(data)
        data["mean"] = tuple(data["mean"])
        data["std"] = tuple(data["std"])
        return cls(**data)


# microsoft/rad-dino preprocessor_config.json (a transformers BitImageProcessor).
RAD_DINO = Preprocessing(
    name="rad-dino",
    resize_shortest_edge=518,
    crop_size=518,
    mean=(0.5307, 0.5307, 0.5307),
    std=(0.2583, 0.2583, 0.2583),
)

# Official DINOv2 evaluation transform: resize 256, centre crop 224, ImageNet statistics.
DINOV2_IMAGENET = Preprocessing(name="dinov2-imagenet", resize_shortest_edge=256, crop_size=224)


# ----------------------------------------------------------------------------------------------
# The transform: a float [0, 1] grayscale image -> the model's normalised (C, S, S) tensor.

Backend = Literal["pil", "torchvision"]
BACKENDS: tuple[str, ...] = ("pil", "torchvision")
_PIL_RESAMPLE = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
_TORCHVISION_RESAMPLE = ("nearest", "bilinear", "bicubic")


def with_crop_size(prep: Preprocessing, size: int) -> Preprocessing:
    """The same recipe at another crop size; the resize edge keeps its ratio to the crop."""
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    if prep.crop_size is None:
        resize = size if prep.resize_shortest_edge is not None else None
    elif prep.resize_shortest_edge is None:
        resize = None
    else:
        resize = round(size * prep.resize_shortest_edge / prep.crop_size)
    return replace(prep, name=f"{prep.name}@{size}", resize_shortest_edge=resize, crop_size=size)


def resized_shape(height: int, width: int, shortest_edge: int) -> tuple[int, int]:
    """(height, width) after resizing the shorter side to `shortest_edge`, the long side floored.

    Same rounding as transformers' `get_resize_output_image_size(default_to_square=False)`.
    """
    if height <= width:
        return shortest_edge, int(shortest_edge * width / height)
    return int(shortest_edge * height / width), shortest_edge


def preprocess(
    image_hw: np.ndarray,
    prep: Preprocessing,
    *,
    backend: Backend = "pil",
    quantize_uint8: bool = True,
) -> torch.Tensor:
    """Grayscale image (H, W) -> normalised float32 tensor (3 or 1, S, S) as the weights expect.

    Steps: to 0..255, resize the shortest edge, centre crop, rescale, normalise, gray -> RGB.
    `image_hw` is float in [0, 1] (our convention) or uint8. With `quantize_uint8` (default) a float
    image is rounded to 8 bits first, as the reference processors do: the PIL backend then equals
    transformers' `BitImageProcessorPil` (PIL resize, as transformers 4's `BitImageProcessor` did
    when RAD-DINO was published) and the torchvision backend equals transformers 5's
    `BitImageProcessor`. `quantize_uint8=False` keeps 16-bit/DICOM precision (float resize).
    """
    import torch

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    pixels_hw = _to_0_255(image_hw, quantize_uint8)
    if prep.resize_shortest_edge is not None:
        height, width = pixels_hw.shape
        new_hw = resized_shape(height, width, prep.resize_shortest_edge)
        if new_hw != (height, width):
            resize = _resize_pil if backend == "pil" else _resize_torchvision
            pixels_hw = resize(pixels_hw, new_hw, prep.resample)
            if pixels_hw.dtype != np.uint8:  # bicubic overshoot: clip as the 8-bit path does
                pixels_hw = np.clip(pixels_hw, 0.0, 255.0)
    if prep.crop_size is not None:
        pixels_hw = _center_crop(pixels_hw, prep.crop_size, pad_ceil=backend == "pil")
    channels = 3 if prep.rgb else 1
    # (H, W) -> (C, H, W); the gray channel is repeated, then each channel gets its own statistics.
    scaled_chw = torch.from_numpy(pixels_hw.astype(np.float32)).mul_(prep.rescale)
    scaled_chw = scaled_chw.unsqueeze(0).expand(channels, -1, -1)
    mean_c11 = torch.tensor(prep.mean[:channels], dtype=torch.float32).view(channels, 1, 1)
    std_c11 = torch.tensor(prep.std[:channels], dtype=torch.float32).view(channels, 1, 1)
    return ((scaled_chw - mean_c11) / std_c11).contiguous()


def preprocess_batch(
    images: Sequence[np.ndarray],
    prep: Preprocessing,
    *,
    backend: Backend = "pil",
    quantize_uint8: bool = True,
) -> torch.Tensor:
    """`preprocess` each image and stack them -> (B, C, S, S); all outputs must share one size."""
    import torch

    if len(images) == 0:
        raise ValueError("preprocess_batch needs at least one image")
    tensors = [
        preprocess(image, prep, backend=backend, quantize_uint8=quantize_uint8) for image in images
    ]
    shapes = sorted({tuple(tensor.shape) for tensor in tensors})
    if len(shapes) > 1:
        raise ValueError(
            f"preprocessed images differ in shape {shapes}; set a crop size to batch them"
        )
    return torch.stack(tensors)


def _to_0_255(image_hw: np.ndarray, quantize_uint8: bool) -> np.ndarray:
    """Validate the input image; return uint8 (H, W) or float32 (H, W) values in 0..255."""
    image_hw = np.asarray(image_hw)
    if image_hw.ndim != 2 or 0 in image_hw.shape:
        raise ValueError(f"expected a non-empty grayscale image (H, W), got shape {image_hw.shape}")
    if image_hw.dtype == np.uint8:
        return image_hw
    if not np.issubdtype(image_hw.dtype, np.floating):
        raise ValueError(f"expected float [0, 1] or uint8 pixels, got dtype {image_hw.dtype}")
    if not np.isfinite(image_hw).all():
        raise ValueError("image contains NaN or infinite pixels")
    if image_hw.min() < 0.0 or image_hw.max() > 1.0:
        raise ValueError(
            f"float image must lie in [0, 1], got [{image_hw.min():.4g}, {image_hw.max():.4g}]"
        )
    if quantize_uint8:
        return np.rint(image_hw * 255.0).astype(np.uint8)
    return image_hw.astype(np.float32) * np.float32(255.0)


def _resize_pil(pixels_hw: np.ndarray, new_hw: tuple[int, int], resample: str) -> np.ndarray:
    """PIL resize (antialiased for downscaling); uint8 stays uint8 (rounded), float uses mode F."""
    from PIL import Image

    if resample not in _PIL_RESAMPLE:
        raise ValueError(f"resample must be one of {_PIL_RESAMPLE} for PIL, got {resample!r}")
    image = Image.fromarray(pixels_hw)  # mode "L" for uint8, "F" for float32
    filter_ = getattr(Image.Resampling, resample.upper())
    return np.asarray(image.resize((new_hw[1], new_hw[0]), resample=filter_))


def _resize_torchvision(
    pixels_hw: np.ndarray, new_hw: tuple[int, int], resample: str
) -> np.ndarray:
    """torchvision antialiased resize on a tensor; uint8 in gives rounded, clamped uint8 out."""
    import torch
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as tvf

    if resample not in _TORCHVISION_RESAMPLE:
        raise ValueError(
            f"resample must be one of {_TORCHVISION_RESAMPLE} for torchvision, got {resample!r}"
        )
    mode = getattr(InterpolationMode, resample.upper())
    pixels_1hw = torch.from_numpy(np.ascontiguousarray(pixels_hw)).unsqueeze(0)
    resized_1hw = tvf.resize(pixels_1hw, list(new_hw), interpolation=mode, antialias=True)
    return resized_1hw[0].numpy()


def _center_crop(pixels_hw: np.ndarray, size: int, *, pad_ceil: bool) -> np.ndarray:
    """Centre crop to (size, size); a smaller image is zero-padded first (0 = black in 0..255).

    Offsets floor like transformers; when padding, the PIL backend puts the odd pixel before the
    image (ceil) and torchvision after it (floor), so we take the side each reference takes.
    """
    height, width = pixels_hw.shape
    if height < size or width < size:
        new_h, new_w = max(height, size), max(width, size)
        top = -(-(new_h - height) // 2) if pad_ceil else (new_h - height) // 2
        left = -(-(new_w - width) // 2) if pad_ceil else (new_w - width) // 2
        padded = np.zeros((new_h, new_w), dtype=pixels_hw.dtype)
        padded[top : top + height, left : left + width] = pixels_hw
        pixels_hw, height, width = padded, new_h, new_w
    top, left = (height - size) // 2, (width - size) // 2
    return pixels_hw[top : top + size, left : left + size]
