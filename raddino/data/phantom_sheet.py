"""Draw a labelled contact sheet of phantoms: each view without and with findings, plus overlays.

Rows are PA, AP and LATERAL; columns show a phantom without findings, the same with its anatomy
masks and landmarks, a phantom with findings, and that one with its finding masks outlined.
Example: raddino phantom-sheet --out docs/phantom_contact_sheet.png --size 384
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

ANATOMY_STRUCTURES = ("left_lung", "right_lung", "heart", "clavicle_left", "clavicle_right", "ribs")
FINDING_STRUCTURES = ("pleural_effusion", "pneumothorax", "chest_tube")
# Findings switched on (prevalence 1) in the "with findings" column of each view.
SHOWCASE_FINDINGS: dict[str, tuple[str, ...]] = {
    "PA": ("cardiomegaly", "pleural_effusion", "nodule", "chest_tube", "support_devices"),
    "AP": ("pneumothorax", "lung_opacity", "support_devices", "rib_fracture", "aortic_enlargement"),
    "LATERAL": ("cardiomegaly", "pleural_effusion", "fibrosis"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="PNG file to write (a .json goes beside it)")
    parser.add_argument(
        "--size", type=int, default=384, help="phantom side in pixels (default 384)"
    )
    parser.add_argument("--seed", type=int, default=0, help="phantom seed (default 0)")
    parser.add_argument("--dpi", type=int, default=100, help="figure resolution (default 100)")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out must name a .png file, got {out}")
    if args.size < 64:
        raise ValueError(f"--size must be >= 64 pixels for a readable sheet, got {args.size}")
    summary = make_contact_sheet(out, size=args.size, seed=args.seed, dpi=args.dpi)
    print(f"wrote {out} ({len(summary['panels'])} panels)")
    return 0


def make_contact_sheet(
    out_path: str | Path, *, size: int = 384, seed: int = 0, dpi: int = 100
) -> dict[str, Any]:
    """Render the sheet to `out_path` (PNG, atomically) and a JSON beside it; return that JSON."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from raddino.data.phantom import FINDINGS, LANDMARK_NAMES, PhantomConfig, render_phantom
    from raddino.utils import atomic_path, versions, write_json_atomic

    views = tuple(SHOWCASE_FINDINGS)
    figure = Figure(figsize=(4 * 3.2, len(views) * 3.8))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(views), 4, squeeze=False)
    panels = []
    for row, view in enumerate(views):
        normal_config = PhantomConfig(
            size=size, views=(view,), prevalence=dict.fromkeys(FINDINGS, 0.0)
        )
        shown = SHOWCASE_FINDINGS[view]
        sick_config = PhantomConfig(
            size=size,
            views=(view,),
            prevalence={name: float(name in shown) for name in FINDINGS},
        )
        # Indices 4*row (+101): a different subject in every panel (2 images per subject).
        normal = render_phantom(4 * row, seed=seed, config=normal_config)
        sick = render_phantom(4 * row + 101, seed=seed, config=sick_config)
        _show(axes[row, 0], normal.image, f"{view}: no findings\n{_describe(normal.metadata)}")
        _show(axes[row, 1], normal.image, f"{view}: anatomy masks + landmarks")
        _outline(axes[row, 1], normal.masks, ANATOMY_STRUCTURES)
        _landmarks(axes[row, 1], normal.landmarks)
        positives = [n for n in FINDINGS if sick.labels[n]]
        _show(axes[row, 2], sick.image, f"{view}: " + _wrap(positives))
        _show(axes[row, 3], sick.image, f"{view}: finding masks")
        _outline(axes[row, 3], sick.masks, FINDING_STRUCTURES, filled=True)
        panels += [
            {"view": view, "seed": seed, "index": 4 * row, "findings": []},
            {"view": view, "seed": seed, "index": 4 * row + 101, "findings": positives},
        ]
        for ax in axes[row]:
            ax.set_xlim(0, size)
            ax.set_ylim(size, 0)
    figure.suptitle(f"raddino chest X-ray phantoms ({size} px, seed {seed})", fontsize=13)
    key = ", ".join(f"{k} {name}" for k, name in enumerate(LANDMARK_NAMES, start=1))
    figure.text(0.5, 0.005, "Landmarks: " + key, ha="center", va="bottom", fontsize=7.5, wrap=True)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    with atomic_path(out_path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", dpi=dpi)
    summary = {"size": size, "seed": seed, "dpi": dpi, "panels": panels, "versions": versions()}
    write_json_atomic(Path(out_path).with_suffix(".json"), summary)
    return summary


def _show(ax: Any, image_hw: Any, title: str) -> None:
    ax.imshow(image_hw, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(title, fontsize=8.5)
    ax.set_xticks([])
    ax.set_yticks([])


def _outline(ax: Any, masks: dict, names: tuple[str, ...], filled: bool = False) -> None:
    """Outline (and optionally tint) the masks in `names` that are present and non-empty."""
    import numpy as np
    from matplotlib.colors import ListedColormap
    from matplotlib.lines import Line2D

    colors = ("#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#9467bd", "#e377c2")
    handles = []
    for name, color in zip(names, colors, strict=False):
        mask = masks.get(name)
        if mask is None or not mask.any():
            continue
        if filled:
            tint = np.ma.masked_where(~mask, np.ones(mask.shape))
            ax.imshow(tint, cmap=ListedColormap([color]), alpha=0.35, interpolation="nearest")
        ax.contour(mask.astype(float), levels=[0.5], colors=[color], linewidths=0.9)
        handles.append(Line2D([], [], color=color, label=name))
    if handles:
        ax.legend(handles=handles, loc="lower left", fontsize=6, framealpha=0.6)


def _landmarks(ax: Any, landmarks: dict) -> None:
    """Mark each landmark with its number in LANDMARK_NAMES (the key is printed under the sheet)."""
    from raddino.data.phantom import LANDMARK_NAMES

    for name, (x, y) in landmarks.items():
        number = LANDMARK_NAMES.index(name) + 1 if name in LANDMARK_NAMES else "?"
        ax.plot(x, y, "o", ms=3.5, color="#ffdd00", mec="black", mew=0.5)
        ax.annotate(
            str(number),
            (x, y),
            xytext=(3, 2),
            textcoords="offset points",
            fontsize=7,
            color="#ffdd00",
            fontweight="bold",
        )


def _describe(metadata: dict) -> str:
    return (
        f"{metadata.get('sex', '?')}, {metadata.get('age', '?')} y, BMI {metadata.get('bmi', '?')}"
    )


def _wrap(names: list[str]) -> str:
    import textwrap

    text = ", ".join(n.replace("_", " ") for n in names) or "no findings"
    return "\n".join(textwrap.wrap(text, width=44))
