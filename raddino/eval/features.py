"""Frozen features of a dataset folder, extracted once and cached for every head, seed and notebook.

`extract(encoder_spec, data)` embeds each image of a dataset folder with `raddino.embed`'s
machinery (batched, resumable, tqdm, streamed to safetensors) and returns a `FeatureSet`: the
arrays (memory-mapped), the image ids and the labels table in the same row order. The cache file
is named by a hash of everything that decides the numbers: the encoder spec and a digest of its
tensors, the preprocessing at the chosen resolution, the outputs asked for, and the dataset's
fingerprint (labels.csv + dataset.json). Editing image files in place without touching those two
files is not detected; change the dataset's `version` in dataset.json when you do.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FEATURES_FORMAT = "raddino.features/1"
OUTPUTS: tuple[str, ...] = ("cls", "patch_mean")
_NUMPY_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "U8": np.uint8}


@dataclass
class FeatureSet:
    """Feature arrays (N, D) by name, with the ids and dataset rows they belong to (same order)."""

    arrays: dict[str, np.ndarray]
    ids: list[str]
    table: pd.DataFrame  # the dataset's labels.csv rows, in row order of the arrays
    label_names: list[str]
    path: Path | None = None
    record: dict[str, Any] = field(default_factory=dict)  # the embedding JSON (provenance)
    dataset_root: Path | None = None  # where labels.csv lives, for error messages

    @property
    def labels_source(self) -> str:
        """The labels file these rows come from, as error messages name it."""
        return str(self.dataset_root / "labels.csv") if self.dataset_root else "labels table"

    def __post_init__(self) -> None:
        where = self.path or "feature set"
        if len(self.ids) == 0:
            raise ValueError(f"{where}: no images (empty dataset)")
        if len(self.table) != len(self.ids):
            raise ValueError(
                f"{where}: {len(self.ids)} feature rows but {len(self.table)} label rows"
            )
        for name, array in self.arrays.items():
            if array.ndim != 2 or array.shape[0] != len(self.ids):
                raise ValueError(
                    f"{where}: {name!r} has shape {array.shape}, expected ({len(self.ids)}, D)"
                )
        missing = [n for n in self.label_names if n not in self.table.columns]
        if missing:
            raise ValueError(f"{where}: labels table lacks column(s) {missing}")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.arrays:
            raise ValueError(f"no {name!r} features here; available: {sorted(self.arrays)}")
        return self.arrays[name]

    def labels(self, names: Sequence[str] | None = None) -> np.ndarray:
        """(N, L) float32 labels, NaN = unknown."""
        names = self.label_names if names is None else list(names)
        unknown = [n for n in names if n not in self.label_names]
        if unknown:
            raise ValueError(f"unknown label(s) {unknown}; known: {self.label_names}")
        return self.table[names].to_numpy(dtype=np.float32)

    @property
    def subjects(self) -> np.ndarray:
        return self.table["subject_id"].astype(str).to_numpy()

    @property
    def splits(self) -> np.ndarray | None:
        """The dataset's `split` column ("" = unassigned), or None without one."""
        if "split" not in self.table.columns:
            return None
        return self.table["split"].fillna("").astype(str).str.strip().to_numpy()


# ------------------------------------------------------------------------------ reading files
def read_safetensors_memmap(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as a read-only `np.memmap` (no copy into memory).

    Hand-written because safetensors' numpy loader reads tensors into memory. Format: 8-byte
    little-endian header length, JSON header (dtype, shape, data_offsets), raw little-endian data.
    """
    path = Path(path)
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) != 8:
            raise ValueError(f"{path}: too short to be a safetensors file")
        (header_len,) = struct.unpack("<Q", prefix)
        try:
            header = json.loads(handle.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: corrupt safetensors header ({err})") from err
    data_start, size = 8 + header_len, path.stat().st_size
    arrays = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = _NUMPY_DTYPES.get(entry.get("dtype"))
        if dtype is None:
            raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {entry.get('dtype')}")
        begin, end = entry["data_offsets"]
        shape = tuple(entry["shape"])
        if data_start + end > size or end - begin != int(np.prod(shape)) * np.dtype(dtype).itemsize:
            raise ValueError(f"{path}: tensor {name!r} does not fit the file (truncated?)")
        arrays[name] = (
            np.memmap(
                path,
                dtype=np.dtype(dtype).newbyteorder("<"),
                mode="r",
                offset=data_start + begin,
                shape=shape,
            )
            if int(np.prod(shape))
            else np.zeros(shape, dtype=dtype)
        )
    return arrays


def open_dataset(data: Any) -> Any:
    """A `DatasetFolder` from a path (or the object itself); an empty one is an error."""
    from raddino.data.dataset_folder import DatasetFolder

    folder = data if isinstance(data, DatasetFolder) else DatasetFolder.open(data)
    if len(folder) == 0:
        raise ValueError(f"{folder.root / 'labels.csv'}: no rows (empty dataset)")
    return folder


def dataset_fingerprint(folder: Any) -> str:
    """SHA-256 of the dataset's labels.csv and dataset.json (what defines its rows and labels)."""
    digest = hashlib.sha256()
    for name in ("labels.csv", "dataset.json"):
        digest.update(name.encode())
        digest.update((Path(folder.root) / name).read_bytes())
    return digest.hexdigest()


def load_features(path: str | os.PathLike, data: Any) -> FeatureSet:
    """A FeatureSet from a `raddino embed` output (FILE.safetensors + FILE.json) and its dataset.

    Rows are matched to labels.csv by image id; an id the dataset lacks is an error.
    """
    path = Path(path)
    json_path = path.with_suffix(".json")
    if not path.is_file() or not json_path.is_file():
        raise FileNotFoundError(f"features {path} (and {json_path.name} beside it) not found")
    record = json.loads(json_path.read_text())
    folder = open_dataset(data)
    ids = [str(i) for i in record.get("ids", [])]
    by_image = folder.table.set_index("image", drop=False)
    unknown = [i for i in ids if i not in by_image.index]
    if unknown:
        raise ValueError(
            f"{json_path}: image {unknown[0]!r} is not in {folder.root / 'labels.csv'} "
            f"({len(unknown)} unknown ids): features and labels come from different datasets"
        )
    arrays = {k: v for k, v in read_safetensors_memmap(path).items() if k in OUTPUTS}
    return FeatureSet(
        arrays=arrays,
        ids=ids,
        table=by_image.loc[ids].reset_index(drop=True),
        label_names=folder.label_names,
        path=path,
        record=record,
        dataset_root=Path(folder.root),
    )


# ------------------------------------------------------------------------------ extraction
class _EmbedView:
    """What `raddino.embed.embed_items` needs of a model, for any `Encoder` (pixels included)."""

    def __init__(self, encoder: Any, preprocessing: Any) -> None:
        self.encoder = encoder
        self.preprocessing = preprocessing
        self.patch_size = encoder.patch_size or 1  # pixel baseline: one "patch" per pixel
        self.embed_dim = encoder.embed_dim
        self.config = encoder.config

    def forward_features(self, x_bchw: Any) -> dict[str, Any]:
        return self.encoder.forward_features(x_bchw)


def cache_spec(
    encoder: Any,
    digest: str,
    preprocessing: Any,
    fingerprint: str,
    which: Sequence[str],
    device: str = "cpu",
) -> dict:
    """Everything that decides the cached numbers (its hash names the cache file)."""
    return {
        "format": FEATURES_FORMAT,
        "encoder": encoder.name,
        "kind": encoder.kind,
        "weights_digest": digest,
        "preprocessing": preprocessing.to_dict(),
        "backend": "pil",
        "quantize_uint8": True,
        "dataset": fingerprint,
        "outputs": sorted(set(which) | {"cls"}),
        "device": device.split(":")[0],  # CPU and GPU kernels differ in the last bits
    }


def extract(
    encoder_spec: str | Any,
    data: Any,
    size: int | None = None,
    which: Sequence[str] | None = None,
    cache_dir: str | os.PathLike = "runs/features",
    *,
    device: str = "cpu",
    batch_size: int = 32,
    num_workers: int = 0,
    seed: int = 0,
    skip_bad: bool = False,
    progress: bool = True,
) -> FeatureSet:
    """Features of dataset folder `data` by an encoder spec (or an `Encoder`), cached on disk.

    `which` ⊆ ("cls", "patch_mean"), default both (only "cls" for the pixel baseline, which has
    no tokens to pool). A second call with the same inputs reads the cache without running the
    model; an interrupted extraction resumes where it stopped.
    """
    from raddino.data.image_sources import ImageItem
    from raddino.embed import EmbedOptions, embed_items, state_digest
    from raddino.models.encoders import Encoder, get_encoder

    encoder = encoder_spec if isinstance(encoder_spec, Encoder) else None
    folder = open_dataset(data)
    if encoder is None:
        encoder = get_encoder(str(encoder_spec), device, seed=seed)
    which = _check_which(encoder, which)
    preprocessing = encoder.preprocessing_at(size)
    digest = state_digest(encoder)
    fingerprint = dataset_fingerprint(folder)
    spec = cache_spec(encoder, digest, preprocessing, fingerprint, which, device)
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]
    out = Path(cache_dir) / f"{encoder.kind}-{key}.safetensors"
    items = [
        ImageItem(str(image), folder.image_path(i)) for i, image in enumerate(folder.table["image"])
    ]
    options = EmbedOptions(
        batch_size=batch_size,
        device=device,
        patch_mean="patch_mean" in which,
        skip_bad=skip_bad,
        num_workers=num_workers,
        seed=seed,
        progress=progress,
    )
    options.validate()
    embed_items(
        items, _EmbedView(encoder, preprocessing), out, options, weights=encoder.name, digest=digest
    )
    manifest = out.with_suffix(".cache.json")
    if not manifest.is_file():
        from raddino.utils import write_json_atomic

        write_json_atomic(manifest, {"key": key, "spec": spec})
    return load_features(out, folder)


def _check_which(encoder: Any, which: Sequence[str] | None) -> tuple[str, ...]:
    if which is None:
        return ("cls",) if encoder.patch_size is None else OUTPUTS
    which = tuple(which)
    unknown = [w for w in which if w not in OUTPUTS]
    if unknown or not which:
        raise ValueError(f"which={list(which)}: choose from {list(OUTPUTS)}")
    if "patch_mean" in which and encoder.patch_size is None:
        raise ValueError(f"{encoder.name}: the pixel baseline has no tokens to pool; use 'cls'")
    return which
