"""NIH ChestX-ray14: Data_Entry_2017.csv ("A|B" findings), official train_val/test lists."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from raddino.data.adapters.common import (
    AdapterOptions,
    ParsedDataset,
    drop_unmapped_views,
    find_label_file,
    index_files_by_stem,
    map_views,
    normalise_sex,
    optional_label_file,
    read_csv_checked,
    strip_image_suffix,
)

NIH_FINDINGS: tuple[str, ...] = (
    "No Finding",
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
NIH_VIEWS = {"PA": "PA", "AP": "AP"}


def parse_nih_cxr14(root: Path, options: AdapterOptions) -> ParsedDataset:
    """One row per image; a finding is 1 if named in "Finding Labels"; split from the official
    lists when both are present (train_val -> train), else blank."""
    del options
    path = find_label_file(root, "Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv")
    required = [
        "Image Index",
        "Finding Labels",
        "Patient ID",
        "Patient Age",
        "Patient Gender",
        "View Position",
    ]
    table = read_csv_checked(path, required, dtype={"Image Index": str, "Patient ID": str})
    term_sets = [
        {t.strip() for t in text.split("|")} for text in table["Finding Labels"].fillna("")
    ]
    known = set(NIH_FINDINGS)
    for row, terms in enumerate(term_sets):
        if not terms <= known:
            unknown = sorted(terms - known)[0]
            raise ValueError(f"{path}: 'Finding Labels' row {row} has unknown finding {unknown!r}")
    values = {
        name: np.fromiter((name in terms for terms in term_sets), dtype=np.int64, count=len(table))
        for name in NIH_FINDINGS
    }
    excluded: Counter = Counter()
    files = index_files_by_stem([root], suffixes=(".png",))
    names = table["Image Index"].str.strip()
    images = [
        found.relative_to(root).as_posix()
        if (found := files.get(strip_image_suffix(n)))
        else f"images/{n}"
        for n in names
    ]
    out = pd.DataFrame(
        {
            "image": images,
            "subject_id": table["Patient ID"].str.strip(),
            "view": map_views(table["View Position"], NIH_VIEWS, excluded, "View Position"),
            **values,
            "sex": normalise_sex(table["Patient Gender"]),
            "age": pd.to_numeric(table["Patient Age"], errors="coerce"),
        }
    )
    notes = ["labels: finding named in 'Finding Labels'", "subject_id: Patient ID"]
    train_list = optional_label_file(root, "train_val_list.txt")
    test_list = optional_label_file(root, "test_list.txt")
    if train_list is not None and test_list is not None:
        split_of = {n: "train" for n in _read_list(train_list)}
        for n in _read_list(test_list):
            if split_of.get(n) == "train":
                raise ValueError(f"{test_list}: {n!r} is also in {train_list.name}")
            split_of[n] = "test"
        out["split"] = names.map(split_of).fillna("")
        notes.append("split: official train_val_list.txt -> train, test_list.txt -> test")
    return ParsedDataset(
        name="nih-cxr14",
        table=drop_unmapped_views(out),
        labels=list(NIH_FINDINGS),
        image_root=root,
        excluded=excluded,
        notes=notes,
    )


def _read_list(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]
