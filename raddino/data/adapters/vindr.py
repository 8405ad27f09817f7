"""VinDr-CXR: the paper's six findings (Table 3), image-level labels from the radiologists' reads.

Two layouts are understood: PhysioNet 1.0.0 (`annotations/image_labels_train.csv`, one row per
image and reader, and `annotations/image_labels_test.csv`, one consensus row per image) and the
Kaggle VinBigData competition (`train.csv`, one row per box or "No finding" per reader; it has no
Tuberculosis, so that label is left out with a note).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from raddino.data.adapters.common import (
    AdapterOptions,
    ParsedDataset,
    index_files_by_stem,
    optional_label_file,
    read_csv_checked,
)

# Table 3: LO, CM, PL-T, AE, PF, TB.
VINDR_FINDINGS: tuple[str, ...] = (
    "Lung Opacity",
    "Cardiomegaly",
    "Pleural thickening",
    "Aortic enlargement",
    "Pulmonary fibrosis",
    "Tuberculosis",
)


def parse_vindr_cxr(root: Path, options: AdapterOptions) -> ParsedDataset:
    """Per-image labels: a reader-level table is reduced by `options.reader_vote`.

    "any": positive if at least one reader marked the finding; "majority": if more than half
    of the image's readers did. Test-set consensus labels are used as given. subject_id is the
    image_id (VinDr-CXR gives no patient id outside the DICOM headers, which we never read);
    view is PA (the dataset contains only posteroanterior radiographs).
    """
    annotations = root / "annotations"
    physionet_train = optional_label_file(annotations, "image_labels_train.csv")
    kaggle_train = optional_label_file(root, "train.csv")
    notes = [
        f"labels: reader vote '{options.reader_vote}' over the readers of each training image",
        "subject_id: image_id (no patient id without DICOM headers); view: PA for all images",
    ]
    if physionet_train is not None:
        train = read_csv_checked(physionet_train, ["image_id", "rad_id", *VINDR_FINDINGS])
        labels_train = _vote(train, list(VINDR_FINDINGS), options.reader_vote, physionet_train)
        labels_train["split"] = "train"
        parts = [labels_train]
        physionet_test = optional_label_file(annotations, "image_labels_test.csv")
        if physionet_test is not None:
            test = read_csv_checked(physionet_test, ["image_id", *VINDR_FINDINGS])
            if test["image_id"].duplicated().any():
                raise ValueError(f"{physionet_test}: image_id repeats; expected consensus rows")
            test = test[["image_id", *VINDR_FINDINGS]].copy()
            _check_binary(test, list(VINDR_FINDINGS), physionet_test)
            test["split"] = "test"
            parts.append(test)
        else:
            notes.append("annotations/image_labels_test.csv absent: training images only")
        labels = list(VINDR_FINDINGS)
        table = pd.concat(parts, ignore_index=True)
    elif kaggle_train is not None:
        boxes = read_csv_checked(kaggle_train, ["image_id", "class_name", "rad_id"])
        labels = [f for f in VINDR_FINDINGS if f != "Tuberculosis"]
        indicator = pd.DataFrame({"image_id": boxes["image_id"], "rad_id": boxes["rad_id"]})
        for name in labels:
            indicator[name] = (boxes["class_name"].str.strip() == name).astype(np.int64)
        reads = indicator.groupby(["image_id", "rad_id"], sort=False).max().reset_index()
        table = _vote(reads, labels, options.reader_vote, kaggle_train)
        table["split"] = "train"
        notes.append("Kaggle VinBigData train.csv: no Tuberculosis label; no test labels")
    else:
        raise FileNotFoundError(
            f"{root}: expected VinDr-CXR labels 'annotations/image_labels_train.csv' "
            "(PhysioNet) or 'train.csv' (Kaggle VinBigData), found neither"
        )
    if table["image_id"].duplicated().any():
        raise ValueError(
            f"{root}: image_id {table['image_id'][table['image_id'].duplicated()].iloc[0]!r} "
            "is in both the train and the test labels"
        )
    files = index_files_by_stem([root / "train", root / "test"])
    images = [
        _relative(files.get(i), root) or f"{split}/{i}.dicom"
        for i, split in zip(table["image_id"], table["split"], strict=True)
    ]
    out = pd.DataFrame(
        {
            "image": images,
            "subject_id": table["image_id"],
            "view": "PA",
            "split": table["split"],
            **{name: table[name] for name in labels},
        }
    )
    return ParsedDataset(
        name="vindr-cxr",
        table=out,
        labels=labels,
        image_root=root,
        excluded=Counter(),
        notes=notes,
    )


def _vote(reads: pd.DataFrame, labels: list[str], vote: str, source: Path) -> pd.DataFrame:
    """One row per image from one row per (image, reader)."""
    _check_binary(reads, labels, source)
    grouped = reads.groupby("image_id", sort=False)
    if vote == "any":
        voted = grouped[labels].max()
    else:
        positives = grouped[labels].sum()
        readers = grouped["rad_id"].nunique()
        voted = (positives.mul(2).gt(readers, axis=0)).astype(np.int64)
    return voted.astype(np.int64).reset_index()


def _check_binary(table: pd.DataFrame, labels: list[str], source: Path) -> None:
    for name in labels:
        values = pd.to_numeric(table[name], errors="coerce")
        bad = ~values.isin([0, 1])
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise ValueError(
                f"{source}: column {name!r} row {row} has {str(table[name].iat[row])!r}; 0/1"
            )


def _relative(path: Path | None, root: Path) -> str | None:
    return None if path is None else path.relative_to(root).as_posix()
