"""Phantom renderer: config validation, determinism, subjects, image format, prevalences."""

from __future__ import annotations

import json

import numpy as np
import pytest

from raddino.data.phantom import (
    FINDINGS,
    VIEWS,
    PhantomConfig,
    findings_for_view,
    landmarks_for_view,
    render_phantom,
    structures_for_view,
)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"size": 31}, "size"),
        ({"size": 224.0}, "size"),
        ({"size": "224"}, "size"),
        ({"views": ("PA", "OBLIQUE")}, "views"),
        ({"views": ()}, "views"),
        ({"prevalence": {"pneumonia": 0.2}}, "pneumonia"),
        ({"prevalence": {"nodule": 1.5}}, "nodule"),
        ({"prevalence": {"nodule": -0.1}}, "nodule"),
        ({"prevalence": {"chest_tube": 0.5, "support_devices": 0.2}}, "support_devices"),
        ({"images_per_subject": 0}, "images_per_subject"),
        ({"with_masks": "yes"}, "with_masks"),
        ({"view_weights": {"AP": 1.0}}, "view_weights"),
        ({"max_rotation_deg": -1.0}, "max_rotation_deg"),
    ],
)
def test_bad_config_raises_value_error_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PhantomConfig(**kwargs)


def test_config_round_trips_through_json():
    config = PhantomConfig(
        size=96, views=("PA", "LATERAL"), prevalence={"nodule": 0.4}, view_weights={"PA": 3}
    )
    data = json.loads(json.dumps(config.to_dict()))
    again = PhantomConfig.from_dict(data)
    assert again.to_dict() == config.to_dict()
    assert again.prevalence["nodule"] == 0.4
    assert hash(again) == hash(config) and again == config  # usable as a cache key
    assert set(again.prevalence) == set(FINDINGS)
    with pytest.raises(ValueError, match="colour"):
        PhantomConfig.from_dict({**data, "colour": "blue"})


def test_render_rejects_bad_arguments():
    config = PhantomConfig(size=64)
    with pytest.raises(ValueError, match="index"):
        render_phantom(-1, seed=0, config=config)
    with pytest.raises(ValueError, match="seed"):
        render_phantom(0, seed=-1, config=config)
    with pytest.raises(ValueError, match="config"):
        render_phantom(0, seed=0, config={"size": 64})


def _assert_same(a, b):
    assert np.array_equal(a.image, b.image)
    assert a.labels == b.labels and a.findings == b.findings and a.metadata == b.metadata
    assert a.landmarks == b.landmarks
    assert a.masks.keys() == b.masks.keys()
    for name in a.masks:
        assert np.array_equal(a.masks[name], b.masks[name]), name


@pytest.mark.parametrize("view", VIEWS)
def test_rendering_is_deterministic(view):
    config = PhantomConfig(size=96, views=(view,))
    for index in (0, 7):
        _assert_same(
            render_phantom(index, seed=3, config=config),
            render_phantom(index, seed=3, config=config),
        )
    other = render_phantom(0, seed=4, config=config)
    assert not np.array_equal(other.image, render_phantom(0, seed=3, config=config).image)


def test_order_of_rendering_does_not_matter():
    config = PhantomConfig(size=64, views=VIEWS)
    forward = [render_phantom(i, seed=9, config=config) for i in range(6)]
    for i in reversed(range(6)):
        _assert_same(render_phantom(i, seed=9, config=config), forward[i])


def test_consecutive_indices_share_a_subject():
    config = PhantomConfig(size=64, images_per_subject=3)
    samples = [render_phantom(i, seed=1, config=config) for i in range(6)]
    keys = ("subject_id", "sex", "age", "height_cm", "weight_kg", "bmi")
    ids = [s.metadata["subject_id"] for s in samples]
    assert ids[0] == ids[1] == ids[2] != ids[3] == ids[4] == ids[5]
    for a, b in ((0, 1), (3, 5)):
        assert all(samples[a].metadata[k] == samples[b].metadata[k] for k in keys)
    # Chronic findings belong to the subject, so they repeat across its images.
    chronic = ("cardiomegaly", "nodule", "fibrosis", "tuberculosis", "rib_fracture")
    assert [samples[0].labels[c] for c in chronic] == [samples[2].labels[c] for c in chronic]


@pytest.mark.parametrize("view", VIEWS)
def test_sample_format(view):
    size = 80
    s = render_phantom(2, seed=0, config=PhantomConfig(size=size, views=(view,)))
    assert s.image.dtype == np.float32 and s.image.shape == (size, size)
    assert 0.0 <= s.image.min() and s.image.max() <= 1.0
    assert s.metadata["view"] == view
    assert s.metadata["sex"] in ("M", "F")
    assert 18 <= s.metadata["age"] <= 95
    bmi = s.metadata["weight_kg"] / (s.metadata["height_cm"] / 100) ** 2
    assert abs(bmi - s.metadata["bmi"]) < 0.2
    assert set(s.masks) == set(structures_for_view(view))
    assert set(s.landmarks) == set(landmarks_for_view(view))
    json.dumps({"findings": s.findings, "metadata": s.metadata})  # JSON-friendly ground truth
    no_masks = render_phantom(
        2, seed=0, config=PhantomConfig(size=size, views=(view,), with_masks=False)
    )
    assert no_masks.masks == {}
    assert np.array_equal(no_masks.image, s.image)


def test_prevalence_zero_and_one():
    none = PhantomConfig(size=48, prevalence={name: 0.0 for name in FINDINGS})
    every = PhantomConfig(size=48, prevalence={name: 1.0 for name in FINDINGS})
    for i in range(3):
        assert sum(render_phantom(i, seed=0, config=none).labels.values()) == 0
        assert all(render_phantom(i, seed=0, config=every).labels.values())


def test_empirical_prevalence_and_view_weights():
    config = PhantomConfig(
        size=32,
        views=("PA", "AP"),
        view_weights={"PA": 3.0, "AP": 1.0},
        with_masks=False,
        prevalence={"pleural_effusion": 0.3},
    )
    samples = [render_phantom(i, seed=0, config=config) for i in range(300)]
    effusion = np.mean([s.labels["pleural_effusion"] for s in samples])
    pa_share = np.mean([s.metadata["view"] == "PA" for s in samples])
    assert abs(effusion - 0.3) < 0.08
    assert abs(pa_share - 0.75) < 0.08


def test_metadata_shows_in_pixels():
    """Sex and BMI leave visible traces: women's breast shadows, thicker soft tissue with BMI."""
    config = PhantomConfig(
        size=64, with_masks=False, noise=0.0, prevalence={name: 0.0 for name in FINDINGS}
    )
    samples = [render_phantom(2 * i, seed=0, config=config) for i in range(60)]
    bmi = np.array([s.metadata["bmi"] for s in samples])
    # Mean brightness of the lower chest, where soft tissue and breasts add density.
    lower = np.array([s.image[36:52, 8:56].mean() for s in samples])
    assert np.corrcoef(bmi, lower)[0, 1] > 0.3


def test_config_pickles_for_dataloader_workers():
    import pickle

    config = PhantomConfig(size=64, views=("PA", "AP"), prevalence={"nodule": 0.4})
    again = pickle.loads(pickle.dumps(config))
    assert again.to_dict() == config.to_dict()
    assert np.array_equal(
        render_phantom(1, seed=0, config=again).image,
        render_phantom(1, seed=0, config=config).image,
    )


def test_thin_lines_keep_their_integral_but_fade_at_low_resolution():
    """Sub-pixel lines (tubes, pleural lines) are dimmed by width/pixel, as a detector averages."""
    from raddino.data.phantom.lesions import thin_line
    from raddino.data.phantom.scene import Scene

    profiles = {}
    for size in (128, 1024):
        scene = Scene(size, with_masks=False)
        distance = np.abs(scene.canvas.centres - np.float32(0.5003))
        profiles[size] = thin_line(scene, distance, width=0.004)
    integrals = {size: float(p.sum()) / size for size, p in profiles.items()}
    assert abs(integrals[128] - integrals[1024]) < 0.05 * integrals[1024]
    assert profiles[128].max() < 0.6 * profiles[1024].max()


def test_large_image_renders_with_detector_blur():
    s = render_phantom(0, seed=0, config=PhantomConfig(size=1024, with_masks=False))
    assert s.image.shape == (1024, 1024) and s.image.dtype == np.float32
    assert 0.0 <= s.image.min() and s.image.max() <= 1.0


def test_allocator_tuning_is_optional_and_harmless():
    from raddino.data.phantom import tune_allocator_for_rendering

    assert isinstance(tune_allocator_for_rendering(), bool)


@pytest.mark.parametrize("size", [64, 224])
def test_image_warp_matches_scipy_bilinear_through_the_mask_affine(size):
    """The image warp (torch grid_sample) = scipy's order-1 map_coordinates at the very source
    positions the masks use, so image and ground truth share one affine."""
    from scipy import ndimage

    from raddino.data.phantom.imaging import sample_acquisition, source_positions, warp_image

    config = PhantomConfig(size=size, max_rotation_deg=10.0, max_shift=0.1, max_scale_change=0.2)
    canonical = np.random.default_rng(7).random((size, size), dtype=np.float32)
    for k in range(4):
        acquisition = sample_acquisition(np.random.default_rng(k), config, "PA")
        rows, cols = source_positions(size, acquisition)
        expected = ndimage.map_coordinates(
            canonical.astype(np.float64), [rows - 0.5, cols - 0.5], order=1, mode="nearest"
        )
        warped = warp_image(canonical, acquisition)
        assert warped.shape == (size, size) and warped.dtype == np.float32
        np.testing.assert_allclose(warped, expected, atol=2e-4)


@pytest.mark.parametrize("size", [32, 224, 518])
def test_capped_segment_distance_equals_the_full_distance_clipped(size):
    """The windowed per-segment path (long tubes) agrees with the all-segments path."""
    from raddino.data.phantom.raster import Canvas, segment_distance

    canvas = Canvas(size)
    rng = np.random.default_rng(size)
    box = canvas.box(0.1, 0.9, 0.05, 0.95)
    for _ in range(10):
        points = rng.random((int(rng.integers(2, 14)), 2)).astype(np.float32) * 0.6 + 0.2
        full = segment_distance(box, points)
        for reach in (0.002, 0.01, 0.05):
            capped = segment_distance(box, points, reach)
            np.testing.assert_allclose(capped, np.minimum(full, reach), atol=3e-6)


@pytest.mark.parametrize("view", VIEWS)
def test_findings_for_view_are_exactly_the_findings_the_view_draws(view):
    """Each finding alone changes the pixels of its view iff `findings_for_view` lists it."""

    def alone(finding):
        prevalence = {name: 0.0 for name in FINDINGS}
        if finding is not None:
            prevalence[finding] = 1.0
        if finding == "chest_tube":  # a chest tube is a support device
            prevalence["support_devices"] = 1.0
        config = PhantomConfig(size=64, views=(view,), with_masks=False, prevalence=prevalence)
        return render_phantom(0, seed=0, config=config).image

    without = alone(None)
    changed = [f for f in FINDINGS if not np.array_equal(alone(f), without)]
    assert changed == list(findings_for_view(view))
    assert ("rib_fracture" in changed) == (view != "LATERAL")
