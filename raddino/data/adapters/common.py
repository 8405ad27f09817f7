"""Shared pieces of the real-dataset adapters: the parsed result, label files, views, policies."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

UNCERTAIN_POLICIES: tuple[str, ...] = ("unknown", "negative", "positive")
READER_VOTES: tuple[str, ...] = ("any", "majority")
IMAGE_SUFFIXES: tuple[str, ...] = (".dcm", ".dicom", ".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class AdapterOptions:
    """Choices an adapter's label handling depends on (recorded in dataset.json)."""

    uncertain: str = "unknown"  # CheXpert-style -1: "unknown" (blank), "negative" (0), "positive"
    reader_vote: str = "any"  # VinDr-CXR: positive if "any" reader, or a strict "majority"
    mimic_iv: str | None = None  # MIMIC-CXR: a MIMIC-IV folder that gives patient metadata

    def __post_init__(self) -> None:
        if self.uncertain not in UNCERTAIN_POLICIES:
            raise ValueError(f"--uncertain must be one of {list(UNCERTAIN_POLICIES)}")
        if self.reader_vote not in READER_VOTES:
            raise ValueError(f"--reader-vote must be one of {list(READER_VOTES)}")


@dataclass
class ParsedDataset:
    """An adapter's reading of a dataset's label files, before images are looked at.

    `table` has `image` (path relative to `image_root`), `subject_id`, `view` (PA/AP/LATERAL, or
    "" where the view must come from the image's DICOM header), optionally `split`, the `labels`
    and metadata columns. `masks` maps structure -> image -> relative-RLE strings (positives only).
    """

    name: str
    table: pd.DataFrame
    labels: list[str]
    image_root: Path
    excluded: Counter = field(default_factory=Counter)  # reason -> rows left out
    notes: list[str] = field(default_factory=list)  # label/subject/view policies, for dataset.json
    masks: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    default_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)


def find_label_file(root: Path, *names: str) -> Path:
    """The first of `names` (or its .gz) under `root`; FileNotFoundError naming what is expected."""
    for name in names:
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    expected = " or ".join(repr(n) for n in names)
    raise FileNotFoundError(f"{root}: expected label file {expected} (plain or .gz) not found")


def optional_label_file(root: Path, *names: str) -> Path | None:
    try:
        return find_label_file(root, *names)
    except FileNotFoundError:
        return None


def read_csv_checked(path: Path, required: Sequence[str], **kwargs) -> pd.DataFrame:
    """Read a CSV (column names stripped of spaces) and check it has the `required` columns."""
    try:
        table = pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, OSError) as err:
        raise ValueError(f"{path}: cannot parse as CSV ({type(err).__name__}: {err})") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; has {list(table.columns)[:12]}")
    if table.empty:
        raise ValueError(f"{path}: no rows")
    return table


def map_views(raw: pd.Series, mapping: dict[str, str], excluded: Counter, what: str) -> pd.Series:
    """Map raw view names to PA/AP/LATERAL; unmapped ones become "" and are counted in `excluded`.

    The caller drops the "" rows; the counts go to dataset.json, so nothing disappears unseen.
    """
    text = raw.fillna("").astype(str).str.strip()
    mapped = text.map(lambda v: mapping.get(v.upper(), ""))
    for value, count in text[mapped == ""].value_counts().items():
        excluded[f"{what} {value or '(blank)'!r} is not PA/AP/lateral"] += int(count)
    return mapped


def apply_uncertain(values: pd.Series, policy: str, source: str) -> pd.Series:
    """CheXpert-style labels (1, 0, -1 uncertain, blank unknown) -> 1/0/NaN under `policy`."""
    numbers = pd.to_numeric(values, errors="coerce")
    bad = values.notna() & ~numbers.isin([1.0, 0.0, -1.0])
    if bad.any():
        row = int(np.argmax(bad.to_numpy()))
        raise ValueError(f"{source}: column {values.name!r} row {row} has {str(values.iat[row])!r}")
    replacement = {"unknown": np.nan, "negative": 0.0, "positive": 1.0}[policy]
    return numbers.where(numbers != -1.0, replacement)


def normalise_sex(values: pd.Series) -> pd.Series:
    """M/F from Male/Female/M/F (any case); anything else (Unknown, O, blank) -> ""."""
    text = values.fillna("").astype(str).str.strip().str.upper()
    return text.map({"M": "M", "MALE": "M", "F": "F", "FEMALE": "F"}).fillna("")


def drop_unmapped_views(parsed_table: pd.DataFrame) -> pd.DataFrame:
    return parsed_table[parsed_table["view"] != ""].reset_index(drop=True)


def index_files_by_stem(folders: Iterable[Path], suffixes: Sequence[str] = IMAGE_SUFFIXES) -> dict:
    """Map file key -> path for image files under `folders` (recursive); the key drops a known
    image suffix only, because ids such as DICOM UIDs contain dots."""
    found: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for dirpath, _, filenames in os.walk(folder):
            for filename in filenames:
                lower = filename.lower()
                suffix = next((s for s in suffixes if lower.endswith(s)), None)
                key = filename[: -len(suffix)] if suffix else filename
                found.setdefault(key, Path(dirpath) / filename)
    return found


def strip_image_suffix(name: str) -> str:
    lower = name.lower()
    suffix = next((s for s in IMAGE_SUFFIXES if lower.endswith(s)), "")
    return name[: len(name) - len(suffix)] if suffix else name
