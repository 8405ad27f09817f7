"""Figures of the dense evaluators: segmentation overlays (paper Fig. A.5), patch correspondence
(Fig. 3) and class-token attention maps (Fig. A.2).

Each function only draws what the library computed and returns the matplotlib Figure;
`save_png` writes one atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

TRUTH_COLOUR = "tab:green"  # paper Fig. A.5: green = ground truth, red = prediction
PREDICTION_COLOUR = "tab:red"


def _outline(ax, mask_hw: np.ndarray, colour: str) -> None:
    """Draw the boundary of a boolean mask (nothing for an empty one)."""
    if np.any(mask_hw):
        ax.contour(np.asarray(mask_hw, dtype=float), levels=[0.5], colors=colour, linewidths=1.0)


def _grey(ax, image_hw: np.ndarray) -> None:
    ax.imshow(image_hw, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def segmentation_overlay(
    images_hw: Sequence[np.ndarray],
    truth_shw: Sequence[np.ndarray],
    predicted_shw: Sequence[np.ndarray],
    structures: Sequence[str],
    *,
    dice_ns: np.ndarray | None = None,
    panel_inches: float = 2.2,
):
    """Rows = images, columns = structures: truth outlined in green, prediction in red.

    `truth_shw[i]` and `predicted_shw[i]` are boolean (S, H, W) in image i's frame; `dice_ns`
    (optional, (N, S)) is printed in each panel's title.
    """
    import matplotlib.pyplot as plt

    n_images, n_structures = len(images_hw), len(structures)
    if n_images == 0 or n_structures == 0:
        raise ValueError("segmentation_overlay needs at least one image and one structure")
    if len(truth_shw) != n_images or len(predicted_shw) != n_images:
        raise ValueError(
            f"{n_images} images but {len(truth_shw)} truth and {len(predicted_shw)} predicted masks"
        )
    fig, axes = plt.subplots(
        n_images,
        n_structures,
        figsize=(panel_inches * n_structures, panel_inches * n_images),
        squeeze=False,
    )
    for i in range(n_images):
        truth, predicted = np.asarray(truth_shw[i]), np.asarray(predicted_shw[i])
        expected = (n_structures, *np.asarray(images_hw[i]).shape)
        for name, masks in (("truth", truth), ("predicted", predicted)):
            if masks.shape != expected:
                raise ValueError(
                    f"image {i}: {name} masks have shape {masks.shape}, expected {expected}"
                )
        for k, structure in enumerate(structures):
            ax = axes[i, k]
            _grey(ax, images_hw[i])
            _outline(ax, truth[k], TRUTH_COLOUR)
            _outline(ax, predicted[k], PREDICTION_COLOUR)
            title = structure.replace("_", " ")
            if dice_ns is not None and np.isfinite(dice_ns[i, k]):
                title += f"\nDice {dice_ns[i, k]:.2f}"
            ax.set_title(title, fontsize=7)
    fig.tight_layout()
    return fig


def correspondence_figure(
    query_images_hw: Sequence[np.ndarray],
    target_images_hw: Sequence[np.ndarray],
    query_points_xy: np.ndarray,
    similarity_khw: np.ndarray,
    predicted_points_xy: np.ndarray,
    true_points_xy: np.ndarray | None = None,
    *,
    labels: Sequence[str] | None = None,
    map_extents: Sequence[tuple[float, float, float, float]] | None = None,
    panel_inches: float = 2.6,
):
    """One row per query point: the query with its point circled, the target with the cosine
    similarity heatmap (yellow = similar), the predicted point (x) and the true one (circle).

    Points are (K, 2) in each image's pixel coordinates; similarity maps (K, h, w) are stretched
    over `map_extents[k]` = (left, right, bottom, top) in target pixels (default: the whole image).
    """
    import matplotlib.pyplot as plt

    query_points_xy = np.asarray(query_points_xy, dtype=float).reshape(-1, 2)
    predicted_points_xy = np.asarray(predicted_points_xy, dtype=float).reshape(-1, 2)
    count = len(query_points_xy)
    if not (len(query_images_hw) == len(target_images_hw) == len(similarity_khw) == count):
        raise ValueError("need one query image, target image and similarity map per point")
    if len(predicted_points_xy) != count:
        raise ValueError(f"{len(predicted_points_xy)} predicted points for {count} queries")
    fig, axes = plt.subplots(count, 2, figsize=(2 * panel_inches, count * panel_inches))
    axes = np.asarray(axes).reshape(count, 2)
    for k in range(count):
        query_ax, target_ax = axes[k]
        _grey(query_ax, query_images_hw[k])
        query_ax.scatter(*query_points_xy[k], s=80, facecolors="none", edgecolors="yellow")
        height, width = np.asarray(target_images_hw[k]).shape
        _grey(target_ax, target_images_hw[k])
        target_ax.imshow(
            np.asarray(similarity_khw[k]),
            cmap="viridis",
            alpha=0.55,
            extent=map_extents[k] if map_extents is not None else (0, width, height, 0),
            interpolation="nearest",
        )
        target_ax.scatter(*predicted_points_xy[k], marker="x", s=60, c="red", label="predicted")
        if true_points_xy is not None:
            true_xy = np.asarray(true_points_xy, dtype=float).reshape(-1, 2)[k]
            target_ax.scatter(*true_xy, s=80, facecolors="none", edgecolors="cyan", label="true")
        if labels is not None:
            query_ax.set_title(f"query: {labels[k]}", fontsize=8)
        target_ax.set_title("target: similarity", fontsize=8)
    axes[0, 1].legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    return fig


def attention_figure(
    image_hw: np.ndarray,
    maps_khw: np.ndarray,
    *,
    heads: Sequence[int] | None = None,
    mask_hw: np.ndarray | None = None,
    panel_inches: float = 2.2,
):
    """The image, then one panel per head with its class-token attention over the image.

    `maps_khw` are per-head maps on the patch grid, stretched over the image; an optional
    finding mask is outlined in green.
    """
    import matplotlib.pyplot as plt

    maps_khw = np.asarray(maps_khw, dtype=float)
    if maps_khw.ndim != 3:
        raise ValueError(f"attention maps must be (heads, h, w), got shape {maps_khw.shape}")
    heads = list(range(maps_khw.shape[0])) if heads is None else list(heads)
    bad = [h for h in heads if not 0 <= h < maps_khw.shape[0]]
    if bad:
        raise ValueError(f"head(s) {bad} out of range: the maps have {maps_khw.shape[0]} heads")
    height, width = np.asarray(image_hw).shape
    fig, axes = plt.subplots(1, 1 + len(heads), figsize=(panel_inches * (1 + len(heads)), 2.4))
    axes = np.atleast_1d(axes)
    _grey(axes[0], image_hw)
    axes[0].set_title("image", fontsize=8)
    for ax, head in zip(axes[1:], heads, strict=True):
        _grey(ax, image_hw)
        ax.imshow(
            maps_khw[head],
            cmap="inferno",
            alpha=0.6,
            extent=(0, width, height, 0),
            interpolation="bilinear",
        )
        if mask_hw is not None:
            _outline(ax, mask_hw, TRUTH_COLOUR)
        ax.set_title(f"head {head}", fontsize=8)
    fig.tight_layout()
    return fig


def save_png(fig, path: str | os.PathLike, dpi: int = 120) -> None:
    """Save a figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    from raddino.utils import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
