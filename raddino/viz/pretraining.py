"""Figures of the pretraining chapters: what the student and the teacher see (multi-crop views and
iBOT masks) and how a run's losses and diagnostics move."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch


def plot_multicrop(image_hw: np.ndarray, config: dict, seed: int = 0) -> plt.Figure:
    """One image, its two global crops (the iBOT-masked patches of one of them shaded, as the
    student sees it) and its local crops, drawn with the run config's own augmentation."""
    from raddino.ssl.crops import MultiCropAugmentation
    from raddino.ssl.masking import sample_ibot_masks

    crops_cfg = config["crops"]
    augment = MultiCropAugmentation.from_config(crops_cfg)
    generator = torch.Generator().manual_seed(seed)
    image = torch.from_numpy(np.asarray(image_hw, dtype=np.float32))[None]
    views = augment(image, generator)
    grid = crops_cfg["global_crops_size"] // 14
    # probability 1 so the figure always shows a masked crop (training masks half of them)
    masks = sample_ibot_masks(
        2, grid, tuple(config["ibot"]["mask_ratio_min_max"]), 1.0, generator=generator
    )
    n_local = len(views["local"])
    fig, axes = plt.subplots(1, 3 + n_local, figsize=(2.0 * (3 + n_local), 2.4))
    axes[0].imshow(image_hw, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title(f"image {image_hw.shape[0]} px", fontsize=9)
    for k, crop in enumerate(views["global"]):
        axes[1 + k].imshow(crop[0], cmap="gray", vmin=0, vmax=1)
        if k == 0:
            mask_hw = masks.masks_bn[0].reshape(grid, grid).float().numpy()
            upsampled = np.kron(mask_hw, np.ones((14, 14)))
            axes[1].imshow(np.ma.masked_where(upsampled == 0, upsampled), cmap="autumn", alpha=0.5)
        title = f"global {k + 1}, {crop.shape[-1]} px" + (" + iBOT mask" if k == 0 else "")
        axes[1 + k].set_title(title, fontsize=9)
    for k, crop in enumerate(views["local"]):
        axes[3 + k].imshow(crop[0], cmap="gray", vmin=0, vmax=1)
        axes[3 + k].set_title(f"local {k + 1}, {crop.shape[-1]} px", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def plot_training_curves(
    curves: pd.DataFrame,
    metrics: Sequence[str] = ("total", "dino_global", "ibot", "koleo", "teacher_entropy"),
    *,
    smooth: int = 5,
    columns: int | None = None,
    **subplot_kw: Any,
) -> plt.Figure:
    """Small multiples of a long (run, step, metric, value) frame, one panel per metric (`columns`
    per row, default all in one), one line per run; a centred rolling mean of `smooth` steps
    (1 = raw) keeps noisy losses readable."""
    metrics = [m for m in metrics if m in set(curves["metric"])]
    if not metrics:
        raise ValueError(f"none of the metrics are in the curves: {sorted(set(curves['metric']))}")
    columns = min(columns or len(metrics), len(metrics))
    rows = -(-len(metrics) // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=subplot_kw.pop("figsize", (3.2 * columns, 2.8 * rows)), squeeze=False
    )
    for ax in axes.flat[len(metrics) :]:
        ax.set_visible(False)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        for run, group in curves[curves["metric"] == metric].groupby("run", sort=False):
            values = group.sort_values("step")
            smoothed = values["value"].rolling(smooth, center=True, min_periods=1).mean()
            ax.plot(values["step"], smoothed, label=run)
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel("step")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_shift_stability(table: pd.DataFrame, **subplot_kw: Any) -> plt.Figure:
    """One line per encoder of a `raddino.eval.stability.shift_stability_table`: how alike an
    image's class token stays as the image moves right by 1, 2, ... pixels (1: unmoved), with
    the level of two different images as a dashed line per encoder."""
    shifts = sorted(int(c.removeprefix("shift_").removesuffix("px")) for c in table.columns
                    if c.startswith("shift_"))  # fmt: skip
    if not shifts:
        raise ValueError(f"no shift_<k>px columns in the table: {list(table.columns)}")
    fig, ax = plt.subplots(figsize=subplot_kw.pop("figsize", (5.2, 3.2)), **subplot_kw)
    for name, row in table.iterrows():
        (line,) = ax.plot(shifts, [row[f"shift_{k}px"] for k in shifts], marker="o", label=name)
        ax.axhline(row["other_image"], color=line.get_color(), linestyle=":", linewidth=1)
    ax.plot([], [], color="gray", linestyle=":", linewidth=1, label="two different images")
    ax.set_xscale("log", base=2)
    ax.set_xticks(shifts, [str(k) for k in shifts])
    ax.set_xlabel("shift (pixels)")
    ax.set_ylabel("cosine to the unshifted token")
    ax.set_ylim(-0.1, 1.02)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_bar_verdict(verdict: pd.DataFrame, margin: float, **subplot_kw: Any) -> plt.Figure:
    """The release bar's verdict (`raddino.ssl.release_tables.release_verdict_table`) as dots: one
    panel per (release, baseline), each metric's difference on every probe set, with the band a
    win must clear on every set to count (±`margin`)."""
    pairs = list(dict.fromkeys((r, a) for r, a, _ in verdict.index))
    set_columns = [c for c in verdict.columns if c.startswith("difference on set ")]
    if not set_columns:
        raise ValueError(f"no 'difference on set' columns: {list(verdict.columns)}")
    width = subplot_kw.pop("figsize", (3.0 * len(pairs), 3.0))
    fig, axes = plt.subplots(1, len(pairs), figsize=width, sharey=True, squeeze=False, **subplot_kw)
    for ax, (release, against) in zip(axes[0], pairs, strict=True):
        mine = [(r, a) == (release, against) for r, a, _ in verdict.index]
        rows = verdict[mine].droplevel([0, 1])  # one row per metric
        x = np.arange(len(rows))
        ax.axhspan(-margin, margin, color="0.9", zorder=0)
        ax.axhline(0.0, color="0.5", linewidth=0.8)
        for k, column in enumerate(set_columns):
            offset = (k - (len(set_columns) - 1) / 2) * 0.15
            label = column.removeprefix("difference on ")
            ax.plot(x + offset, rows[column], "o", label=label, color=f"C{k}")
        ax.set_xticks(x, [m.replace("_", " ") for m in rows.index], rotation=20)
        ax.set_title(f"{release}\nminus {against}", fontsize=9)
    axes[0][0].set_ylabel("difference (same phantoms)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_layer_probe(frame: pd.DataFrame, ylabel: str = "macro AUPRC", **subplot_kw: Any):
    """One panel per pooling of a `raddino.ssl.release_tables.layer_probe_frame`: AUPRC of the
    linear probes on each block's patch tokens, a colour per encoder, a line style per probe set."""
    poolings = list(dict.fromkeys(frame["pooling"]))
    if not poolings:
        raise ValueError("the layer-probe frame is empty")
    size = subplot_kw.pop("figsize", (3.6 * len(poolings) + 2.0, 3.0))
    fig, axes = plt.subplots(
        1, len(poolings), figsize=size, sharey=True, squeeze=False, **subplot_kw
    )
    styles = {
        s: ("-", "--", ":", "-.")[k % 4] for k, s in enumerate(dict.fromkeys(frame["probe set"]))
    }
    colours = {e: f"C{k}" for k, e in enumerate(dict.fromkeys(frame["encoder"]))}
    for ax, pooling in zip(axes[0], poolings, strict=True):
        mine = frame[frame["pooling"] == pooling]
        for (encoder, probe_set), line in mine.groupby(["encoder", "probe set"], sort=False):
            line = line.sort_values("block")
            ax.plot(line["block"], line["auprc"], marker="o", color=colours[encoder],
                    linestyle=styles[probe_set], label=f"{encoder}, {probe_set}")  # fmt: skip
        ax.set_title(pooling.replace("_", " "), fontsize=10)
        ax.set_xlabel("block")
        ax.set_xticks(sorted(set(mine["block"])))
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    return fig


def plot_recipe_scoreboard(board: pd.DataFrame, margin: float, **subplot_kw: Any) -> plt.Figure:
    """A `raddino.ssl.recipe_tables.recipe_scoreboard` as dots: one panel per bar metric, one
    column per encoder, its difference from the baseline on each probe set, and the ±`margin`
    band a win must clear on every set."""
    metrics = list(dict.fromkeys(board.columns.get_level_values(0)))
    labels = [encoder for _, encoder in board.index]
    size = subplot_kw.pop("figsize", (max(6.0, 0.45 * len(labels) + 1.5), 2.4 * len(metrics)))
    fig, axes = plt.subplots(
        len(metrics), 1, figsize=size, sharex=True, squeeze=False, **subplot_kw
    )
    x = np.arange(len(labels))
    for ax, metric in zip(axes[:, 0], metrics, strict=True):
        sets = [c for c in board[metric].columns if c.startswith("set ")]
        ax.axhspan(-margin, margin, color="0.9", zorder=0)
        ax.axhline(0.0, color="0.5", linewidth=0.8)
        for k, column in enumerate(sets):
            offset = (k - (len(sets) - 1) / 2) * 0.2
            ax.plot(x + offset, board[(metric, column)], "o", color=f"C{k}", label=column)
        clear = board[(metric, "clearly beats")].to_numpy(dtype=bool)
        top = ax.get_ylim()[1]
        ax.plot(x[clear], np.full(clear.sum(), top), "v", color="k", markersize=5, label="clear")
        ax.set_ylabel(metric.replace("_", " "), fontsize=9)
    axes[-1, 0].set_xticks(x, labels, rotation=60, ha="right", fontsize=8)
    axes[0, 0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def plot_counterfactuals(tables: dict[str, pd.DataFrame], **subplot_kw: Any) -> plt.Figure:
    """Heat maps of `raddino.eval.counterfactual.counterfactual_frame` tables (title -> table):
    rows encoders, columns findings, 0.5 (blind) white, 1 (always seen) dark."""
    if not tables:
        raise ValueError("no counterfactual tables to plot")
    first = next(iter(tables.values()))
    size = subplot_kw.pop(
        "figsize", (0.55 * first.shape[1] + 2.5, 0.45 * len(first) * len(tables) + 1.5)
    )
    fig, axes = plt.subplots(len(tables), 1, figsize=size, squeeze=False, **subplot_kw)
    for ax, (title, table) in zip(axes[:, 0], tables.items(), strict=True):
        values = table.to_numpy(dtype=float)
        image = ax.imshow(values, cmap="Blues", vmin=0.5, vmax=1.0, aspect="auto")
        for (i, j), value in np.ndenumerate(values):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if value > 0.8 else "black")  # fmt: skip
        ax.set_yticks(range(len(table)), table.index, fontsize=8)
        ax.set_xticks(range(table.shape[1]), [c.replace("_", " ") for c in table.columns],
                      rotation=40, ha="right", fontsize=8)  # fmt: skip
        ax.set_title(title, fontsize=10)
        fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    return fig
