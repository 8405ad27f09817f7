"""RSNA Pneumonia Detection Challenge: stage_2_train_labels.csv, one image per patientId."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from raddino.data.adapters.common import (
    AdapterOptions,
    ParsedDataset,
    find_label_file,
    read_csv_checked,
)


def parse_rsna_pneumonia(root: Path, options: AdapterOptions) -> ParsedDataset:
    """Pneumonia = Target (one row per box; rows of one patientId must agree).

    patientId is per image in this dataset, so it is the subject id; views come from the DICOM
    ViewPosition tag (the only header tag read besides the pixel size).
    """
    del options
    path = find_label_file(root, "stage_2_train_labels.csv", "stage_1_train_labels.csv")
    table = read_csv_checked(path, ["patientId", "Target"], dtype={"patientId": str})
    target = pd.to_numeric(table["Target"], errors="coerce")
    if not target.isin([0, 1]).all():
        row = int(np.argmax(~target.isin([0, 1]).to_numpy()))
        raise ValueError(
            f"{path}: column 'Target' row {row} has {str(table['Target'].iat[row])!r}; 0/1"
        )
    per_image = target.groupby(table["patientId"], sort=False).agg(["min", "max"])
    disagree = per_image["min"] != per_image["max"]
    if disagree.any():
        raise ValueError(
            f"{path}: rows of patientId {per_image.index[disagree][0]!r} disagree on Target"
        )
    folder = "stage_2_train_images" if path.name.startswith("stage_2") else "stage_1_train_images"
    out = pd.DataFrame(
        {
            "image": [f"{folder}/{pid}.dcm" for pid in per_image.index],
            "subject_id": per_image.index.to_numpy(),
            "view": "",
            "Pneumonia": per_image["max"].astype(np.int64).to_numpy(),
        }
    )
    return ParsedDataset(
        name="rsna-pneumonia",
        table=out,
        labels=["Pneumonia"],
        image_root=root,
        excluded=Counter(),
        notes=[
            f"labels: Pneumonia = Target of {path.name} (boxes collapsed per image)",
            "subject_id: patientId (one image per patient); view: DICOM ViewPosition",
        ],
        default_fractions=(0.6, 0.2, 0.2),
    )
