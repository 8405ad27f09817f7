"""Dead-leaves images: generic procedural scenes for the general-domain encoder (not chest X-rays).

The stand-in for DINOv2's natural-image pretraining (Baradad et al., "Learning to See by Looking at
Noise", NeurIPS 2021, found dead-leaves scenes with textures a good source of generic features):
occluding discs, ellipses and rectangles whose sizes follow a power law, each filled with a flat
grey, a sinusoidal grating or smooth noise. Hand-written (no library renders these); vectorised
per shape on its bounding box.
"""

from __future__ import annotations

import numpy as np


def _shape_mask(kind: int, yy: np.ndarray, xx: np.ndarray, radius: float, rng) -> np.ndarray:
    """Boolean mask of one shape centred at (0, 0) on bbox coordinates (yy, xx)."""
    angle = rng.uniform(0, np.pi)
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = xx * cos + yy * sin, -xx * sin + yy * cos
    if kind == 0:  # disc
        return u * u + v * v <= radius * radius
    if kind == 1:  # ellipse
        aspect = rng.uniform(0.3, 1.0)
        return (u / radius) ** 2 + (v / (radius * aspect)) ** 2 <= 1.0
    aspect = rng.uniform(0.3, 1.0)  # rotated rectangle
    return (np.abs(u) <= radius) & (np.abs(v) <= radius * aspect)


def _fill(kind: int, yy: np.ndarray, xx: np.ndarray, rng) -> np.ndarray:
    """Texture values in [0, 1] over the bounding box."""
    base = rng.uniform(0.05, 0.95)
    if kind == 0:
        return np.full(yy.shape, base, dtype=np.float32)
    if kind == 1:  # grating
        freq = rng.uniform(0.05, 0.6)
        angle = rng.uniform(0, np.pi)
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
        return np.clip(base + rng.uniform(0.05, 0.4) * wave, 0, 1).astype(np.float32)
    coarse = rng.uniform(-1, 1, size=(5, 5)).astype(np.float32)  # smooth noise: bilinear 5x5
    rows = np.linspace(0, 4, yy.shape[0], dtype=np.float32)
    cols = np.linspace(0, 4, yy.shape[1], dtype=np.float32)
    along_rows = np.stack([np.interp(rows, np.arange(5), coarse[:, j]) for j in range(5)], 1)
    noise = np.stack([np.interp(cols, np.arange(5), row) for row in along_rows], 0)
    return np.clip(base + rng.uniform(0.05, 0.3) * noise, 0, 1).astype(np.float32)


def render_dead_leaves(
    index: int, *, seed: int, size: int = 224, n_shapes: int = 160
) -> np.ndarray:
    """Dead-leaves image `index` of a seeded family: (size, size) float32 in [0, 1]."""
    if size < 8:
        raise ValueError(f"dead-leaves size must be >= 8 pixels, got {size}")
    rng = np.random.default_rng([seed, index, 0xDEAD])
    image = np.full((size, size), rng.uniform(0.2, 0.8), dtype=np.float32)
    # Power-law radii (density ~ r^-2) between 2 % and 50 % of the side, in random depth order,
    # dense enough that the shapes cover the canvas (the dead-leaves model).
    r_min, r_max = 0.02 * size, 0.5 * size
    u = rng.uniform(size=n_shapes)
    radii = 1.0 / (u * (1.0 / r_min - 1.0 / r_max) + 1.0 / r_max)
    for radius in radii:
        cy, cx = rng.uniform(-0.1 * size, 1.1 * size, size=2)
        y0, y1 = int(max(cy - radius, 0)), int(min(cy + radius + 1, size))
        x0, x1 = int(max(cx - radius, 0)), int(min(cx + radius + 1, size))
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        yy -= cy
        xx -= cx
        shape_kind, fill_kind = int(rng.integers(3)), int(rng.integers(3))
        mask = _shape_mask(shape_kind, yy, xx, radius, rng)
        patch = image[y0:y1, x0:x1]
        patch[mask] = _fill(fill_kind, yy, xx, rng)[mask]
    return image


class DeadLeavesSource:
    """Endless dead-leaves images for `raddino pretrain` (`data.source: deadleaves`)."""

    def __init__(self, seed: int, size: int) -> None:
        self.seed, self.size = seed, size
        self.length: int | None = None

    def image(self, index: int) -> np.ndarray:
        return render_dead_leaves(index, seed=self.seed, size=self.size)
