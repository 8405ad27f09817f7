"""Frontal (PA/AP) chest geometry in normalised coordinates, derived from a subject and view.

Conventions: x grows to the image right, y grows down; the patient's LEFT is on the image RIGHT.
Per lung we use `m` = distance from the midline towards that lung's lateral side, so both lungs
share one set of formulas. Lung *fields* are anatomical (they include what findings fill).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .raster import clip
from .subject import Subject

F32 = np.float32


@dataclass(frozen=True)
class Lung:
    """One lung field: apex, lateral/medial borders (functions of y) and hemidiaphragm (of m)."""

    side: str  # patient side: "left" (image right) or "right" (image left)
    sign: int  # +1 for left lung (x = cx + m), -1 for right lung
    cx: float
    y_apex: float
    y_cp: float  # costophrenic angle (lowest lateral point)
    y_peak: float  # hemidiaphragm dome top
    y_card: float  # medial end of the hemidiaphragm (cardiophrenic)
    m_apex: float
    width: float  # widest m (inner rib margin)
    m_dome: float
    m_mediastinum: float
    knob_y: float = 0.0  # aortic knob bulge into the medial border (left lung only)
    knob_radius: float = 0.0
    knob_centre_m: float = 0.0

    def x_of(self, m):
        return self.cx + self.sign * m

    def m_of(self, x):
        return (x - F32(self.cx)) * F32(self.sign)

    def t_of(self, y):
        """Vertical lung coordinate: 0 at the apex, 1 at the costophrenic angle."""
        return (y - F32(self.y_apex)) * F32(1.0 / (self.y_cp - self.y_apex))

    def y_of_t(self, t: float) -> float:
        return self.y_apex + t * (self.y_cp - self.y_apex)

    def lateral(self, y):
        """Lateral border m(y); rounded apex (sqrt-like), widest from mid-lung down."""
        t = clip(self.t_of(y), 0.0, 1.0)
        rise = np.sin(F32(np.pi / 2) * np.minimum(t * F32(1 / 0.55), F32(1.0))) ** F32(0.5)
        return F32(self.m_apex) + F32(self.width - self.m_apex) * rise

    def medial(self, y):
        """Medial border m(y): apex curving in to the mediastinum, aortic knob bulge (left)."""
        t = clip(self.t_of(y), 0.0, 1.0)
        fall = np.sin(F32(np.pi / 2) * np.minimum(t * F32(1 / 0.22), F32(1.0))) ** F32(0.5)
        border = F32(self.m_apex) - F32(self.m_apex - self.m_mediastinum) * fall
        if self.knob_radius > 0:
            # Half-ellipse bulge rising smoothly from the mediastinal line.
            dy = (y - F32(self.knob_y)) * F32(1.0 / (1.5 * self.knob_radius))
            extent = self.knob_centre_m + self.knob_radius - self.m_mediastinum
            bulge = F32(self.m_mediastinum) + F32(extent) * np.sqrt(
                np.maximum(F32(1.0) - dy * dy, F32(0.0))
            )
            border = np.maximum(border, bulge)
        return border

    def diaphragm(self, m):
        """Hemidiaphragm y(m): dome peak at m_dome, falling to the costophrenic angle laterally."""
        lateral = (m - F32(self.m_dome)) * F32(1.0 / (self.width - self.m_dome))
        medial = (F32(self.m_dome) - m) * F32(1.0 / (self.m_dome - self.m_mediastinum))
        lateral_y = F32(self.y_peak) + F32(self.y_cp - self.y_peak) * lateral * lateral
        medial_y = F32(self.y_peak) + F32(self.y_card - self.y_peak) * medial * medial
        return np.where(m >= F32(self.m_dome), lateral_y, medial_y)

    def signed_distance(self, x, y):
        """Approximate signed distance (> 0 inside the lung field) for broadcastable x, y."""
        m = self.m_of(x)
        return np.minimum(
            np.minimum(m - self.medial(y), self.lateral(y) - m),
            np.minimum(self.diaphragm(m) - y, y - F32(self.y_apex)),
        )

    def point(self, t: float, u: float) -> tuple[float, float]:
        """Image (x, y) of lung-relative (t, u): u=0 medial border, u=1 lateral border."""
        y = self.y_of_t(t)
        m_med = float(self.medial(np.float32(y)))
        m_lat = float(self.lateral(np.float32(y)))
        m = m_med + u * (m_lat - m_med)
        y = min(y, float(self.diaphragm(np.float32(m))) - 0.01)
        return self.x_of(m), y


@dataclass(frozen=True)
class Heart:
    """Cardiac silhouette by rows: right border hc - er(t), left border hc + el(t)."""

    cx: float  # x of the heart's reference line
    extent_right: float  # max reach to the image left (patient right)
    extent_left: float  # max reach to the image right (patient left)
    y_top: float
    y_bottom: float

    def borders(self, y):
        """(x_left_edge, x_right_edge) of the silhouette at rows y (image coordinates)."""
        t = (y - F32(self.y_top)) * F32(1.0 / (self.y_bottom - self.y_top))
        return (
            F32(self.cx) - F32(self.extent_right) * _bump(t, 0.62, 0.5),
            F32(self.cx) + F32(self.extent_left) * _bump(t, 0.74, 0.45),
        )

    def y_of_t(self, t: float) -> float:
        return self.y_top + t * (self.y_bottom - self.y_top)


def _bump(t, peak: float, tail: float):
    """Half-ellipse profile: 0 at t=0, 1 at t=peak, falling with half-width `tail` below."""
    half = np.where(t < F32(peak), F32(peak), F32(tail))
    z = (t - F32(peak)) / half
    inside = (t >= 0) & (t <= 1)
    return np.where(inside, np.sqrt(np.maximum(F32(1.0) - z * z, F32(0.0))), F32(0.0))


@dataclass(frozen=True)
class FrontalAnatomy:
    """All frontal geometry one image needs (normalised units, canonical unrotated frame)."""

    view: str
    cx: float
    right_lung: Lung
    left_lung: Lung
    heart: Heart
    carina: tuple[float, float]
    trachea_halfwidth: float
    right_hilum: tuple[float, float]
    left_hilum: tuple[float, float]
    body_halfwidth: float
    shoulder_y: float
    spine_halfwidth: float
    vertebra_height: float
    clavicle_head_m: float
    clavicle_head_y: float
    clavicle_lateral_y: float
    scapula_medial_m: float
    magnification: float

    def lung(self, side: str) -> Lung:
        return self.left_lung if side == "left" else self.right_lung


def frontal_anatomy(
    subject: Subject, view: str, ctr: float, aortic_severity: float, rng: np.random.Generator
) -> FrontalAnatomy:
    """Place the thorax for one image: `ctr` is the cardiothoracic ratio the masks will show."""
    ap = view == "AP"
    mag = 1.06 if ap else 1.0  # AP: source closer, mediastinum magnified
    scale = subject.thorax_scale
    cx = 0.5
    half_width = 0.315 * scale * subject.thorax_aspect
    y_apex = 0.135 + rng.normal(0.0, 0.008) + (0.015 if ap else 0.0)
    height = 0.6 * scale * subject.inspiration * (0.93 if ap else 1.0)
    y_cp_left = y_apex + height
    y_cp_right = y_cp_left - 0.7 * subject.right_dome_offset
    mediastinum_r = (0.052 + rng.normal(0.0, 0.005)) * mag + 0.004 * aortic_severity
    mediastinum_l = (0.045 + rng.normal(0.0, 0.005)) * mag + 0.007 * aortic_severity
    carina_y = y_apex + 0.19 * scale
    unfold = subject.aortic_unfolding
    knob_radius = 0.017 + 0.008 * unfold + 0.011 * aortic_severity
    knob_y = carina_y - 0.035 - 0.015 * unfold
    lungs = {}
    for side, y_cp, m_med in (
        ("right", y_cp_right, mediastinum_r),
        ("left", y_cp_left, mediastinum_l),
    ):
        width = half_width * (1.0 + rng.normal(0.0, 0.012))
        y_peak = y_cp - height * (0.2 + rng.normal(0.0, 0.015))
        knob = side == "left"
        lungs[side] = Lung(
            side=side,
            sign=1 if side == "left" else -1,
            cx=cx,
            y_apex=y_apex + (0.004 if side == "left" else 0.0),
            y_cp=y_cp,
            y_peak=y_peak,
            y_card=y_peak + 0.03,
            m_apex=0.45 * width,
            width=width,
            m_dome=0.5 * width + 0.02,
            m_mediastinum=m_med,
            knob_y=knob_y if knob else 0.0,
            knob_radius=knob_radius if knob else 0.0,
            knob_centre_m=m_med + 0.004 + 0.01 * unfold if knob else 0.0,
        )
    thoracic_width = lungs["right"].width + lungs["left"].width
    heart_width = ctr * thoracic_width
    right_share = 0.32 + rng.normal(0.0, 0.02)
    heart_cx = cx + 0.012 + subject.heart_shift
    y_bottom = lungs["left"].y_peak + 0.035
    heart = Heart(
        cx=heart_cx,
        extent_right=right_share * heart_width,
        extent_left=(1.0 - right_share) * heart_width,
        y_top=carina_y + 0.05,
        y_bottom=y_bottom,
    )
    right_hilum = (cx - mediastinum_r - 0.04, carina_y + 0.085)
    left_hilum = (cx + mediastinum_l + 0.045, carina_y + 0.065)
    return FrontalAnatomy(
        view=view,
        cx=cx,
        right_lung=lungs["right"],
        left_lung=lungs["left"],
        heart=heart,
        carina=(cx + 0.003, carina_y),
        trachea_halfwidth=0.018,
        right_hilum=right_hilum,
        left_hilum=left_hilum,
        body_halfwidth=half_width + 0.035 + 0.06 * subject.soft_tissue,
        shoulder_y=y_apex - 0.04,
        spine_halfwidth=0.038 * scale,
        vertebra_height=height / 10.5,
        clavicle_head_m=0.03,
        clavicle_head_y=y_apex + (0.02 if ap else 0.05),
        clavicle_lateral_y=y_apex - (0.02 if ap else 0.0),
        scapula_medial_m=(0.62 if ap else 0.93) * half_width,
        magnification=mag,
    )
