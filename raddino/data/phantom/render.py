"""`render_phantom`: one deterministic chest X-ray phantom with its exact ground truth."""

from __future__ import annotations

import numpy as np

from . import bones, frontal, lesions, ribs
from .anatomy import frontal_anatomy
from .config import FINDINGS, PhantomConfig, PhantomSample, landmarks_for_view, structures_for_view
from .findings import labels_from_findings, sample_acute, sample_chronic
from .imaging import (
    collimate_and_mark,
    detect,
    place_points,
    sample_acquisition,
    source_positions,
    warp_image,
    warp_masks,
)
from .scene import Scene
from .subject import Subject, sample_subject, subject_metadata

# Separate random streams per subject (demographics, chronic findings) and per image (view and
# acute findings; details = acquisition (a fixed number of draws), then anatomy, then noise), so
# a subject's images agree on everything subject-level whatever each image draws.
_SUBJECT, _CHRONIC, _IMAGE, _DETAIL = range(4)


def _stream(seed: int, key: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), key, *more])


def subject_for_index(index: int, *, seed: int, config: PhantomConfig) -> Subject:
    """The subject shown by image `index` (consecutive indices share one)."""
    subject_index = index // config.images_per_subject
    return sample_subject(
        _stream(seed, _SUBJECT, subject_index), subject_id=f"phantom-{seed}-{subject_index:07d}"
    )


def render_phantom(index: int, *, seed: int, config: PhantomConfig) -> PhantomSample:
    """Render image `index` of the phantom world `seed`; same (index, seed, config) -> same bits."""
    if isinstance(index, bool) or not isinstance(index, int | np.integer) or index < 0:
        raise ValueError(f"index must be an int >= 0, got {index!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if not isinstance(config, PhantomConfig):
        raise ValueError(f"config must be a PhantomConfig, got {type(config).__name__}")
    index, seed = int(index), int(seed)
    subject = subject_for_index(index, seed=seed, config=config)
    subject_index = index // config.images_per_subject
    chronic = sample_chronic(_stream(seed, _CHRONIC, subject_index), config.prevalence)
    image_rng = _stream(seed, _IMAGE, index)
    view = str(image_rng.choice(config.views, p=config.view_probabilities()))
    findings = {**chronic, **sample_acute(image_rng, config.prevalence, chronic)}
    detail_rng = _stream(seed, _DETAIL, index)
    acquisition = sample_acquisition(detail_rng, config, view)
    texture_rng = np.random.default_rng([subject.texture_seed, index])
    anatomy_rng = detail_rng

    scene = Scene(config.size, config.with_masks, structures_for_view(view))
    if view == "LATERAL":
        from .lateral import render_lateral

        details = render_lateral(scene, subject, findings, anatomy_rng, texture_rng)
    else:
        details = _render_frontal(scene, subject, view, findings, anatomy_rng, texture_rng)
    for name, extra in details.items():
        findings.setdefault(name, {}).update(extra)

    attenuation = warp_image(scene.attenuation(), acquisition)
    image = detect(attenuation, acquisition, detail_rng, config.noise)
    collimate_and_mark(image, acquisition)

    masks: dict[str, np.ndarray] = {}
    if config.with_masks:
        positions = source_positions(config.size, acquisition)
        masks = warp_masks(scene.packed_masks, scene.mask_names, positions)
        _ensure_visible(masks, scene, findings, acquisition, config.size)
    landmarks = place_points(
        {name: scene.landmarks[name] for name in landmarks_for_view(view)}, acquisition, config.size
    )
    if "_chest_tube_tip" in scene.landmarks:  # where the tube ends, in image pixels
        tip = place_points({"tip": scene.landmarks["_chest_tube_tip"]}, acquisition, config.size)
        findings["chest_tube"]["tip_xy"] = [round(v, 2) for v in tip["tip"]]
    metadata = {**subject_metadata(subject), "view": view, "acquisition": acquisition.to_dict()}
    return PhantomSample(
        image=image,
        labels=labels_from_findings(findings, FINDINGS),
        findings=findings,
        metadata=metadata,
        masks=masks,
        landmarks=landmarks,
    )


def _render_frontal(scene, subject, view, findings, anatomy_rng, texture_rng) -> dict:
    """PA/AP: anatomy, bones, findings; fills the scene and returns per-finding render details."""
    # Normal hearts stay below 0.48 so rasterised masks never cross 0.5 (cardiomegaly >= 0.52).
    default_ctr = (
        anatomy_rng.uniform(0.42, 0.48) if view == "AP" else anatomy_rng.uniform(0.38, 0.48)
    )
    ctr = findings["cardiomegaly"]["ctr"] if "cardiomegaly" in findings else default_ctr
    aortic = findings.get("aortic_enlargement", {}).get("severity", 0.0)
    anatomy = frontal_anatomy(subject, view, float(ctr), float(aortic), anatomy_rng)
    frontal.draw_body(scene, anatomy, subject)
    frontal.draw_breasts(scene, anatomy, subject)
    fields = frontal.draw_lungs(scene, anatomy, texture_rng)
    frontal.draw_heart_and_mediastinum(scene, anatomy, fields)
    frontal.draw_aortic_calcification(scene, anatomy, subject)
    bones.draw_spine(scene, anatomy, subject)
    ribs.draw_ribs(scene, anatomy, subject, findings, int(anatomy_rng.integers(ribs.N_VARIANTS)))
    bones.draw_clavicles(scene, anatomy, subject)
    bones.draw_shoulder_girdle(scene, anatomy, subject)
    details = lesions.draw_frontal_findings(scene, anatomy, subject, findings, fields, texture_rng)
    if scene.with_masks:
        frontal.paint_lung_masks(scene, anatomy, fields)
    lesions.place_frontal_landmarks(scene, anatomy)
    return details


def _ensure_visible(masks, scene, findings, acquisition, size) -> None:
    """A present finding whose region is thinner than a pixel still owns the pixel at its centre."""
    anchors = place_points(scene.anchor_points, acquisition, size)
    for name, (x, y) in anchors.items():
        if name in findings and name in masks and not masks[name].any():
            col = min(max(int(np.floor(x)), 0), size - 1)
            row = min(max(int(np.floor(y)), 0), size - 1)
            masks[name][row, col] = True
