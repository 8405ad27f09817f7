"""The raddino dataset folder: one format for phantoms and real chest X-ray datasets.

`DatasetFolder.open(dir)` validates and reads a folder (see docs/dataset_format.md);
`write_index` writes the CSV/JSON index of a folder whose images already exist (real datasets
indexed in place); `write_phantom_folder` renders phantoms into a new folder, resumably.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from raddino.utils import atomic_path, write_json_atomic

if TYPE_CHECKING:
    from raddino.data.phantom import PhantomConfig

FORMAT_VERSION = 1
REQUIRED_COLUMNS: tuple[str, ...] = ("image", "subject_id", "view")
NUMERIC_METADATA: tuple[str, ...] = ("age", "height_cm", "weight_kg", "bmi")
METADATA_COLUMNS: tuple[str, ...] = ("sex", *NUMERIC_METADATA)
VIEW_NAMES: tuple[str, ...] = ("PA", "AP", "LATERAL")
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
_INFO_LIST_KEYS: tuple[str, ...] = ("labels", "metadata", "structures", "landmarks")


def quantize_image(image_hw: np.ndarray, bits: int = 16) -> np.ndarray:
    """Float image in [0, 1] -> unsigned ints of `bits` (8 or 16) by rounding, as PNGs store it."""
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    top = (1 << bits) - 1
    scaled = np.rint(np.clip(image_hw, 0.0, 1.0) * top)
    return scaled.astype(np.uint16 if bits == 16 else np.uint8)


def dequantize_image(values_hw: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned integers of `bits` -> float32 in [0, 1] (the inverse of `quantize_image`)."""
    return values_hw.astype(np.float32) / np.float32((1 << bits) - 1)


def write_png(path: str | os.PathLike, values_hw: np.ndarray) -> None:
    """Write a uint8 or uint16 (H, W) array as a grayscale PNG, atomically."""
    from PIL import Image

    if values_hw.dtype not in (np.uint8, np.uint16) or values_hw.ndim != 2:
        raise ValueError(f"write_png wants a 2-D uint8/uint16 array, got {values_hw.dtype}")
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(values_hw).save(tmp, format="PNG", compress_level=1)


class DatasetFolder:
    """A validated dataset folder: index tables in memory, images and masks read on demand."""

    def __init__(
        self,
        root: Path,
        info: dict[str, Any],
        table: pd.DataFrame,
        landmarks: pd.DataFrame,
        reports: pd.DataFrame,
    ) -> None:
        self.root = root
        self.info = info
        self.table = table
        self.landmarks = landmarks
        self.reports = reports
        self._image_root = (root / info["image_root"]).resolve()
        self._mask_root = (root / info.get("mask_root", ".")).resolve()
        self._landmarks_by_image: dict[str, dict[str, tuple[float, float]]] | None = None
        self._details_by_image: dict[str, dict[str, Any]] | None = None
        self._report_by_image = dict(zip(reports["image"], reports["report"], strict=True))

    @classmethod
    def open(cls, root: str | os.PathLike, *, check_images: bool = True) -> DatasetFolder:
        """Read and validate `root`; `check_images=False` skips the image existence check."""
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"dataset folder not found: {root}")
        info = _read_info(root / "dataset.json")
        table = _read_labels_csv(root / "labels.csv", info)
        landmarks = _read_landmarks_csv(root / "landmarks.csv", info, set(table["image"]))
        reports = _read_reports_csv(root / "reports.csv", set(table["image"]))
        folder = cls(root, info, table, landmarks, reports)
        if info["structures"]:
            stems = table["image"].map(lambda p: Path(p).stem)
            duplicated = stems[stems.duplicated()]
            if len(duplicated):
                raise ValueError(
                    f"{root / 'labels.csv'}: image stems must be unique when masks are used, "
                    f"{duplicated.iloc[0]!r} repeats"
                )
        if check_images:
            for i in range(len(table)):
                if not folder.image_path(i).is_file():
                    raise FileNotFoundError(
                        f"{root / 'labels.csv'} row {i}: image not found: {folder.image_path(i)}"
                    )
        return folder

    def __len__(self) -> int:
        return len(self.table)

    @property
    def label_names(self) -> list[str]:
        return list(self.info["labels"])

    @property
    def structures(self) -> list[str]:
        return list(self.info["structures"])

    @property
    def image_root(self) -> Path:
        return self._image_root

    @property
    def mask_path_root(self) -> Path:
        """The folder that holds `masks/` (the folder itself unless dataset.json's mask_root)."""
        return self._mask_root

    def image_path(self, i: int) -> Path:
        return self.image_root / self.table["image"].iat[i]

    def mask_path(self, structure: str, i: int) -> Path:
        if structure not in self.info["structures"]:
            raise ValueError(
                f"unknown structure {structure!r}; {self.root / 'dataset.json'} lists "
                f"{self.info['structures']}"
            )
        stem = Path(self.table["image"].iat[i]).stem
        return self._mask_root / "masks" / structure / f"{stem}.png"

    def has_mask(self, structure: str, i: int) -> bool:
        return self.mask_path(structure, i).is_file()

    def read_image(self, i: int) -> np.ndarray:
        """Image `i` as float32 (H, W) in [0, 1] (PNG/JPEG 8/16-bit or DICOM, via `data.io`)."""
        from raddino.data.io import read_image

        return read_image(self.image_path(i))

    def read_mask(self, structure: str, i: int) -> np.ndarray:
        """Mask of `structure` on image `i` as bool (H, W); error if missing or not image-sized."""
        from PIL import Image

        path = self.mask_path(structure, i)
        if not path.is_file():
            raise FileNotFoundError(
                f"no {structure!r} mask for image {self.table['image'].iat[i]!r} "
                f"(expected {path}; the structure may not be defined for this view)"
            )
        with Image.open(path) as img:
            values = np.asarray(img.convert("L") if img.mode != "L" else img)
        from raddino.data.datasets import image_size  # header only: DICOM Rows/Columns or PIL

        image_h, image_w = image_size(self.image_path(i))
        if values.shape != (image_h, image_w):
            raise ValueError(
                f"{path}: mask size (w, h) {values.shape[::-1]} differs from image size "
                f"{(image_w, image_h)}"
            )
        if np.any((values != 0) & (values != 255)):
            raise ValueError(f"{path}: mask values must be 0 or 255")
        return values == 255

    def split_indices(self, split: str) -> np.ndarray:
        """Row indices (int64) of the images in `split` ("train", "val" or "test")."""
        if split not in SPLIT_NAMES:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLIT_NAMES}")
        if "split" not in self.table:
            raise ValueError(f"{self.root / 'labels.csv'} has no 'split' column")
        return np.flatnonzero(self.table["split"].to_numpy() == split).astype(np.int64)

    def labels_array(self, names: Sequence[str] | None = None) -> np.ndarray:
        """(N, L) float32 label matrix for `names` (default all labels); NaN where unknown."""
        names = self.label_names if names is None else list(names)
        unknown = [n for n in names if n not in self.info["labels"]]
        if unknown:
            raise ValueError(f"unknown label(s) {unknown}; known: {self.label_names}")
        return self.table[names].to_numpy(dtype=np.float32)

    def landmarks_of(self, i: int) -> dict[str, tuple[float, float]]:
        """Landmarks of image `i` as name -> (x, y) in pixels."""
        if self._landmarks_by_image is None:  # grouped once, on first use
            self._landmarks_by_image = {}
            for row in self.landmarks.itertuples(index=False):
                points = self._landmarks_by_image.setdefault(row.image, {})
                points[row.landmark] = (float(row.x), float(row.y))
        return dict(self._landmarks_by_image.get(self.table["image"].iat[i], {}))

    def details_of(self, i: int) -> dict[str, Any]:
        """Ground-truth details of image `i` from details.jsonl (phantoms), or {} without one."""
        if self._details_by_image is None:
            self._details_by_image = _read_details_jsonl(self.root / "details.jsonl")
        return self._details_by_image.get(self.table["image"].iat[i], {})

    def report_of(self, i: int) -> str | None:
        """The report of image `i`, or None when reports.csv has none."""
        return self._report_by_image.get(self.table["image"].iat[i])


def _read_details_jsonl(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    out = {}
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} line {line_number}: not valid JSON ({err})") from err
        if not isinstance(record, dict) or not isinstance(record.get("image"), str):
            raise ValueError(f"{path} line {line_number}: expected an object with an 'image' key")
        out[record["image"]] = record
    return out


def write_index(
    out_dir: str | os.PathLike,
    labels_df: pd.DataFrame,
    info: dict[str, Any],
    landmarks_df: pd.DataFrame | None = None,
    reports_df: pd.DataFrame | None = None,
    *,
    check_images: bool = True,
) -> DatasetFolder:
    """Write labels.csv (+ landmarks.csv, reports.csv) and then dataset.json; return it re-read.

    `info` needs `name` and `labels`; the other dataset.json keys get defaults. dataset.json is
    written last, so a folder without it is an unfinished one.
    """
    out_dir = Path(out_dir)
    info = _complete_info(info, labels_df)
    missing = [
        c for c in (*REQUIRED_COLUMNS, *info["labels"], *info["metadata"]) if c not in labels_df
    ]
    if missing:
        raise ValueError(f"labels_df lacks column(s) {missing}")
    table = labels_df.copy()
    for name in info["labels"]:
        values = pd.to_numeric(table[name], errors="coerce")
        given = table[name].notna() & (table[name].astype(str).str.strip() != "")
        bad = values.notna() & ~values.isin([0, 1]) | values.isna() & given
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(
                f"labels_df column {name!r} row {row} has {table[name].iat[row]!r}; "
                "labels must be 0, 1 or missing"
            )
        table[name] = values.astype("Int64")  # written as 0/1 and blank, never "1.0"
    front = [*REQUIRED_COLUMNS, *(["split"] if "split" in table else []), *info["labels"]]
    table = table[front + [c for c in table.columns if c not in front]]
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "labels.csv", suffix=".csv") as tmp:
        table.to_csv(tmp, index=False)
    for name, df, columns in (
        ("landmarks.csv", landmarks_df, ["image", "landmark", "x", "y"]),
        ("reports.csv", reports_df, ["image", "report"]),
    ):
        if df is None:
            continue
        if list(df.columns) != columns:
            raise ValueError(f"{name}: columns must be {columns}, got {list(df.columns)}")
        with atomic_path(out_dir / name, suffix=".csv") as tmp:
            df.to_csv(tmp, index=False)
    write_json_atomic(out_dir / "dataset.json", info)
    return DatasetFolder.open(out_dir, check_images=check_images)


def _complete_info(info: dict[str, Any], labels_df: pd.DataFrame) -> dict[str, Any]:
    if "name" not in info or "labels" not in info:
        raise ValueError("info needs at least 'name' and 'labels'")
    out = {"format_version": FORMAT_VERSION, "name": info["name"], "version": "1"}
    out["labels"] = list(info["labels"])
    out["metadata"] = list(info.get("metadata", [c for c in METADATA_COLUMNS if c in labels_df]))
    out["structures"] = list(info.get("structures", []))
    out["landmarks"] = list(info.get("landmarks", []))
    out["image_root"] = str(info.get("image_root", "."))
    out.update({k: v for k, v in info.items() if k not in out})
    return out


def _read_info(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (not a raddino dataset folder?)")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(info, dict):
        raise ValueError(f"{path}: expected a JSON object at top level")
    version = info.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ValueError(f"{path}: key 'format_version' must be an integer 1..{FORMAT_VERSION}")
    if not isinstance(info.get("name"), str):
        raise ValueError(f"{path}: key 'name' must be a string")
    for key in _INFO_LIST_KEYS:
        value = info.setdefault(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{path}: key {key!r} must be a list of strings")
    for key in ("image_root", "mask_root"):
        if not isinstance(info.setdefault(key, "."), str):
            raise ValueError(f"{path}: key {key!r} must be a string path")
    return info


def _read_labels_csv(path: Path, info: dict[str, Any]) -> pd.DataFrame:
    """Read labels.csv as strings, then check and convert each column with row-precise errors."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    needed = [*REQUIRED_COLUMNS, *info["labels"], *info["metadata"]]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    for column in ("image", "subject_id"):
        blank = table.index[table[column].str.strip() == ""]
        if len(blank):
            raise ValueError(f"{path}: column {column!r} is blank in row {blank[0]}")
    dup = table["image"][table["image"].duplicated()]
    if len(dup):
        raise ValueError(f"{path}: image {dup.iloc[0]!r} listed twice")
    _check_choices(path, table, "view", VIEW_NAMES, allow_blank=False)
    if "split" in table:
        _check_choices(path, table, "split", SPLIT_NAMES, allow_blank=True)
    if "sex" in table:
        table["sex"] = table["sex"].str.strip().str.upper()
        _check_choices(path, table, "sex", ("M", "F"), allow_blank=True)
    for column in info["labels"]:
        table[column] = _parse_numbers(path, table[column], allowed={0.0, 1.0})
    for column in NUMERIC_METADATA:
        if column in table:
            table[column] = _parse_numbers(path, table[column], allowed=None)
    return table


def _check_choices(
    path: Path, table: pd.DataFrame, column: str, choices: Sequence[str], allow_blank: bool
) -> None:
    ok = table[column].isin(list(choices) + ([""] if allow_blank else []))
    if not ok.all():
        row = int(np.flatnonzero(~ok.to_numpy())[0])
        raise ValueError(
            f"{path}: column {column!r} row {row} has {table[column].iat[row]!r}; "
            f"allowed: {list(choices)}{' or blank' if allow_blank else ''}"
        )


def _parse_numbers(path: Path, column: pd.Series, allowed: set[float] | None) -> pd.Series:
    text = column.str.strip()
    values = pd.to_numeric(text.where(text != "", None), errors="coerce").astype(np.float64)
    bad = (text != "") & (values.isna() | (~values.isin(allowed) if allowed else False))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        rule = "0, 1 or blank" if allowed else "a number or blank"
        raise ValueError(
            f"{path}: column {column.name!r} row {row} has {column.iat[row]!r}; must be {rule}"
        )
    return values


def _read_landmarks_csv(path: Path, info: dict[str, Any], images: set[str]) -> pd.DataFrame:
    columns = ["image", "landmark", "x", "y"]
    if not path.is_file():
        return pd.DataFrame(
            {c: pd.Series(dtype=str if c in columns[:2] else float) for c in columns}
        )
    table = pd.read_csv(path, dtype={"image": str, "landmark": str})
    if list(table.columns) != columns:
        raise ValueError(f"{path}: columns must be {columns}, got {list(table.columns)}")
    unknown_images = set(table["image"]) - images
    if unknown_images:
        raise ValueError(f"{path}: image {sorted(unknown_images)[0]!r} is not in labels.csv")
    duplicated = table[table.duplicated(["image", "landmark"])]
    if len(duplicated):
        first = duplicated.iloc[0]
        raise ValueError(f"{path}: landmark {first.landmark!r} of {first.image!r} given twice")
    unknown_names = set(table["landmark"]) - set(info["landmarks"])
    if unknown_names:
        raise ValueError(
            f"{path}: landmark {sorted(unknown_names)[0]!r} not listed in dataset.json 'landmarks'"
        )
    if not (
        pd.api.types.is_numeric_dtype(table["x"]) and pd.api.types.is_numeric_dtype(table["y"])
    ):
        raise ValueError(f"{path}: columns 'x' and 'y' must be numbers")
    return table


def _read_reports_csv(path: Path, images: set[str]) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame({"image": pd.Series(dtype=str), "report": pd.Series(dtype=str)})
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(table.columns) != ["image", "report"]:
        raise ValueError(f"{path}: columns must be ['image', 'report'], got {list(table.columns)}")
    unknown = set(table["image"]) - images
    if unknown:
        raise ValueError(f"{path}: image {sorted(unknown)[0]!r} is not in labels.csv")
    duplicated = table["image"][table["image"].duplicated()]
    if len(duplicated):
        raise ValueError(f"{path}: image {duplicated.iloc[0]!r} has two reports")
    return table


def write_phantom_folder(
    out_dir: str | os.PathLike,
    n: int,
    config: PhantomConfig,
    seed: int,
    *,
    progress: bool = True,
    workers: int = 1,
    name: str = "phantom",
) -> DatasetFolder:
    """Render phantoms 0..n-1 into a resumable dataset folder (`raddino.data.phantom.dataset`)."""
    from raddino.data.phantom.dataset import write_phantom_folder as write

    return write(out_dir, n, config, seed, progress=progress, workers=workers, name=name)
