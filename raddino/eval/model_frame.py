"""Where an original image's pixels land in the model's input square (resize, then centre crop).

Masks and landmarks must follow the images through the encoder's preprocessing; this module
mirrors the geometry of `raddino.models.preprocessing.preprocess` (shortest-edge resize with the
same rounding, centre crop with the same offsets, zero padding when the image is smaller).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raddino.models.preprocessing import Preprocessing, resized_shape, with_crop_size


@dataclass(frozen=True)
class ModelFrame:
    """Affine map original (x, y) -> model-input (x, y): scale per axis, then subtract the crop."""

    image_hw: tuple[int, int]  # original image size
    resized_hw: tuple[int, int]  # after the resize step (before cropping)
    crop_top_left: tuple[int, int]  # crop offset in the resized image; negative = padding
    out_hw: tuple[int, int]  # model input size

    @property
    def scale_xy(self) -> tuple[float, float]:
        return (
            self.resized_hw[1] / self.image_hw[1],
            self.resized_hw[0] / self.image_hw[0],
        )

    def to_model(self, points_xy: np.ndarray) -> np.ndarray:
        """Continuous pixel coords (..., 2) in the original image -> model-input coords."""
        points = np.asarray(points_xy, dtype=np.float64)
        scale_x, scale_y = self.scale_xy
        top, left = self.crop_top_left
        return np.stack([points[..., 0] * scale_x - left, points[..., 1] * scale_y - top], -1)

    def to_image(self, points_xy: np.ndarray) -> np.ndarray:
        """Model-input coords (..., 2) -> continuous pixel coords in the original image."""
        points = np.asarray(points_xy, dtype=np.float64)
        scale_x, scale_y = self.scale_xy
        top, left = self.crop_top_left
        return np.stack([(points[..., 0] + left) / scale_x, (points[..., 1] + top) / scale_y], -1)

    def transform_mask(self, mask_hw: np.ndarray) -> np.ndarray:
        """Boolean mask of the original image -> boolean mask (out_h, out_w) of the model input.

        Resized as a float coverage map (bilinear, antialiased by PIL when shrinking) and
        thresholded at one half; padding is outside every structure.
        """
        from PIL import Image

        mask_hw = np.asarray(mask_hw)
        if mask_hw.shape != self.image_hw:
            raise ValueError(
                f"mask size (h, w) {mask_hw.shape} differs from image size {self.image_hw}"
            )
        coverage = mask_hw.astype(np.float32)
        if self.resized_hw != self.image_hw:
            resized = Image.fromarray(coverage, mode="F").resize(
                (self.resized_hw[1], self.resized_hw[0]), resample=Image.Resampling.BILINEAR
            )
            coverage = np.asarray(resized)
        out = np.zeros(self.out_hw, dtype=bool)
        top, left = self.crop_top_left
        src_top, src_left = max(top, 0), max(left, 0)
        dst_top, dst_left = max(-top, 0), max(-left, 0)
        rows = min(self.out_hw[0] - dst_top, coverage.shape[0] - src_top)
        cols = min(self.out_hw[1] - dst_left, coverage.shape[1] - src_left)
        out[dst_top : dst_top + rows, dst_left : dst_left + cols] = (
            coverage[src_top : src_top + rows, src_left : src_left + cols] >= 0.5
        )
        return out


def model_frame(
    image_hw: tuple[int, int],
    prep: Preprocessing,
    size: int | None = None,
    *,
    backend: str = "pil",
) -> ModelFrame:
    """The frame of `prep` (at crop `size` if given) for an image of `image_hw`."""
    height, width = int(image_hw[0]), int(image_hw[1])
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {image_hw}")
    if size is not None:
        prep = with_crop_size(prep, size)
    resized = (height, width)
    if prep.resize_shortest_edge is not None:
        resized = resized_shape(height, width, prep.resize_shortest_edge)
    if prep.crop_size is None:
        return ModelFrame((height, width), resized, (0, 0), resized)
    crop = prep.crop_size
    # Same offsets as preprocessing._center_crop: floor when cropping; when padding, the PIL
    # backend puts the odd pixel before the image (ceil), torchvision after it (floor).
    offsets = []
    for extent in resized:
        if extent >= crop:
            offsets.append((extent - crop) // 2)
        else:
            pad = crop - extent
            offsets.append(-(-(-pad // 2) if backend == "pil" else pad // 2))
    return ModelFrame((height, width), resized, (offsets[0], offsets[1]), (crop, crop))
