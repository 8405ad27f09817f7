"""CheXpert (v1.0 or -small): train.csv, valid.csv with Path, Sex, Age, Frontal/Lateral, AP/PA."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pandas as pd

from raddino.data.adapters.common import (
    AdapterOptions,
    ParsedDataset,
    apply_uncertain,
    drop_unmapped_views,
    find_label_file,
    normalise_sex,
    optional_label_file,
    read_csv_checked,
)
from raddino.data.adapters.mimic import CHEXPERT_FINDINGS

_PATIENT = re.compile(r"(?:^|/)(patient\d+)/")


def parse_chexpert(root: Path, options: AdapterOptions) -> ParsedDataset:
    """Rows of train.csv (split train) and valid.csv (split val, if present).

    CSV paths start with the dataset folder's own name ("CheXpert-v1.0-small/train/..."), so the
    image root is `root`'s parent when they do. Uncertain -1 follows `options.uncertain`.
    """
    required = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_FINDINGS]
    parts = []
    for split, path in (
        ("train", find_label_file(root, "train.csv")),
        ("val", optional_label_file(root, "valid.csv")),
    ):
        if path is None:
            continue
        part = read_csv_checked(path, required, dtype={"Path": str})
        for name in CHEXPERT_FINDINGS:
            part[name] = apply_uncertain(part[name], options.uncertain, str(path))
        part["split"] = split
        part["source_file"] = path.name
        parts.append(part)
    table = pd.concat(parts, ignore_index=True)
    subjects = table["Path"].str.extract(_PATIENT, expand=False)
    if subjects.isna().any():
        row = int(subjects.isna().to_numpy().argmax())
        raise ValueError(
            f"{root / table['source_file'].iat[row]}: Path {table['Path'].iat[row]!r} has no "
            "'patientNNNNN/' folder to take the subject id from"
        )
    first_parts = table["Path"].str.split("/").str[0]
    image_root = root.parent if (first_parts == root.name).all() else root

    excluded: Counter = Counter()
    frontal_lateral = table["Frontal/Lateral"].fillna("").str.strip().str.lower()
    ap_pa = table["AP/PA"].fillna("").str.strip().str.upper()
    view = pd.Series("", index=table.index)
    view[frontal_lateral == "lateral"] = "LATERAL"
    view[(frontal_lateral == "frontal") & (ap_pa == "AP")] = "AP"
    view[(frontal_lateral == "frontal") & (ap_pa == "PA")] = "PA"
    for (fl, ap), count in (
        pd.DataFrame({"fl": frontal_lateral, "ap": ap_pa})[view == ""].value_counts().items()
    ):
        excluded[f"Frontal/Lateral {fl!r} with AP/PA {ap!r} is not PA/AP/lateral"] += int(count)

    out = pd.DataFrame(
        {
            "image": table["Path"],
            "subject_id": subjects,
            "view": view,
            "split": table["split"],
            **{name: table[name] for name in CHEXPERT_FINDINGS},
            "sex": normalise_sex(table["Sex"]),
            "age": pd.to_numeric(table["Age"], errors="coerce"),
        }
    )
    return ParsedDataset(
        name="chexpert",
        table=drop_unmapped_views(out),
        labels=list(CHEXPERT_FINDINGS),
        image_root=image_root,
        excluded=excluded,
        notes=[
            f"labels: CheXpert labeler; -1 (uncertain) -> {options.uncertain}; blank -> unknown",
            "subject_id: patientNNNNN from Path; split: train.csv -> train, valid.csv -> val",
        ],
    )
