"""The live patch explorer: its pure logic against brute-force numpy, and the widget's wiring
(controls set programmatically, no browser)."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from raddino.viz.explorer_widget import (
    HEATMAP_ALPHA,
    PatchExplorer,
    PatchFeatureStore,
    click_to_patch,
    kernel_has_interactive_frontend,
    render_overlay_png,
    top_k_patches,
)

SIZE = 56  # vit_pico (patch 14): a 4 x 4 grid
ENCODERS = {"pico": "random:vit_pico", "pico seed 1": "random:vit_pico@1"}


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.random((60, 56)).astype(np.float32) for _ in range(3)]


@pytest.fixture(scope="module")
def store(images):
    torch.set_num_threads(1)
    return PatchFeatureStore(images, ENCODERS, layers=2, size=SIZE)


def _numpy_cosine(grids_nlchw, layer, query, row, col, target):
    grids = grids_nlchw.numpy().astype(np.float64)
    query_c = grids[query, layer, :, row, col]
    target_chw = grids[target, layer]
    dots_hw = np.einsum("c,chw->hw", query_c, target_chw)
    return dots_hw / (np.linalg.norm(query_c) * np.linalg.norm(target_chw, axis=0))


def test_a_patch_is_most_similar_to_itself_on_the_same_image(store):
    assert store.grid_hw("pico") == (4, 4)
    for row, col in [(0, 0), (1, 2), (3, 3)]:
        sims_hw = store.similarity(
            encoder="pico", layer=-1, query_image=1, query_row=row, query_col=col, target_image=1
        )
        assert sims_hw[row, col] == pytest.approx(1.0, abs=1e-5)
        assert np.unravel_index(np.argmax(sims_hw), sims_hw.shape) == (row, col)


def test_similarity_matches_brute_force_numpy(store):
    for layer in (0, 1):
        sims_hw = store.similarity(
            encoder="pico", layer=layer, query_image=0, query_row=2, query_col=1, target_image=2
        )
        expected = _numpy_cosine(store.grids("pico"), layer, 0, 2, 1, 2)
        np.testing.assert_allclose(sims_hw, expected, atol=1e-5)


def test_an_encoder_object_gives_the_same_map_as_its_spec(images, store):
    from raddino.models.encoders import get_encoder

    by_object = PatchFeatureStore(
        images, {"x": get_encoder("random:vit_pico")}, layers=2, size=SIZE
    )
    args = dict(layer=0, query_image=0, query_row=1, query_col=1, target_image=2)
    np.testing.assert_array_equal(
        by_object.similarity(encoder="x", **args), store.similarity(encoder="pico", **args)
    )


def test_switching_encoder_or_layer_changes_the_map(store):
    args = dict(query_image=0, query_row=1, query_col=2, target_image=1)
    deep = store.similarity(encoder="pico", layer=1, **args)
    shallow = store.similarity(encoder="pico", layer=0, **args)
    other = store.similarity(encoder="pico seed 1", layer=1, **args)
    assert np.abs(deep - shallow).max() > 1e-2
    assert np.abs(deep - other).max() > 1e-2
    assert store.layer_labels("pico") == ["block 0", "block 1"]  # vit_pico has 2 blocks


def _brute_force_top_k(sims_hw, k, exclude=None):
    """All patches sorted by similarity (ties: row-major), the excluded one left out."""
    h, w = sims_hw.shape
    candidates = [(float(sims_hw[r, c]), r, c) for r in range(h) for c in range(w)]
    ranked = sorted(candidates, key=lambda item: (-item[0], item[1], item[2]))
    return [(s, r, c) for s, r, c in ranked if (r, c) != exclude][:k]


def test_top_k_is_sorted_and_matches_brute_force():
    rng = np.random.default_rng(1)
    sims_hw = np.round(rng.uniform(-1, 1, size=(5, 7)), 1)  # rounding makes ties
    for k, exclude in [(1, None), (6, None), (6, (2, 3)), (35, (0, 0)), (100, None)]:
        got = top_k_patches(sims_hw, k, exclude=exclude)
        cosines = [m.cosine for m in got]
        assert cosines == sorted(cosines, reverse=True)
        expected = _brute_force_top_k(sims_hw, k, exclude)
        assert [(m.cosine, m.row, m.col) for m in got] == expected
        assert exclude not in [(m.row, m.col) for m in got]


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda s: s.grids("nope"), "encoder='nope'"),
        (lambda s: s.patch_grid("pico", 2, 0), "layer=2"),
        (lambda s: s.patch_grid("pico", -3, 0), "layer=-3"),
        (lambda s: s.patch_grid("pico", 0.5, 0), "layer=0.5"),
        (
            lambda s: s.similarity(
                encoder="pico", layer=0, query_image=3, query_row=0, query_col=0, target_image=0
            ),
            "query_image=3",
        ),
        (
            lambda s: s.similarity(
                encoder="pico", layer=0, query_image=0, query_row=0, query_col=0, target_image=-4
            ),
            "target_image=-4",
        ),
        (
            lambda s: s.similarity(
                encoder="pico", layer=0, query_image=0, query_row=4, query_col=0, target_image=0
            ),
            "query_row=4",
        ),
        (
            lambda s: s.similarity(
                encoder="pico", layer=0, query_image=0, query_row=0, query_col=9, target_image=0
            ),
            "query_col=9",
        ),
    ],
)
def test_bad_indices_name_the_argument(store, call, argument):
    with pytest.raises(ValueError, match=argument.replace("(", r"\(").replace(".", r"\.")):
        call(store)


def test_bad_construction_arguments_raise_clear_errors(images):
    with pytest.raises(ValueError, match=r"images\[1\] must be \(H, W\)"):
        PatchFeatureStore([images[0], np.zeros((2, 3, 3))], ENCODERS)
    with pytest.raises(ValueError, match=r"images\[0\] contains NaN"):
        PatchFeatureStore([np.full((4, 4), np.nan)], ENCODERS)
    with pytest.raises(ValueError, match="layers=0"):
        PatchFeatureStore(images, ENCODERS, layers=0)
    with pytest.raises(ValueError, match="encoders"):
        PatchFeatureStore(images, {})
    with pytest.raises(ValueError, match="k=0"):
        top_k_patches(np.zeros((2, 2)), 0)
    with pytest.raises(ValueError, match="exclude col=2"):
        top_k_patches(np.zeros((2, 2)), 1, exclude=(0, 2))
    with pytest.raises(ValueError, match="value_range"):
        render_overlay_png(
            np.zeros((4, 4)), (2, 2), similarity_hw=np.zeros((2, 2)), value_range=(1, 1)
        )
    with pytest.raises(ValueError, match="names: 2 names for 3 images"):
        PatchExplorer(images, ENCODERS, names=["a", "b"], size=SIZE, progress=False)


def test_render_colours_each_patch_by_the_colormap():
    sims_hw = np.array([[-1.0, -0.5, 0.0], [0.25, 0.5, 1.0]])
    png = render_overlay_png(np.zeros((30, 45)), (2, 3), similarity_hw=sims_hw, display_px=60)
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)
    assert rgb.shape == (40, 60, 3)  # 20 px per patch, whole cells
    lut = matplotlib.colormaps["inferno"]
    for r in range(2):
        for c in range(3):
            expected = HEATMAP_ALPHA * np.asarray(lut((sims_hw[r, c] + 1) / 2)[:3]) * 255
            np.testing.assert_allclose(rgb[r * 20 + 10, c * 20 + 10], expected, atol=1.01)
    with pytest.raises(ValueError, match="similarity_hw has shape"):
        render_overlay_png(np.zeros((30, 45)), (3, 3), similarity_hw=sims_hw)


def test_click_to_patch_maps_view_pixels_to_the_grid():
    assert click_to_patch(0, 0, 256, 256, (16, 16)) == (0, 0)
    assert click_to_patch(255.9, 17, 256, 256, (16, 16)) == (1, 15)
    assert click_to_patch(300, 300, 256, 256, (16, 16)) == (15, 15)  # clamped
    assert click_to_patch(99, 10, 100, 50, (2, 4)) == (0, 3)
    with pytest.raises(ValueError, match="view size"):
        click_to_patch(1, 1, 0, 10, (4, 4))


def test_widget_redraws_when_controls_change(images):
    explorer = PatchExplorer(
        images, ENCODERS, names=["a", "b", "c"], layers=2, size=SIZE, progress=False
    )
    store = explorer.store

    def shown_matches_store():
        expected = store.similarity(
            encoder=explorer.encoder.value,
            layer=explorer.layer.value,
            query_image=explorer.query.value,
            query_row=explorer.row.value,
            query_col=explorer.col.value,
            target_image=explorer.target.value,
        )
        np.testing.assert_array_equal(explorer.similarity_hw, expected)

    shown_matches_store()
    seen = {explorer.target_view.value}
    for control, value in [
        (explorer.row, 0),
        (explorer.col, 3),
        (explorer.layer, 0),
        (explorer.encoder, "pico seed 1"),
        (explorer.target, 2),
    ]:
        control.value = value
        shown_matches_store()
        assert explorer.target_view.value not in seen, f"{control.description} changed nothing"
        seen.add(explorer.target_view.value)
    assert explorer.layer.value == 0  # the layer survives an encoder switch
    query_png = explorer.query_view.value
    explorer.select_patch(3, 0)
    assert (explorer.row.value, explorer.col.value) == (3, 0)
    assert explorer.query_view.value != query_png  # the query mark moved
    explorer.target.value = explorer.query.value
    assert (3, 0) not in [(m.row, m.col) for m in explorer.matches]  # own patch left out
    assert len(explorer.matches) == explorer.top_k.value
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    with pytest.raises(ValueError, match="row=4"):
        explorer.select_patch(4, 0)


def test_click_events_select_the_patch_under_the_pointer(images):
    explorer = PatchExplorer(
        images, {"pico": "random:vit_pico"}, layers=1, size=SIZE, progress=False
    )
    explorer.on_click({"dataX": 200, "dataY": 10})  # 256 px -> 64 px per patch of 4
    assert (explorer.row.value, explorer.col.value) == (0, 3)
    explorer.on_click(
        {"relativeX": 10, "relativeY": 90, "boundingRectWidth": 100, "boundingRectHeight": 100}
    )
    assert (explorer.row.value, explorer.col.value) == (3, 0)


def test_no_interactive_frontend_outside_a_kernel():
    assert kernel_has_interactive_frontend() is False


def test_encoder_switch_keeps_the_query_patch_place_across_grid_sizes(images):
    explorer = PatchExplorer(
        images, {"pico": "random:vit_pico", "pixels": "pixels:8"}, layers=4, progress=False
    )
    assert explorer.store.layer_labels("pico") == ["block 0", "block 1"]  # only 2 blocks
    assert explorer.store.layer_labels("pixels") == ["pixels"]
    assert explorer.store.grids("pico").shape[1] == 2
    assert explorer.layer.value == 1  # the deepest by default
    assert explorer.store.grid_hw("pico") == (37, 37)  # native 518 px input
    explorer.select_patch(30, 5)
    explorer.encoder.value = "pixels"
    assert (explorer.row.max, explorer.col.max) == (7, 7)
    assert (explorer.row.value, explorer.col.value) == (6, 1)  # same place, coarser grid:
    # the centre of patch 30 of 37 lies in patch 6 of 8 (30.5 / 37 * 8 = 6.6)
    assert explorer.similarity_hw.shape == (8, 8)
    assert explorer.layer.options == (("pixels", 0),)
    explorer.encoder.value = "pico"
    assert (explorer.row.value, explorer.col.value) == (30, 6)  # 6.5 / 8 * 37 = 30.06
    assert explorer.layer.value == 1  # back to the deepest block
