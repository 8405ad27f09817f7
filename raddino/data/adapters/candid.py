"""CANDID-PTX: pneumothorax, chest tube and rib fracture labels with relative-RLE masks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from raddino.data.adapters.common import (
    AdapterOptions,
    ParsedDataset,
    find_label_file,
    index_files_by_stem,
    read_csv_checked,
)
from raddino.data.rle import is_empty_rle

# label column -> (mask structure, label file names, id columns, RLE columns) in preference order.
CANDID_FINDINGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Pneumothorax": ("pneumothorax", ("Pneumothorax_reports.csv",)),
    "Chest Tube": ("chest_tube", ("chest_tube.csv",)),
    "Rib Fracture": ("rib_fracture", ("acute_rib_fracture.csv", "Rib_fracture_mask_rle.csv")),
}
_ID_COLUMNS = ("SOPInstanceUID", "anon_SOPUID")
_RLE_COLUMNS = ("EncodedPixels", "mask_rle")


def parse_candid_ptx(root: Path, options: AdapterOptions) -> ParsedDataset:
    """All images of Pneumothorax_reports.csv; chest tube / rib fracture files list positives.

    A label is 1 if the image has a non-empty RLE row for it, else 0. subject_id is the
    StudyInstanceUID (the coarsest grouping the CSVs give without DICOM headers; the SOP UID when
    that column is absent). Views come from the DICOM ViewPosition tag.
    """
    del options
    tables = {}
    for label, (_, names) in CANDID_FINDINGS.items():
        path = find_label_file(root, *names)
        header = pd.read_csv(path, nrows=0).columns.str.strip()
        id_column = next((c for c in _ID_COLUMNS if c in header), _ID_COLUMNS[0])
        rle_column = next((c for c in _RLE_COLUMNS if c in header), _RLE_COLUMNS[0])
        table = read_csv_checked(path, [id_column, rle_column], dtype=str, keep_default_na=False)
        tables[label] = (path, table.rename(columns={id_column: "uid", rle_column: "rle"}))

    reports_path, reports = tables["Pneumothorax"]
    images = reports.drop_duplicates("uid").reset_index(drop=True)
    known = set(images["uid"])
    excluded: Counter = Counter()
    masks: dict[str, dict[str, list[str]]] = {}
    values = {}
    for label, (path, table) in tables.items():
        structure = CANDID_FINDINGS[label][0]
        unknown = ~table["uid"].isin(known)
        if unknown.any():
            excluded[f"{path.name}: rows for images not in {reports_path.name}"] += int(
                unknown.sum()
            )
        positive = table[~unknown & ~table["rle"].map(is_empty_rle)]
        masks[structure] = positive.groupby("uid", sort=False)["rle"].agg(list).to_dict()
        values[label] = images["uid"].isin(masks[structure]).astype(np.int64)

    files = index_files_by_stem([root])
    image_paths = [
        found.relative_to(root).as_posix() if (found := files.get(uid)) else f"images/{uid}.dcm"
        for uid in images["uid"]
    ]
    subject_source = "StudyInstanceUID" if "StudyInstanceUID" in images else "uid"
    out = pd.DataFrame(
        {
            "image": image_paths,
            "subject_id": images[subject_source].where(images[subject_source] != "", images["uid"]),
            "view": "",
            **values,
        }
    )
    image_of_uid = dict(zip(images["uid"], out["image"], strict=True))
    masks = {
        structure: {image_of_uid[uid]: rles for uid, rles in per_uid.items()}
        for structure, per_uid in masks.items()
    }
    return ParsedDataset(
        name="candid-ptx",
        table=out,
        labels=list(CANDID_FINDINGS),
        image_root=root,
        excluded=excluded,
        notes=[
            "labels: 1 if the image has a non-empty RLE row in the finding's CSV, else 0",
            f"subject_id: {subject_source if subject_source != 'uid' else 'SOPInstanceUID'}",
            "masks: decoded from the RLE rows; all-zero on images without a row for the finding",
        ],
        masks=masks,
        default_fractions=(0.6, 0.2, 0.2),
    )
