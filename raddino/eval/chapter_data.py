"""What the evaluation chapters measure: phantoms by default, or the real dataset folders a
re-executor names (VinDr-CXR for Table 3, CANDID-PTX and RSNA Pneumonia for Table 4, PadChest
laterals for Table A.1, CANDID-PTX masks for Table 6, MIMIC-CXR with MIMIC-IV metadata for
Table 7), with each real label tied to the paper column it reproduces.

A real folder is probed as the paper did: its frontal (or lateral) images only, and for Table A.1
each finding as a balanced binary task (App. A.2: every positive, as many negatives drawn at
random, 80/10/10 splits by subject).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from raddino.data.dataset_folder import DatasetFolder
from raddino.eval.probe import ProbeConfig

FRONTAL_VIEWS = ("PA", "AP")
LATERAL_VIEWS = ("LATERAL",)
LATERAL_SPLIT = (0.8, 0.1, 0.1)  # App. A.2: PadChest laterals, 80/10/10 by subject
NO_FINDING = "No Finding"  # Table 7 uses the MIMIC-CXR images whose report says so

# dataset.json name -> {label: (paper table, column, metric)}: what each real label reproduces.
PAPER_COLUMNS: dict[str, dict[str, tuple[str, str, str]]] = {
    "vindr-cxr": {
        "Lung Opacity": ("3", "LO", "auprc"),
        "Cardiomegaly": ("3", "CM", "auprc"),
        "Pleural thickening": ("3", "PL-T", "auprc"),
        "Aortic enlargement": ("3", "AE", "auprc"),
        "Pulmonary fibrosis": ("3", "PF", "auprc"),
        "Tuberculosis": ("3", "TB", "auprc"),
    },
    "candid-ptx": {
        "Pneumothorax": ("4", "PTX", "auprc"),
        "Chest Tube": ("4", "Chest Tube", "auprc"),
        "Rib Fracture": ("4", "Fracture", "auprc"),
    },
    "rsna-pneumonia": {"Pneumonia": ("4", "AUPRC", "auprc")},
    "padchest": {
        "vertebral degenerative changes": ("A.1", "Vertebral Deg. Changes", "auprc"),
        "pleural effusion": ("A.1", "Pleural Effusion", "auprc"),
        "costophrenic angle blunting": ("A.1", "Costophrenic Angle Blunting", "auprc"),
    },
}
# RSNA Pneumonia is the one task the paper also scores by AUROC (Table 4).
PAPER_AUROC_COLUMNS: dict[str, dict[str, tuple[str, str, str]]] = {
    "rsna-pneumonia": {"Pneumonia": ("4", "AUROC", "auroc")},
}


@dataclass
class ProbeSet:
    """One set of images to probe: its folder, the labels probed, their (N, L) label matrix (NaN:
    left out of that label's probe) and the split fractions."""

    name: str
    folder: DatasetFolder
    labels: list[str]
    labels_nl: np.ndarray
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    notes: list[str] = field(default_factory=list)
    beside_paper: Callable[[pd.DataFrame], pd.DataFrame | None] | None = None

    def config(self, seeds: int, c: float, seed: int) -> ProbeConfig:
        """The chapter's probe (sklearn logistic regression) with this set's split fractions."""
        return ProbeConfig(
            method="sklearn",
            seeds=seeds,
            c=c,
            split_seed=seed,
            split_fractions=self.split_fractions,
        )

    def paper_side(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`beside_paper(frame)`, or a one-cell table saying the paper probes no such dataset."""
        table = self.beside_paper(frame) if self.beside_paper else None
        if table is None:
            note = "the paper's probing tables (3, 4, A.1) have no column for this dataset"
            return pd.DataFrame({"beside the paper": [note]}, index=[self.name])
        return table

    def describe(self) -> str:
        """One line for the chapter: size, subjects, views, and what was done to the labels."""
        table = self.folder.table
        views = ", ".join(f"{v} {k}" for v, k in table["view"].value_counts().items())
        line = (
            f"{self.name}: {len(table)} images ({views}), {table['subject_id'].nunique()} subjects"
        )
        return "; ".join([line, *self.notes])


def view_subset(folder: DatasetFolder, views: Sequence[str], runs_root: str = "runs"):
    """The rows of `folder` whose view is in `views`, as a dataset folder of its own (cached under
    runs/probe_sets/<hash>/, its images left where they are); `folder` itself if it has no other
    view. No row of those views is an error naming the folder and the views it has."""
    keep = folder.table["view"].isin(views).to_numpy()
    if not keep.any():
        present = sorted(set(folder.table["view"]))
        raise ValueError(f"{folder.root}: no {'/'.join(views)} images (its views: {present})")
    return subset_folder(folder, keep, {"views": list(views)}, runs_root)


def subset_folder(
    folder: DatasetFolder, keep_n: np.ndarray, what: dict, runs_root: str = "runs"
) -> DatasetFolder:
    """The rows `keep_n` (bool, N) of `folder` as a dataset folder of its own, described by `what`
    in its dataset.json and cached by the source's fingerprint and `what`; the folder itself
    when every row is kept. Images and masks are read where they lie (image_root, mask_root);
    landmarks and reports are left behind."""
    if keep_n.all():
        return folder
    from raddino.data.dataset_folder import write_index
    from raddino.eval.features import dataset_fingerprint

    recipe = json.dumps({"source": dataset_fingerprint(folder), **what}, sort_keys=True)
    out = Path(runs_root) / "probe_sets" / hashlib.sha256(recipe.encode()).hexdigest()[:16]
    # The caller opened (and so checked) the source; its images need no second check here.
    if (out / "dataset.json").is_file():  # written last: its presence means the folder is complete
        return DatasetFolder.open(out, check_images=False)
    info = {
        key: value
        for key, value in folder.info.items()
        if key not in ("landmarks", "split", "counts", "generator")
    }
    info["image_root"] = os.path.relpath(folder.image_root, out.resolve())
    info["mask_root"] = os.path.relpath(folder.mask_path_root, out.resolve())
    info["subset_of"] = {"dataset": folder.info["name"], **what}
    return write_index(out, folder.table[keep_n].reset_index(drop=True), info, check_images=False)


def dataset_name(folder: DatasetFolder) -> str:
    """The dataset a folder holds: its own name, or for a row selection its source's."""
    return str(folder.info.get("subset_of", {}).get("dataset", folder.info["name"]))


def metadata_set(path: str | os.PathLike, runs_root: str = "runs") -> DatasetFolder:
    """Table 7's images of a real folder: frontal ones and, where the folder has a "No Finding"
    label (MIMIC-CXR, CheXpert), only those it marks 1, as the paper selected (App. C.3). A
    folder without patient metadata is an error naming it."""
    folder = DatasetFolder.open(path)
    if not folder.info["metadata"]:
        raise ValueError(
            f"{folder.root / 'dataset.json'}: no patient metadata columns (for MIMIC-CXR, index "
            "it with `raddino index --mimic-iv DIR`)"
        )
    keep = folder.table["view"].isin(FRONTAL_VIEWS).to_numpy()
    what: dict = {"views": list(FRONTAL_VIEWS)}
    if NO_FINDING in folder.label_names:
        keep = keep & (folder.table[NO_FINDING].to_numpy() == 1)
        what["label"] = {NO_FINDING: 1}
    if not keep.any():
        raise ValueError(f"{folder.root}: no frontal image {what} to measure metadata on")
    return subset_folder(folder, keep, what, runs_root)


def metadata_folder(
    dataset: str | os.PathLike, *, n: int, size: int, seed: int, runs_root: str = "runs"
) -> tuple[DatasetFolder, str]:
    """Chapter 08's images and what to call them: `metadata_set(dataset)` and its dataset name,
    or without a dataset chapter 06's `n` frontal phantoms of `size` px and "phantoms"."""
    if not dataset:
        from raddino.eval.probe_tables import probe_phantoms

        return probe_phantoms(n, size, seed, runs_root), "phantoms"
    folder = metadata_set(dataset, runs_root)
    return folder, dataset_name(folder)


def masked_folder(
    dataset: str | os.PathLike,
    *,
    n: int,
    size: int,
    seed: int,
    phantom_seed: int,
    runs_root: str = "runs",
) -> tuple[DatasetFolder, str]:
    """Chapters 07 and 10's images and their name: `n` frontal phantoms of `size` px with masks
    (seed `phantom_seed`), or the frontal images of a real folder with masks (CANDID-PTX: Table
    6's pneumothorax and chest tubes), at most `n` of them, whole subjects drawn with `seed`."""
    if not dataset:
        from raddino.pipeline import phantom_folder

        path = phantom_folder(
            n, size, phantom_seed, views=FRONTAL_VIEWS, root=runs_root, quiet=True
        )
        return DatasetFolder.open(path), "phantoms"
    folder = DatasetFolder.open(dataset)
    if not folder.structures:
        raise ValueError(f"{folder.root / 'dataset.json'}: no mask structures to segment")
    keep = folder.table["view"].isin(FRONTAL_VIEWS).to_numpy()
    if not keep.any():
        raise ValueError(f"{folder.root}: no frontal images to segment")
    keep = keep & subject_sample(folder.table["subject_id"].to_numpy(), keep, n, seed)
    what = {"views": list(FRONTAL_VIEWS), "subject_sample": {"images": n, "seed": seed}}
    return subset_folder(folder, keep, what, runs_root), str(folder.info["name"])


def subject_sample(subjects_n: np.ndarray, eligible_n: np.ndarray, n: int, seed: int) -> np.ndarray:
    """(N,) bool: whole subjects in a seeded random order, taken while their eligible images fit
    in `n` (a subject that would overflow is skipped, so no subject is split)."""
    order = np.random.default_rng(seed).permutation(np.unique(subjects_n[eligible_n]))
    counts = pd.Series(subjects_n[eligible_n]).value_counts()
    chosen, total = [], 0
    for subject in order:
        if total + counts[subject] <= n:
            chosen.append(subject)
            total += counts[subject]
    return np.isin(subjects_n, chosen)


def balanced_tasks(labels_nl: np.ndarray, seed: int) -> np.ndarray:
    """(N, L) labels where each column is a balanced binary task (App. A.2): every positive and as
    many negatives drawn at random (all of them if fewer); the other negatives become NaN."""
    rng = np.random.default_rng(seed)
    balanced = labels_nl.astype(np.float32, copy=True)
    for column in range(balanced.shape[1]):
        positives = np.flatnonzero(balanced[:, column] == 1)
        negatives = np.flatnonzero(balanced[:, column] == 0)
        if len(negatives) > len(positives):
            dropped = rng.permutation(negatives)[len(positives) :]
            balanced[dropped, column] = np.nan
    return balanced


def real_probe_set(
    path: str | os.PathLike, views: Sequence[str], *, balanced: bool, seed: int, runs_root: str
) -> ProbeSet:
    """A real dataset folder's images of `views` as a probe set; `balanced` makes each label the
    paper's balanced lateral task with its 80/10/10 split (Table A.1)."""
    folder = view_subset(DatasetFolder.open(path), views, runs_root)
    name = dataset_name(folder)
    labels = list(folder.label_names)
    labels_nl = folder.labels_array(labels)
    notes = []
    if balanced:
        labels_nl = balanced_tasks(labels_nl, seed)
        counts = ", ".join(
            f"{n} {int(np.isfinite(labels_nl[:, j]).sum())}" for j, n in enumerate(labels)
        )
        notes.append(f"each label a balanced task (images per task: {counts})")
    return ProbeSet(
        name=name,
        folder=folder,
        labels=labels,
        labels_nl=labels_nl,
        split_fractions=LATERAL_SPLIT if balanced else (0.6, 0.2, 0.2),
        notes=notes,
        beside_paper=lambda frame: dataset_beside_paper(frame, name),
    )


def probe_sets(
    datasets: Sequence[str | os.PathLike],
    *,
    lateral: bool,
    n: int,
    size: int,
    seed: int,
    runs_root: str = "runs",
) -> list[ProbeSet]:
    """Chapter 06's probe sets: the real dataset folders `datasets`, frontal images (Tables 3 and
    4) or lateral ones as balanced tasks (`lateral`, Table A.1); without any, `n` phantoms of
    `size` px (frontal or lateral). Two folders of one name are an error."""
    if not datasets:
        return [phantom_probe_set(lateral=lateral, n=n, size=size, seed=seed, runs_root=runs_root)]
    views = LATERAL_VIEWS if lateral else FRONTAL_VIEWS
    sets = [
        real_probe_set(path, views, balanced=lateral, seed=seed, runs_root=runs_root)
        for path in datasets
    ]
    names = [s.name for s in sets]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"probe datasets {list(map(str, datasets))}: name(s) {repeated} repeat")
    return sets


def dataset_beside_paper(frame: pd.DataFrame, dataset: str) -> pd.DataFrame | None:
    """Per paper column that `dataset`'s labels reproduce: our score per encoder and chance beside
    the paper's RAD-DINO and best other model (%); None for a dataset the paper does not probe."""
    from raddino.eval.probe_tables import ours_beside_paper_cells
    from raddino.paper import paper_table

    columns = PAPER_COLUMNS.get(dataset, {})
    auroc = PAPER_AUROC_COLUMNS.get(dataset, {})
    if not columns:
        return None
    rows = []
    for label, (table, column, metric) in [*columns.items(), *auroc.items()]:
        paper = paper_table(table)
        cells = paper[(paper["column"] == column) & (paper["kind"] == "model")]
        if cells.empty:
            raise ValueError(f"paper Table {table} has no column {column!r}")
        ours = frame[frame["finding"] == label]
        row = {"label": label, "metric": metric.upper(), "paper column": f"Table {table}: {column}"}
        cells_text = ours_beside_paper_cells(
            ours, cells, paper_std=table == "A.1", where=dataset, metric=metric
        )
        rows.append(row | cells_text)
    encoders = [f"{e} ({dataset})" for e in dict.fromkeys(frame["encoder"])]
    order = ["metric", "paper column", *encoders, f"chance ({dataset})"]
    order += ["RAD-DINO (paper)", "best other (paper)"]
    return pd.DataFrame(rows).set_index("label").reindex(columns=order).fillna("–")


def phantom_probe_set(*, lateral: bool, n: int, size: int, seed: int, runs_root: str) -> ProbeSet:
    """The phantom probe set (cached; chapters 08 and 14 share the frontal one): every finding
    the views draw, at the phantoms' own prevalences, beside the paper's columns they mirror."""
    from raddino.eval import probe_tables

    if lateral:
        folder = probe_tables.lateral_probe_phantoms(n, size, seed, runs_root)
        labels = probe_tables.drawn_labels(folder)
        beside = probe_tables.lateral_beside_paper
        name = "lateral phantoms"
    else:
        folder = probe_tables.probe_phantoms(n, size, seed, runs_root)
        labels, beside = list(folder.label_names), probe_tables.probe_beside_paper
        name = "frontal phantoms"
    missing = [label for label in folder.label_names if label not in labels]
    notes = [f"not drawn on these views, so not probed: {missing}"] if missing else []
    return ProbeSet(
        name, folder, labels, folder.labels_array(labels), notes=notes, beside_paper=beside
    )


def probe_results(
    probe_set: ProbeSet,
    specs: Sequence[str],
    *,
    seeds: int,
    c: float,
    size: int | None,
    seed: int = 0,
    runs_root: str = "runs",
    device: str = "cpu",
) -> dict[str, dict]:
    """`run_probes` of each encoder spec's frozen class tokens on the set (features cached)."""
    from raddino.eval.ablations import cached_cls
    from raddino.eval.probe import run_probes

    subjects_n = probe_set.folder.table["subject_id"].to_numpy()
    config = probe_set.config(seeds, c, seed)
    results = {}
    for spec in specs:
        cls_nc = cached_cls(
            spec, probe_set.folder, size=size, seed=seed, runs_root=runs_root, device=device
        )
        results[spec] = run_probes(
            cls_nc, probe_set.labels_nl, subjects_n, probe_set.labels, config, progress=False
        )
    return results


def not_probed_text(results: Mapping[str, Mapping[str, Mapping]]) -> str:
    """One line per (probe set, encoder) naming the labels a seed could not probe (no positive or
    no negative in a split), so that nothing is dropped silently."""
    return "\n".join(
        f"{name}, {spec}: not probed (no positives in a split): "
        f"{result['labels_not_probed'] or 'none'}"
        for name, by_encoder in results.items()
        for spec, result in by_encoder.items()
    )
