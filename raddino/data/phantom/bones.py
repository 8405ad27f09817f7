"""Frontal bones besides the ribs (see `ribs.py`): clavicles, spine, scapulae, humeral heads.

Clavicles are curves y = f(m) over the distance m from the midline, drawn as bands with bright
cortical edges. Hand-written: cheap per-column curves on small boxes.
"""

from __future__ import annotations

import numpy as np

from .anatomy import FrontalAnatomy, Lung
from .raster import clip, ellipsoid_depth
from .scene import BONE_PER_CM, Scene
from .subject import Subject

F32 = np.float32


def clavicle_curve(anatomy: FrontalAnatomy, lung: Lung, m):
    """S-shaped clavicle y(m) from the medial head to the acromion."""
    m_lat = lung.width * 1.12
    u = clip(
        (m - F32(anatomy.clavicle_head_m)) * F32(1.0 / (m_lat - anatomy.clavicle_head_m)), 0, 1
    )
    y = F32(anatomy.clavicle_head_y) + F32(anatomy.clavicle_lateral_y - anatomy.clavicle_head_y) * u
    return y - F32(0.014) * np.sin(u * F32(2 * np.pi)), m_lat


def draw_clavicles(scene: Scene, anatomy: FrontalAnatomy, subject: Subject) -> None:
    """Clavicles as thick S-shaped bands; medial heads as landmarks."""
    thickness = 0.03
    for side in ("right", "left"):
        lung = anatomy.lung(side)
        _, m_lat = clavicle_curve(anatomy, lung, np.float32(0.0))
        xa, xb = lung.x_of(anatomy.clavicle_head_m), lung.x_of(m_lat)
        y_head = anatomy.clavicle_head_y
        box = scene.box(
            min(xa, xb) - 0.02,
            max(xa, xb) + 0.02,
            min(y_head, anatomy.clavicle_lateral_y) - 0.05,
            max(y_head, anatomy.clavicle_lateral_y) + 0.05,
        )
        m = lung.m_of(box.xs)
        y_curve, _ = clavicle_curve(anatomy, lung, m)
        d = (box.ys - y_curve) * F32(2.0 / thickness)
        ends = np.minimum(m - F32(anatomy.clavicle_head_m), F32(m_lat) - m)
        along = scene.canvas.soft_inside(ends)
        across = clip(F32(1.0) - d * d, 0.0, 1.0)
        profile = np.sqrt(across) * (F32(0.5) + F32(0.5) * d * d) * along
        scene.dense[box.rows, box.cols] += profile * F32(subject.bone_density * 2.6 * BONE_PER_CM)
        if scene.with_masks:
            scene.paint_mask(f"clavicle_{side}", box, (np.abs(d) < 1) & (ends > 0))
        head_m = anatomy.clavicle_head_m + 0.006
        head_y = float(clavicle_curve(anatomy, lung, np.float32(head_m))[0])
        scene.landmarks[f"clavicle_head_{side}"] = (lung.x_of(head_m), head_y)


def draw_spine(scene: Scene, anatomy: FrontalAnatomy, subject: Subject) -> None:
    """Vertebral bodies with disc spaces, pedicles and spinous processes along the midline."""
    hw = anatomy.spine_halfwidth
    box = scene.box(anatomy.cx - 1.3 * hw, anatomy.cx + 1.3 * hw, 0.0, 1.0)
    dx = (box.xs - F32(anatomy.cx)) * F32(1.0 / hw)
    body = np.sqrt(clip(F32(1.0) - dx * dx, 0.0, 1.0))
    phase = (box.ys - F32(anatomy.right_lung.y_apex)) * F32(1.0 / anatomy.vertebra_height)
    frac = phase - np.floor(phase)  # 0..1 within a vertebra
    disc = np.exp(-(((frac - F32(0.5)) * F32(7.0)) ** 2))  # disc space at frac ~ 0.5
    endplate = np.exp(-(((np.abs(frac - F32(0.5)) - F32(0.12)) * F32(25.0)) ** 2))
    level = body * (F32(1.0) - F32(0.55) * disc + F32(0.25) * endplate)
    pedicles = np.exp(
        -(((np.abs(dx) - F32(0.7)) * F32(5.0)) ** 2) - (((frac - F32(0.15)) * F32(6.0)) ** 2)
    )
    spinous = np.exp(-((dx * F32(6.0)) ** 2) - (((frac - F32(0.0)) * F32(4.0)) ** 2))
    density = level + F32(0.6) * pedicles + F32(0.3) * spinous
    scene.dense[box.rows, box.cols] += density * F32(subject.bone_density * 1.1 * BONE_PER_CM)


def draw_shoulder_girdle(scene: Scene, anatomy: FrontalAnatomy, subject: Subject) -> None:
    """Scapulae (over the lungs on AP, lateral to them on PA) and humeral heads."""
    density = subject.bone_density
    for side in ("right", "left"):
        lung = anatomy.lung(side)
        top = lung.y_apex - 0.02
        # Triangle: superior angle, inferior angle, glenoid (lateral angle), in (m, y).
        corners = np.array(
            [
                [anatomy.scapula_medial_m, top + 0.01],
                [anatomy.scapula_medial_m + 0.09, top + 0.3],
                [lung.width * 1.13, top + 0.03],
            ],
            dtype=np.float32,
        )
        xs = [lung.x_of(float(c)) for c in corners[:, 0]]
        box = scene.box(min(xs) - 0.01, max(xs) + 0.01, top - 0.01, top + 0.31)
        if box is None:
            continue
        m = lung.m_of(box.xs)
        inside = None
        for a, b, c in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
            (ma, ya), (mb, yb), (mc, yc) = corners[a], corners[b], corners[c]
            ex, ey = mb - ma, yb - ya
            # Signed distance to edge a->b, positive on the side of the third corner.
            orient = 1.0 if ex * (yc - ya) - ey * (mc - ma) > 0 else -1.0
            scale = F32(orient / float(np.hypot(ex, ey)))
            dist = (F32(ex) * (box.ys - F32(ya)) - F32(ey) * (m - F32(ma))) * scale
            inside = dist if inside is None else np.minimum(inside, dist)
        blade = clip(inside * F32(1 / 0.01), 0.0, 1.0)
        rim = np.exp(-((inside * F32(1 / 0.004)) ** 2)) * (inside > 0)
        scene.dense[box.rows, box.cols] += (F32(0.45) * blade + F32(0.9) * rim) * F32(
            density * BONE_PER_CM
        )
        hx, hy = scene.humeral_heads.get(
            lung.sign, (lung.x_of(lung.width * 1.2 + 0.035), top + 0.035)
        )
        radius = 0.045
        box = scene.box(hx - radius, hx + radius, hy - radius, hy + radius)
        if box is not None:
            head = ellipsoid_depth(box, hx, hy, radius, radius)
            scene.dense[box.rows, box.cols] += (
                head * (F32(0.6) + F32(0.4) * (F32(1.0) - head)) * F32(density * 2.5 * BONE_PER_CM)
            )
