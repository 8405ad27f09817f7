"""Phantom ground truth agrees with the pixels: masks vs labels, landmarks vs masks, laterality,
lung zones, cardiothoracic ratio."""

from __future__ import annotations

import numpy as np
import pytest

from raddino.data.phantom import FINDINGS, PhantomConfig, render_phantom, structures_for_view
from raddino.data.phantom.glyphs import glyph

FRONTAL = ("PA", "AP")
# Findings with a region mask; high prevalence so both labels occur in a few samples.
REGION_FINDINGS = ("pneumothorax", "pleural_effusion", "chest_tube")
BUSY = {
    "pneumothorax": 0.5,
    "pleural_effusion": 0.5,
    "chest_tube": 0.5,
    "support_devices": 0.6,
    "cardiomegaly": 0.5,
}


def _samples(view: str, n: int = 16, size: int = 160, seed: int = 11, **overrides):
    config = PhantomConfig(size=size, views=(view,), prevalence={**BUSY, **overrides})
    return [render_phantom(i, seed=seed, config=config) for i in range(n)]


@pytest.fixture(scope="module", params=FRONTAL)
def frontal_samples(request):
    return _samples(request.param)


def _near(mask: np.ndarray, xy: tuple[float, float], radius: int = 1) -> bool:
    """True if `mask` has a pixel within `radius` pixels of the point (x, y) in pixel units."""
    col, row = int(np.floor(xy[0])), int(np.floor(xy[1]))
    h, w = mask.shape
    r0, r1 = max(row - radius, 0), min(row + radius + 1, h)
    c0, c1 = max(col - radius, 0), min(col + radius + 1, w)
    return bool(mask[r0:r1, c0:c1].any())


def test_every_sample_has_all_labels_masks_and_landmarks(frontal_samples):
    for s in frontal_samples:
        assert set(s.labels) == set(FINDINGS)
        assert set(s.masks) == set(structures_for_view(s.metadata["view"]))
        for mask in s.masks.values():
            assert mask.dtype == bool and mask.shape == s.image.shape
        if s.labels["chest_tube"]:
            assert s.labels["support_devices"] == 1


def test_region_masks_are_non_empty_exactly_when_labelled(frontal_samples):
    seen = {name: set() for name in REGION_FINDINGS}
    for s in frontal_samples:
        for name in REGION_FINDINGS:
            assert bool(s.masks[name].any()) == bool(s.labels[name]), (name, s.findings.get(name))
            seen[name].add(s.labels[name])
        if s.labels["chest_tube"]:
            assert _near(s.masks["chest_tube"], s.findings["chest_tube"]["tip_xy"])
    for name, values in seen.items():
        assert values == {0, 1}, f"{name}: the sample set should contain both labels"


def test_region_masks_visible_even_at_tiny_size():
    for s in _samples("PA", n=12, size=32):
        for name in REGION_FINDINGS:
            assert bool(s.masks[name].any()) == bool(s.labels[name])


def test_landmarks_lie_on_their_structures(frontal_samples):
    pairs = {
        "apex_left": "left_lung",
        "apex_right": "right_lung",
        "costophrenic_angle_left": "left_lung",
        "costophrenic_angle_right": "right_lung",
        "right_hilum": "right_lung",
        "left_ventricle": "heart",
        "clavicle_head_left": "clavicle_left",
        "clavicle_head_right": "clavicle_right",
    }
    for s in frontal_samples:
        for landmark, structure in pairs.items():
            assert _near(s.masks[structure], s.landmarks[landmark]), (landmark, s.metadata)


def test_costophrenic_angles_are_the_lung_bottom_corners(frontal_samples):
    for s in frontal_samples:
        for side in ("left", "right"):
            rows, cols = np.nonzero(s.masks[f"{side}_lung"])
            x, y = s.landmarks[f"costophrenic_angle_{side}"]
            assert y > np.percentile(rows, 90)
            lateral = cols.max() if side == "left" else cols.min()
            assert abs(x - lateral) < 0.08 * s.image.shape[1]


def test_patient_left_is_on_the_image_right(frontal_samples):
    for s in frontal_samples:
        size = s.image.shape[1]
        left_x = np.nonzero(s.masks["left_lung"])[1].mean()
        right_x = np.nonzero(s.masks["right_lung"])[1].mean()
        assert left_x > size / 2 > right_x
        heart_cols = np.nonzero(s.masks["heart"])[1]
        assert (heart_cols > size / 2).mean() > 0.55
        assert s.landmarks["left_ventricle"][0] > size / 2
        assert s.landmarks["apex_left"][0] > s.landmarks["apex_right"][0]
        assert s.landmarks["clavicle_head_left"][0] > s.landmarks["clavicle_head_right"][0]


def test_side_marker_is_burned_in_on_the_side_it_names(frontal_samples):
    letters = set()
    for s in frontal_samples:
        acquisition = s.metadata["acquisition"]
        letter_name = acquisition["marker"]
        letters.add(letter_name)
        size = s.image.shape[0]
        letter = glyph(letter_name, round(0.045 * size))
        x0 = min(int(acquisition["marker_xy"][0] * size), size - letter.shape[1])
        y0 = min(int(acquisition["marker_xy"][1] * size), size - letter.shape[0])
        patch = s.image[y0 : y0 + letter.shape[0], x0 : x0 + letter.shape[1]]
        # Patient's left ("L") is on the image right on PA/AP; "R" on the image left.
        assert (x0 > size / 2) == (letter_name == "L")
        assert np.all(patch[letter] == np.float32(0.98))
    assert letters == {"L", "R"}


def test_lung_zones_partition_each_lung_exactly(frontal_samples):
    for s in frontal_samples:
        for side in ("left", "right"):
            zones = [s.masks[f"lung_zone_{side}_{z}"] for z in ("upper", "middle", "lower")]
            assert np.array_equal(np.logical_or.reduce(zones), s.masks[f"{side}_lung"])
            assert int(sum(z.sum() for z in zones)) == int(s.masks[f"{side}_lung"].sum())
            tops = [np.nonzero(z)[0].mean() for z in zones]
            assert tops[0] < tops[1] < tops[2]


def test_rib_masks_union_and_heart_outside_lungs(frontal_samples):
    for s in frontal_samples:
        union = np.logical_or.reduce(
            [s.masks[f"rib_{side}_{k}"] for side in ("left", "right") for k in range(1, 11)]
        )
        assert np.array_equal(union, s.masks["ribs"])
        assert not (s.masks["heart"] & s.masks["left_lung"]).any()
        assert not (s.masks["heart"] & s.masks["right_lung"]).any()


def cardiothoracic_ratio(masks: dict[str, np.ndarray]) -> float:
    """Heart width over the thoracic width between the lungs' outer edges (from masks)."""
    heart_cols = np.nonzero(masks["heart"].any(axis=0))[0]
    lung_cols = np.nonzero((masks["left_lung"] | masks["right_lung"]).any(axis=0))[0]
    return (heart_cols.max() - heart_cols.min() + 1) / (lung_cols.max() - lung_cols.min() + 1)


@pytest.mark.parametrize("view", FRONTAL)
def test_ctr_from_masks_exceeds_half_iff_cardiomegaly(view):
    samples = _samples(view, n=24, size=224, seed=5, cardiomegaly=0.5)
    labels = [s.labels["cardiomegaly"] for s in samples]
    assert 0 < sum(labels) < len(labels)
    for s in samples:
        ratio = cardiothoracic_ratio(s.masks)
        assert (ratio > 0.5) == bool(s.labels["cardiomegaly"]), (ratio, s.findings)


def test_images_show_dark_lungs_bright_heart_and_ribs(frontal_samples):
    for s in frontal_samples:
        lungs = s.masks["left_lung"] | s.masks["right_lung"]
        lung_level = s.image[lungs].mean()
        assert s.image[s.masks["heart"]].mean() > lung_level + 0.1
        # Ribs are brighter than the intercostal lung just above and below them (local contrast).
        ribs, image = s.masks["ribs"], s.image
        k = max(2, round(0.02 * image.shape[0]))
        centre = (lungs & ribs)[k:-k]
        gaps = (lungs & ~ribs)[: -2 * k] & (lungs & ~ribs)[2 * k :]
        select = centre & gaps
        neighbours = 0.5 * (image[: -2 * k] + image[2 * k :])
        assert select.sum() > 20
        assert (image[k:-k] - neighbours)[select].mean() > 0.01


def test_masks_are_resolution_independent():
    """The same phantom at two sizes: structure area fractions agree (vector geometry)."""
    small = render_phantom(3, seed=2, config=PhantomConfig(size=128))
    large = render_phantom(3, seed=2, config=PhantomConfig(size=384))
    for name in ("left_lung", "right_lung", "heart", "clavicle_left", "ribs"):
        a, b = small.masks[name].mean(), large.masks[name].mean()
        assert abs(a - b) < 0.1 * b + 0.002, name
    for name, (x, y) in small.landmarks.items():
        bx, by = large.landmarks[name]
        assert abs(x * 3 - bx) < 1e-3 and abs(y * 3 - by) < 1e-3, name


def test_lateral_view_ground_truth():
    samples = _samples("LATERAL", n=14, size=128)
    for s in samples:
        assert set(s.masks) == set(structures_for_view("LATERAL"))
        for name in REGION_FINDINGS:
            assert bool(s.masks[name].any()) == bool(s.labels[name]), name
        for side in ("left", "right"):
            assert _near(s.masks[f"{side}_lung"], s.landmarks[f"apex_{side}"])
            assert _near(s.masks[f"{side}_lung"], s.landmarks[f"costophrenic_angle_{side}"])
        assert _near(s.masks["heart"], s.landmarks["left_ventricle"])
        # Anterior is on the image left: the heart sits in front of the posterior recesses.
        heart_x = np.nonzero(s.masks["heart"])[1].mean()
        assert heart_x < s.landmarks["costophrenic_angle_left"][0]
        lungs = s.masks["left_lung"] | s.masks["right_lung"]
        assert s.image[lungs & ~s.masks["heart"]].mean() < s.image[s.masks["heart"]].mean()


@pytest.mark.parametrize("view", ("PA", "AP", "LATERAL"))
def test_each_finding_changes_the_pixels_where_its_mask_says(view):
    """Same phantom with one finding switched on vs none: the image changes, and for findings
    with a mask the change is concentrated in (a slightly dilated copy of) that mask."""
    from scipy import ndimage

    size = 128
    none = {name: 0.0 for name in FINDINGS}
    base_config = PhantomConfig(size=size, views=(view,), prevalence=none, noise=0.0)
    invisible_on_lateral = {"rib_fracture"}
    for name in FINDINGS:
        if (view == "LATERAL" and name in invisible_on_lateral) or name == "rib_fracture":
            continue  # rib fractures: see the resolution test below
        only = {**none, name: 1.0}
        if name == "chest_tube":
            only["support_devices"] = 1.0
        config = PhantomConfig(size=size, views=(view,), prevalence=only, noise=0.0)
        for index in (0, 1):
            with_finding = render_phantom(index, seed=4, config=config)
            baseline = render_phantom(index, seed=4, config=base_config)
            assert with_finding.labels[name] == 1 and baseline.labels[name] == 0
            change = np.abs(with_finding.image - baseline.image)
            assert change.max() > 0.02, (name, index, change.max())
            if name in REGION_FINDINGS:
                region = with_finding.masks[name]
                if name == "pneumothorax":  # the collapsed lung (denser) changes too
                    side = with_finding.findings[name]["side"]
                    region = region | with_finding.masks[f"{side}_lung"]
                    gap = with_finding.masks[name]
                    assert (with_finding.image - baseline.image)[gap].mean() < 0  # hyperlucent
                region = ndimage.binary_dilation(region, iterations=3)
                inside = change[region].sum() / change.sum()
                assert inside > 0.6, (name, index, inside)


def test_rib_fracture_needs_resolution():
    """A 0.5-3 mm fracture gap is lost at 128 px but shows at 512 px (thin finding)."""
    none = {name: 0.0 for name in FINDINGS}
    change = {}
    for size in (128, 512):
        on = PhantomConfig(size=size, prevalence={**none, "rib_fracture": 1.0}, noise=0.0)
        off = PhantomConfig(size=size, prevalence=none, noise=0.0)
        difference = (
            render_phantom(0, seed=4, config=on).image - render_phantom(0, seed=4, config=off).image
        )
        change[size] = float(np.abs(difference).max())
    assert change[512] > 0.02
    assert change[128] < 0.5 * change[512]
