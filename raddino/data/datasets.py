"""Index a real chest X-ray dataset in place as a raddino dataset folder (`raddino index`).

An adapter (`raddino.data.adapters`) reads the dataset's label files; `index_dataset` then checks
that the images exist, takes missing views from the DICOM ViewPosition tag, decodes RLE masks into
`masks/<structure>/<stem>.png`, fills in subject-level splits where no official split exists and
writes labels.csv + dataset.json with `image_root` pointing at the untouched originals.
DICOM headers are read tag by tag (`_DICOM_INDEX_TAGS`): identifiers are never parsed.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from raddino.data.adapters import ADAPTERS, AdapterOptions, ParsedDataset
from raddino.data.adapters.common import IMAGE_SUFFIXES

if TYPE_CHECKING:
    from raddino.data.dataset_folder import DatasetFolder

DATASET_NAMES: tuple[str, ...] = tuple(ADAPTERS)
VIEWS: tuple[str, ...] = ("PA", "AP", "LATERAL")
# DICOM ViewPosition (0018,5101) values -> our views.
DICOM_VIEWS = {"PA": "PA", "AP": "AP", "LL": "LATERAL", "RL": "LATERAL", "LATERAL": "LATERAL"}
# The only DICOM attributes indexing reads: view and pixel size. No identifiers.
_DICOM_INDEX_TAGS = ("ViewPosition", "Rows", "Columns")


def index_dataset(
    name: str,
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    options: AdapterOptions | None = None,
    views: Sequence[str] | None = None,
    default_view: str | None = None,
    allow_missing_images: bool = False,
    fractions: Sequence[float] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> DatasetFolder:
    """Write the dataset folder `out_dir` for dataset `name` at `root`; return it opened.

    `views` keeps only those views; `default_view` is used where neither the CSV nor the DICOM
    header gives one; `fractions` (train, val, test) override the dataset's default split shares
    for subjects without an official split. Rerunning resumes: masks already written are kept.
    """
    from raddino.data.dataset_folder import METADATA_COLUMNS, write_index
    from raddino.data.splits import check_label_positives, subject_split
    from raddino.utils import versions

    if name not in ADAPTERS:
        raise ValueError(f"unknown dataset {name!r}; choose among {', '.join(DATASET_NAMES)}")
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root not found or not a folder: {root}")
    views = _check_views(views, default_view)
    options = options or AdapterOptions()
    if options.mimic_iv and name != "mimic-cxr":  # not silently ignored by the other adapters
        raise ValueError(f"--mimic-iv: only for --dataset mimic-cxr, not {name!r}")
    parsed = ADAPTERS[name](root, options)
    table = parsed.table.copy()
    excluded = Counter(parsed.excluded)
    _require_rows(table, parsed, excluded, "in the label files")

    table = _keep_existing_images(
        table, parsed.image_root, allow_missing_images, excluded, progress
    )
    _require_rows(table, parsed, excluded, "with an image file")
    table = _fill_views_from_headers(table, parsed.image_root, default_view, excluded, progress)
    if views is not None:
        unwanted = ~table["view"].isin(views)
        for view, count in table["view"][unwanted].value_counts().items():
            excluded[f"view {view} not requested (--views)"] += int(count)
        table = table[~unwanted].reset_index(drop=True)
    _require_rows(table, parsed, excluded, "after the view filter")

    structures = _write_masks(parsed, table, Path(out_dir), progress)
    shares = tuple(fractions) if fractions is not None else parsed.default_fractions
    existing = table["split"] if "split" in table else None
    if existing is None or (existing.fillna("").astype(str).str.strip() == "").any():
        labels_nl = table[parsed.labels].to_numpy(dtype=np.float64)  # stratify by every label
        table["split"] = subject_split(
            table["subject_id"], shares, seed, labels=labels_nl, existing=existing
        )
    label_warnings = check_label_positives(
        table, parsed.labels, source=f"{name} index", on_missing="warn"
    )

    metadata = [c for c in METADATA_COLUMNS if c in table]
    info = {
        "name": name,
        "labels": parsed.labels,
        "metadata": metadata,
        "structures": structures,
        "image_root": os.path.relpath(parsed.image_root, Path(out_dir).resolve()),
        "index": {
            "dataset": name,
            "root": str(root),
            "uncertain": options.uncertain,
            "reader_vote": options.reader_vote,
            "mimic_iv": options.mimic_iv,
            "views": list(views) if views else None,
            "default_view": default_view,
            "split_fractions_for_unsplit_subjects": list(shares),
            "seed": seed,
            "notes": parsed.notes,
            "excluded_rows": dict(excluded),
            "counts": _counts(table, parsed.labels),
            "label_warnings": label_warnings,
            "versions": versions(),
        },
    }
    return write_index(out_dir, table, info, check_images=False)


def read_dicom_index_tags(path: str | os.PathLike) -> dict[str, Any]:
    """ViewPosition, Rows and Columns of a DICOM file; nothing else is parsed (no identifiers)."""
    import pydicom

    try:
        dataset = pydicom.dcmread(
            path, specific_tags=list(_DICOM_INDEX_TAGS), stop_before_pixels=True, force=True
        )
    except Exception as err:  # pydicom raises many types for corrupt or non-DICOM files
        raise ValueError(f"cannot read DICOM header of {path}: {type(err).__name__}") from None
    return {tag: getattr(dataset, tag, None) for tag in _DICOM_INDEX_TAGS}


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image from its header (DICOM Rows/Columns or PIL), pixels unread."""
    if path.suffix.lower() in (".dcm", ".dicom") or _has_dicom_preamble(path):
        tags = read_dicom_index_tags(path)
        if tags["Rows"] is None or tags["Columns"] is None:
            raise ValueError(f"{path}: DICOM header lacks Rows/Columns")
        return int(tags["Rows"]), int(tags["Columns"])
    from PIL import Image

    with Image.open(path) as img:
        width, height = img.size
    return height, width


def _check_views(views: Sequence[str] | None, default_view: str | None) -> list[str] | None:
    for view in [*(views or []), *([default_view] if default_view else [])]:
        if view not in VIEWS:
            raise ValueError(f"unknown view {view!r}; choose among {', '.join(VIEWS)}")
    return list(views) if views else None


def _require_rows(table: pd.DataFrame, parsed: ParsedDataset, excluded: Counter, when: str) -> None:
    if len(table) == 0:
        reasons = "; ".join(f"{k}: {v}" for k, v in excluded.items()) or "none"
        raise ValueError(f"{parsed.name}: no images left {when} (rows left out: {reasons})")


def _keep_existing_images(
    table: pd.DataFrame, image_root: Path, allow_missing: bool, excluded: Counter, progress: bool
) -> pd.DataFrame:
    from tqdm.auto import tqdm

    exists = np.array(
        [
            (image_root / image).is_file()
            for image in tqdm(table["image"], desc="checking images", disable=not progress)
        ],
        dtype=bool,
    )
    if exists.all():
        return table
    missing = int((~exists).sum())
    first = image_root / table["image"].iat[int(np.argmax(~exists))]
    if not allow_missing:
        raise FileNotFoundError(
            f"{missing} of {len(table)} images not found, e.g. {first}; pass "
            "--allow-missing-images to index only the images present"
        )
    excluded["image file not found"] += missing
    return table[exists].reset_index(drop=True)


def _fill_views_from_headers(
    table: pd.DataFrame,
    image_root: Path,
    default_view: str | None,
    excluded: Counter,
    progress: bool,
) -> pd.DataFrame:
    """Views the CSVs do not give: DICOM ViewPosition, else `default_view`, else left out."""
    from tqdm.auto import tqdm

    unknown_rows = np.flatnonzero(table["view"].to_numpy() == "")
    if unknown_rows.size == 0:
        return table
    views = table["view"].to_numpy(dtype=object).copy()
    for row in tqdm(unknown_rows, desc="reading DICOM views", disable=not progress):
        path = image_root / table["image"].iat[row]
        raw = None
        if path.suffix.lower() in (".dcm", ".dicom") or _has_dicom_preamble(path):
            raw = read_dicom_index_tags(path)["ViewPosition"]
        raw = str(raw).strip().upper() if raw is not None else ""
        view = DICOM_VIEWS.get(raw, "") or (default_view or "")
        if not view:
            reason = f"DICOM ViewPosition {raw or '(absent)'!r} is not PA/AP/lateral"
            excluded[f"{reason} (set --default-view to keep these)"] += 1
        views[row] = view
    table = table.assign(view=views)
    return table[table["view"] != ""].reset_index(drop=True)


def _write_masks(
    parsed: ParsedDataset, table: pd.DataFrame, out_dir: Path, progress: bool
) -> list[str]:
    """Write masks/<structure>/<stem>.png (0/255 uint8) for every kept image and structure.

    Images without an RLE for a structure get an all-zero mask: in these datasets every image
    was read for every structure, so "no RLE" means "defined and absent" (docs/dataset_format.md).
    """
    from tqdm.auto import tqdm

    from raddino.data.dataset_folder import write_png
    from raddino.data.rle import decode_relative_rle_union

    if not parsed.masks:
        return []
    for image in tqdm(table["image"], desc="writing masks", disable=not progress):
        mask_paths = {
            structure: out_dir / "masks" / structure / f"{Path(image).stem}.png"
            for structure in parsed.masks
        }
        todo = {s: p for s, p in mask_paths.items() if not p.is_file()}  # resume: skip finished
        if not todo:
            continue
        height, width = image_size(parsed.image_root / image)
        for structure, mask_path in todo.items():
            rles = parsed.masks[structure].get(image, [])
            try:
                mask_hw = decode_relative_rle_union(rles, height, width)
            except ValueError as err:
                raise ValueError(f"{parsed.name}: {structure} mask of {image}: {err}") from None
            write_png(mask_path, np.where(mask_hw, 255, 0).astype(np.uint8))
    return list(parsed.masks)


def _counts(table: pd.DataFrame, labels: Sequence[str]) -> dict[str, Any]:
    """Images, subjects and label positives per split, for dataset.json and the CLI summary."""
    counts: dict[str, Any] = {}
    for split, rows in table.groupby("split", sort=True):
        counts[str(split)] = {
            "images": int(len(rows)),
            "subjects": int(rows["subject_id"].nunique()),
            "positives": {n: int((rows[n] == 1).sum()) for n in labels},
            "unknown": {n: int(rows[n].isna().sum()) for n in labels},
        }
    return counts


def _has_dicom_preamble(path: Path) -> bool:
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return False
    try:
        with path.open("rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False
