"""Rasterisation helpers: cached pixel-centre coordinates, bounding-box sub-grids, soft edges.

Geometry lives in normalised coordinates (x right, y down, the image is [0, 1]^2); every structure
is evaluated only on the pixel box that can contain it, so cost scales with its area, not the image.
Hand-written (no library rasterises analytic soft-edged shapes on numpy sub-grids this cheaply).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

try:  # the raw ufunc: same maths as np.clip without its Python-level wrapper (3x less overhead)
    from numpy._core.umath import clip
except ImportError:  # pragma: no cover - other numpy layouts
    clip = np.clip

# Thin lines are drawn at least this many pixels wide and dimmed by true width / drawn width, so
# their integrated density is resolution independent (a detector pixel averages them away).
MIN_LINE_PX = 1.5


@lru_cache(maxsize=16)
def pixel_centres(size: int) -> np.ndarray:
    """Normalised coordinates of pixel centres along one axis, shape (size,), float32."""
    centres = (np.arange(size, dtype=np.float32) + np.float32(0.5)) / np.float32(size)
    centres.setflags(write=False)
    return centres


def _centres(count: int, size: int) -> np.ndarray:
    return (np.arange(count, dtype=np.float32) + np.float32(0.5)) / np.float32(size)


@dataclass(frozen=True)
class Box:
    """A rectangular pixel window with its normalised coordinates (broadcastable grids)."""

    rows: slice
    cols: slice
    xs: np.ndarray  # (1, w) normalised x of the window's columns
    ys: np.ndarray  # (h, 1) normalised y of the window's rows

    @property
    def shape(self) -> tuple[int, int]:
        return (self.ys.shape[0], self.xs.shape[1])


class Canvas:
    """A float32 pixel grid with box lookup in normalised coordinates.

    By default the square image [0, 1]^2 at `size` pixels; `shape` and `origin` describe other
    grids with the same pixel pitch (e.g. cached templates in a structure's own frame).
    """

    def __init__(
        self,
        size: int,
        shape: tuple[int, int] | None = None,
        origin: tuple[float, float] = (0.0, 0.0),
    ):
        self.size = size
        self.pixel = 1.0 / size  # one pixel in normalised units
        self.shape = shape or (size, size)
        self.origin = origin  # normalised (x, y) of the grid's top-left corner
        h, w = self.shape
        self.col_centres = pixel_centres(size)[:w] if w <= size else _centres(w, size)
        self.row_centres = pixel_centres(size)[:h] if h <= size else _centres(h, size)
        self.col_centres = self.col_centres + np.float32(origin[0])
        self.row_centres = self.row_centres + np.float32(origin[1])
        self.centres = self.col_centres  # square default grid: rows and columns alike

    def box(self, x0: float, x1: float, y0: float, y1: float) -> Box | None:
        """Pixel window covering normalised [x0, x1] x [y0, y1] (clipped); None if empty."""
        n = self.size
        h, w = self.shape
        ox, oy = self.origin
        c0 = max(math.floor((x0 - ox) * n), 0)
        c1 = min(math.ceil((x1 - ox) * n) + 1, w)
        r0 = max(math.floor((y0 - oy) * n), 0)
        r1 = min(math.ceil((y1 - oy) * n) + 1, h)
        if c1 <= c0 or r1 <= r0:
            return None
        return Box(
            rows=slice(r0, r1),
            cols=slice(c0, c1),
            xs=self.col_centres[c0:c1][None, :],
            ys=self.row_centres[r0:r1][:, None],
        )

    def soft_inside(self, signed_distance: np.ndarray, edge_px: float = 1.0) -> np.ndarray:
        """Coverage in [0, 1] from a signed distance (normalised units, > 0 inside)."""
        scale = np.float32(1.0 / (edge_px * self.pixel))
        return clip(signed_distance * scale + np.float32(0.5), 0.0, 1.0)


def ellipsoid_depth(
    box: Box, cx: float, cy: float, rx: float, ry: float, angle: float = 0.0
) -> np.ndarray:
    """Normalised chord length through an ellipsoid seen from the front: sqrt(1 - r^2), (h, w)."""
    dx = box.xs - np.float32(cx)
    dy = box.ys - np.float32(cy)
    if angle:
        c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    r2 = (dx / np.float32(rx)) ** 2 + (dy / np.float32(ry)) ** 2
    return np.sqrt(np.maximum(np.float32(1.0) - r2, np.float32(0.0)))


def segment_distance(box: Box, points_xy: np.ndarray) -> np.ndarray:
    """Distance (normalised) from each box pixel to a polyline through `points_xy` (n, 2).

    All segments at once: (segments, h, w) intermediates, then a min over segments.
    """
    points = np.asarray(points_xy, dtype=np.float32)
    start, vector = points[:-1], points[1:] - points[:-1]  # (k, 2)
    inverse_length2 = np.float32(1.0) / np.maximum((vector * vector).sum(axis=1), np.float32(1e-12))
    px = box.xs[None] - start[:, 0, None, None]  # (k, 1, w)
    py = box.ys[None] - start[:, 1, None, None]  # (k, h, 1)
    vx, vy = vector[:, 0, None, None], vector[:, 1, None, None]
    t = clip((px * vx + py * vy) * inverse_length2[:, None, None], 0.0, 1.0)  # (k, h, w)
    dx = px - t * vx
    dy = py - t * vy
    return np.sqrt((dx * dx + dy * dy).min(axis=0))


def polyline_box_bounds(points_xy: np.ndarray, margin: float) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) bounds of a polyline grown by `margin`."""
    points = np.asarray(points_xy)
    return (
        float(points[:, 0].min() - margin),
        float(points[:, 0].max() + margin),
        float(points[:, 1].min() - margin),
        float(points[:, 1].max() + margin),
    )
