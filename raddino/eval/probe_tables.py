"""Tables of the linear-probe chapters (06, and 08's phantoms): AUPRC per finding and encoder,
frontal and lateral probe sets, and our numbers beside the paper's Tables 3, 4 and A.1.

Split from `raddino.eval.tables` (which keeps the other chapters' tables and the cell formatting
both use) when the lateral probes of Table A.1 took it past 400 lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from raddino.eval.tables import encoder_label, mean_std_text, wide_mean_std

if TYPE_CHECKING:
    from raddino.data.dataset_folder import DatasetFolder


def probe_frame(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Long frame of `run_probes` summaries: encoder (`encoder_label`), finding, AUPRC mean/std,
    chance, seeds, AUROC mean/std.

    One row per (encoder, probed finding) plus a "macro" row per encoder; AUPRC in [0, 1].
    """
    rows = []
    for encoder, result in results.items():
        summary = result["summary"]
        for finding, scores in summary["per_label"].items():
            rows.append(
                {
                    "encoder": encoder_label(encoder),
                    "finding": finding,
                    "auprc_mean": scores["auprc"]["mean"],
                    "auprc_std": scores["auprc"]["std"],
                    "chance": scores["prevalence"]["mean"],
                    "seeds": scores["auprc"]["n"],
                    "auroc_mean": scores["auroc"]["mean"],
                    "auroc_std": scores["auroc"]["std"],
                }
            )
        macro, macro_auroc = summary["macro"]["auprc"], summary["macro"]["auroc"]
        rows.append(
            {
                "encoder": encoder_label(encoder),
                "finding": "macro",
                "auprc_mean": macro["mean"],
                "auprc_std": macro["std"],
                "chance": np.nan,
                "seeds": macro["n"],
                "auroc_mean": macro_auroc["mean"],
                "auroc_std": macro_auroc["std"],
            }
        )
    columns = ["encoder", "finding", "auprc_mean", "auprc_std", "chance", "seeds"]
    columns += ["auroc_mean", "auroc_std"]
    return pd.DataFrame(rows, columns=columns)


def probe_table(frame: pd.DataFrame, label_names: Sequence[str]) -> pd.DataFrame:
    """Encoders x findings of 'mean ± std' AUPRC % (findings in `label_names` order, then macro)
    from `probe_frame`, with a last row "chance (prevalence)": mean test-set prevalence in %."""
    probed = set(frame["finding"])
    order = [n for n in label_names if n in probed] + ["macro"]
    table = wide_mean_std(frame, "encoder", "finding", "auprc_mean", "auprc_std", order)
    chance = frame[frame["finding"] != "macro"].groupby("finding")["chance"].mean()
    table.loc["chance (prevalence)"] = [
        f"{100 * chance[c]:.1f}" if c in chance.index else "–" for c in table.columns
    ]
    return table


def shared_findings(frames: Mapping[str, pd.DataFrame]) -> set[str]:
    """The findings (not "macro") that every `probe_frame` in `frames` probed."""
    findings = [set(f.loc[f["finding"] != "macro", "finding"]) for f in frames.values()]
    return set.intersection(*findings) if findings else set()


def shared_findings_mean(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Encoders x probe sets (e.g. frontal, lateral): mean AUPRC % over the findings that every
    set probed (so sets of different findings compare), with a last row of mean chance."""
    shared = shared_findings(frames)
    if not shared:
        raise ValueError("the probe frames share no finding")
    columns = {}
    for name, frame in frames.items():
        rows = frame[frame["finding"].isin(shared)]
        mean = 100 * rows.groupby("encoder", sort=False)["auprc_mean"].mean()
        mean.loc["chance (prevalence)"] = 100 * rows.groupby("finding")["chance"].mean().mean()
        columns[name] = mean
    table = pd.DataFrame(columns).round(1)
    encoders = [i for i in table.index if i != "chance (prevalence)"]
    return table.loc[[*encoders, "chance (prevalence)"]].rename_axis(index="encoder")


# Phantom findings that have a column in the paper's linear-probing tables: (table, column).
PAPER_PROBE_COLUMNS: dict[str, tuple[str, str]] = {
    "lung_opacity": ("3", "LO"),
    "cardiomegaly": ("3", "CM"),
    "pleural_thickening": ("3", "PL-T"),
    "aortic_enlargement": ("3", "AE"),
    "fibrosis": ("3", "PF"),
    "tuberculosis": ("3", "TB"),
    "pneumothorax": ("4", "PTX"),
    "chest_tube": ("4", "Chest Tube"),
    "rib_fracture": ("4", "Fracture"),
}


def ours_beside_paper_cells(
    ours: pd.DataFrame,
    cells: pd.DataFrame,
    *,
    paper_std: bool,
    where: str = "phantoms",
    metric: str = "auprc",
) -> dict[str, str]:
    """One finding's row cells: our `metric` per encoder and chance (from `probe_frame` rows, data
    named `where`), the paper's RAD-DINO and its best other model (from its model `cells`), with
    the paper's std if `paper_std`. Chance is the prevalence, so an AUROC row has 50."""

    def paper_text(cell: pd.Series) -> str:
        return (
            mean_std_text(cell["value"], cell["std"], scale=1)
            if paper_std
            else f"{cell['value']:.1f}"
        )

    row = {
        f"{encoder} ({where})": mean_std_text(*one[[f"{metric}_mean", f"{metric}_std"]].iloc[0])
        for encoder, one in ours.groupby("encoder", sort=False)
    }
    chance = 100 * ours["chance"].mean() if metric == "auprc" else 50.0
    row[f"chance ({where})"] = f"{chance:.1f}" if len(ours) else "–"
    rad_dino = cells[cells["row"] == "RAD-DINO"]
    if len(rad_dino):
        row["RAD-DINO (paper)"] = paper_text(rad_dino.iloc[0])
    best = cells[cells["row"] != "RAD-DINO"].sort_values("value", ascending=False).iloc[0]
    row["best other (paper)"] = f"{paper_text(best)} ({best['row']})"
    return row


def probe_beside_paper(frame: pd.DataFrame) -> pd.DataFrame:
    """Per finding the paper also probes: our AUPRC per encoder and chance beside the paper's
    RAD-DINO and its best other model (Tables 3 and 4, AUPRC %; different data, same protocol)."""
    from raddino.paper import paper_table

    paper = {table: paper_table(table) for table in ("3", "4")}
    rows = []
    for finding, (table, column) in PAPER_PROBE_COLUMNS.items():
        ours = frame[frame["finding"] == finding]
        cells = paper[table]
        cells = cells[(cells["column"] == column) & (cells["kind"] == "model")]
        if cells.empty:
            raise ValueError(f"paper Table {table} has no column {column!r}")
        row = {"finding": finding, "paper column": f"Table {table}: {column}"}
        rows.append(row | ours_beside_paper_cells(ours, cells, paper_std=False))
    encoders = [f"{e} (phantoms)" for e in dict.fromkeys(frame["encoder"])]
    columns = ["paper column", *encoders, "chance (phantoms)"]
    columns += ["RAD-DINO (paper)", "best other (paper)"]
    return pd.DataFrame(rows).set_index("finding").reindex(columns=columns).fillna("–")


# The columns of the paper's Table A.1 (PadChest laterals) -> (phantom finding or None, what the
# phantoms have for it). The phantom spine never degenerates; lateral.py draws no blunting label
# of its own: pleural effusion's fluid fills the posterior costophrenic recess upwards.
PAPER_LATERAL_COLUMNS: dict[str, tuple[str | None, str]] = {
    "Vertebral Deg. Changes": (None, "– (not simulated)"),
    "Pleural Effusion": ("pleural_effusion", "pleural_effusion"),
    "Costophrenic Angle Blunting": (None, "– (part of pleural_effusion)"),
}


def lateral_beside_paper(frame: pd.DataFrame) -> pd.DataFrame:
    """Per column of the paper's Table A.1 (AUPRC % on PadChest laterals): the matching phantom
    finding, our lateral AUPRC per encoder and chance, beside the paper's RAD-DINO and its best
    other model (mean ± std). Columns without a phantom finding keep '–'; Agg is left out (our
    macro averages other findings)."""
    from raddino.paper import paper_table

    paper = paper_table("A.1")
    paper = paper[paper["kind"] == "model"]
    encoders = list(dict.fromkeys(frame["encoder"]))
    rows = []
    for column, (finding, described) in PAPER_LATERAL_COLUMNS.items():
        cells = paper[paper["column"] == column]
        if cells.empty:
            raise ValueError(f"paper Table A.1 has no column {column!r}")
        ours = frame[frame["finding"] == finding] if finding else frame.iloc[:0]
        row = {"paper column": column, "phantom finding": described}
        rows.append(row | ours_beside_paper_cells(ours, cells, paper_std=True))
    columns = ["phantom finding", *(f"{e} (phantoms)" for e in encoders), "chance (phantoms)"]
    columns += ["RAD-DINO (paper)", "best other (paper)"]
    return pd.DataFrame(rows).set_index("paper column").reindex(columns=columns).fillna("–")


def probe_phantoms(n: int, size: int, seed: int, runs_root: str = "runs") -> DatasetFolder:
    """The frontal phantoms (no masks) that the probe, metadata and report chapters share, cached.

    One definition, so that chapters 08 and 14 read exactly the folder (and cached features) of 06.
    """
    return _probe_set(n, size, seed + 2, ("PA", "AP"), runs_root)


def lateral_probe_phantoms(n: int, size: int, seed: int, runs_root: str = "runs") -> DatasetFolder:
    """Lateral-only phantoms (no masks) for chapter 06's Table A.1 probes, cached; their own seed
    stream (seed + 5), apart from the frontal probe set (seed + 2) and the releases' pretraining
    phantoms (train.seed 0)."""
    return _probe_set(n, size, seed + 5, ("LATERAL",), runs_root)


def _probe_set(n: int, size: int, seed: int, views: tuple[str, ...], runs_root: str):
    from raddino.data.dataset_folder import DatasetFolder
    from raddino.pipeline import phantom_folder

    path = phantom_folder(n, size, seed, views=views, with_masks=False, root=runs_root, quiet=True)
    return DatasetFolder.open(path)


def drawn_labels(folder: DatasetFolder) -> list[str]:
    """The folder's labels that every view in it draws (a lateral folder: no rib fractures),
    in the folder's order: a finding the images do not show can only be probed at chance."""
    from raddino.data.phantom import findings_for_view

    views = sorted(set(folder.table["view"]))
    drawn = set.intersection(*(set(findings_for_view(v)) for v in views)) if views else set()
    return [name for name in folder.label_names if name in drawn]
