"""Soft tissue of a frontal (PA/AP) chest: body, lung air, heart, mediastinum, hila, vessels."""

from __future__ import annotations

import numpy as np

from .anatomy import FrontalAnatomy, Lung
from .config import ZONES
from .lesions import thin_line
from .raster import clip, ellipsoid_depth, segment_distance
from .scene import BONE_PER_CM, TISSUE_PER_CM, Scene
from .subject import Subject
from .vessels import add_vessel_markings

F32 = np.float32


def draw_body(scene: Scene, anatomy: FrontalAnatomy, subject: Subject) -> None:
    """Torso, neck, shoulders and arms as soft-tissue slabs whose thickness rises with BMI."""
    canvas = scene.canvas
    ys = canvas.centres[:, None]
    xs = canvas.centres[None, :]
    neck = 0.07 + 0.03 * subject.soft_tissue
    shoulder = anatomy.body_halfwidth + 0.025
    ramp = clip((ys - F32(anatomy.shoulder_y - 0.1)) * F32(1 / 0.16), 0.0, 1.0)
    ramp = ramp * ramp * (F32(3.0) - F32(2.0) * ramp)
    # Shoulders (deltoids) wider than the chest wall below the axillae; slight waist.
    below = clip((ys - F32(anatomy.shoulder_y + 0.02)) * F32(1 / 0.12), 0.0, 1.0)
    waist = clip((ys - F32(0.45)) * F32(1 / 0.55), 0.0, 1.0)
    halfwidth = (
        F32(neck)
        + F32(shoulder - neck) * ramp
        - F32(shoulder - anatomy.body_halfwidth) * below
        - F32(0.03) * waist
    )
    # Flattened ellipse chord (1 - rel^2)^(1/4), rel = (x - cx) / halfwidth; in place, (n, n).
    chord = (xs - F32(anatomy.cx)) * (F32(1.0) / halfwidth)
    np.square(chord, out=chord)
    np.subtract(F32(1.0), chord, out=chord)
    clip(chord, F32(0.0), F32(1.0), out=chord)  # = max(., 0): 1 - rel^2 <= 1; clip is faster
    np.sqrt(chord, out=chord)
    np.sqrt(chord, out=chord)
    depth_cm = 19.0 + 9.0 * subject.soft_tissue
    depth_rows = F32(depth_cm * TISSUE_PER_CM) * (F32(0.6) + F32(0.4) * ramp)
    chord *= depth_rows
    scene.tissue += chord
    # Arms hang beside the torso from the shoulders down.
    arm_inner = anatomy.body_halfwidth - 0.004  # arms resting against the chest wall
    arm_width = 0.085 + 0.03 * subject.soft_tissue
    for sign in (-1, 1):
        centre = anatomy.cx + sign * (arm_inner + arm_width / 2)
        top = anatomy.shoulder_y - 0.03
        box = scene.box(centre - arm_width, centre + arm_width, top, 1.0)
        if box is None:
            continue
        rel = (box.xs - F32(centre)) * F32(2.0 / arm_width)
        # Rounded top (the deltoid), a cylinder below.
        rise = clip((box.ys - F32(top)) * F32(1.0 / (0.6 * arm_width)), 0.0, 1.0)
        rel2 = rel * rel / np.maximum(F32(1.0) - (F32(1.0) - rise) ** 2, F32(1e-3))
        arm = np.sqrt(clip(F32(1.0) - rel2, F32(0.0), F32(1.0)))
        scene.tissue[box.rows, box.cols] += arm * F32(9.0 * TISSUE_PER_CM)
        # Humeral shaft inside the arm.
        shaft = clip(F32(1.0) - (rel * F32(2.8)) ** 2, 0.0, 1.0)
        below_head = clip((box.ys - F32(anatomy.shoulder_y + 0.05)) * F32(1 / 0.03), 0.0, 1.0)
        scene.dense[box.rows, box.cols] += (
            np.sqrt(shaft) * below_head * F32(subject.bone_density * 1.6 * BONE_PER_CM)
        )
        scene.humeral_heads[sign] = (centre - sign * 0.008, anatomy.shoulder_y + 0.035)


def draw_breasts(scene: Scene, anatomy: FrontalAnatomy, subject: Subject) -> None:
    """Female breast shadows: extra soft tissue over the lower zones with a sharp lower edge."""
    if subject.breast <= 0:
        return
    for side in ("left", "right"):
        lung = anatomy.lung(side)
        cx = lung.x_of(0.62 * lung.width)
        cy = lung.y_cp - 0.06
        rx = 0.11 + 0.08 * subject.breast
        ry = 0.08 + 0.06 * subject.breast
        box = scene.box(cx - rx, cx + rx, cy - ry, cy + ry)
        if box is None:
            continue
        depth = ellipsoid_depth(box, cx, cy, rx, ry)
        upper_fade = clip((box.ys - F32(cy - ry)) * F32(1.0 / ry), 0.0, 1.0)
        scene.tissue[box.rows, box.cols] += (
            depth * upper_fade * F32((0.2 + 1.0 * subject.breast) * TISSUE_PER_CM)
        )


def lung_field(scene: Scene, lung: Lung):
    """(box, signed distance (h, w)) of a lung field on the canvas."""
    x_inner, x_outer = lung.x_of(0.0), lung.x_of(lung.width + 0.01)
    box = scene.box(min(x_inner, x_outer), max(x_inner, x_outer), lung.y_apex - 0.01, lung.y_cp)
    return box, lung.signed_distance(box.xs, box.ys)


def draw_lungs(scene: Scene, anatomy: FrontalAnatomy, texture_rng: np.random.Generator) -> dict:
    """Lung air (lucent, thicker at the bases) and vessel markings; side -> (box, sd, markings)."""
    fields = {}
    for side in ("right", "left"):
        lung = anatomy.lung(side)
        box, sd = lung_field(scene, lung)
        t = clip(lung.t_of(box.ys), 0.0, 1.0)
        thickness = np.sqrt(clip(sd * F32(1 / 0.025), 0.0, 1.0))
        air_cm = F32(12.5 * TISSUE_PER_CM) * (F32(0.7) + F32(0.4) * t)
        scene.air[box.rows, box.cols] += thickness * air_cm
        hilum = anatomy.right_hilum if side == "right" else anatomy.left_hilum
        markings = add_vessel_markings(scene, box, sd, lung, hilum, texture_rng)
        fields[side] = (box, sd, markings)
    return fields


def draw_heart_and_mediastinum(scene: Scene, anatomy: FrontalAnatomy, fields: dict) -> None:
    """Heart (displaces lung air), trachea and bronchi (air), hila (vessels), gastric bubble."""
    heart = anatomy.heart
    x0 = heart.cx - heart.extent_right
    x1 = heart.cx + heart.extent_left
    box = scene.box(x0, x1, heart.y_top, heart.y_bottom)
    x_left, x_right = heart.borders(box.ys)
    bottom = _heart_bottom(anatomy, box.xs)
    inside = np.minimum(
        np.minimum(box.xs - x_left, x_right - box.xs),
        np.minimum(bottom - box.ys, box.ys - heart.y_top),
    )
    half = np.maximum((x_right - x_left) * F32(0.5), F32(1e-4))
    rel = (box.xs - (x_left + x_right) * F32(0.5)) / half
    depth = np.sqrt(np.sqrt(clip(F32(1.0) - rel * rel, F32(0.0), F32(1.0))))  # flat-topped chord
    coverage = scene.canvas.soft_inside(inside)
    scene.air[box.rows, box.cols] *= F32(1.0) - F32(0.93) * depth * coverage
    # Vessels behind the heart are mostly hidden by it.
    for lung_box, _, markings in fields.values():
        rows = slice(
            max(box.rows.start, lung_box.rows.start), min(box.rows.stop, lung_box.rows.stop)
        )
        cols = slice(
            max(box.cols.start, lung_box.cols.start), min(box.cols.stop, lung_box.cols.stop)
        )
        if rows.stop <= rows.start or cols.stop <= cols.start:
            continue
        in_heart = coverage[
            rows.start - box.rows.start : rows.stop - box.rows.start,
            cols.start - box.cols.start : cols.stop - box.cols.start,
        ]
        in_lung = markings[
            rows.start - lung_box.rows.start : rows.stop - lung_box.rows.start,
            cols.start - lung_box.cols.start : cols.stop - lung_box.cols.start,
        ]
        scene.tissue[rows, cols] -= F32(0.75) * in_lung * in_heart
    heart_mask = inside > 0
    if scene.with_masks:
        scene.paint_mask("heart", box, heart_mask)

    # Trachea and main bronchi: air columns in the mediastinum.
    cx_trachea = anatomy.cx - 0.004
    carina_x, carina_y = anatomy.carina
    hw = anatomy.trachea_halfwidth
    right_bronchus = [(carina_x, carina_y), (anatomy.right_hilum[0] + 0.02, carina_y + 0.045)]
    left_bronchus = [(carina_x, carina_y), (anatomy.left_hilum[0] - 0.025, carina_y + 0.06)]
    trachea = [(cx_trachea, 0.0), (cx_trachea, carina_y - 0.02), (carina_x, carina_y)]
    for path, radius in ((trachea, hw), (right_bronchus, hw * 0.75), (left_bronchus, hw * 0.7)):
        pts = np.array(path, dtype=np.float32)
        box = scene.box(
            pts[:, 0].min() - radius, pts[:, 0].max() + radius, pts[:, 1].min(), pts[:, 1].max()
        )
        dist = segment_distance(box, pts)
        rel = clip(dist * F32(1.0 / radius), 0.0, 1.0)
        scene.air[box.rows, box.cols] += np.sqrt(F32(1.0) - rel * rel) * F32(2.6 * TISSUE_PER_CM)

    # Hila: pulmonary artery shadows.
    for (hx, hy), rx, ry in ((anatomy.right_hilum, 0.03, 0.05), (anatomy.left_hilum, 0.028, 0.045)):
        box = scene.box(hx - rx, hx + rx, hy - ry, hy + ry)
        depth = ellipsoid_depth(box, hx, hy, rx, ry)
        scene.tissue[box.rows, box.cols] += depth * F32(1.6 * TISSUE_PER_CM)

    # Gastric air bubble under the left hemidiaphragm.
    lung = anatomy.left_lung
    gx = lung.x_of(lung.m_dome + 0.02)
    gy = lung.y_peak + 0.05
    box = scene.box(gx - 0.06, gx + 0.06, gy - 0.03, gy + 0.04)
    if box is not None:
        bubble = ellipsoid_depth(box, gx, gy + 0.01, 0.055, 0.03)
        below_dome = clip((box.ys - lung.diaphragm(lung.m_of(box.xs)) - F32(0.008)) * 400, 0, 1)
        scene.air[box.rows, box.cols] += bubble * below_dome * F32(3.0 * TISSUE_PER_CM)


def _heart_bottom(anatomy: FrontalAnatomy, xs):
    """Lower edge of the heart per column: its own floor, or the diaphragm where higher."""
    left, right = anatomy.left_lung, anatomy.right_lung
    dome = np.where(
        xs >= F32(anatomy.cx),
        left.diaphragm(np.maximum(left.m_of(xs), F32(left.m_mediastinum))),
        right.diaphragm(np.maximum(right.m_of(xs), F32(right.m_mediastinum))),
    )
    return np.minimum(dome + F32(0.01), F32(anatomy.heart.y_bottom))


def paint_lung_masks(scene: Scene, anatomy: FrontalAnatomy, fields: dict) -> None:
    """Lung masks (field minus heart) and their three zones (partition by lung height)."""
    heart_bit = scene.mask_bits["heart"]
    for side in ("right", "left"):
        lung = anatomy.lung(side)
        box, sd, _ = fields[side]
        inside = (sd > 0) & ((scene.packed_masks[box.rows, box.cols] & heart_bit) == 0)
        scene.paint_mask(f"{side}_lung", box, inside)
        t = lung.t_of(box.ys)  # (h, 1)
        zone_of_row = np.where(t < F32(1 / 3), 0, np.where(t < F32(2 / 3), 1, 2))
        for k, zone in enumerate(ZONES):
            rows = np.flatnonzero(zone_of_row[:, 0] == k)
            if rows.size:
                band = slice(box.rows.start + rows[0], box.rows.start + rows[-1] + 1)
                zone_box = type(box)(band, box.cols, box.xs, box.ys[rows[0] : rows[-1] + 1])
                scene.paint_mask(
                    f"lung_zone_{side}_{zone}", zone_box, inside[rows[0] : rows[-1] + 1]
                )


def draw_aortic_calcification(scene: Scene, anatomy: FrontalAnatomy, subject: Subject) -> None:
    """Thin calcified rim along the aortic knob in older subjects (an age cue)."""
    amount = subject.aortic_unfolding - 0.45
    if amount <= 0:
        return
    lung = anatomy.left_lung
    radius = lung.knob_radius
    x_inner, x_outer = lung.x_of(lung.m_mediastinum), lung.x_of(lung.knob_centre_m + radius)
    box = scene.box(x_inner, x_outer + 0.004, lung.knob_y - 1.5 * radius, lung.knob_y)
    if box is None:
        return
    # Just inside the knob's outline, over its upper lateral half.
    rim_distance = np.abs(lung.m_of(box.xs) - (lung.medial(box.ys) - F32(0.003)))
    upper = (box.ys > F32(lung.knob_y - 1.3 * radius)) & (box.ys < F32(lung.knob_y))
    rim = thin_line(scene, rim_distance, 0.0025) * upper
    scene.dense[box.rows, box.cols] += rim * F32(amount * 1.6 * BONE_PER_CM)
