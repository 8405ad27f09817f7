"""Subject-level train/val/test splits and k-folds: no subject's images ever straddle two splits.

`subject_split` keeps official splits (an `existing` split per row) and assigns the other subjects
greedily, optionally stratified by multi-label targets; `subject_kfold` wraps scikit-learn's
group k-fold for the metadata evaluator. `check_label_positives` flags a label without positives in
a split (an error or a warning: the caller decides, see its docstring).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")


def subject_split(
    subject_ids: Sequence[str] | np.ndarray | pd.Series,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    *,
    labels: np.ndarray | None = None,
    existing: Sequence[str] | np.ndarray | pd.Series | None = None,
    names: Sequence[str] = SPLIT_NAMES,
) -> np.ndarray:
    """Split name per row (str array); rows of one subject always share a split.

    `fractions` are of images (rows), matched greedily by whole subjects. `labels` (N, L) with 0/1
    and NaN = unknown turns on stratification: rarest label first, each of its positive subjects
    goes to the split furthest below its share of that label's positive subjects (greedy
    iterative stratification in the spirit of Sechidis et al. 2011); the remaining subjects then
    fill the splits furthest below their image share. `existing` names a split per row (blank =
    free); those subjects keep it and count towards the shares.
    """
    subjects = _as_subject_array(subject_ids)
    names = [str(n) for n in names]
    shares = _check_fractions(fractions, names)
    codes, n_subjects = _factorize(subjects)
    images_per_subject = np.bincount(codes, minlength=n_subjects).astype(np.float64)
    subject_split_idx = _fixed_subject_splits(subjects, codes, n_subjects, existing, names)

    positives_sl = np.zeros((n_subjects, 0), dtype=bool)
    if labels is not None:
        labels_nl = np.asarray(labels, dtype=np.float64)
        if labels_nl.ndim == 1:
            labels_nl = labels_nl[:, None]
        if labels_nl.shape[0] != len(subjects):
            raise ValueError(
                f"labels has {labels_nl.shape[0]} rows but there are {len(subjects)} subject ids"
            )
        positives_sl = np.zeros((n_subjects, labels_nl.shape[1]), dtype=bool)
        np.logical_or.at(positives_sl, codes, labels_nl == 1.0)

    image_deficit_s = shares * images_per_subject.sum()
    positive_deficit_sl = shares[:, None] * positives_sl.sum(axis=0)[None, :].astype(np.float64)
    for subject in np.flatnonzero(subject_split_idx >= 0):
        split = subject_split_idx[subject]
        image_deficit_s[split] -= images_per_subject[subject]
        positive_deficit_sl[split] -= positives_sl[subject]

    usable_s = shares > 0
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_subjects)

    def assign(subject: int, deficit_s: np.ndarray) -> None:
        # Largest deficit wins; ties go to the larger image deficit (lexsort: last key first).
        score = np.where(usable_s, deficit_s, -np.inf)
        tie = np.where(usable_s, image_deficit_s, -np.inf)
        split = int(np.lexsort((-tie, -score))[0])
        subject_split_idx[subject] = split
        image_deficit_s[split] -= images_per_subject[subject]
        positive_deficit_sl[split] -= positives_sl[subject]

    free_positive_counts = positives_sl[subject_split_idx < 0].sum(axis=0)
    for label in np.argsort(free_positive_counts, kind="stable"):
        for subject in order:
            if subject_split_idx[subject] < 0 and positives_sl[subject, label]:
                assign(subject, positive_deficit_sl[:, label].copy())
    for subject in order:
        if subject_split_idx[subject] < 0:
            assign(subject, image_deficit_s.copy())
    return np.asarray(names, dtype=object)[subject_split_idx[codes]]


def subject_kfold(
    subject_ids: Sequence[str] | np.ndarray | pd.Series,
    k: int = 5,
    seed: int = 0,
    *,
    strata: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """Fold index 0..k-1 per row, subjects never split across folds (scikit-learn group k-fold).

    `strata` (one class per row, e.g. a binned age) balances classes across folds with
    `StratifiedGroupKFold`; without it `GroupKFold` balances fold sizes. Both shuffle with `seed`.
    """
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    subjects = _as_subject_array(subject_ids)
    codes, n_subjects = _factorize(subjects)
    if not isinstance(k, int | np.integer) or k < 2:
        raise ValueError(f"k must be an integer >= 2, got {k!r}")
    if k > n_subjects:
        raise ValueError(f"k={k} folds need at least {k} subjects, got {n_subjects}")
    folds = np.full(len(subjects), -1, dtype=np.int64)
    if strata is None:
        splitter = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(codes)), groups=codes)
    else:
        strata_n = np.asarray(strata)
        if strata_n.shape != (len(subjects),):
            raise ValueError(
                f"strata must have one value per row ({len(subjects)}), got {strata_n.shape}"
            )
        if pd.isna(strata_n).any():
            raise ValueError("strata contain missing values; drop or bin those rows first")
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(codes)), strata_n, groups=codes)
    for fold, (_, test_rows) in enumerate(splits):
        folds[test_rows] = fold
    return folds


def check_label_positives(
    table: pd.DataFrame,
    label_names: Sequence[str],
    *,
    split_column: str = "split",
    source: str | os.PathLike = "labels.csv",
    on_missing: str = "warn",
) -> list[str]:
    """Messages for each (split, label) without a positive; raise (`on_missing="error"`) or warn.

    Indexing warns (a rare label may still be useful elsewhere); an evaluator that needs AUPRC
    on every split should call this with "error".
    """
    if on_missing not in ("warn", "error"):
        raise ValueError(f"on_missing must be 'warn' or 'error', got {on_missing!r}")
    missing = [c for c in (split_column, *label_names) if c not in table.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}")
    messages = []
    for split in sorted(s for s in table[split_column].dropna().unique() if str(s).strip()):
        rows = table[table[split_column] == split]
        for name in label_names:
            if not (pd.to_numeric(rows[name], errors="coerce") == 1).any():
                messages.append(
                    f"{source}: label {name!r} has no positive image in split {split!r} "
                    f"({len(rows)} images)"
                )
    if messages and on_missing == "error":
        raise ValueError("; ".join(messages))
    for message in messages:
        warnings.warn(message, stacklevel=2)
    return messages


def read_labels_table(
    path: str | os.PathLike,
    label_names: Sequence[str] = (),
    *,
    required: Sequence[str] = ("image", "subject_id"),
    allow_missing_labels: bool = True,
) -> pd.DataFrame:
    """Read a labels CSV for splitting, with errors naming the file, column and row."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels file not found: {path}")
    table = pd.read_csv(path, dtype={c: str for c in required}, keep_default_na=True)
    missing = [c for c in (*required, *label_names) if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    if table.empty:
        raise ValueError(f"{path}: no rows (empty dataset)")
    for column in required:
        blank = table[column].isna() | (table[column].astype(str).str.strip() == "")
        if blank.any():
            raise ValueError(f"{path}: column {column!r} is blank in row {int(np.argmax(blank))}")
    for name in label_names:
        values = pd.to_numeric(table[name], errors="coerce")
        bad = table[name].notna() & ~values.isin([0, 1])
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise ValueError(
                f"{path}: column {name!r} row {row} has {str(table[name].iat[row])!r}; must be 0/1"
            )
        if not allow_missing_labels and values.isna().any():
            row = int(np.argmax(values.isna().to_numpy()))
            raise ValueError(
                f"{path}: column {name!r} is blank (NaN) in row {row}; not allowed here"
            )
        table[name] = values
    return table


def _as_subject_array(subject_ids: Sequence[str] | np.ndarray | pd.Series) -> np.ndarray:
    subjects = pd.Series(subject_ids, dtype=object)
    if subjects.empty:
        raise ValueError("no subject ids given (empty dataset)")
    blank = subjects.isna() | (subjects.astype(str).str.strip() == "")
    if blank.any():
        raise ValueError(
            f"subject id is missing or blank in row {int(np.argmax(blank.to_numpy()))}"
        )
    return subjects.astype(str).to_numpy()


def _factorize(subjects: np.ndarray) -> tuple[np.ndarray, int]:
    codes, uniques = pd.factorize(subjects, sort=True)
    return codes.astype(np.int64), len(uniques)


def _check_fractions(fractions: Sequence[float], names: Sequence[str]) -> np.ndarray:
    shares = np.asarray(fractions, dtype=np.float64)
    if shares.shape != (len(names),):
        raise ValueError(f"fractions {list(fractions)} must give one value per split {list(names)}")
    if not np.isfinite(shares).all() or (shares < 0).any() or abs(shares.sum() - 1.0) > 1e-6:
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {list(fractions)}")
    if len(set(names)) != len(names):
        raise ValueError(f"split names must be distinct, got {list(names)}")
    return shares


def _fixed_subject_splits(
    subjects: np.ndarray,
    codes: np.ndarray,
    n_subjects: int,
    existing: Sequence[str] | np.ndarray | pd.Series | None,
    names: Sequence[str],
) -> np.ndarray:
    """Split index per subject from an existing per-row split (-1 = free); conflicts are errors."""
    subject_split_idx = np.full(n_subjects, -1, dtype=np.int64)
    if existing is None:
        return subject_split_idx
    existing_n = pd.Series(existing, dtype=object).fillna("").astype(str).str.strip().to_numpy()
    if len(existing_n) != len(subjects):
        raise ValueError(f"existing splits: {len(existing_n)} values for {len(subjects)} rows")
    lookup = {name: i for i, name in enumerate(names)}
    for row in np.flatnonzero(existing_n != ""):
        split = lookup.get(existing_n[row])
        if split is None:
            raise ValueError(
                f"existing split {existing_n[row]!r} in row {row} is not one of {list(names)}"
            )
        subject = codes[row]
        if subject_split_idx[subject] not in (-1, split):
            raise ValueError(
                f"subject {subjects[row]!r} is in two existing splits "
                f"({names[subject_split_idx[subject]]!r} and {existing_n[row]!r})"
            )
        subject_split_idx[subject] = split
    return subject_split_idx
