"""Where images come from for embedding: a folder, a CSV of paths, or a dataset folder.

`list_images(data)` returns `ImageItem`s (a stable id + the file path) in a fixed order;
`ImageFileDataset` reads and preprocesses them in DataLoader workers, turning unreadable files
into recorded failures instead of crashing the worker.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raddino.data.io import IMAGE_SUFFIXES, ImageReadError

CSV_PATH_COLUMNS = ("image", "path")
DATASET_INDEX = "labels.csv"
DATASET_INFO = "dataset.json"


@dataclass(frozen=True)
class ImageItem:
    """One image to process: `id` is what outputs record (a relative path), `path` is read."""

    id: str
    path: Path


def list_images(data: str | os.PathLike) -> list[ImageItem]:
    """Images of a dataset folder, a CSV of paths, or (recursively, sorted) a folder of images."""
    data = Path(data)
    if not data.exists():
        raise FileNotFoundError(f"--data {data}: no such file or folder")
    if data.is_file():
        if data.suffix.lower() != ".csv":
            raise ValueError(f"--data {data}: expected a folder or a .csv file of image paths")
        items = images_from_csv(data)
    elif (data / DATASET_INDEX).is_file() and (data / DATASET_INFO).is_file():
        items = images_from_dataset_folder(data)
    else:
        items = images_in_folder(data)
    if not items:
        raise ValueError(f"--data {data}: no images found")
    return items


def images_in_folder(root: Path) -> list[ImageItem]:
    """Files with an image suffix under `root` (hidden files and folders skipped), sorted by id."""
    items = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in files:
            if name.startswith(".") or not name.lower().endswith(IMAGE_SUFFIXES):
                continue
            path = Path(folder) / name
            items.append(ImageItem(path.relative_to(root).as_posix(), path))
    return sorted(items, key=lambda item: item.id)


def images_from_csv(csv_path: Path) -> list[ImageItem]:
    """Rows of a CSV with an `image` or `path` column; relative paths are relative to the CSV."""
    return _images_from_table(csv_path, csv_path.parent, CSV_PATH_COLUMNS)


def images_from_dataset_folder(root: Path) -> list[ImageItem]:
    """The `image` column of a dataset folder's labels.csv (paths relative to the folder).

    Only the image list is read here; the full format (labels, splits, ...) is `DatasetFolder`'s.
    """
    return _images_from_table(root / DATASET_INDEX, root, ("image",))


def _images_from_table(table: Path, base: Path, columns: Sequence[str]) -> list[ImageItem]:
    with table.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        column = next((name for name in columns if name in header), None)
        if column is None:
            raise ValueError(f"{table}: needs a column named {' or '.join(columns)}; has {header}")
        items, seen = [], {}
        for line_number, row in enumerate(reader, start=2):
            value = (row.get(column) or "").strip()
            if not value:
                raise ValueError(f"{table}, line {line_number}: empty {column!r} cell")
            if value in seen:
                raise ValueError(
                    f"{table}, line {line_number}: image {value!r} repeats line {seen[value]}"
                )
            seen[value] = line_number
            path = Path(value).expanduser()
            items.append(ImageItem(value, path if path.is_absolute() else base / path))
    return items


class ImageFileDataset:
    """Map-style dataset over `ImageItem`s: index -> (index, tensor or None, failure or None).

    Failures (`ImageReadError`, or a `ValueError` from `transform`) come back as their cause so
    that the caller decides to stop or to skip; a DataLoader worker never dies on a bad file.
    """

    def __init__(self, items: Sequence[ImageItem], transform: Callable[[Any], Any]):
        self.items = list(items)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, Any, str | None]:
        from raddino.data.io import read_image

        try:
            return index, self.transform(read_image(self.items[index].path)), None
        except ImageReadError as err:
            return index, None, err.cause
        except ValueError as err:
            return index, None, f"preprocessing failed ({err})"


def collate_indexed(samples: list[tuple[int, Any, str | None]]) -> tuple[list[int], Any, dict]:
    """Batch (index, tensor, failure) samples -> (good indices, stacked tensors, {index: cause})."""
    import torch

    good = [(index, tensor) for index, tensor, failure in samples if failure is None]
    failures = {index: failure for index, _, failure in samples if failure is not None}
    stacked = torch.stack([tensor for _, tensor in good]) if good else None
    return [index for index, _ in good], stacked, failures
