""" "Ours vs paper" tables for the evaluation chapters: which encoders, and results as DataFrames.

The chapters (07 segmentation, 08 metadata, 09 correspondence, 10 attention; 06's linear probes
are in `raddino.eval.probe_tables`) call the evaluators and hand their result dicts here; this
module turns them into tidy frames (one row per encoder and item) and puts the paper's numbers
beside them, so that notebooks stay short and the assembly is tested.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

# Our metadata variables -> the column names of the paper's Table 7.
PAPER_METADATA_COLUMNS: dict[str, str] = {
    "sex": "Sex",
    "age": "Age",
    "weight_kg": "Weight",
    "bmi": "BMI",
}


def encoder_label(spec: str) -> str:
    """The name an encoder goes by in a table: a local weights folder or file by its own name
    (`/models/rad-dino` -> `rad-dino`), any other spec (registry names, hub ids) as given."""
    from pathlib import Path

    path = Path(spec).expanduser()
    return path.name if ("/" in spec or "\\" in spec) and path.exists() else spec


def encoders_to_compare(
    encoders: Sequence[str], release_names: Callable[[], list[str]] | None = None
) -> list[str]:
    """The profile's encoder specs (order kept, duplicates dropped) plus every shipped release.

    Release checkpoints of our own trainer (`raddino:<name>`) join automatically once
    `raddino.models.weights.release_names()` lists them.
    """
    if isinstance(encoders, str):
        raise ValueError(f"encoders must be a list of specs, got the string {encoders!r}")
    if release_names is None:
        from raddino.models.weights import release_names
    specs: list[str] = []
    for spec in [*encoders, *(f"raddino:{name}" for name in release_names())]:
        spec = str(spec).strip()
        if not spec:
            raise ValueError("encoders: an empty encoder spec")
        if spec not in specs:
            specs.append(spec)
    if not specs:
        raise ValueError("encoders: no encoder to compare (the list is empty)")
    return specs


# ------------------------------------------------------------------------------ cells
def mean_std_text(mean: float, std: float, scale: float = 100.0, digits: int = 1) -> str:
    """'mean ± std' as the paper prints it (percent by default); NaN gives '–'."""
    if not np.isfinite(mean):
        return "–"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def wide_mean_std(
    frame: pd.DataFrame, row: str, column: str, mean: str, std: str, order: Sequence[str] = ()
) -> pd.DataFrame:
    """A rows x columns table of 'mean ± std' percent strings from a long frame."""
    text = frame.assign(
        cell=[mean_std_text(m, s) for m, s in zip(frame[mean], frame[std], strict=True)]
    )
    wide = text.pivot(index=row, columns=column, values="cell")
    columns = [c for c in order if c in wide.columns] + [c for c in wide.columns if c not in order]
    rows = list(dict.fromkeys(frame[row]))  # first-seen order, not alphabetical
    return wide.loc[rows, columns].fillna("–").rename_axis(index=row, columns=None)


# ------------------------------------------------------------------------------ metadata
def metadata_per_variable(
    features_nd: np.ndarray, table: pd.DataFrame, config: Any, *, source: str = "labels.csv"
) -> dict[str, dict[str, Any]]:
    """`run_metadata` one variable at a time: a variable that cannot be measured (one class,
    too few subjects for the folds) gets {"error": reason} instead of stopping the others."""
    from dataclasses import replace

    from raddino.eval.metadata import run_metadata

    config.validate()
    out: dict[str, dict[str, Any]] = {}
    for variable in config.variables:
        one = replace(config, variables=(variable,))
        try:
            out[variable] = run_metadata(features_nd, table, one, source=source)["variables"][
                variable
            ]
        except ValueError as err:
            out[variable] = {"error": str(err)}
    return out


def metadata_frame(results: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> pd.DataFrame:
    """Long frame: encoder, variable, accuracy mean/std, majority-class accuracy, n, note."""
    rows = []
    for encoder, variables in results.items():
        for variable, result in variables.items():
            if "error" in result:
                rows.append(
                    {
                        "encoder": encoder_label(encoder),
                        "variable": variable,
                        "note": result["error"],
                    }
                )
                continue
            rows.append(
                {
                    "encoder": encoder_label(encoder),
                    "variable": variable,
                    "accuracy_mean": result["accuracy"]["mean"],
                    "accuracy_std": result["accuracy"]["std"],
                    "majority_mean": result["majority_class_accuracy"]["mean"],
                    "n_images": result["n_images"],
                    "note": "",
                }
            )
    columns = [
        "encoder",
        "variable",
        "accuracy_mean",
        "accuracy_std",
        "majority_mean",
        "n_images",
        "note",
    ]
    return pd.DataFrame(rows, columns=columns)


def metadata_beside_paper(frame: pd.DataFrame, where: str = "phantoms") -> pd.DataFrame:
    """Our accuracies ('mean ± std' %, plus a majority-class row) on data named `where`, above the
    paper's Table 7."""
    from raddino.paper import paper_table

    measured = frame.dropna(subset=["accuracy_mean"])
    order = [v for v in PAPER_METADATA_COLUMNS if v in set(measured["variable"])]
    ours = wide_mean_std(measured, "encoder", "variable", "accuracy_mean", "accuracy_std", order)
    floor = measured.groupby("variable", sort=False)["majority_mean"].mean()
    ours.loc["majority class"] = [
        f"{100 * floor[v]:.1f}" if v in floor.index else "–" for v in ours.columns
    ]
    ours = ours.rename(columns=PAPER_METADATA_COLUMNS)
    ours.index = [f"{name} ({where})" for name in ours.index]
    paper = paper_table("7", wide=True)
    paper = paper.map(lambda v: f"{v:.1f}" if np.isfinite(v) else "–")
    paper.index = [f"{name} (paper, MIMIC-CXR)" for name in paper.index]
    return pd.concat([ours, paper[[c for c in ours.columns if c in paper.columns]]])


# ------------------------------------------------------------------------------ correspondence
def correspondence_frame(
    metrics: Mapping[str, Mapping[str, Any]], radius: str | float = 16
) -> pd.DataFrame:
    """Per landmark and encoder: transfer error, hit rate within `radius` px, and the same
    references `landmark_transfer` reports (keep-the-position baseline, quantisation floor)."""
    key = f"{float(radius):g}"
    rows = []
    for encoder, result in metrics.items():
        if float(key) not in [float(r) for r in result["radii_px"]]:
            raise ValueError(f"radius {key} px not measured for {encoder}: {result['radii_px']}")
        items = [*result["per_landmark"].items(), ("overall", result["overall"])]
        for landmark, summary in items:
            if not summary.get("n"):
                continue
            rows.append(
                {
                    "encoder": encoder,
                    "landmark": landmark,
                    "transfers": summary["n"],
                    "mean_error_px": summary["mean_error_px"],
                    f"hit_rate_{key}px": summary["hit_rate"][key],
                    "same_position_error_px": summary["same_position_error_px"],
                    f"same_position_hit_rate_{key}px": summary["same_position_hit_rate"][key],
                    "quantisation_floor_px": summary["quantisation_floor_px"],
                }
            )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ segmentation
# Our Dice columns (structures or groups of `raddino.eval.dice`) -> the paper's Table 6 columns.
PAPER_SEGMENTATION_COLUMNS: dict[str, str] = {
    "lungs": "Lungs",
    "lung_zones": "Lung zones",
    "pneumothorax": "Pneumothorax",
    "chest_tube": "Chest tubes",
    "ribs": "Ribs",
}


def segmentation_frame(results: Mapping[tuple[str, str], Mapping[str, Any]]) -> pd.DataFrame:
    """Long frame of Dice summaries keyed by (encoder, head): one row per structure or group,
    Dice mean/std over test images in [0, 1] and the number of images scored."""
    rows = []
    for (encoder, head), summary in results.items():
        for structure, stats in summary.items():
            rows.append(
                {
                    "encoder": encoder_label(encoder),
                    "head": head,
                    "structure": structure,
                    "dice_mean": stats["mean"],
                    "dice_std": stats["std"],
                    "n_images": stats["n"],
                }
            )
    columns = ["encoder", "head", "structure", "dice_mean", "dice_std", "n_images"]
    return pd.DataFrame(rows, columns=columns)


def _dice_text(mean: float, std: float) -> str:
    """'95.9 (1.5)': Dice in percent as Table 6 prints it; NaN gives '–'."""
    if not np.isfinite(mean):
        return "–"
    return f"{100 * mean:.1f} ({100 * std:.1f})"


def segmentation_beside_paper(
    frame: pd.DataFrame,
    extra: Sequence[str] = ("heart",),
    paper_rows: Sequence[str] | None = None,
    *,
    where: str = "phantoms",
    complete: bool = True,
) -> pd.DataFrame:
    """Rows '<encoder> + <head> (`where`)' then the paper's Table 6 rows (all, or `paper_rows`
    in that order), columns the paper's (plus `extra` structures it does not report), cells
    'mean (std)' Dice in percent. `complete`: every column must be measured (phantoms have them
    all); else a real folder's missing ones show '–' and missing extras are left out."""
    from raddino.paper import paper_table

    measured = set(frame["structure"])
    if not complete:
        extra = [s for s in extra if s in measured]
    names = {**PAPER_SEGMENTATION_COLUMNS, **{s: s.replace("_", " ").capitalize() for s in extra}}
    unknown = sorted(set(names) - measured)
    if unknown and (complete or len(unknown) == len(names)):
        raise ValueError(f"segmentation results lack structure(s) {unknown}")
    ours = frame[frame["structure"].isin(names)].assign(
        row=lambda f: f["encoder"] + " + " + f["head"] + f" ({where})",
        cell=lambda f: [
            _dice_text(m, s) for m, s in zip(f["dice_mean"], f["dice_std"], strict=True)
        ],
        column=lambda f: f["structure"].map(names),
    )
    wide = ours.pivot(index="row", columns="column", values="cell")
    wide = wide.loc[list(dict.fromkeys(ours["row"]))]
    paper = paper_table("6")
    paper = paper[paper["kind"] == "model"]
    order = list(dict.fromkeys(paper["row"])) if paper_rows is None else list(paper_rows)
    missing = sorted(set(order) - set(paper["row"]))
    if missing:
        raise ValueError(f"Table 6 has no row(s) {missing}; it has {sorted(set(paper['row']))}")
    paper = paper.assign(
        row=lambda f: f["row"] + " (paper)",
        cell=lambda f: [
            _dice_text(m / 100, s / 100) for m, s in zip(f["value"], f["std"], strict=True)
        ],
    )
    paper_wide = paper.pivot(index="row", columns="column", values="cell")
    paper_wide = paper_wide.loc[[f"{row} (paper)" for row in order]]
    table = pd.concat([wide, paper_wide]).reindex(columns=list(names.values()))
    return table.fillna("–").rename_axis(index=None, columns=None)


def paired_dice_frame(
    dice_per_image: Mapping[str, np.ndarray],
    pairs: Mapping[str, tuple[str, str]],
    structures: Sequence[str],
    shown: Sequence[str] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Long frame (pair, structure, mean, low, high, n) of `paired_difference` in Dice points:
    `pairs` maps a label to (A, B) keys of `dice_per_image`, (images, S) arrays on one test set."""
    from raddino.eval.dice import paired_difference

    rows = []
    for label, (a, b) in pairs.items():
        differences = paired_difference(dice_per_image[a], dice_per_image[b], structures, seed=seed)
        for structure in shown or list(differences):
            stats = differences[structure]
            rows.append(
                {"pair": label, "structure": structure, "n": stats["n"]}
                | {k: 100 * stats[k] for k in ("mean", "low", "high")}
            )
    return pd.DataFrame(rows, columns=["pair", "structure", "mean", "low", "high", "n"])


def wide_intervals(
    frame: pd.DataFrame, rows: str, columns: str, estimate: str, low: str, high: str,
    *, signed: bool = False,
) -> pd.DataFrame:  # fmt: skip
    """Rows x columns of 'estimate [low, high]' cells (one decimal; '+' signs if `signed`), in
    the order rows and columns first appear in `frame`."""
    sign = "+" if signed else ""
    cells = [
        f"{m:{sign}.1f} [{lo:{sign}.1f}, {hi:{sign}.1f}]"
        for m, lo, hi in zip(frame[estimate], frame[low], frame[high], strict=True)
    ]
    wide = frame.assign(cell=cells).pivot(index=rows, columns=columns, values="cell")
    return wide.loc[list(dict.fromkeys(frame[rows])), list(dict.fromkeys(frame[columns]))]


def interval_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Pairs x structures of '+1.6 [+0.2, +3.3]' cells from a `paired_dice_frame`, in its order."""
    wide = wide_intervals(frame, "pair", "structure", "mean", "low", "high", signed=True)
    return wide.rename_axis(index=None, columns=None)


# ------------------------------------------------------------------------------ attention
def attention_frame(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Per encoder and finding, from `attention_on_findings`: the share of class-token attention
    inside the mask (all heads, best head) beside the mask's area share (uniform attention).
    Findings present in no image are kept with n_images 0 and NaN scores."""
    keys = ["mean_share", "best_head", "best_head_share", "area_fraction", "lift", "best_head_lift"]
    rows = []
    for encoder, result in results.items():
        for structure, scores in result["structures"].items():
            row = {"encoder": encoder, "finding": structure, "n_images": scores["n_images"]}
            row.update({key: scores.get(key, np.nan) for key in keys})
            rows.append(row)
    return pd.DataFrame(rows, columns=["encoder", "finding", "n_images", *keys])
