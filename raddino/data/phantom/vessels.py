"""Vascular lung markings: branching pulmonary vessel trees radiating from each hilum.

A small bank of random binary trees (trunks that fork, thin and shorten outwards) is rasterised
once per image size and cached; each image pastes one tree at its hilum, mirrored for the left
lung, and keeps the part inside the lung field. Hand-written: no library draws vessel trees.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage

from .anatomy import Lung
from .raster import Box, clip
from .scene import TISSUE_PER_CM, Scene

F32 = np.float32
N_TREES = 8
# Texture extent around the hilum in normalised units: (lateral m from, to), (y from, to).
M_RANGE = (-0.08, 0.42)
Y_RANGE = (-0.36, 0.42)


def _tree_segments(rng: np.random.Generator) -> np.ndarray:
    """Segments (k, 5): x0, y0, x1, y1, radius in hilum-relative (m, y) coordinates."""
    segments = []
    # Main trunks fan out laterally, upwards and (more, thicker) downwards.
    trunk_angles = np.deg2rad([-120, -85, -50, -15, 20, 50, 80, 105]) + rng.normal(0, 0.12, 8)
    stack = [(0.0, 0.0, a, 0.045, 0.0045 + (0.001 if a > 0 else 0.0), 0) for a in trunk_angles]
    while stack:
        x, y, angle, length, radius, depth = stack.pop()
        # Each branch is two slightly bent half-segments, so vessels curve.
        bend = rng.normal(0, 0.2)
        xm = x + 0.5 * length * np.cos(angle - bend)
        ym = y + 0.5 * length * np.sin(angle - bend)
        x1 = xm + 0.5 * length * np.cos(angle + bend)
        y1 = ym + 0.5 * length * np.sin(angle + bend)
        segments.append((x, y, xm, ym, radius))
        segments.append((xm, ym, x1, y1, radius * 0.93))
        if depth < 7 and radius > 0.0011:
            if rng.random() < 0.3:  # vessel continues with a bend, no fork
                stack.append(
                    (x1, y1, angle + rng.normal(0, 0.3), length * 0.85, radius * 0.85, depth + 1)
                )
                continue
            spread = rng.uniform(0.35, 0.7)
            for turn in (-spread, spread * rng.uniform(0.5, 1.0)):
                stack.append(
                    (
                        x1,
                        y1,
                        angle + turn + rng.normal(0, 0.12),
                        length * rng.uniform(0.7, 0.88),
                        radius * 0.72,
                        depth + 1,
                    )
                )
    return np.array(segments, dtype=np.float32)


MASTER_SIZE = 1024  # trees are drawn once at this size and downsampled for smaller images


def _bank_geometry(size: int) -> tuple[int, int, int, int]:
    """(h, w, hilum row, hilum col) of the texture at `size`."""
    col0 = int(round(-M_RANGE[0] * size))
    row0 = int(round(-Y_RANGE[0] * size))
    w = int(round((M_RANGE[1] - M_RANGE[0]) * size))
    h = int(round((Y_RANGE[1] - Y_RANGE[0]) * size))
    return h, w, row0, col0


@lru_cache(maxsize=8)
def vessel_bank(size: int) -> tuple[np.ndarray, int, int]:
    """(N_TREES, h, w) vessel densities at `size`, plus the hilum's (row, col) in them.

    Drawing ~5k segments costs ~1 s whatever the size, so other sizes resample the master bank:
    anti-aliased downsampling below it (thin vessels average away, as on a detector), linear
    interpolation above it.
    """
    h, w, row0, col0 = _bank_geometry(size)
    if size == MASTER_SIZE:
        return _draw_bank(size), row0, col0
    master, _, _ = vessel_bank(MASTER_SIZE)
    factor = size / MASTER_SIZE
    # Anti-alias when shrinking; larger sizes interpolate the master (vessels a little soft).
    sigma = 0.45 / factor if factor < 1 else 0.0
    smooth = ndimage.gaussian_filter(master, sigma=(0, sigma, sigma)) if sigma else master
    zoom = (1.0, h / master.shape[1], w / master.shape[2])
    bank = ndimage.zoom(smooth, zoom, order=1, grid_mode=True, mode="nearest")
    bank = np.ascontiguousarray(bank[:, :h, :w], dtype=np.float32)
    bank.setflags(write=False)
    return bank, row0, col0


def _draw_bank(size: int) -> np.ndarray:
    """Rasterise the N_TREES vessel trees (plus parenchymal grain) at `size`."""
    pixel = 1.0 / size
    h, w, row0, col0 = _bank_geometry(size)
    ms = (np.arange(w, dtype=np.float32) - col0 + 0.5) * pixel
    ys = (np.arange(h, dtype=np.float32) - row0 + 0.5) * pixel
    bank = np.zeros((N_TREES, h, w), dtype=np.float32)
    for k in range(N_TREES):
        rng = np.random.default_rng([20260101, k])
        for x0, y0, x1, y1, radius in _tree_segments(rng):
            drawn = max(radius, 0.6 * pixel)
            pad = drawn * 1.5
            c0 = max(int((min(x0, x1) - pad) * size) + col0, 0)
            c1 = min(int((max(x0, x1) + pad) * size) + col0 + 2, w)
            r0 = max(int((min(y0, y1) - pad) * size) + row0, 0)
            r1 = min(int((max(y0, y1) + pad) * size) + row0 + 2, h)
            if c1 <= c0 or r1 <= r0:
                continue
            px = ms[None, c0:c1] - x0
            py = ys[r0:r1, None] - y0
            vx, vy = x1 - x0, y1 - y0
            t = clip((px * vx + py * vy) / max(vx * vx + vy * vy, 1e-12), 0.0, 1.0)
            d2 = (px - t * vx) ** 2 + (py - t * vy) ** 2
            # Chord through a cylinder, dimmed when thinner than a pixel (area-preserving).
            chord = np.sqrt(np.maximum(1.0 - d2 / (drawn * drawn), 0.0)) * (radius / drawn)
            # Brightness ~ vessel calibre (thick trunks compressed): small twigs fade out.
            weight = chord * np.minimum(radius / 0.0035, 1.0 + 0.3 * (radius / 0.0035 - 1.0))
            np.maximum(bank[k, r0:r1, c0:c1], weight, out=bank[k, r0:r1, c0:c1])
    # Parenchymal background: faint mottling (~3-5 mm grain) everywhere in the lung.
    noise_rng = np.random.default_rng(20260102)
    grain_px = max(4.0 / 400.0 * size, 0.7)
    for k in range(N_TREES):
        grain = ndimage.gaussian_filter(
            noise_rng.standard_normal((h, w)).astype(np.float32), grain_px
        )
        grain *= np.float32(0.12 / max(float(grain.std()), 1e-6))
        bank[k] += grain
    bank.setflags(write=False)
    return bank


def add_vessel_markings(
    scene: Scene,
    box: Box,
    field_sd: np.ndarray,
    lung: Lung,
    hilum: tuple[float, float],
    rng: np.random.Generator,
    strength: float = 1.0,
) -> np.ndarray:
    """Add one vessel tree inside a lung field; returns the (h, w) density it added."""
    size = scene.size
    bank, row0, col0 = vessel_bank(size)
    tree = bank[int(rng.integers(N_TREES))]
    if lung.sign < 0:  # right lung: lateral is towards the image left
        tree = tree[:, ::-1]
        col0 = tree.shape[1] - 1 - col0
    hilum_row = int(np.floor(hilum[1] * size))
    hilum_col = int(np.floor(hilum[0] * size))
    # Overlap of the texture (placed at the hilum) with the lung-field box.
    top = hilum_row - row0
    left = hilum_col - col0
    r0, r1 = max(box.rows.start, top), min(box.rows.stop, top + tree.shape[0])
    c0, c1 = max(box.cols.start, left), min(box.cols.stop, left + tree.shape[1])
    markings = np.zeros(box.shape, dtype=np.float32)
    if r1 <= r0 or c1 <= c0:
        return markings
    markings[
        r0 - box.rows.start : r1 - box.rows.start, c0 - box.cols.start : c1 - box.cols.start
    ] = tree[r0 - top : r1 - top, c0 - left : c1 - left]
    inside = clip(field_sd * F32(1 / 0.02), 0.0, 1.0)
    t = clip(lung.t_of(box.ys), 0.0, 1.0)
    markings *= inside * (F32(0.7) + F32(0.5) * t) * F32(strength * 2.0 * TISSUE_PER_CM)
    scene.tissue[box.rows, box.cols] += markings
    return markings
