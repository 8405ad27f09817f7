"""Support devices on frontal views: chest tube (radiopaque stripe, side holes), ECG leads with
wires, endotracheal tube. Stripes are 1-3 px at 512 px so low resolution loses them."""

from __future__ import annotations

import numpy as np

from .anatomy import FrontalAnatomy
from .raster import MIN_LINE_PX, clip, polyline_box_bounds, segment_distance
from .scene import BONE_PER_CM, TISSUE_PER_CM, Scene

F32 = np.float32
STRIPE_WIDTH = 0.004  # radiopaque stripe ~1.6 mm: 2 px at 512
TUBE_WIDTH = 0.006  # the plastic tube around it (faint)


def bezier(p0, p1, p2, n: int = 14) -> np.ndarray:
    """Quadratic Bezier through p0 -> p2 pulled towards p1, (n, 2)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, p1, p2 = (np.asarray(p, dtype=np.float64) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def draw_tube(scene: Scene, path: np.ndarray, mask_name: str | None, holes=()) -> None:
    """A plastic tube with a radiopaque stripe along `path` (n, 2); `holes` interrupt the stripe."""
    canvas = scene.canvas
    box = scene.box(*polyline_box_bounds(path, 0.01))
    if box is None:
        return
    drawn = max(STRIPE_WIDTH, MIN_LINE_PX * canvas.pixel)
    # Beyond `reach` the stripe (< e^-16), the tube body and its mask are all zero.
    reach = max(0.01, 2 * drawn, TUBE_WIDTH / 2 + 2 * canvas.pixel)
    dist = segment_distance(box, path, reach)
    stripe = F32(STRIPE_WIDTH / drawn) * np.exp(-((dist * F32(2.0 / drawn)) ** 2))
    for hx, hy in holes:
        hole = np.sqrt((box.xs - F32(hx)) ** 2 + (box.ys - F32(hy)) ** 2)
        stripe *= clip(hole * F32(1 / 0.004) - F32(0.5), 0.0, 1.0)
    body = canvas.soft_inside(F32(TUBE_WIDTH / 2) - dist)
    scene.dense[box.rows, box.cols] += stripe * F32(1.6 * BONE_PER_CM)
    scene.tissue[box.rows, box.cols] += body * F32(0.25 * TISSUE_PER_CM)
    if mask_name and scene.with_masks:
        scene.paint_mask(mask_name, box, dist < max(TUBE_WIDTH / 2, 0.6 * canvas.pixel))


def draw_frontal_devices(
    scene: Scene, anatomy: FrontalAnatomy, findings: dict, rng: np.random.Generator
) -> dict[str, dict]:
    """Chest tube, ECG leads and endotracheal tube as the findings ask; returns drawn details."""
    details: dict[str, dict] = {}
    if "chest_tube" in findings:
        tube = findings["chest_tube"]
        lung = anatomy.lung(tube["side"])
        entry = lung.point(tube["entry_t"], 1.0)
        tip = lung.point(tube["tip_t"], tube["tip_u"])
        bend = (lung.x_of(0.8 * lung.width), lung.y_of_t(max(tube["entry_t"] - 0.3, 0.1)))
        inside = bezier(entry, bend, tip, 9)
        outside = bezier(
            (lung.x_of(lung.width + 0.25), entry[1] + 0.2),
            (lung.x_of(lung.width + 0.08), entry[1] + 0.04),
            entry,
            4,
        )
        path = np.concatenate([outside[:-1], inside])
        # Side holes along the last few centimetres before the tip.
        holes = [
            tuple(inside[-1] + (inside[-2] - inside[-1]) * 0.7 * k)
            for k in range(1, tube["side_holes"] + 1)
        ]
        draw_tube(scene, path, "chest_tube", holes)
        scene.anchor_points["chest_tube"] = tuple(inside[len(inside) // 2])
        scene.landmarks["_chest_tube_tip"] = (float(tip[0]), float(tip[1]))
    devices = findings.get("support_devices", {}).get("devices", [])
    if "endotracheal_tube" in devices:
        carina_x, carina_y = anatomy.carina
        tip_y = carina_y - findings["support_devices"]["ett_tip_above_carina_mm"] / 400.0
        x = anatomy.cx - 0.004 + rng.normal(0.0, 0.002)
        path = np.array([[x + 0.01, -0.02], [x + 0.002, tip_y * 0.5], [x, tip_y]])
        draw_tube(scene, path, None)
    if "ecg_leads" in devices:
        for _ in range(findings["support_devices"]["n_ecg_leads"]):
            _ecg_lead(scene, anatomy, rng)
    return details


def _ecg_lead(scene: Scene, anatomy: FrontalAnatomy, rng: np.random.Generator) -> None:
    """An electrode (faint pad, metal snap) with a thin wire curving off the image."""
    x = anatomy.cx + rng.uniform(-0.35, 0.35)
    y = rng.uniform(0.12, 0.8)
    box = scene.box(x - 0.02, x + 0.02, y - 0.02, y + 0.02)
    if box is not None:
        r = np.sqrt((box.xs - F32(x)) ** 2 + (box.ys - F32(y)) ** 2)
        pad = scene.canvas.soft_inside(F32(0.014) - r)
        snap = scene.canvas.soft_inside(F32(0.0045) - r)
        ring = np.exp(-(((r - F32(0.0045)) * F32(1 / 0.0015)) ** 2))
        scene.tissue[box.rows, box.cols] += pad * F32(0.15 * TISSUE_PER_CM)
        scene.dense[box.rows, box.cols] += (snap * F32(1.5) + ring) * F32(BONE_PER_CM)
    end = (x + rng.uniform(-0.3, 0.3), -0.05 if rng.random() < 0.5 else 1.05)
    bend = ((x + end[0]) / 2 + rng.normal(0, 0.08), (y + end[1]) / 2)
    wire = bezier((x, y), bend, end, 6)
    box = scene.box(*polyline_box_bounds(wire, 0.006))
    if box is not None:
        drawn = max(0.0025, MIN_LINE_PX * scene.canvas.pixel)
        dist = segment_distance(box, wire, max(0.006, 2 * drawn))  # line < e^-16 beyond
        line = F32(0.0025 / drawn) * np.exp(-((dist * F32(2.0 / drawn)) ** 2))
        scene.dense[box.rows, box.cols] += line * F32(0.8 * BONE_PER_CM)
