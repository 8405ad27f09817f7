"""Disk side of `raddino embed`: a resumable work folder of row files, and a streaming
safetensors writer, so that memory stays constant in the number of images.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from raddino.utils import atomic_path, write_json_atomic

SPEC_FILE = "spec.json"
JOURNAL_FILE = "journal.jsonl"
_SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "int64": "I64", "uint8": "U8"}
_CHUNK_BYTES = 16 << 20  # rows per read while assembling: bounds memory


class RowFile:
    """A preallocated `.npy` array (n_rows, *row_shape), written and read by rows with plain file
    IO (no memory map), so the process's memory stays flat however many rows there are."""

    def __init__(self, path: Path):
        self.path = path
        with path.open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }.get(version)
            if read_header is None:
                raise ValueError(f"{path}: unsupported .npy version {version}; pass --restart")
            shape, fortran_order, dtype = read_header(handle)
            self.data_offset = handle.tell()
        if fortran_order or len(shape) < 1:
            raise ValueError(f"{path}: not a row-major array of rows; pass --restart")
        self.n_rows, self.row_shape, self.dtype = shape[0], tuple(shape[1:]), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize

    @classmethod
    def create(cls, path: Path, n_rows: int, row_shape: tuple[int, ...], dtype: str) -> RowFile:
        """Write the header and size the file (sparse: unwritten rows take no disk)."""
        header = {"descr": np.dtype(dtype).newbyteorder("<").str, "fortran_order": False}
        header["shape"] = (n_rows, *row_shape)
        with path.open("wb") as handle:
            np.lib.format.write_array_header_2_0(handle, header)
            data_offset = handle.tell()
            row_bytes = int(np.prod(row_shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            handle.truncate(data_offset + n_rows * row_bytes)
        return cls(path)

    def write(self, rows: Sequence[int], values: np.ndarray) -> None:
        """Write `values[i]` to row `rows[i]`, runs of consecutive rows in one call each."""
        values = np.ascontiguousarray(values, dtype=self.dtype.newbyteorder("<"))
        if values.shape != (len(rows), *self.row_shape):
            raise ValueError(f"{self.path}: got rows of shape {values.shape[1:]}")
        fd = os.open(self.path, os.O_WRONLY)
        try:
            start = 0
            for stop in range(1, len(rows) + 1):
                if stop == len(rows) or rows[stop] != rows[stop - 1] + 1:
                    offset = self.data_offset + int(rows[start]) * self.row_bytes
                    os.pwrite(fd, values[start:stop].tobytes(), offset)
                    start = stop
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as an array."""
        with self.path.open("rb") as handle:
            handle.seek(self.data_offset + start * self.row_bytes)
            data = handle.read((stop - start) * self.row_bytes)
        if len(data) != (stop - start) * self.row_bytes:
            raise ValueError(f"{self.path}: file is shorter than its header says; pass --restart")
        return np.frombuffer(data, dtype=self.dtype.newbyteorder("<")).reshape(
            stop - start, *self.row_shape
        )


class ArrayRows:
    """An in-memory array seen as a row source (same `read` interface as `RowFile`)."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.n_rows, self.row_shape, self.dtype = len(array), tuple(array.shape[1:]), array.dtype

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.array[start:stop]


class WorkFolder:
    """One `RowFile` per output (a row per image) + an append-only journal of finished rows.

    A journal line is written only after its rows are synced to disk, so after a crash every row
    the journal names is complete; a torn last line is ignored (those rows are simply redone).
    """

    def __init__(self, folder: Path, spec: dict, files: dict[str, RowFile]):
        self.folder = folder
        self.spec = spec
        self.files = files
        self.n_rows = int(spec["n_images"])
        self.done: set[int] = set()
        self.skipped: dict[int, str] = {}
        self._read_journal()

    @classmethod
    def open(
        cls,
        folder: Path,
        spec: dict,
        row_shapes: Mapping[str, tuple[tuple[int, ...], str]],
        *,
        restart: bool = False,
    ) -> WorkFolder:
        """Resume the work in `folder` if it was started with `spec`, else start it afresh.

        Different settings raise a ValueError naming them (or, with `restart`, discard the work).
        """
        spec_path = folder / SPEC_FILE
        if folder.exists() and restart:
            shutil.rmtree(folder)
        n_rows = int(spec["n_images"])
        if spec_path.is_file():
            saved = _load_json(spec_path) or {}
            if saved != spec:
                changed = sorted(k for k in set(spec) | set(saved) if saved.get(k) != spec.get(k))
                raise ValueError(
                    f"{folder} holds an unfinished run with other settings (differs in: "
                    f"{', '.join(changed)}); rerun with the same settings to resume it, "
                    "or pass --restart to discard it"
                )
            files = {name: RowFile(folder / f"{name}.npy") for name in row_shapes}
            for name, (row_shape, dtype) in row_shapes.items():
                found = (files[name].n_rows, files[name].row_shape, files[name].dtype)
                if found != (n_rows, tuple(row_shape), np.dtype(dtype)):
                    raise ValueError(f"{files[name].path}: unexpected shape; pass --restart")
        else:  # absent, or a creation that crashed before writing the spec: start again
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            files = {
                name: RowFile.create(folder / f"{name}.npy", n_rows, tuple(row_shape), dtype)
                for name, (row_shape, dtype) in row_shapes.items()
            }
            (folder / JOURNAL_FILE).touch()
            write_json_atomic(spec_path, spec)  # last: marks the folder as complete
        return cls(folder, spec, files)

    def pending_rows(self) -> list[int]:
        """Rows neither embedded nor skipped yet, in order."""
        return [
            row for row in range(self.n_rows) if row not in self.done and row not in self.skipped
        ]

    def good_rows(self) -> np.ndarray:
        """Embedded rows in order (the rows of the final file); every row must be finished."""
        missing = self.n_rows - len(self.done) - len(self.skipped)
        if missing:
            raise RuntimeError(f"internal: {missing} rows neither embedded nor skipped")
        return np.array(sorted(self.done), dtype=np.int64)

    def record(
        self, rows: Sequence[int], outputs: Mapping[str, np.ndarray], failures: Mapping[int, str]
    ) -> None:
        """Store a finished batch: rows to the row files (synced), then one journal line."""
        if rows:
            for name, row_file in self.files.items():
                row_file.write(rows, outputs[name])
        line = json.dumps({"rows": [int(r) for r in rows], "skipped": failures}) + "\n"
        with (self.folder / JOURNAL_FILE).open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self.done.update(int(r) for r in rows)
        self.skipped.update({int(r): why for r, why in failures.items()})

    def _read_journal(self) -> None:
        path = self.folder / JOURNAL_FILE
        lines = path.read_text(encoding="utf-8").split("\n") if path.exists() else []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                rows, skipped = entry["rows"], entry["skipped"]
            except (ValueError, KeyError, TypeError):
                if number == len(lines):  # torn final write of an interrupted run: redo it
                    continue
                raise ValueError(
                    f"{path}, line {number}: corrupt journal; pass --restart"
                ) from None
            self.done.update(int(r) for r in rows)
            self.skipped.update({int(r): str(why) for r, why in skipped.items()})


def write_safetensors_streaming(
    path: str | os.PathLike,
    sources: Mapping[str, RowFile | ArrayRows],
    rows: np.ndarray,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write rows `rows` (sorted) of each row source as one safetensors file, chunk by chunk.

    Hand-written because safetensors' writers need each whole tensor in memory. The format is an
    8-byte little-endian header length, a JSON header (dtype, shape, data_offsets per tensor;
    padded with spaces to 8 bytes) and the raw little-endian row-major bytes in header order.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if np.any(np.diff(rows) <= 0):
        raise ValueError("rows must be strictly increasing")
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name, source in sources.items():
        dtype = np.dtype(source.dtype).name
        if dtype not in _SAFETENSORS_DTYPES:
            raise ValueError(f"{name}: unsupported dtype {dtype}")
        shape = [len(rows), *source.row_shape]
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        header[name] = {
            "dtype": _SAFETENSORS_DTYPES[dtype],
            "shape": shape,
            "data_offsets": [offset, offset + size],
        }
        offset += size
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)
    selected = np.zeros(max((src.n_rows for src in sources.values()), default=0), dtype=bool)
    selected[rows] = True
    with atomic_path(path, suffix=".safetensors") as tmp, tmp.open("wb") as handle:
        handle.write(struct.pack("<Q", len(header_bytes)))
        handle.write(header_bytes)
        for source in sources.values():
            little_endian = np.dtype(source.dtype).newbyteorder("<")
            row_bytes = int(np.prod(source.row_shape, dtype=np.int64)) * little_endian.itemsize
            chunk = max(1, _CHUNK_BYTES // max(1, row_bytes))
            for start in range(0, source.n_rows, chunk):
                stop = min(source.n_rows, start + chunk)
                block = source.read(start, stop)[selected[start:stop]]
                handle.write(np.ascontiguousarray(block, dtype=little_endian).tobytes())
        handle.flush()
        os.fsync(handle.fileno())


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
