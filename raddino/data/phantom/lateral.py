"""Lateral chest view (left lateral, patient facing the image left): spine posterior (right),
sternum anterior (left), heart antero-inferior, retrosternal and retrocardiac clear spaces,
both hemidiaphragms with posterior costophrenic recesses, arms raised over the apices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .devices import bezier, draw_tube
from .findings import sides_of
from .lesions import MM, PLEURAL_LINE_WIDTH, _blobs, thin_line
from .raster import clip, ellipsoid_depth, segment_distance
from .scene import BONE_PER_CM, TISSUE_PER_CM, Scene
from .subject import Subject

F32 = np.float32


@dataclass(frozen=True)
class LateralLung:
    """One lung's projection on the lateral view: rows between anterior and posterior borders,
    above its hemidiaphragm (a dome highest antero-centrally, lowest in the posterior recess)."""

    side: str
    y_apex: float
    x_apex: float
    x_front: float  # anterior border (behind the sternum)
    x_back: float  # posterior border (over the spine)
    y_front: float  # anterior costophrenic angle
    y_dome: float  # dome top
    x_dome: float
    y_recess: float  # posterior costophrenic recess (lowest point)

    def t_of(self, y):
        return (y - F32(self.y_apex)) * F32(1.0 / (self.y_recess - self.y_apex))

    def y_of_t(self, t: float) -> float:
        return self.y_apex + t * (self.y_recess - self.y_apex)

    def borders(self, y):
        """(anterior x, posterior x) of the lung at rows y; rounded apex."""
        t = clip((y - F32(self.y_apex)) * F32(1.0 / 0.22), 0.0, 1.0)
        rise = np.sqrt(np.sin(t * F32(np.pi / 2)))
        front = F32(self.x_apex) - F32(self.x_apex - self.x_front) * rise
        back = F32(self.x_apex) + F32(self.x_back - self.x_apex) * rise
        return front, back

    def diaphragm(self, x):
        """Hemidiaphragm y(x): dome, falling to the anterior angle and the posterior recess."""
        front = (F32(self.x_dome) - x) * F32(1.0 / (self.x_dome - self.x_front))
        back = (x - F32(self.x_dome)) * F32(1.0 / (self.x_back - self.x_dome))
        y_front = F32(self.y_dome) + F32(self.y_front - self.y_dome) * front * front
        y_back = F32(self.y_dome) + F32(self.y_recess - self.y_dome) * back * back
        return np.where(x < F32(self.x_dome), y_front, y_back)

    def signed_distance(self, x, y):
        front, back = self.borders(y)
        return np.minimum(
            np.minimum(x - front, back - x), np.minimum(self.diaphragm(x) - y, y - F32(self.y_apex))
        )

    def point(self, t: float, u: float) -> tuple[float, float]:
        """(x, y) at height t, fraction u from the anterior (0) to the posterior (1) border."""
        y = self.y_of_t(t)
        front, back = (float(v) for v in self.borders(np.float32(y)))
        x = front + u * (back - front)
        return x, min(y, float(self.diaphragm(np.float32(x))) - 0.015)

    def recess_point(self) -> tuple[float, float]:
        x = self.x_back - 0.012
        return x, float(self.diaphragm(np.float32(x))) - 0.01


def lateral_lungs(subject: Subject, rng: np.random.Generator) -> dict[str, LateralLung]:
    s = subject.thorax_scale
    y_apex = 0.11 + rng.normal(0.0, 0.008)
    height = 0.64 * s * subject.inspiration
    base = {
        "y_apex": y_apex,
        "x_apex": 0.5,
        "x_front": 0.25 - 0.02 * (s - 1),
        "x_back": 0.79 + 0.02 * (s - 1),
        "x_dome": 0.42,
    }
    lungs = {}
    for side, drop in (("left", 0.0), ("right", -subject.right_dome_offset)):
        y_recess = y_apex + height + drop
        # Far-side (right) lung is magnified a little on a left lateral: slightly larger.
        grow = 0.012 if side == "right" else 0.0
        lungs[side] = LateralLung(
            side=side,
            y_apex=base["y_apex"] - grow,
            x_apex=base["x_apex"],
            x_front=base["x_front"] - grow,
            x_back=base["x_back"] + grow,
            y_front=y_recess - 0.07,
            y_dome=y_recess - 0.2,
            x_dome=base["x_dome"],
            y_recess=y_recess,
        )
    return lungs


def render_lateral(
    scene: Scene, subject: Subject, findings: dict, rng: np.random.Generator, texture_rng
) -> dict:
    """Fill the scene with a lateral chest; returns per-finding render details."""
    lungs = lateral_lungs(subject, rng)
    left = lungs["left"]
    canvas = scene.canvas
    ys = canvas.centres[:, None]
    xs = canvas.centres[None, :]
    # Body: chest wall from the anterior skin to the back; lateral path ~30 cm of tissue.
    front_skin = F32(0.16 - 0.05 * subject.soft_tissue) + F32(0.03) * np.abs(ys - F32(0.45))
    back_skin = F32(0.9 + 0.03 * subject.soft_tissue)
    centre, half = (front_skin + back_skin) * F32(0.5), (back_skin - front_skin) * F32(0.5)
    body = (xs - centre) * (F32(1.0) / half)  # rel, then (1 - rel^2)^(1/4) in place, (n, n)
    np.square(body, out=body)
    np.subtract(F32(1.0), body, out=body)
    clip(body, F32(0.0), F32(1.0), out=body)  # = max(., 0) here, and faster
    np.sqrt(body, out=body)
    np.sqrt(body, out=body)
    body *= F32((21.0 + 7.0 * subject.soft_tissue) * TISSUE_PER_CM)
    scene.tissue += body
    # Raised arms over the apices.
    for cx in (0.45, 0.6):
        box = scene.box(cx - 0.12, cx + 0.12, 0.0, 0.3)
        depth = ellipsoid_depth(box, cx, 0.05, 0.11, 0.22)
        scene.tissue[box.rows, box.cols] += depth * F32(2.5 * TISSUE_PER_CM)

    fields = {}
    for side in ("right", "left"):
        lung = lungs[side]
        box = scene.box(lung.x_front, lung.x_back, lung.y_apex, lung.y_recess)
        sd = lung.signed_distance(box.xs, box.ys)
        t = clip(lung.t_of(box.ys), 0.0, 1.0)
        thickness = np.sqrt(clip(sd * F32(1 / 0.05), 0.0, 1.0)) * (F32(0.75) + F32(0.35) * t)
        air = thickness * F32(8.0 * TISSUE_PER_CM)
        scene.air[box.rows, box.cols] += air
        fields[side] = (box, sd)
        if scene.with_masks:
            scene.paint_mask(f"{side}_lung", box, sd > 0)

    # Heart: antero-inferior ellipse resting on the diaphragm; cardiomegaly enlarges it.
    ctr = findings.get("cardiomegaly", {}).get("ctr", rng.uniform(0.4, 0.47))
    grow = (ctr - 0.45) * 1.2
    # A tilted ellipse (apex antero-inferior) whose lower part is cut flat by the diaphragm.
    hx, hy = 0.4 + 0.02 * grow, left.y_dome - 0.075
    rx, ry = 0.16 * (1 + grow), 0.12 * (1 + 0.6 * grow)
    reach = max(rx, ry)
    box = scene.box(hx - reach, hx + reach, hy - reach, hy + reach)
    cos, sin = F32(np.cos(0.45)), F32(np.sin(0.45))
    dx0, dy0 = box.xs - F32(hx), box.ys - F32(hy)
    dx = (cos * dx0 - sin * dy0) * F32(1.0 / rx)
    dy = (sin * dx0 + cos * dy0) * F32(1.0 / ry)
    ellipse = F32(1.0) - dx * dx - dy * dy
    floor = left.diaphragm(box.xs) + F32(0.004)
    inside = np.minimum(ellipse * F32(0.5 * ry), floor - box.ys)
    depth = np.sqrt(clip(ellipse, F32(0.0), F32(1.0))) * scene.canvas.soft_inside(inside)
    scene.air[box.rows, box.cols] *= F32(1.0) - F32(0.6) * depth
    if scene.with_masks:
        scene.paint_mask("heart", box, inside > 0)
    lv_x = hx + 0.4 * rx
    lv_y = min(hy + 0.3 * ry, float(left.diaphragm(np.float32(lv_x))) - 0.015)
    scene.landmarks["left_ventricle"] = (lv_x, lv_y)

    _mediastinum(scene, left, findings)
    _bones(scene, subject, left)
    _lateral_findings(scene, lungs, fields, findings, texture_rng)
    for side in ("left", "right"):
        lung = lungs[side]
        scene.landmarks[f"apex_{side}"] = (lung.x_apex, lung.y_apex + 0.012)
        scene.landmarks[f"costophrenic_angle_{side}"] = lung.recess_point()
    return {}


def _mediastinum(scene: Scene, lung: LateralLung, findings: dict) -> None:
    """Trachea (air), aortic arch (soft tissue over the lungs), hila, gastric bubble."""
    carina = (0.55, lung.y_apex + 0.2)
    trachea = np.array([[0.47, 0.0], [0.51, lung.y_apex + 0.08], carina], dtype=np.float32)
    box = scene.box(0.42, 0.6, 0.0, carina[1] + 0.01)
    dist = segment_distance(box, trachea)
    rel = clip(dist * F32(1 / 0.02), 0.0, 1.0)
    scene.air[box.rows, box.cols] += np.sqrt(F32(1.0) - rel * rel) * F32(1.2 * TISSUE_PER_CM)
    scene.landmarks["carina"] = carina
    severity = findings.get("aortic_enlargement", {}).get("severity", 0.0)
    arch = bezier(
        (0.4, lung.y_apex + 0.3), (0.48, lung.y_apex + 0.02), (0.66, lung.y_apex + 0.22), 7
    )
    descending = np.array([[0.66, lung.y_apex + 0.22], [0.68, lung.y_recess - 0.05]])
    radius = 0.022 + 0.012 * severity
    for path in (arch, descending):
        box = scene.box(
            path[:, 0].min() - radius,
            path[:, 0].max() + radius,
            path[:, 1].min() - radius,
            path[:, 1].max() + radius,
        )
        rel = clip(segment_distance(box, path) * F32(1.0 / radius), 0.0, 1.0)
        scene.air[box.rows, box.cols] *= F32(1.0) - F32(0.18) * np.sqrt(F32(1.0) - rel * rel)
    top = arch[np.argmin(arch[:, 1])]
    scene.landmarks["aortic_arch"] = (float(top[0]), float(top[1]))
    hilum = (0.52, lung.y_apex + 0.27)
    box = scene.box(hilum[0] - 0.05, hilum[0] + 0.05, hilum[1] - 0.05, hilum[1] + 0.05)
    scene.tissue[box.rows, box.cols] += ellipsoid_depth(box, *hilum, 0.045, 0.04) * F32(
        2.0 * TISSUE_PER_CM
    )
    scene.landmarks["right_hilum"] = hilum
    gx, gy = 0.55, lung.y_dome + 0.06
    box = scene.box(gx - 0.06, gx + 0.06, gy - 0.03, gy + 0.04)
    scene.air[box.rows, box.cols] += ellipsoid_depth(box, gx, gy, 0.05, 0.025) * F32(
        3.0 * TISSUE_PER_CM
    )


def _bones(scene: Scene, subject: Subject, lung: LateralLung) -> None:
    """Thoracic spine (vertebral bodies, discs, posterior elements), sternum, posterior ribs,
    scapular borders."""
    density = subject.bone_density
    box = scene.box(0.66, 0.88, 0.0, 1.0)
    spine_front = F32(0.69) + F32(0.03) * np.sin((box.ys - F32(0.1)) * F32(np.pi / 0.9))
    depth = (box.xs - spine_front) * F32(1 / 0.1)  # 0..1 across the vertebral body
    body = clip(np.minimum(depth, F32(1.0) - depth) * F32(10.0), 0.0, 1.0)
    phase = (box.ys - F32(lung.y_apex)) * F32(1.0 / 0.058)
    frac = phase - np.floor(phase)
    disc = np.exp(-(((frac - F32(0.5)) * F32(8.0)) ** 2))
    cortex = np.exp(-((np.minimum(depth, F32(1.0) - depth) * F32(12.0)) ** 2)) * (depth > -0.05)
    posterior = np.exp(-(((depth - F32(1.35)) * F32(3.5)) ** 2)) * (F32(0.6) + F32(0.4) * disc)
    spine = body * (F32(1.0) - F32(0.6) * disc) + F32(0.6) * cortex * (depth < 1.05) + posterior
    scene.dense[box.rows, box.cols] += spine * F32(density * 1.8 * BONE_PER_CM)
    sternum = np.array([[0.2, lung.y_apex + 0.12], [0.23, lung.y_apex + 0.5]], dtype=np.float32)
    box = scene.box(0.14, 0.29, lung.y_apex + 0.1, lung.y_apex + 0.52)
    rel = clip(segment_distance(box, sternum) * F32(1 / 0.013), 0.0, 1.0)
    scene.dense[box.rows, box.cols] += np.sqrt(F32(1.0) - rel * rel) * F32(density * BONE_PER_CM)
    # Posterior ribs: nine copies of one curve running down and forwards from the spine, drawn
    # at once via the vertical distance to the nearest copy (they are evenly spaced).
    spacing, first, count = 0.065, lung.y_apex + 0.04, 9
    box = scene.box(0.5, 0.8, first - 0.02, first + spacing * (count - 1) + 0.2)
    back = F32(0.8) - box.xs  # 0 at the spine, growing forwards
    offset = box.ys - F32(first) - back * F32(0.75) - back * back * F32(0.8)  # (h, w)
    phase = offset * F32(1.0 / spacing)
    nearest = clip(np.round(phase), 0, count - 1)
    distance = np.abs(phase - nearest) * F32(spacing) / np.sqrt(F32(1.0) + F32(0.75) ** 2)
    line = thin_line(scene, distance, 0.012) * (box.xs > F32(0.5))
    scene.dense[box.rows, box.cols] += line * F32(density * 0.35 * BONE_PER_CM)
    for x_top in (0.66, 0.72):
        border = np.array([[x_top, lung.y_apex + 0.02], [x_top + 0.06, lung.y_apex + 0.32]])
        box = scene.box(x_top - 0.01, x_top + 0.07, lung.y_apex, lung.y_apex + 0.34)
        line = thin_line(scene, segment_distance(box, border), 0.008)
        scene.dense[box.rows, box.cols] += line * F32(density * 0.6 * BONE_PER_CM)


def _lateral_findings(scene: Scene, lungs, fields, findings: dict, rng) -> None:
    """Findings as they project on a lateral view (rib fractures are not visible on it)."""
    for side in sides_of(findings.get("pleural_thickening")):
        lung, (box, sd) = lungs[side], fields[side]
        details = findings["pleural_thickening"]
        thickness = details["thickness_mm"] * MM
        if details["location"] == "apical":
            dist = box.ys - F32(lung.y_apex)
        else:  # along the posterior chest wall
            dist = lung.borders(box.ys)[1] - box.xs
        band = scene.canvas.soft_inside(F32(thickness) - dist) * scene.canvas.soft_inside(sd)
        scene.air[box.rows, box.cols] *= F32(1.0) - F32(0.7) * band
    for side in sides_of(findings.get("pleural_effusion")):
        lung = lungs[side]
        box, sd = fields[side]
        severity = findings["pleural_effusion"]["severity"]
        rel = clip((box.xs - F32(lung.x_dome)) * F32(1.0 / (lung.x_back - lung.x_dome)), 0, 1)
        level = F32(lung.y_recess - (0.03 + 0.3 * severity) * (lung.y_recess - lung.y_apex))
        surface = level - F32(0.04 + 0.1 * severity) * rel * rel
        depth = box.ys - surface
        fluid = clip(depth * F32(1 / 0.04), 0.0, 1.0) * scene.canvas.soft_inside(sd)
        scene.air[box.rows, box.cols] *= F32(1.0) - F32(0.6) * fluid
        if scene.with_masks:
            scene.paint_mask("pleural_effusion", box, (sd > 0) & (depth > 0))
        scene.anchor_points["pleural_effusion"] = lung.recess_point()
    if "pneumothorax" in findings:
        ptx = findings["pneumothorax"]
        lung = lungs[ptx["side"]]
        box, sd = fields[ptx["side"]]
        keep = 1.0 - ptx["severity"]
        ax, ay = lung.x_dome, lung.y_dome
        sx = F32(ax) + (box.xs - F32(ax)) * F32(1.0 / keep)
        sy = F32(ay) + (box.ys - F32(ay)) * F32(1.0 / keep)
        collapsed = lung.signed_distance(sx, sy) * F32(keep)
        gap = scene.canvas.soft_inside(-collapsed) * scene.canvas.soft_inside(sd)
        scene.air[box.rows, box.cols] += gap * F32(1.5 * TISSUE_PER_CM)
        line = thin_line(scene, np.abs(collapsed), PLEURAL_LINE_WIDTH)
        line *= clip(sd * F32(1.0 / (3 * PLEURAL_LINE_WIDTH)), 0.0, 1.0)
        scene.tissue[box.rows, box.cols] += line * F32(1.5 * TISSUE_PER_CM)
        if scene.with_masks:
            scene.paint_mask("pneumothorax", box, (sd > 0) & (collapsed <= 0))
        gap_apex = ptx["severity"] * (ay - lung.y_apex)
        scene.anchor_points["pneumothorax"] = (lung.x_apex, lung.y_apex + 0.5 * gap_apex)
    for name, t_default in (("lung_opacity", None), ("tuberculosis", 0.18)):
        details = findings.get(name)
        for side in sides_of(details):
            lung = lungs[side]
            box, sd = fields[side]
            t = details.get("t", t_default)
            centre = lung.point(t, rng.uniform(0.3, 0.7))
            scale = 0.6 if name == "tuberculosis" else 1.0
            cloud = _blobs(
                box, centre, scale * (0.04 + 0.06 * details.get("severity", 0.5)), 5, rng
            )
            fill = (
                cloud
                * scene.canvas.soft_inside(sd)
                * F32(0.35 + 0.35 * details.get("severity", 0.5))
            )
            scene.air[box.rows, box.cols] *= F32(1.0) - fill
    if "nodule" in findings:
        nodule = findings["nodule"]
        cx, cy = lungs[nodule["side"]].point(nodule["t"], nodule["u"])
        radius = nodule["size_mm"] / 2 * MM
        box = scene.box(cx - radius, cx + radius, cy - radius, cy + radius)
        depth = ellipsoid_depth(box, cx, cy, radius, radius)
        scene.tissue[box.rows, box.cols] += depth * F32(
            nodule["size_mm"] / 10 * 0.9 * TISSUE_PER_CM
        )
    for side in sides_of(findings.get("fibrosis")):
        box, sd = fields[side]
        t = clip(lungs[side].t_of(box.ys), 0.0, 1.0)
        net = np.maximum(
            np.cos((box.xs * F32(0.8) + box.ys * F32(0.6)) * F32(2 * np.pi / (7 * MM))),
            np.cos((box.xs * F32(-0.5) + box.ys * F32(0.87)) * F32(2 * np.pi / (7 * MM))),
        )
        weight = clip((t - F32(0.5)) * F32(4.0), 0.0, 1.0) * scene.canvas.soft_inside(sd)
        scene.tissue[box.rows, box.cols] += (
            clip((net - F32(0.75)) * F32(4.0), 0.0, 1.0)
            * weight
            * F32(1.2 * findings["fibrosis"]["severity"] * TISSUE_PER_CM)
        )
    if "chest_tube" in findings:
        tube = findings["chest_tube"]
        lung = lungs[tube["side"]]
        entry = lung.point(tube["entry_t"], 0.85)
        tip = lung.point(tube["tip_t"], tube["tip_u"])
        path = np.concatenate(
            [
                bezier((entry[0] + 0.2, entry[1] + 0.15), (entry[0] + 0.1, entry[1]), entry, 5)[
                    :-1
                ],
                bezier(entry, (entry[0] - 0.05, (entry[1] + tip[1]) / 2), tip),
            ]
        )
        draw_tube(scene, path, "chest_tube", holes=[tuple(path[-3]), tuple(path[-5])])
        scene.anchor_points["chest_tube"] = tuple(path[len(path) // 2])
        scene.landmarks["_chest_tube_tip"] = (float(tip[0]), float(tip[1]))
    devices = findings.get("support_devices", {}).get("devices", [])
    if "endotracheal_tube" in devices:
        carina_x, carina_y = scene.landmarks["carina"]
        tip_y = carina_y - findings["support_devices"]["ett_tip_above_carina_mm"] * MM
        draw_tube(
            scene, np.array([[0.44, -0.02], [0.5, tip_y * 0.6], [carina_x - 0.02, tip_y]]), None
        )
    if "ecg_leads" in devices:
        for _ in range(findings["support_devices"]["n_ecg_leads"]):
            x, y = rng.uniform(0.15, 0.3), rng.uniform(0.2, 0.7)
            box = scene.box(x - 0.015, x + 0.015, y - 0.015, y + 0.015)
            r = np.sqrt((box.xs - F32(x)) ** 2 + (box.ys - F32(y)) ** 2)
            scene.dense[box.rows, box.cols] += scene.canvas.soft_inside(F32(0.0045) - r) * F32(
                1.5 * BONE_PER_CM
            )
