"""Patch correspondence: exact matches on a known shift, the model frame's geometry, landmark
transfer on phantoms, the CLI and its errors."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from raddino.cli import main
from raddino.data.dataset_folder import write_phantom_folder
from raddino.data.phantom.config import LANDMARK_NAMES, PhantomConfig
from raddino.eval.correspondence import (
    landmark_transfer,
    match_points,
    point_to_patch,
    run_correspondence,
    sample_pairs,
    similarity_maps,
)
from raddino.eval.model_frame import model_frame
from raddino.models.preprocessing import RAD_DINO, preprocess, with_crop_size

PATCH = 14


@pytest.fixture(scope="session")
def landmark_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("correspondence") / "phantom"
    return write_phantom_folder(root, 12, PhantomConfig(size=112), seed=2, progress=False)


def _shifted_grids(shift_rows: int, shift_cols: int, grid_hw=(10, 12), channels=32, seed=0):
    """A random query grid and a target that is the query translated by whole patches."""
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn((*grid_hw, channels), generator=generator)
    target = torch.randn((*grid_hw, channels), generator=generator)  # fresh vectors elsewhere
    rows, cols = grid_hw
    target[shift_rows:, shift_cols:] = query[: rows - shift_rows, : cols - shift_cols]
    return query, target


def test_known_shift_lands_exactly_k_patches_away():
    shift_rows, shift_cols = 2, 3
    query, target = _shifted_grids(shift_rows, shift_cols)
    input_hw = (10 * PATCH, 12 * PATCH)
    rng = np.random.default_rng(0)
    # points anywhere inside patches whose translated patch lies in the target grid
    rows = rng.integers(0, 10 - shift_rows, size=20)
    cols = rng.integers(0, 12 - shift_cols, size=20)
    points = np.stack([(cols + rng.random(20)) * PATCH, (rows + rng.random(20)) * PATCH], 1)
    predicted, maps, inside = match_points(query, target, points, input_hw)
    assert inside.all()
    centres = np.stack([(cols + 0.5) * PATCH, (rows + 0.5) * PATCH], 1)
    np.testing.assert_allclose(predicted - centres, [[shift_cols * PATCH, shift_rows * PATCH]] * 20)
    assert maps.shape == (20, 10, 12)
    assert torch.allclose(maps.amax(dim=(1, 2)), torch.ones(20))  # the same vector: cosine 1


def test_landmark_error_on_a_known_shift_equals_the_quantisation_floor():
    shift_rows, shift_cols = 1, 2
    query, target = _shifted_grids(shift_rows, shift_cols, grid_hw=(8, 8))
    frame = model_frame((8 * PATCH, 8 * PATCH), with_crop_size(RAD_DINO, 8 * PATCH))
    query_points = {"a": (20.0, 30.0), "b": (50.5, 41.0), "c": (7.0, 60.0)}
    shift_xy = np.array([shift_cols * PATCH, shift_rows * PATCH])
    target_points = {k: tuple(np.asarray(v) + shift_xy) for k, v in query_points.items()}
    grids = torch.stack([query, target])
    scores = landmark_transfer(grids, [frame, frame], [query_points, target_points], [[0, 1]])
    for name, (x, y) in query_points.items():
        stats = scores["per_landmark"][name]
        centre = ((np.floor(x / PATCH) + 0.5) * PATCH, (np.floor(y / PATCH) + 0.5) * PATCH)
        expected = float(np.hypot(centre[0] - x, centre[1] - y))
        assert stats["mean_error_px"] == pytest.approx(expected)
        assert stats["quantisation_floor_px"] == pytest.approx(expected)
        assert stats["same_position_error_px"] == pytest.approx(np.hypot(*shift_xy))
    assert scores["overall"]["n"] == 3
    assert scores["overall"]["hit_rate"]["16"] == 1.0  # within half a patch diagonal (9.9 px)


def test_points_outside_the_grid_are_flagged_not_matched():
    query, target = _shifted_grids(0, 0, grid_hw=(4, 4))
    points = np.array([[5.0, 5.0], [-1.0, 3.0], [4 * PATCH + 1.0, 2.0]])
    predicted, maps, inside = match_points(query, target, points, (4 * PATCH, 4 * PATCH))
    assert inside.tolist() == [True, False, False]
    assert np.isnan(predicted[1:]).all() and torch.isnan(maps[1:]).all()
    np.testing.assert_allclose(predicted[0], [7.0, 7.0])


def test_similarity_maps_are_cosines():
    generator = torch.Generator().manual_seed(1)
    query, target = (
        torch.randn(3, 3, 5, generator=generator),
        torch.randn(2, 4, 5, generator=generator),
    )
    maps = similarity_maps(query, target, np.array([[1, 2]]))
    expected = torch.nn.functional.cosine_similarity(query[1, 2][None, None], target, dim=-1)
    torch.testing.assert_close(maps[0], expected)
    with pytest.raises(ValueError, match="differ in width"):
        similarity_maps(query, torch.randn(2, 2, 4), np.array([[0, 0]]))


def test_point_to_patch_floors():
    rows_cols, inside = point_to_patch(np.array([[13.9, 14.0], [0.0, 27.99]]), (14, 14), (2, 2))
    assert rows_cols.tolist() == [[1, 0], [1, 0]] and inside.all()


def test_model_frame_maps_points_and_masks_like_the_image():
    # A wide image: resized so the short side is 56, then centre-cropped to 56 x 56.
    prep = with_crop_size(RAD_DINO, 56)
    image = np.zeros((100, 200), dtype=np.float32)
    image[40:60, 90:130] = 1.0  # a bright box
    frame = model_frame(image.shape, prep)
    assert frame.resized_hw == (56, 112) and frame.crop_top_left == (0, 28)
    plain = preprocess(image, prep)[0].numpy() * RAD_DINO.std[0] + RAD_DINO.mean[0]
    mask = frame.transform_mask(image > 0.5)
    # the transformed mask covers the bright box of the preprocessed image
    assert (plain[mask] > 0.5).mean() > 0.95 and (plain[~mask] < 0.5).mean() > 0.95
    corners = np.array([[90.0, 40.0], [130.0, 60.0]])
    np.testing.assert_allclose(frame.to_model(corners), [[22.4, 22.4], [44.8, 33.6]])
    np.testing.assert_allclose(frame.to_image(frame.to_model(corners)), corners)
    with pytest.raises(ValueError, match="mask size"):
        frame.transform_mask(np.zeros((10, 10), dtype=bool))


def test_model_frame_pads_small_images_like_preprocessing():
    prep = with_crop_size(RAD_DINO, 56)
    frame = model_frame((40, 50), replace(prep, resize_shortest_edge=None))
    assert frame.crop_top_left == (-8, -3)  # PIL backend: the odd pixel goes before the image
    mask = np.ones((40, 50), dtype=bool)
    out = frame.transform_mask(mask)
    assert out.sum() == 40 * 50 and out[8:48, 3:53].all()


def test_sample_pairs_are_different_subjects_same_view():
    subjects = ["a", "a", "b", "b", "c"]
    views = ["PA", "PA", "PA", "LATERAL", "PA"]
    pairs = sample_pairs(subjects, views, 100, np.random.default_rng(0))
    for query, target in pairs:
        assert subjects[query] != subjects[target] and views[query] == views[target]
    assert len(pairs) == 10  # every admissible ordered pair when more are asked for
    with pytest.raises(ValueError, match="no image pair"):
        sample_pairs(["a", "a"], ["PA", "PA"], 3, np.random.default_rng(0))
    # large datasets: random draws with rejection, still distinct and admissible
    drawn = sample_pairs(subjects, views, 6, np.random.default_rng(0), enumerate_below=0)
    assert len(drawn) == 6 and len({tuple(p) for p in drawn}) == 6
    assert {tuple(p) for p in drawn} <= {tuple(p) for p in pairs}


def test_run_correspondence_on_phantoms(landmark_folder):
    metrics, extras = run_correspondence(
        str(landmark_folder.root), "random:vit_pico", n_pairs=10, size=112, progress=False
    )
    assert metrics["n_pairs"] == 10 and metrics["grid_hw"] == [8, 8]
    assert set(metrics["per_landmark"]) <= set(LANDMARK_NAMES)
    overall = metrics["overall"]
    assert overall["n"] == sum(s["n"] for s in metrics["per_landmark"].values())
    assert 0 <= overall["hit_rate"]["32"] <= 1 and overall["quantisation_floor_px"] < 10
    assert extras["grids_nhwc"].shape == (12, 8, 8, 64)


def test_cli_correspond_writes_metrics_and_figure(landmark_folder, tmp_path):
    out, figure = tmp_path / "corr.json", tmp_path / "corr.png"
    argv = [
        "correspond",
        "--data", str(landmark_folder.root),
        "--weights", "random:vit_pico",
        "--size", "112",
        "--pairs", "5",
        "--radii", "10,20",
        "--out", str(out),
        "--figure", str(figure),
        "--cache", str(tmp_path / "cache"),
    ]  # fmt: skip
    code = main(argv)
    assert code == 0
    record = json.loads(out.read_text())
    assert record["evaluation"] == "correspondence"
    assert set(record["metrics"]["overall"]["hit_rate"]) == {"10", "20"}
    with Image.open(figure) as image:
        assert image.format == "PNG"
    # a rerun from the feature cache gives the same numbers
    again = tmp_path / "again.json"
    argv = [a if a != str(out) else str(again) for a in argv if a != "--figure"]
    argv.remove(str(figure))
    assert main(argv) == 0
    assert json.loads(again.read_text())["metrics"] == record["metrics"]
    assert len(list((tmp_path / "cache").glob("patch-grids-*.safetensors"))) == 1


def test_cli_correspond_errors(landmark_folder, tmp_path, capsys):
    args = ["correspond", "--data", str(landmark_folder.root), "--weights", "random:vit_pico"]
    assert main([*args, "--radii", "-1", "--out", str(tmp_path / "m.json")]) == 2
    assert "--radii" in capsys.readouterr().err
    assert main([*args, "--pairs", "0", "--out", str(tmp_path / "m.json")]) == 2
    assert "--pairs" in capsys.readouterr().err
    no_landmarks = tmp_path / "plain"
    write_phantom_folder(no_landmarks, 2, PhantomConfig(size=64), seed=0, progress=False)
    (no_landmarks / "landmarks.csv").unlink()
    code = main(
        ["correspond", "--data", str(no_landmarks), "--weights", "random:vit_pico",
         "--out", str(tmp_path / "m.json")]
    )  # fmt: skip
    assert code == 2 and "landmarks" in capsys.readouterr().err
