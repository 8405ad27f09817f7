"""Chest X-ray phantoms: a seeded subject, analytic anatomy and findings, a simulated detector,
and exact ground truth (labels, masks, landmarks, metadata). See `render_phantom`.

Conventions: images are (H, W) float32 in [0, 1], bright = attenuating. "left"/"right" are the
patient's sides; on PA/AP the patient's left is on the image right, and LATERAL views face the
image left (anterior left, spine right). Landmarks are (x, y) in continuous pixel units: pixel
(row r, col c) covers [c, c + 1) x [r, r + 1). Geometry is vector (normalised coordinates), so any
size renders the same anatomy; thin structures (tubes, pleural lines, fracture gaps) fade at low
resolution as a detector would average them. Rib fractures are drawn on frontal views only.
"""

from .allocator import tune_allocator_for_rendering
from .config import (
    DEFAULT_PREVALENCE,
    FINDINGS,
    LANDMARK_NAMES,
    LANDMARK_NAMES_FRONTAL,
    LANDMARK_NAMES_LATERAL,
    MASK_NAMES,
    MASK_NAMES_FRONTAL,
    MASK_NAMES_LATERAL,
    VIEWS,
    PhantomConfig,
    PhantomSample,
    findings_for_view,
    landmarks_for_view,
    structures_for_view,
)
from .render import render_phantom, subject_for_index

__all__ = [
    "DEFAULT_PREVALENCE",
    "FINDINGS",
    "LANDMARK_NAMES",
    "LANDMARK_NAMES_FRONTAL",
    "LANDMARK_NAMES_LATERAL",
    "MASK_NAMES",
    "MASK_NAMES_FRONTAL",
    "MASK_NAMES_LATERAL",
    "VIEWS",
    "PhantomConfig",
    "PhantomSample",
    "findings_for_view",
    "landmarks_for_view",
    "render_phantom",
    "structures_for_view",
    "subject_for_index",
    "tune_allocator_for_rendering",
]
