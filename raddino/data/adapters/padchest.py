"""PadChest: all PA/AP/lateral images with the paper's three lateral-view findings (Table A.1)."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from raddino.data.adapters.common import (
    AdapterOptions,
    ParsedDataset,
    drop_unmapped_views,
    find_label_file,
    map_views,
    normalise_sex,
    read_csv_checked,
)

# Table A.1: Vertebral Deg. Changes, Pleural Effusion, Costophrenic Angle Blunting (PadChest terms).
PADCHEST_FINDINGS: tuple[str, ...] = (
    "vertebral degenerative changes",
    "pleural effusion",
    "costophrenic angle blunting",
)
PADCHEST_VIEWS = {"PA": "PA", "AP": "AP", "AP_HORIZONTAL": "AP", "L": "LATERAL"}
LABELS_FILE = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"


def parse_padchest(root: Path, options: AdapterOptions) -> ParsedDataset:
    """A finding is 1 if its exact PadChest term is in the image's `Labels` list, else 0; a row
    without a Labels list has all findings unknown. Images live in `<ImageDir>/<ImageID>`."""
    del options
    path = find_label_file(root, LABELS_FILE)
    required = ["ImageID", "ImageDir", "PatientID", "Projection", "Labels"]
    table = read_csv_checked(
        path, required, dtype={"ImageID": str, "PatientID": str}, low_memory=False
    )
    label_lists = [_parse_label_list(text, path, row) for row, text in enumerate(table["Labels"])]
    values = {
        name: [np.nan if terms is None else float(name in terms) for terms in label_lists]
        for name in PADCHEST_FINDINGS
    }
    excluded: Counter = Counter()
    view = map_views(
        table["Projection"].str.replace(" ", "_"), PADCHEST_VIEWS, excluded, "Projection"
    )
    out = pd.DataFrame(
        {
            "image": table["ImageDir"].astype(str).str.strip() + "/" + table["ImageID"].str.strip(),
            "subject_id": table["PatientID"],
            "view": view,
            **values,
        }
    )
    if "PatientSex_DICOM" in table:
        out["sex"] = normalise_sex(table["PatientSex_DICOM"])
    if "PatientBirth" in table and "StudyDate_DICOM" in table:
        study_year = pd.to_numeric(table["StudyDate_DICOM"], errors="coerce") // 10000
        out["age"] = study_year - pd.to_numeric(table["PatientBirth"], errors="coerce")
    return ParsedDataset(
        name="padchest",
        table=drop_unmapped_views(out),
        labels=list(PADCHEST_FINDINGS),
        image_root=root,
        excluded=excluded,
        notes=[
            "labels: exact PadChest term in Labels (e.g. 'loculated pleural effusion' is not "
            "'pleural effusion'); no Labels list -> unknown",
            "subject_id: PatientID (de-identified in the CSV); age: study year - birth year",
            "the paper's lateral task uses view LATERAL only (index with --views lateral)",
        ],
        default_fractions=(0.8, 0.1, 0.1),
    )


def _parse_label_list(text: object, path: Path, row: int) -> set[str] | None:
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        terms = ast.literal_eval(text)  # a Python list literal, parsed safely (no code runs)
    except (ValueError, SyntaxError):
        raise ValueError(
            f"{path}: column 'Labels' row {row} is not a list: {text[:60]!r}"
        ) from None
    if not isinstance(terms, list | tuple):
        raise ValueError(f"{path}: column 'Labels' row {row} is not a list: {text[:60]!r}")
    return {str(term).strip() for term in terms}
