"""SIIM-ACR Pneumothorax Segmentation: train-rle.csv (relative RLE, one row per component)."""

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


def parse_siim_acr(root: Path, options: AdapterOptions) -> ParsedDataset:
    """Pneumothorax = any non-empty RLE row of the image; masks are the union of its rows.

    subject_id is the ImageId (the CSV links no patient; headers are not read for ids).
    """
    del options
    path = find_label_file(root, "train-rle.csv")
    table = read_csv_checked(path, ["ImageId", "EncodedPixels"], dtype=str, keep_default_na=False)
    table["ImageId"] = table["ImageId"].str.strip()
    empty = table["EncodedPixels"].map(is_empty_rle)
    image_ids = table["ImageId"].drop_duplicates().to_numpy()
    rles = table[~empty].groupby("ImageId", sort=False)["EncodedPixels"].agg(list).to_dict()
    files = index_files_by_stem([root])
    images = [
        found.relative_to(root).as_posix()
        if (found := files.get(i))
        else f"dicom-images-train/{i}.dcm"
        for i in image_ids
    ]
    image_of_id = dict(zip(image_ids, images, strict=True))
    out = pd.DataFrame(
        {
            "image": images,
            "subject_id": image_ids,
            "view": "",
            "Pneumothorax": pd.Series(image_ids).isin(rles).astype(np.int64).to_numpy(),
        }
    )
    return ParsedDataset(
        name="siim-acr",
        table=out,
        labels=["Pneumothorax"],
        image_root=root,
        excluded=Counter(),
        notes=[
            "labels: Pneumothorax = image has a non-empty RLE row; masks: union of its rows",
            "subject_id: ImageId (no patient id without DICOM headers); view: DICOM ViewPosition",
        ],
        masks={"pneumothorax": {image_of_id[i]: r for i, r in rles.items()}},
    )
