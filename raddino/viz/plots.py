"""Matplotlib figures the chapters share: galleries, ground-truth overlays, ours-vs-paper bars.

Each function draws only; data and numbers come from the library. Functions return the Figure
(or draw into a given Axes) so notebooks can show, save or restyle it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# Distinct colours for mask overlays (tab10 order without grey), cycled.
MASK_COLOURS: tuple[str, ...] = (
    "tab:blue",
    "tab:orange",
    "tab:green",
    "tab:red",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
    "tab:cyan",
)


def image_gallery(
    images: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    *,
    ncols: int = 4,
    panel_inches: float = 2.4,
):
    """Grid of grey (H, W) images in [0, 1], one titled panel each."""
    import matplotlib.pyplot as plt

    if len(images) == 0:
        raise ValueError("image_gallery needs at least one image")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"got {len(titles)} titles for {len(images)} images")
    ncols = max(1, min(ncols, len(images)))
    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(panel_inches * ncols, panel_inches * nrows), squeeze=False
    )
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(images):
            ax.imshow(images[k], cmap="gray", vmin=0.0, vmax=1.0)
            if titles is not None:
                ax.set_title(titles[k], fontsize=8)
    fig.tight_layout()
    return fig


def overlay_masks(
    ax,
    image_hw: np.ndarray,
    masks: Mapping[str, np.ndarray],
    *,
    alpha: float = 0.35,
    legend: bool = True,
) -> None:
    """Draw the image with each boolean (H, W) mask as a translucent colour and outline."""
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Patch

    ax.imshow(image_hw, cmap="gray", vmin=0.0, vmax=1.0)
    handles = []
    for k, (name, mask_hw) in enumerate(masks.items()):
        mask_hw = np.asarray(mask_hw, dtype=bool)
        if mask_hw.shape != np.shape(image_hw):
            raise ValueError(f"mask {name!r} has shape {mask_hw.shape}, image {np.shape(image_hw)}")
        colour = MASK_COLOURS[k % len(MASK_COLOURS)]
        rgba_hw4 = np.zeros((*mask_hw.shape, 4))
        rgba_hw4[..., :3] = to_rgb(colour)
        rgba_hw4[..., 3] = mask_hw * alpha
        ax.imshow(rgba_hw4)
        if mask_hw.any() and not mask_hw.all():
            ax.contour(mask_hw.astype(float), levels=[0.5], colors=[colour], linewidths=0.8)
        handles.append(Patch(color=colour, label=name))
    ax.axis("off")
    if legend and handles:
        ax.legend(handles=handles, fontsize=6, loc="lower left", framealpha=0.7)


def plot_landmarks(
    ax, landmarks: Mapping[str, tuple[float, float]], *, labels: bool = True
) -> None:
    """Mark landmarks given as name -> (x, y) pixels on an Axes already showing the image."""
    for name, (x, y) in landmarks.items():
        ax.plot(x, y, marker="+", color="yellow", markersize=7, mew=1.5)
        if labels:
            ax.annotate(
                name.replace("_", " "),
                (x, y),
                xytext=(3, 3),
                textcoords="offset points",
                fontsize=5,
                color="yellow",
            )


def bars_with_reference(
    ax,
    names: Sequence[str],
    values: Sequence[float],
    reference: Sequence[float] | None = None,
    *,
    value_label: str = "ours",
    reference_label: str = "chance",
    ylabel: str = "",
) -> None:
    """Bars of `values` per name, with an optional reference level per bar (e.g. chance)."""
    x = np.arange(len(names))
    ax.bar(x, values, color="tab:blue", label=value_label)
    if reference is not None:
        if len(reference) != len(values):
            raise ValueError(f"got {len(reference)} reference values for {len(values)} bars")
        ax.hlines(
            reference, x - 0.4, x + 0.4, colors="black", linestyles="--", label=reference_label
        )
    ax.set_xticks(x, [n.replace("_", " ") for n in names], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)


def side_by_side_distribution(
    ax,
    classes: Sequence[str],
    ours: Sequence[float],
    paper: Sequence[float] | None,
    *,
    ours_label: str = "phantoms",
    paper_label: str = "paper",
) -> None:
    """Class shares (fractions summing to 1) of our data beside the paper's, as grouped bars."""
    x = np.arange(len(classes))
    width = 0.4 if paper is not None else 0.8
    ax.bar(x - (width / 2 if paper is not None else 0), ours, width, label=ours_label)
    if paper is not None:
        ax.bar(x + width / 2, paper, width, label=paper_label)
    ax.set_xticks(x, list(classes), fontsize=8)
    ax.set_ylabel("share of images")
    ax.legend(fontsize=7)


def paired_difference_bars(ax, frame: Any, ylabel: str = "Δ Dice, points (95 % interval)") -> None:
    """Grouped bars of a `raddino.eval.tables.paired_dice_frame` (one group per structure, one bar
    per pair, in the frame's order) with each interval as an error bar, and the zero line."""
    pairs = list(dict.fromkeys(frame["pair"]))
    structures = list(dict.fromkeys(frame["structure"]))
    width = 0.8 / len(pairs)
    for k, pair in enumerate(pairs):
        group = frame[frame["pair"] == pair].set_index("structure").loc[structures]
        x = np.arange(len(structures)) + (k - (len(pairs) - 1) / 2) * width
        errors = [group["mean"] - group["low"], group["high"] - group["mean"]]
        ax.bar(x, group["mean"], width, yerr=errors, capsize=2, label=pair)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(structures)), [s.replace("_", " ") for s in structures])
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)


def bars_with_floor(
    ax,
    frame: Any,
    *,
    x: str,
    y: str,
    floor: str,
    floor_label: str,
    ylabel: str,
    order: Sequence[str] | None = None,
) -> None:
    """Grouped bars of `y` (%) per `x` and encoder (hue) from a long frame in [0, 1], with each
    x's mean `floor` (chance, majority class) as a black tick: a bar at its tick read nothing."""
    import seaborn as sns

    order = list(dict.fromkeys(frame[x])) if order is None else list(order)
    sns.barplot(
        data=frame.assign(bar=100 * frame[y]), x=x, y="bar", hue="encoder", order=order, ax=ax
    )
    floors = frame.dropna(subset=[floor]).groupby(x)[floor].mean()
    shown = [name for name in order if name in floors.index]
    ax.scatter(
        [order.index(name) for name in shown],
        100 * floors[shown].to_numpy(),
        marker="_",
        s=400,
        c="black",
        zorder=3,
        label=floor_label,
    )
    ax.set_ylabel(ylabel)
    ax.set_xlabel("")
    ax.set_ylim(0, 100)
    ax.tick_params(axis="x", rotation=35)
    ax.legend(fontsize=8, ncols=3, loc="upper right")
