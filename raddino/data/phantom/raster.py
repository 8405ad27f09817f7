"""Rasterisation helpers: cached pixel-centre coordinates, bounding-box sub-grids, soft edges.

Geometry lives in normalised coordinates (x right, y down, the image is [0, 1]^2); every structure
is evaluated only on the pixel box that can contain it, so cost scales with its area, not the image.
Hand-written (no library rasterises analytic soft-edged shapes on numpy sub-grids this cheaply).
"""

from __future__ import annotations

import math
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


class Box:
    """A rectangular pixel window with its normalised coordinates (broadcastable grids).

    A plain slotted class, not a frozen dataclass: ~20 are made per image and a frozen
    dataclass's __init__ costs several times more.
    """

    __slots__ = ("rows", "cols", "xs", "ys")

    def __init__(self, rows: slice, cols: slice, xs: np.ndarray, ys: np.ndarray):
        self.rows = rows
        self.cols = cols
        self.xs = xs  # (1, w) normalised x of the window's columns
        self.ys = ys  # (h, 1) normalised y of the window's rows

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
        self._xs_1w = self.col_centres[None, :]  # sliced per box (a view), no reshape per call
        self._ys_h1 = self.row_centres[:, None]

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
        return Box(slice(r0, r1), slice(c0, c1), self._xs_1w[:, c0:c1], self._ys_h1[r0:r1])

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
    # clip(., 0, 1) = max(., 0) here (r2 >= 0), and ~2x faster than np.maximum with a scalar.
    return np.sqrt(clip(np.float32(1.0) - r2, np.float32(0.0), np.float32(1.0)))


def segment_distance(box: Box, points_xy: np.ndarray, reach: float | None = None) -> np.ndarray:
    """Distance (normalised) from each box pixel to a polyline through `points_xy` (n, 2).

    Without `reach`: all segments at once on the whole box, (segments, h, w) intermediates.
    With `reach`: each segment only on the pixels within `reach` of it, and farther pixels get
    `reach` itself; for long polylines (tubes, wires) over big boxes this is several times
    cheaper, and exact wherever the caller looks (its profile must vanish beyond `reach`).
    """
    points = np.asarray(points_xy, dtype=np.float32)
    if reach is not None:
        return _segment_distance_within(box, points, float(reach))
    start, vector = points[:-1], points[1:] - points[:-1]  # (k, 2)
    inverse_length2 = np.float32(1.0) / np.maximum((vector * vector).sum(axis=1), np.float32(1e-12))
    px = box.xs[None] - start[:, 0, None, None]  # (k, 1, w)
    py = box.ys[None] - start[:, 1, None, None]  # (k, h, 1)
    vx, vy = vector[:, 0, None, None], vector[:, 1, None, None]
    scaled_vx, scaled_vy = vx * inverse_length2[:, None, None], vy * inverse_length2[:, None, None]
    t = px * scaled_vx + py * scaled_vy  # (k, h, w) projection parameter, clamped below
    clip(t, 0.0, 1.0, out=t)
    dx = px - t * vx  # (k, h, w)
    t *= vy
    np.subtract(py, t, out=t)  # dy, in t's buffer
    dx *= dx
    t *= t
    dx += t
    nearest2_hw = dx.min(axis=0)
    return np.sqrt(nearest2_hw, out=nearest2_hw)


def _segment_distance_within(box: Box, points: np.ndarray, reach: float) -> np.ndarray:
    """`segment_distance` capped at `reach`; each segment only on its own sub-window when that
    saves work (long polylines over big boxes), else all segments on the whole box at once."""
    xs_w, ys_h = box.xs[0], box.ys[:, 0]  # ascending, evenly spaced pixel centres
    h, w = len(ys_h), len(xs_w)
    k = len(points) - 1
    # Sub-windows cost ~25 us of call overhead per segment; they pay only on big problems.
    if k * h * w <= 40_000:
        distance = segment_distance(box, points)
        return clip(distance, np.float32(0.0), np.float32(reach), out=distance)
    start, end = points[:-1].astype(np.float64), points[1:].astype(np.float64)  # (k, 2) x, y
    # Windows of pixels whose centres may lie within `reach` of each segment, with a pixel of
    # slack against rounding (extra pixels are harmless).
    first = np.array([xs_w[0], ys_h[0]], dtype=np.float64)
    pitch = float(xs_w[1] - xs_w[0]) if w > 1 else float(ys_h[1] - ys_h[0])
    limits = np.array([w, h])
    low = np.floor((np.minimum(start, end) - reach - first) * (1.0 / pitch))
    high = np.ceil((np.maximum(start, end) + reach - first) * (1.0 / pitch)) + 1
    low = np.clip(low, 0, limits).astype(np.int64)  # (k, 2): c0, r0
    high = np.clip(high, 0, limits).astype(np.int64)  # (k, 2): c1, r1
    nearest2_hw = np.full((h, w), np.float32(reach * reach), dtype=np.float32)
    rows = zip(start.tolist(), end.tolist(), low.tolist(), high.tolist(), strict=True)
    for (ax, ay), (bx, by), (c0, r0), (c1, r1) in rows:
        if c1 <= c0 or r1 <= r0:
            continue
        vx, vy = bx - ax, by - ay
        inverse_length2 = 1.0 / max(vx * vx + vy * vy, 1e-12)
        px = xs_w[None, c0:c1] - np.float32(ax)  # (1, w')
        py = ys_h[r0:r1, None] - np.float32(ay)  # (h', 1)
        # t = clamped projection onto the segment; distance^2 = |p - t v|^2.
        t = px * np.float32(vx * inverse_length2) + py * np.float32(vy * inverse_length2)
        clip(t, 0.0, 1.0, out=t)
        dx = px - t * np.float32(vx)
        t *= np.float32(vy)
        np.subtract(py, t, out=t)  # dy
        dx *= dx
        t *= t
        dx += t
        window = nearest2_hw[r0:r1, c0:c1]
        np.minimum(window, dx, out=window)
    return np.sqrt(nearest2_hw, out=nearest2_hw)


def polyline_box_bounds(points_xy: np.ndarray, margin: float) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) bounds of a polyline grown by `margin`."""
    points = np.asarray(points_xy)
    return (
        float(points[:, 0].min() - margin),
        float(points[:, 0].max() + margin),
        float(points[:, 1].min() - margin),
        float(points[:, 1].max() + margin),
    )
