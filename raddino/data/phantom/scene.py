"""The canonical (unrotated) scene being built: attenuation layers, masks and landmarks."""

from __future__ import annotations

from functools import lru_cache
from types import MappingProxyType

import numpy as np

from .raster import Box, Canvas, clip

# Attenuation units: one unit ~ 5 cm of water at a typical chest-radiography beam (mu ~ 0.2/cm).
TISSUE_PER_CM = 0.2
BONE_PER_CM = 0.5


@lru_cache(maxsize=16)
def _mask_bits(mask_names: tuple[str, ...]) -> MappingProxyType:
    """name -> its bit (uint64) in the packed mask image; cached per view's structure list."""
    return MappingProxyType({name: np.uint64(1 << k) for k, name in enumerate(mask_names)})


class Scene:
    """Layers in attenuation units on a square canvas.

    `tissue` is the soft-tissue path, `air` the lung-air path removed from it (findings that fill
    alveoli or the pleural space scale `air` down), `dense` bone, metal and calcium added on top.
    """

    def __init__(self, size: int, with_masks: bool, mask_names: tuple[str, ...] = ()):
        self.canvas = Canvas(size)
        self.size = size
        self.tissue = np.zeros((size, size), dtype=np.float32)
        self.air = np.zeros((size, size), dtype=np.float32)
        self.dense = np.zeros((size, size), dtype=np.float32)
        self.with_masks = with_masks
        if len(mask_names) > 64:
            raise ValueError(f"at most 64 mask structures per view, got {len(mask_names)}")
        self.mask_names = tuple(mask_names)
        self.mask_bits = _mask_bits(self.mask_names)
        # All masks bit-packed into one image: bit k of a pixel = inside mask_names[k].
        self.packed_masks = np.zeros((size, size) if with_masks else (0, 0), dtype=np.uint64)
        self.landmarks: dict[str, tuple[float, float]] = {}  # normalised (x, y), canonical frame
        self.anchor_points: dict[str, tuple[float, float]] = {}  # a point inside each mask
        self.humeral_heads: dict[int, tuple[float, float]] = {}  # arm side (+-1) -> head centre

    def box(self, x0: float, x1: float, y0: float, y1: float) -> Box | None:
        return self.canvas.box(x0, x1, y0, y1)

    def paint_mask(self, name: str, box: Box, inside: np.ndarray) -> None:
        """OR a box-shaped bool array (or a broadcastable one) into mask `name`."""
        if name not in self.mask_bits:
            raise KeyError(f"mask {name!r} is not a structure of this view {self.mask_names}")
        target = self.packed_masks[box.rows, box.cols]
        np.bitwise_or(target, self.mask_bits[name], out=target, where=inside)

    def mask_array(self, name: str) -> np.ndarray:
        """Canonical (size, size) bool mask `name` (unpacked; for tests and debugging)."""
        return (self.packed_masks & self.mask_bits[name]) != 0

    def attenuation(self) -> np.ndarray:
        """Total line integral per pixel, (size, size) float32."""
        total = self.tissue - self.air
        total += self.dense
        # clip, not np.maximum: the same here and ~2x faster with a scalar bound.
        return clip(total, np.float32(0.0), np.float32(np.inf), out=total)
