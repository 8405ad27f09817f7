"""Frontal rib cage: posterior + anterior rib arcs and costal cartilage, with per-rib masks.

Each arc is a curve y = f(m) over the distance m from the midline, drawn as a band whose vertical
thickness is widened by sqrt(1 + f'^2) so its true width is constant, with bright cortical edges.
For speed the cage of one hemithorax is rasterised once per image size (a few variants) in the
frame of a reference lung, cached, and resampled per image onto the subject's lung (its own
width and height scaling), i.e. still at the output resolution. Hand-written.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .anatomy import FrontalAnatomy, Lung
from .config import N_RIBS
from .raster import MIN_LINE_PX, Canvas, clip
from .scene import BONE_PER_CM, Scene

F32 = np.float32
N_VARIANTS = 4
REFERENCE_WIDTH = 0.335
REFERENCE_HEIGHT = 0.6
TEMPLATE_M = (0.0, 1.25 * REFERENCE_WIDTH)  # template extent in m
TEMPLATE_Y = (-0.09, 1.12 * REFERENCE_HEIGHT)  # in y relative to the apex


@dataclass(frozen=True)
class RibArc:
    """One arc y(m) = y_start + drop * shape(m / m_end), drawn for m in [m_from, m_to]."""

    number: int
    posterior: bool
    y_start: float
    drop: float
    m_end: float
    m_from: float
    m_to: float
    thickness: float
    density: float

    def curve(self, m):
        """(y, dy/dm) along the arc for m (array)."""
        u = m * F32(1.0 / self.m_end)
        if self.posterior:
            # Arch: rises slightly from the spine, then curves down to the lateral wall.
            root = np.sqrt(u)
            y = F32(self.y_start) + F32(self.drop) * (F32(-0.9) * u + F32(1.9) * u * u * root)
            slope = F32(self.drop / self.m_end) * (F32(-0.9) + F32(4.75) * u * root)
        else:
            w = np.maximum(F32(1.0) - u, F32(0.0))
            y = F32(self.y_start) + F32(self.drop) * w ** F32(1.15)
            slope = F32(-1.15 * self.drop / self.m_end) * w ** F32(0.15)
        return y, slope


def reference_lung() -> Lung:
    """The lung frame the cached templates are drawn in (apex at y = 0)."""
    w, h = REFERENCE_WIDTH, REFERENCE_HEIGHT
    return Lung(
        side="left",
        sign=1,
        cx=0.0,
        y_apex=0.0,
        y_cp=h,
        y_peak=0.8 * h,
        y_card=0.8 * h + 0.03,
        m_apex=0.45 * w,
        width=w,
        m_dome=0.5 * w + 0.02,
        m_mediastinum=0.045,
    )


def rib_arcs(lung: Lung, rng: np.random.Generator) -> list[RibArc]:
    """Posterior and anterior arcs of ribs 1..N_RIBS of one hemithorax (jittered by `rng`)."""
    arcs = []
    height = lung.y_cp - lung.y_apex
    spacing = rng.uniform(0.084, 0.092)
    thickness = rng.uniform(0.019, 0.023)
    drop_base = rng.uniform(0.06, 0.08)
    for k in range(1, N_RIBS + 1):
        y0 = lung.y_apex - 0.035 + (k - 1) * spacing * height + rng.normal(0.0, 0.003)
        drop = drop_base + 0.006 * k
        y_lateral = y0 + drop
        m_end = float(lung.lateral(np.float32(y_lateral))) + 0.014
        if k == 1:
            m_end = max(m_end, lung.m_apex + 0.05)
        arcs.append(RibArc(k, True, y0, drop, m_end, 0.028, m_end, thickness, 1.0))
        front_drop = 0.085 + 0.006 * k
        m_front_end = m_end * (0.3 + 0.012 * k) if k > 1 else 0.06
        arcs.append(
            RibArc(
                k, False, y_lateral, front_drop, m_end, m_front_end, m_end, thickness * 1.15, 0.55
            )
        )
    return arcs


def _draw_arc(canvas: Canvas, arc: RibArc, density, bits, cartilage) -> None:
    ys_curve, _ = arc.curve(np.linspace(arc.m_from, arc.m_to, 9, dtype=np.float32))
    margin = arc.thickness * 1.2
    box = canvas.box(
        arc.m_from - margin,
        arc.m_to + margin,
        float(ys_curve.min()) - margin,
        float(ys_curve.max()) + margin,
    )
    if box is None:
        return
    m = box.xs
    y_curve, slope = arc.curve(clip(m, F32(arc.m_from), F32(arc.m_to)))
    half = F32(arc.thickness / 2) * np.sqrt(F32(1.0) + slope * slope)
    d = (box.ys - y_curve) / half
    ends = np.minimum(m - F32(arc.m_from), F32(arc.m_to) - m)
    along = canvas.soft_inside(ends)
    across = clip(F32(1.0) - d * d, 0.0, 1.0)
    profile = np.sqrt(across) * (F32(0.45) + F32(0.55) * d * d) * along
    density[box.rows, box.cols] += profile * F32(arc.density)
    inside = (np.abs(d) < 1) & (ends > 0)
    bits[box.rows, box.cols] |= inside.astype(np.uint32) << np.uint32(arc.number - 1)
    if not arc.posterior and arc.number > 1:
        _draw_cartilage(canvas, arc, cartilage)


def _draw_cartilage(canvas: Canvas, arc: RibArc, cartilage) -> None:
    """Costal cartilage running medially from the anterior rib end (calcifies with age)."""
    m0, m1 = max(arc.m_from - 0.07, 0.04), arc.m_from
    y_end = float(arc.curve(np.float32(m1))[0])
    box = canvas.box(m0 - 0.01, m1 + 0.01, y_end - 0.03, y_end + 0.03)
    if box is None:
        return
    m = box.xs
    y_line = F32(y_end) - (F32(m1) - m) * F32(0.35)
    d = (box.ys - y_line) * F32(2.0 / arc.thickness)
    along = clip(np.minimum(m - F32(m0), F32(m1) - m) * F32(1 / 0.01), 0.0, 1.0)
    speckle = F32(0.6) + F32(0.4) * np.cos(m * F32(900.0) + box.ys * F32(700.0))
    cartilage[box.rows, box.cols] += clip(F32(1.0) - d * d, 0.0, 1.0) * along * speckle


@lru_cache(maxsize=8)
def rib_templates(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[list[RibArc]]]:
    """Cached cages at `size`: density (V, h, w), cartilage (V, h, w), rib bits (V, h, w) uint32,
    and the arcs of each variant (reference-lung frame)."""
    w = int(np.ceil((TEMPLATE_M[1] - TEMPLATE_M[0]) * size))
    h = int(np.ceil((TEMPLATE_Y[1] - TEMPLATE_Y[0]) * size))
    canvas = Canvas(size, shape=(h, w), origin=(TEMPLATE_M[0], TEMPLATE_Y[0]))
    lung = reference_lung()
    density = np.zeros((N_VARIANTS, h, w), dtype=np.float32)
    cartilage = np.zeros((N_VARIANTS, h, w), dtype=np.float32)
    bits = np.zeros((N_VARIANTS, h, w), dtype=np.uint32)
    all_arcs = []
    for v in range(N_VARIANTS):
        arcs = rib_arcs(lung, np.random.default_rng([777, v]))
        for arc in arcs:
            _draw_arc(canvas, arc, density[v], bits[v], cartilage[v])
        all_arcs.append(arcs)
    for array in (density, cartilage, bits):
        array.setflags(write=False)
    return density, cartilage, bits, all_arcs


def _sample_positions(coords: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Template pixel positions -> (lower index, upper index, weight of upper), edge-clamped."""
    pos = clip(coords - 0.5, 0.0, count - 1.0)
    low = np.floor(pos).astype(np.intp)
    high = np.minimum(low + 1, count - 1)
    return low, high, (pos - low).astype(np.float32)


def draw_ribs(scene: Scene, anatomy: FrontalAnatomy, subject, findings: dict, variant: int) -> None:
    """Resample the cached cage onto each hemithorax; add cartilage calcification and fracture."""
    density_t, cartilage_t, bits_t, arcs = rib_templates(scene.size)
    _, h_t, w_t = density_t.shape
    size = scene.size
    for side in ("right", "left"):
        lung = anatomy.lung(side)
        v = (variant + (side == "left")) % N_VARIANTS  # sides differ slightly
        sx = lung.width / REFERENCE_WIDTH
        sy = (lung.y_cp - lung.y_apex) / REFERENCE_HEIGHT
        x_a, x_b = lung.x_of(TEMPLATE_M[0] * sx), lung.x_of(TEMPLATE_M[1] * sx)
        box = scene.box(
            min(x_a, x_b),
            max(x_a, x_b),
            lung.y_apex + TEMPLATE_Y[0] * sy,
            lung.y_apex + TEMPLATE_Y[1] * sy,
        )
        m = lung.m_of(box.xs[0])  # (w,)
        y_rel = box.ys[:, 0] - F32(lung.y_apex)  # (h,)
        c_lo, c_hi, c_w = _sample_positions((m / F32(sx) - TEMPLATE_M[0]) * size, w_t)
        r_lo, r_hi, r_w = _sample_positions((y_rel / F32(sy) - TEMPLATE_Y[0]) * size, h_t)
        bone_scale = F32((0.45 + 0.55 * subject.bone_density) * 1.7 * BONE_PER_CM)
        if subject.cartilage_calcification > 0.15:
            cartilage_scale = subject.cartilage_calcification * 0.5 * BONE_PER_CM / bone_scale
            total = density_t[v] + cartilage_t[v] * F32(cartilage_scale)
        else:
            total = density_t[v]  # read-only template; scaled after sampling (fewer pixels)
        rows = total[r_lo] * (F32(1.0) - r_w)[:, None] + total[r_hi] * r_w[:, None]
        sampled = rows[:, c_lo] * (F32(1.0) - c_w) + rows[:, c_hi] * c_w
        sampled *= bone_scale
        fracture = findings.get("rib_fracture")
        if fracture is not None and fracture["side"] == side:
            arc = arcs[v][2 * (fracture["rib"] - 1)]
            _fracture(sampled, box, lung, arc, fracture, sx, sy, scene.canvas.pixel)
        scene.dense[box.rows, box.cols] += sampled
        if scene.with_masks:
            nearest_r = np.where(r_w < 0.5, r_lo, r_hi)
            nearest_c = np.where(c_w < 0.5, c_lo, c_hi)
            bits = bits_t[v][nearest_r][:, nearest_c].astype(np.uint64)  # bit k-1 = rib k
            # Move the template's rib bits onto this view's bits for rib_{side}_{k} (+ "ribs").
            first = scene.mask_bits[f"rib_{side}_1"]
            if any(
                scene.mask_bits[f"rib_{side}_{k}"] != first << np.uint64(k - 1)
                for k in range(1, N_RIBS + 1)
            ):
                raise AssertionError("rib masks must have consecutive bits")
            target = scene.packed_masks[box.rows, box.cols]
            target |= bits * first
            target |= np.where(bits != 0, scene.mask_bits["ribs"], np.uint64(0))


def _fracture(
    sampled, box, lung: Lung, arc: RibArc, fracture: dict, sx: float, sy: float, pixel: float
) -> None:
    """A thin lucent fracture line across a posterior rib (gap = displacement) plus faint callus."""
    m_ref = fracture["u"] * arc.m_end
    y_ref, slope = arc.curve(np.float32(m_ref))
    x_f = lung.x_of(m_ref * sx)
    y_f = lung.y_apex + float(y_ref) * sy
    tangent = np.array([lung.sign * sx, float(slope) * sy])
    tangent /= np.linalg.norm(tangent)
    along = (box.xs - F32(x_f)) * F32(tangent[0]) + (box.ys - F32(y_f)) * F32(tangent[1])
    radial = np.sqrt((box.xs - F32(x_f)) ** 2 + (box.ys - F32(y_f)) ** 2)
    near = radial < F32(arc.thickness * 0.9 * max(sx, sy))
    gap = max(fracture["displacement_mm"] / 400.0, 1e-4)
    drawn = max(gap, MIN_LINE_PX * pixel)  # sub-pixel gaps are dimmed, so low resolution loses them
    lucent = F32(gap / drawn) * np.exp(-((along * F32(2.0 / drawn)) ** 2)) * near
    sampled *= F32(1.0) - F32(0.8) * lucent
    callus = np.exp(-((radial * F32(1.0 / (arc.thickness * 0.7))) ** 2)) * F32(0.15 * BONE_PER_CM)
    sampled += callus
