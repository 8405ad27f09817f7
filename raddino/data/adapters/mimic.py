"""MIMIC-CXR-JPG 2.0.0: CheXpert labels, views, official splits; metadata from MIMIC-IV.

CheXpert labels per study, view and official split per image, and with a MIMIC-IV folder
(`--mimic-iv`) the patients' sex, age, height, weight and BMI (Table 7).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from raddino.data.adapters.common import (
    AdapterOptions,
    ParsedDataset,
    apply_uncertain,
    drop_unmapped_views,
    find_label_file,
    map_views,
    read_csv_checked,
)
from raddino.data.adapters.mimic_iv import MIMIC_IV_COLUMNS, OMR_WINDOW_DAYS, mimic_iv_metadata

CHEXPERT_FINDINGS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
MIMIC_VIEWS = {"PA": "PA", "AP": "AP", "LATERAL": "LATERAL", "LL": "LATERAL"}
MIMIC_SPLITS = {"train": "train", "validate": "val", "test": "test"}
LABELS_FILE = "mimic-cxr-2.0.0-chexpert.csv"
METADATA_FILE = "mimic-cxr-2.0.0-metadata.csv"
SPLIT_FILE = "mimic-cxr-2.0.0-split.csv"


def parse_mimic_cxr(root: Path, options: AdapterOptions) -> ParsedDataset:
    """Images of the metadata file, with their study's CheXpert labels and the official split.

    Uncertain (-1) follows `options.uncertain` (default: unknown, i.e. blank); blank = unknown.
    Images of studies without a CheXpert row keep all labels blank (the labeler left them out).
    With `options.mimic_iv`, metadata come from MIMIC-IV at each image's StudyDate.
    """
    labels_path = find_label_file(root, LABELS_FILE)
    metadata_path = find_label_file(root, METADATA_FILE)
    split_path = find_label_file(root, SPLIT_FILE)
    ids = ["subject_id", "study_id"]
    labels = read_csv_checked(labels_path, [*ids, *CHEXPERT_FINDINGS], dtype={c: str for c in ids})
    dated = ["StudyDate"] if options.mimic_iv else []
    metadata = read_csv_checked(
        metadata_path,
        ["dicom_id", *ids, "ViewPosition", *dated],
        dtype={c: str for c in [*ids, "StudyDate"]},
    )
    splits = read_csv_checked(split_path, ["dicom_id", "split"], dtype={"dicom_id": str})
    duplicated = labels.duplicated(ids)
    if duplicated.any():
        raise ValueError(f"{labels_path}: study {labels[ids][duplicated].iloc[0].tolist()} repeats")
    for name in CHEXPERT_FINDINGS:
        labels[name] = apply_uncertain(labels[name], options.uncertain, str(labels_path))

    excluded: Counter = Counter()
    table = metadata[["dicom_id", *ids]].copy()
    table["view"] = map_views(metadata["ViewPosition"], MIMIC_VIEWS, excluded, "ViewPosition")
    table = table.merge(labels[[*ids, *CHEXPERT_FINDINGS]], on=ids, how="left", validate="m:1")
    unknown_split = ~splits["split"].isin(list(MIMIC_SPLITS))
    if unknown_split.any():
        value = splits["split"][unknown_split].iloc[0]
        raise ValueError(
            f"{split_path}: column 'split' has {value!r}; expected {list(MIMIC_SPLITS)}"
        )
    split_of = dict(zip(splits["dicom_id"], splits["split"].map(MIMIC_SPLITS), strict=True))
    table["split"] = table["dicom_id"].map(split_of)
    no_split = table["split"].isna()
    if no_split.any():
        raise ValueError(
            f"{split_path}: no split for {int(no_split.sum())} image(s) of {metadata_path}, "
            f"e.g. dicom_id {table['dicom_id'][no_split].iloc[0]!r}"
        )
    table["image"] = [
        f"files/p{s[:2]}/p{s}/s{st}/{d}.jpg"
        for s, st, d in zip(table["subject_id"], table["study_id"], table["dicom_id"], strict=True)
    ]
    notes = [
        f"labels: CheXpert labeler per study ({LABELS_FILE}); -1 (uncertain) -> "
        f"{options.uncertain}; blank -> unknown",
        "subject_id: MIMIC's de-identified subject_id; split: official (validate -> val)",
    ]
    columns = ["image", "subject_id", "view", "split", *CHEXPERT_FINDINGS, "study_id"]
    if options.mimic_iv:
        table = _with_mimic_iv(table, metadata, metadata_path, Path(options.mimic_iv))
        columns += list(MIMIC_IV_COLUMNS)
        notes.append(
            "metadata: MIMIC-IV hosp/patients (sex; age = anchor_age + study year - anchor_year) "
            f"and hosp/omr (height, weight, BMI nearest the study, within {OMR_WINDOW_DAYS} days)"
        )
    table = drop_unmapped_views(table)
    return ParsedDataset(
        name="mimic-cxr",
        table=table[columns],
        labels=list(CHEXPERT_FINDINGS),
        image_root=root,
        excluded=excluded,
        notes=notes,
    )


def _with_mimic_iv(
    table: pd.DataFrame, metadata: pd.DataFrame, metadata_path: Path, mimic_iv: Path
) -> pd.DataFrame:
    """`table` with MIMIC_IV_COLUMNS from MIMIC-IV at each image's StudyDate (YYYYMMDD)."""
    study_date = pd.to_datetime(metadata["StudyDate"].str.strip(), format="%Y%m%d", errors="coerce")
    if study_date.isna().any():
        value = metadata["StudyDate"][study_date.isna()].iloc[0]
        raise ValueError(f"{metadata_path}: StudyDate {value!r} is not a YYYYMMDD date")
    dates = dict(zip(metadata["dicom_id"], study_date, strict=True))
    studies = pd.DataFrame(
        {"subject_id": table["subject_id"], "study_date": table["dicom_id"].map(dates)}
    )
    joined = mimic_iv_metadata(mimic_iv, studies)
    return table.assign(**{c: joined[c].to_numpy() for c in MIMIC_IV_COLUMNS})
