"""Frontal findings drawn into the scene: pneumothorax, effusion, opacity, nodule, fibrosis,
pleural thickening, tuberculosis; plus the frontal landmarks. Devices live in `devices.py`."""

from __future__ import annotations

import numpy as np

from .anatomy import FrontalAnatomy, Lung
from .devices import draw_frontal_devices
from .findings import sides_of
from .raster import MIN_LINE_PX, clip, ellipsoid_depth
from .scene import BONE_PER_CM, TISSUE_PER_CM, Scene
from .subject import Subject

F32 = np.float32
MM = 1.0 / 400.0  # one millimetre in normalised units (the detector spans ~40 cm)
PLEURAL_LINE_WIDTH = 0.004  # ~1.6 mm: 2 px at 512, under a pixel at 224


def thin_line(scene: Scene, distance: np.ndarray, width: float) -> np.ndarray:
    """Profile of a line `width` wide, widened to >= MIN_LINE_PX and dimmed to keep its integral."""
    drawn = max(width, MIN_LINE_PX * scene.canvas.pixel)
    amplitude = F32(width / drawn)
    return amplitude * np.exp(-((distance * F32(2.0 / drawn)) ** 2))


def draw_frontal_findings(
    scene: Scene,
    anatomy: FrontalAnatomy,
    subject: Subject,
    findings: dict,
    fields: dict,
    rng: np.random.Generator,
) -> dict[str, dict]:
    """Draw every present finding; returns extra details measured while drawing."""
    details: dict[str, dict] = {}
    for side in sides_of(findings.get("pleural_thickening")):
        _pleural_thickening(scene, anatomy.lung(side), fields[side], findings["pleural_thickening"])
    for side in sides_of(findings.get("fibrosis")):
        _fibrosis(scene, anatomy.lung(side), fields[side], findings["fibrosis"]["severity"], rng)
    for side in sides_of(findings.get("tuberculosis")):
        _tuberculosis(
            scene, anatomy, anatomy.lung(side), fields[side], findings["tuberculosis"], rng
        )
    for side in sides_of(findings.get("lung_opacity")):
        _opacity(scene, anatomy.lung(side), fields[side], findings["lung_opacity"], rng)
    if "nodule" in findings:
        nodule = findings["nodule"]
        lung = anatomy.lung(nodule["side"])
        _nodule(scene, lung, nodule, anatomy.magnification)
    for side in sides_of(findings.get("pleural_effusion")):
        _effusion(scene, anatomy.lung(side), fields[side], findings["pleural_effusion"]["severity"])
    if "pneumothorax" in findings:
        ptx = findings["pneumothorax"]
        lung = anatomy.lung(ptx["side"])
        _pneumothorax(scene, lung, fields[ptx["side"]], ptx["severity"])
    details.update(draw_frontal_devices(scene, anatomy, findings, rng))
    return details


def _pneumothorax(scene: Scene, lung: Lung, field, severity: float) -> None:
    """Lung collapsed towards its base: lucent rim without markings, thin visceral pleural line."""
    box, sd, markings = field
    # Collapse towards the medial lung base: the air gap opens apically and laterally.
    anchor_m = lung.m_mediastinum + 0.15 * (lung.width - lung.m_mediastinum)
    anchor_y = lung.y_peak
    keep = 1.0 - severity
    m = lung.m_of(box.xs)
    source_x = lung.x_of(F32(anchor_m) + (m - F32(anchor_m)) * F32(1.0 / keep))
    source_y = F32(anchor_y) + (box.ys - F32(anchor_y)) * F32(1.0 / keep)
    collapsed_sd = lung.signed_distance(source_x, source_y) * F32(keep)
    in_field = scene.canvas.soft_inside(sd)
    gap = scene.canvas.soft_inside(-collapsed_sd) * in_field
    scene.tissue[box.rows, box.cols] -= markings * gap  # no lung markings beyond the pleural line
    # The collapsed lung keeps its tissue in less volume: denser in proportion to the collapse.
    collapsed = scene.canvas.soft_inside(collapsed_sd)
    scene.air[box.rows, box.cols] *= F32(1.0) - F32(0.6 * severity) * collapsed
    scene.air[box.rows, box.cols] += gap * F32(1.2 * TISSUE_PER_CM)
    line = thin_line(scene, np.abs(collapsed_sd), PLEURAL_LINE_WIDTH)
    line *= clip(sd * F32(1.0 / (3 * PLEURAL_LINE_WIDTH)), 0.0, 1.0)  # not at the chest wall
    scene.tissue[box.rows, box.cols] += line * F32(3.0 * TISSUE_PER_CM)
    if scene.with_masks:
        scene.paint_mask("pneumothorax", box, (sd > 0) & (collapsed_sd <= 0))
    gap_apex = severity * (anchor_y - lung.y_apex)
    scene.anchor_points["pneumothorax"] = (lung.x_of(lung.m_apex), lung.y_apex + 0.5 * gap_apex)


def _effusion(scene: Scene, lung: Lung, field, severity: float) -> None:
    """Dependent fluid with a meniscus rising laterally; blunts the costophrenic angle."""
    box, sd, _ = field
    height = (0.03 + 0.33 * severity) * (lung.y_cp - lung.y_apex)
    m = lung.m_of(box.xs)
    rel = clip(m * F32(1.0 / lung.width), 0.0, 1.0)
    # Meniscus: fluid climbs the lateral chest wall, its top fading (thinning layer) upwards.
    surface = F32(lung.y_cp - height) - F32(0.05 + 0.12 * severity) * rel * rel * rel
    depth = box.ys - surface
    fluid = clip(depth * F32(1.0 / 0.04), 0.0, 1.0) * scene.canvas.soft_inside(sd)
    scene.air[box.rows, box.cols] *= F32(1.0) - F32(0.97) * fluid
    scene.tissue[box.rows, box.cols] += fluid * F32(0.6 * TISSUE_PER_CM)
    if scene.with_masks:
        scene.paint_mask("pleural_effusion", box, (sd > 0) & (depth > 0))
    corner_m = lung.width - 0.01
    scene.anchor_points["pleural_effusion"] = (
        lung.x_of(corner_m),
        float(lung.diaphragm(np.float32(corner_m))) - 0.008,
    )


def _blobs(box, centre, radius: float, count: int, rng: np.random.Generator) -> np.ndarray:
    """A patchy cloud: `count` Gaussian blobs scattered around `centre`, (h, w) in [0, 1].

    Each blob is evaluated only within 4 sigma of its centre (beyond, it is below 4e-4).
    """
    cloud = np.zeros(box.shape, dtype=np.float32)
    xs_w, ys_h = box.xs[0], box.ys[:, 0]  # ascending pixel centres
    for _ in range(count):
        bx = centre[0] + rng.normal(0.0, radius * 0.45)
        by = centre[1] + rng.normal(0.0, radius * 0.45)
        sigma = radius * rng.uniform(0.3, 0.6)
        c0, c1 = np.searchsorted(xs_w, (bx - 4 * sigma, bx + 4 * sigma))
        r0, r1 = np.searchsorted(ys_h, (by - 4 * sigma, by + 4 * sigma))
        if c1 <= c0 or r1 <= r0:
            continue
        scale = F32(-1.0 / (2 * sigma * sigma))
        dx2 = (xs_w[None, c0:c1] - F32(bx)) ** 2 * scale
        dy2 = (ys_h[r0:r1, None] - F32(by)) ** 2 * scale
        cloud[r0:r1, c0:c1] += np.exp(dx2 + dy2)
    return clip(cloud, F32(0.0), F32(1.0), out=cloud)  # cloud >= 0


def _opacity(scene: Scene, lung: Lung, field, details: dict, rng: np.random.Generator) -> None:
    """Consolidation: patchy loss of lung air in one zone, confined to the lung field."""
    box, sd, _ = field
    centre = lung.point(details["t"], details["u"])
    radius = 0.04 + 0.07 * details["severity"]
    cloud = _blobs(box, centre, radius, 6, rng)
    fill = cloud * scene.canvas.soft_inside(sd) * F32(0.45 + 0.45 * details["severity"])
    scene.air[box.rows, box.cols] *= F32(1.0) - fill
    scene.tissue[box.rows, box.cols] += fill * F32(0.3 * TISSUE_PER_CM)


def _nodule(scene: Scene, lung: Lung, details: dict, magnification: float) -> None:
    """A round soft-tissue (optionally calcified) sphere inside the lung."""
    cx, cy = lung.point(details["t"], details["u"])
    radius = details["size_mm"] / 2 * MM * magnification
    box = scene.box(cx - radius, cx + radius, cy - radius, cy + radius)
    depth = ellipsoid_depth(box, cx, cy, radius, radius)
    size_cm = details["size_mm"] / 10.0
    scene.tissue[box.rows, box.cols] += depth * F32(size_cm * 0.9 * TISSUE_PER_CM)
    if details.get("calcified"):
        scene.dense[box.rows, box.cols] += depth * F32(size_cm * 0.4 * BONE_PER_CM)


def _fibrosis(scene: Scene, lung: Lung, field, severity: float, rng: np.random.Generator) -> None:
    """Reticular net in the lower, peripheral zones (fine crossing lines ~6-8 mm apart)."""
    box, sd, _ = field
    t = clip(lung.t_of(box.ys), 0.0, 1.0)
    m = lung.m_of(box.xs)
    lower = clip((t - F32(0.45)) * F32(1 / 0.25), 0.0, 1.0)
    peripheral = clip((m - F32(0.35 * lung.width)) * F32(1.0 / (0.3 * lung.width)), 0.0, 1.0)
    freq = F32(2 * np.pi / (7 * MM))
    net = None
    for angle, phase in zip(rng.uniform(0, np.pi, 3), rng.uniform(0, 2 * np.pi, 3), strict=True):
        wave = np.cos(
            (box.xs * F32(np.cos(angle)) + box.ys * F32(np.sin(angle))) * freq + F32(phase)
        )
        net = wave if net is None else np.maximum(net, wave)
    lines = clip((net - F32(0.75)) * F32(4.0), 0.0, 1.0)
    weight = lower * peripheral * scene.canvas.soft_inside(sd) * F32(severity)
    scene.tissue[box.rows, box.cols] += (F32(0.25) + lines) * weight * F32(0.9 * TISSUE_PER_CM)
    scene.air[box.rows, box.cols] *= F32(1.0) - F32(0.25) * weight


def _pleural_thickening(scene: Scene, lung: Lung, field, details: dict) -> None:
    """Soft-tissue band along the lateral chest wall or an apical cap."""
    box, sd, _ = field
    thickness = details["thickness_mm"] * MM
    m = lung.m_of(box.xs)
    if details["location"] == "apical":
        dist = box.ys - F32(lung.y_apex) - (m - F32(lung.m_apex)) ** 2 * F32(3.0)
        reach = clip((F32(lung.y_of_t(0.25)) - box.ys) * F32(1 / 0.02), 0.0, 1.0)
    else:
        dist = lung.lateral(box.ys) - m
        t = lung.t_of(box.ys)
        reach = clip(np.minimum(t - F32(0.25), F32(0.92) - t) * F32(1 / 0.05), 0.0, 1.0)
    band = scene.canvas.soft_inside(F32(thickness) - dist) * scene.canvas.soft_inside(sd) * reach
    scene.air[box.rows, box.cols] *= F32(1.0) - F32(0.9) * band


def _tuberculosis(scene: Scene, anatomy, lung: Lung, field, details: dict, rng) -> None:
    """Upper-zone patchy opacities, fibrotic streaks to the hilum, optional cavity, granulomas."""
    box, sd, _ = field
    severity = details["severity"]
    centre = lung.point(0.18, details["u"])
    cloud = _blobs(box, centre, 0.025 + 0.035 * severity, 5, rng)
    inside = scene.canvas.soft_inside(sd)
    scene.air[box.rows, box.cols] *= F32(1.0) - cloud * inside * F32(0.15 + 0.3 * severity)
    hilum = anatomy.right_hilum if lung.side == "right" else anatomy.left_hilum
    for _ in range(3):
        start = (centre[0] + rng.normal(0, 0.02), centre[1] + rng.normal(0, 0.02))
        ax, ay = start
        bx, by = hilum
        vx, vy = bx - ax, by - ay
        px, py = box.xs - F32(ax), box.ys - F32(ay)
        s = clip((px * F32(vx) + py * F32(vy)) * F32(1.0 / (vx * vx + vy * vy)), 0.0, 0.7)
        dist = np.sqrt((px - s * F32(vx)) ** 2 + (py - s * F32(vy)) ** 2)
        scene.tissue[box.rows, box.cols] += (
            thin_line(scene, dist, 0.004) * inside * F32(0.8 * TISSUE_PER_CM * severity)
        )
    if details.get("cavity"):
        radius = 0.012 + 0.012 * severity
        dx, dy = box.xs - F32(centre[0]), box.ys - F32(centre[1])
        r = np.sqrt(dx * dx + dy * dy)
        wall = np.exp(-(((r - F32(radius)) * F32(1.0 / 0.004)) ** 2))
        hole = clip((F32(radius) - r) * F32(1 / 0.003), 0.0, 1.0)
        scene.tissue[box.rows, box.cols] += (
            (wall * F32(1.2) - hole * F32(0.6)) * inside * F32(TISSUE_PER_CM)
        )
    for _ in range(int(1 + 3 * severity)):
        gx, gy = centre[0] + rng.normal(0, 0.03), centre[1] + rng.normal(0, 0.03)
        grain = scene.box(gx - 0.006, gx + 0.006, gy - 0.006, gy + 0.006)
        if grain is not None:
            dot = ellipsoid_depth(grain, gx, gy, 0.004, 0.004)
            scene.dense[grain.rows, grain.cols] += dot * F32(0.6 * BONE_PER_CM)


def place_frontal_landmarks(scene: Scene, anatomy: FrontalAnatomy) -> None:
    """Anatomical landmarks in canonical normalised (x, y), each inside its structure."""
    for side in ("left", "right"):
        lung = anatomy.lung(side)
        scene.landmarks[f"apex_{side}"] = (lung.x_of(lung.m_apex), lung.y_apex + 0.012)
        corner_m = lung.width - 0.01
        scene.landmarks[f"costophrenic_angle_{side}"] = (
            lung.x_of(corner_m),
            float(lung.diaphragm(np.float32(corner_m))) - 0.008,
        )
    scene.landmarks["right_hilum"] = anatomy.right_hilum
    scene.landmarks["carina"] = anatomy.carina
    left = anatomy.left_lung
    knob_m = left.knob_centre_m + 0.5 * left.knob_radius
    scene.landmarks["aortic_arch"] = (left.x_of(knob_m), left.knob_y)
    # LV apex: the lowest point of the left heart border that is clearly above the diaphragm.
    heart = anatomy.heart
    ys = np.array([heart.y_of_t(t) for t in np.linspace(0.9, 0.6, 7)], dtype=np.float32)
    xs = heart.borders(ys)[1] - F32(0.01)
    floors = left.diaphragm(np.maximum(left.m_of(xs), F32(left.m_mediastinum)))
    clear = ys < np.minimum(floors, F32(heart.y_bottom)) - F32(0.006)
    k = int(np.argmax(clear)) if clear.any() else len(ys) - 1
    scene.landmarks["left_ventricle"] = (float(xs[k]), float(ys[k]))
