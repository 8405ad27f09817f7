"""Patch correspondence between two X-rays (paper Fig. 3, A.3, A.4) and a landmark-transfer score.

The paper shows, qualitatively, that a query patch's embedding is most similar to the same
anatomy in another subject's image. We measure it: for every landmark of a query image, take the
patch under it, find the most cosine-similar patch of a target image (another subject, same view),
and compare that patch's centre with the target's true landmark: error in pixels of the target
image and the hit rate within r pixels, per landmark, over many pairs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from raddino.eval.model_frame import ModelFrame

DEFAULT_RADII: tuple[float, ...] = (8.0, 16.0, 32.0)


def patch_stride(grid_hw: tuple[int, int], input_hw: tuple[int, int]) -> tuple[float, float]:
    """Model-input pixels per patch along (x, y)."""
    return input_hw[1] / grid_hw[1], input_hw[0] / grid_hw[0]


def point_to_patch(
    points_xy: np.ndarray, stride_xy: tuple[float, float], grid_hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) (K, 2) of the patch under each model-frame point (K, 2), and which are inside."""
    points = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    cols = np.floor(points[:, 0] / stride_xy[0]).astype(np.int64)
    rows = np.floor(points[:, 1] / stride_xy[1]).astype(np.int64)
    inside = (rows >= 0) & (rows < grid_hw[0]) & (cols >= 0) & (cols < grid_hw[1])
    return np.stack([rows, cols], axis=1), inside


def patch_centres(rows_cols: np.ndarray, stride_xy: tuple[float, float]) -> np.ndarray:
    """Model-frame (x, y) of the centres of patches (K, 2) given as (row, col)."""
    rows_cols = np.asarray(rows_cols, dtype=np.float64).reshape(-1, 2)
    return np.stack(
        [(rows_cols[:, 1] + 0.5) * stride_xy[0], (rows_cols[:, 0] + 0.5) * stride_xy[1]], axis=1
    )


def similarity_maps(
    query_hwc: torch.Tensor, target_hwc: torch.Tensor, query_rows_cols: np.ndarray
) -> torch.Tensor:
    """Cosine similarity (K, h', w') of K query patches (row, col) to every target patch."""
    if query_hwc.ndim != 3 or target_hwc.ndim != 3:
        raise ValueError("patch grids must be (h, w, C)")
    if query_hwc.shape[-1] != target_hwc.shape[-1]:
        raise ValueError(
            f"query and target grids differ in width: {query_hwc.shape[-1]} vs "
            f"{target_hwc.shape[-1]}"
        )
    rows_cols = torch.as_tensor(np.asarray(query_rows_cols).reshape(-1, 2), dtype=torch.long)
    query_kc = F.normalize(query_hwc[rows_cols[:, 0], rows_cols[:, 1]].float(), dim=-1)
    target_hwc = F.normalize(target_hwc.float(), dim=-1)
    return torch.einsum("kc,hwc->khw", query_kc, target_hwc)


def match_points(
    query_hwc: torch.Tensor,
    target_hwc: torch.Tensor,
    query_points_xy: np.ndarray,
    input_hw: tuple[int, int],
) -> tuple[np.ndarray, torch.Tensor, np.ndarray]:
    """Best-matching target points for model-frame query points (K, 2).

    Pixel -> the patch under it -> argmax cosine similarity in the target -> that patch's centre.
    Returns (predicted model-frame points (K, 2), similarity maps (K, h, w), inside (K,)):
    points outside the query grid get NaN predictions and `inside` False.
    """
    grid_hw = tuple(query_hwc.shape[:2])
    stride = patch_stride(grid_hw, input_hw)
    rows_cols, inside = point_to_patch(query_points_xy, stride, grid_hw)
    predicted = np.full((len(rows_cols), 2), np.nan)
    target_grid = tuple(target_hwc.shape[:2])
    maps = torch.full((len(rows_cols), *target_grid), float("nan"))
    if inside.any():
        maps_inside = similarity_maps(query_hwc, target_hwc, rows_cols[inside])
        flat_best = maps_inside.flatten(1).argmax(dim=1).numpy()
        best = np.stack(np.unravel_index(flat_best, target_grid), axis=1)
        target_stride = patch_stride(target_grid, input_hw)
        predicted[inside] = patch_centres(best, target_stride)
        maps[torch.from_numpy(inside)] = maps_inside
    return predicted, maps, inside


def sample_pairs(
    subject_ids: Sequence[str],
    views: Sequence[str],
    n_pairs: int,
    rng: np.random.Generator,
    *,
    enumerate_below: int = 2_000,
) -> np.ndarray:
    """(P, 2) distinct ordered pairs (query, target): different subjects, same view.

    Up to `enumerate_below` images all admissible pairs are listed and P = min(n_pairs, all);
    above it pairs are drawn at random and rejected until n_pairs distinct ones are found.
    """
    subject_ids, views = np.asarray(subject_ids), np.asarray(views)

    def admissible(query: int, target: int) -> bool:
        return views[query] == views[target] and subject_ids[query] != subject_ids[target]

    count = len(views)
    if count <= enumerate_below:
        candidates = [(q, t) for q in range(count) for t in range(count) if admissible(q, t)]
        if not candidates:
            raise ValueError("no image pair of two different subjects with the same view")
        chosen = rng.choice(len(candidates), size=min(n_pairs, len(candidates)), replace=False)
        return np.asarray([candidates[k] for k in np.sort(chosen)], dtype=np.int64)
    found: set[tuple[int, int]] = set()
    for _ in range(100 * n_pairs):
        query, target = (int(v) for v in rng.integers(0, count, size=2))
        if admissible(query, target):
            found.add((query, target))
            if len(found) == n_pairs:
                break
    if not found:
        raise ValueError("no image pair of two different subjects with the same view")
    return np.asarray(sorted(found), dtype=np.int64)


def landmark_transfer(
    grids_nhwc: torch.Tensor,
    frames: Sequence[ModelFrame],
    landmarks: Sequence[Mapping[str, tuple[float, float]]],
    pairs: np.ndarray,
    radii: Sequence[float] = DEFAULT_RADII,
) -> dict[str, Any]:
    """Per-landmark transfer errors (pixels of the target image) and hit rates within `radii`.

    Also reports two references: the quantisation floor (error of a perfect patch match: the true
    target point to the centre of its own patch), which no patch-level method can beat, and the
    same-position baseline (predict the query point's model-frame position unchanged), which
    any useful embedding must beat.
    """
    if len(grids_nhwc) != len(frames) or len(frames) != len(landmarks):
        raise ValueError("grids, frames and landmarks must have one entry per image")
    errors: dict[str, list[float]] = {}
    floors: dict[str, list[float]] = {}
    unmoved: dict[str, list[float]] = {}
    skipped: dict[str, int] = {}
    for query, target in np.asarray(pairs, dtype=np.int64).reshape(-1, 2):
        shared = sorted(set(landmarks[query]) & set(landmarks[target]))
        if not shared:
            continue
        query_frame, target_frame = frames[query], frames[target]
        query_xy = query_frame.to_model(np.asarray([landmarks[query][n] for n in shared]))
        predicted, _, inside = match_points(
            grids_nhwc[query], grids_nhwc[target], query_xy, query_frame.out_hw
        )
        true_xy = np.asarray([landmarks[target][n] for n in shared], dtype=np.float64)
        predicted_xy = target_frame.to_image(predicted)
        grid_hw = tuple(grids_nhwc[target].shape[:2])
        stride = patch_stride(grid_hw, target_frame.out_hw)
        own_patch, _ = point_to_patch(target_frame.to_model(true_xy), stride, grid_hw)
        floor_xy = target_frame.to_image(patch_centres(own_patch, stride))
        unmoved_xy = target_frame.to_image(query_xy)
        for k, name in enumerate(shared):
            if not inside[k]:
                skipped[name] = skipped.get(name, 0) + 1
                continue
            errors.setdefault(name, []).append(float(np.linalg.norm(predicted_xy[k] - true_xy[k])))
            floors.setdefault(name, []).append(float(np.linalg.norm(floor_xy[k] - true_xy[k])))
            unmoved.setdefault(name, []).append(float(np.linalg.norm(unmoved_xy[k] - true_xy[k])))
    per_landmark = {
        name: _error_summary(errors[name], floors[name], unmoved[name], radii, skipped.get(name, 0))
        for name in sorted(errors)
    }
    all_errors = [e for name in errors for e in errors[name]]
    all_floors = [f for name in floors for f in floors[name]]
    all_unmoved = [u for name in unmoved for u in unmoved[name]]
    overall = _error_summary(all_errors, all_floors, all_unmoved, radii, sum(skipped.values()))
    return {"per_landmark": per_landmark, "overall": overall, "radii_px": list(radii)}


def _error_summary(
    errors: Sequence[float],
    floors: Sequence[float],
    unmoved: Sequence[float],
    radii: Sequence[float],
    skipped: int,
) -> dict[str, Any]:
    values = np.asarray(errors, dtype=np.float64)
    if values.size == 0:
        return {"n": 0, "skipped_outside_crop": skipped}
    return {
        "n": int(values.size),
        "mean_error_px": float(values.mean()),
        "median_error_px": float(np.median(values)),
        "hit_rate": {f"{r:g}": float((values <= r).mean()) for r in radii},
        "quantisation_floor_px": float(np.mean(floors)),
        "same_position_error_px": float(np.mean(unmoved)),
        "same_position_hit_rate": {
            f"{r:g}": float((np.asarray(unmoved) <= r).mean()) for r in radii
        },
        "skipped_outside_crop": skipped,
    }


def run_correspondence(
    data_dir: str,
    weights: str,
    *,
    n_pairs: int = 200,
    size: int | None = None,
    radii: Sequence[float] = DEFAULT_RADII,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 16,
    cache_dir: str | None = None,
    progress: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Landmark transfer over `n_pairs` random image pairs of a dataset folder with landmarks."""
    from raddino.data.dataset_folder import DatasetFolder
    from raddino.eval.model_frame import model_frame
    from raddino.eval.patch_grids import cached_patch_grids, load_patch_encoder

    if n_pairs < 1:
        raise ValueError(f"--pairs must be >= 1, got {n_pairs}")
    if not radii or any(r <= 0 for r in radii):
        raise ValueError(f"--radii must be positive numbers of pixels, got {list(radii)}")
    folder = DatasetFolder.open(data_dir)
    landmarks = [folder.landmarks_of(i) for i in range(len(folder))]
    if not any(landmarks):
        raise ValueError(f"--data {data_dir}: landmarks.csv is missing or empty")
    encoder = load_patch_encoder(weights, device)
    prep = encoder.preprocessing_at(size)
    image_shapes: dict[int, tuple[int, int]] = {}

    def read_and_note_shape(i: int) -> np.ndarray:
        image_hw = folder.read_image(i)
        image_shapes[i] = image_hw.shape
        return image_hw

    grids_nlchw = cached_patch_grids(
        encoder,
        folder,
        cache_dir,
        size=size,
        batch_size=batch_size,
        progress=progress,
        read_image=read_and_note_shape,
    )
    grids_nhwc = grids_nlchw[:, -1].permute(0, 2, 3, 1)
    frames = [  # shapes come from the extraction pass, or are read when grids were cached
        model_frame(image_shapes.get(i) or folder.read_image(i).shape, prep)
        for i in range(len(folder))
    ]
    rng = np.random.default_rng(seed)
    pairs = sample_pairs(folder.table["subject_id"], folder.table["view"], n_pairs, rng)
    scores = landmark_transfer(grids_nhwc, frames, landmarks, pairs, radii)
    metrics = {
        "task": "correspondence",
        "data": str(data_dir),
        "weights": weights,
        "n_pairs": int(len(pairs)),
        "model_input_hw": list(frames[0].out_hw),
        "grid_hw": list(grids_nhwc.shape[1:3]),
        **scores,
        "config": {"size": size, "seed": seed, "n_pairs_requested": n_pairs},
    }
    extras = {"folder": folder, "grids_nhwc": grids_nhwc, "frames": frames, "pairs": pairs}
    return metrics, extras
