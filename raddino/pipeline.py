"""Stages with a content-addressed cache: `runs/<stage>/<config-hash>/` holds one result.

Every expensive step (generate data, extract features, fit a head, pretrain) is a pure function
of its config. `stage(...)` runs the step only when no finished result exists for that config;
the step writes into a temporary folder that is renamed into place when it succeeds, so a crash
never leaves a half-written result that later looks finished.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
FORMAT = "raddino.stage/1"
DEFAULT_ROOT = "runs"
HASH_CHARS = 16


def canonical_config(config: Mapping[str, Any], where: str = "config") -> Any:
    """Config as plain JSON types (dict keys sorted on dump); rejects values with no stable text.

    Paths become strings, tuples become lists; floats must be finite. Anything else (objects,
    arrays, sets) raises a ValueError naming the key, because its hash would not be reproducible.
    """
    if isinstance(config, Mapping):
        out = {}
        for key, value in config.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: key {key!r} is not a string")
            out[key] = canonical_config(value, f"{where}.{key}")
        return out
    if isinstance(config, list | tuple):
        return [canonical_config(v, f"{where}[{i}]") for i, v in enumerate(config)]
    if isinstance(config, os.PathLike):
        return os.fspath(config)
    if isinstance(config, bool | int | str) or config is None:
        return config
    if isinstance(config, float):
        if not math.isfinite(config):
            raise ValueError(f"{where}: {config} is not a finite number")
        return config
    raise ValueError(
        f"{where}: value of type {type(config).__name__} cannot be part of a stage config "
        "(use JSON types: dict, list, str, int, float, bool, None)"
    )


def config_hash(config: Mapping[str, Any]) -> str:
    """Short SHA-256 of the canonical JSON of `config`: the folder name of its result."""
    text = json.dumps(canonical_config(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


def stage_dir(name: str, config: Mapping[str, Any], root: str | os.PathLike = DEFAULT_ROOT) -> Path:
    """Where the result of stage `name` for `config` lives (finished or not)."""
    _check_name(name)
    return Path(root) / name / config_hash(config)


def is_done(name: str, config: Mapping[str, Any], root: str | os.PathLike = DEFAULT_ROOT) -> bool:
    """True when a finished result (with its manifest) exists for this stage and config."""
    return (stage_dir(name, config, root) / MANIFEST).is_file()


def read_manifest(result_dir: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a finished stage folder (config, versions, metrics, timings)."""
    path = Path(result_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest (stage not finished or not a stage folder)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: broken manifest JSON: {err}") from err


def stage(
    name: str,
    config: Mapping[str, Any],
    compute: Callable[[Path], dict[str, Any] | None],
    root: str | os.PathLike = DEFAULT_ROOT,
    *,
    force: bool = False,
    quiet: bool = False,
) -> Path:
    """Folder holding stage `name`'s result for `config`; runs `compute(tmp_dir)` only if missing.

    `compute` writes its files into the given folder and returns a dict of metrics (JSON types)
    for the manifest. `force=True` recomputes and replaces an existing result.
    """
    canonical = canonical_config(config)
    final_dir = stage_dir(name, canonical, root)
    if (final_dir / MANIFEST).is_file() and not force:
        if not quiet:
            print(f"stage {name}: cached {final_dir}", file=sys.stderr)
        return final_dir

    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = final_dir.parent / f".{final_dir.name}.tmp-{os.getpid()}-{time.time_ns()}"
    tmp_dir.mkdir()
    started_wall = time.time()
    started = time.perf_counter()
    try:
        metrics = compute(tmp_dir)
        seconds = time.perf_counter() - started
        if metrics is None:
            metrics = {}
        if not isinstance(metrics, Mapping):
            raise ValueError(
                f"stage {name}: compute must return a dict of metrics or None, "
                f"got {type(metrics).__name__}"
            )
        from raddino.utils import versions, write_json_atomic

        manifest = {
            "format": FORMAT,
            "stage": name,
            "config_hash": final_dir.name,
            "config": canonical,
            "metrics": canonical_config(metrics, where=f"stage {name} metrics"),
            "timings": {
                "started_unix": round(started_wall, 3),
                "compute_seconds": round(seconds, 3),
            },
            "versions": versions(),
        }
        write_json_atomic(tmp_dir / MANIFEST, manifest)
        _move_into_place(tmp_dir, final_dir, replace=force)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)
    if not quiet:
        print(f"stage {name}: computed {final_dir} in {seconds:.1f} s", file=sys.stderr)
    return final_dir


def _move_into_place(tmp_dir: Path, final_dir: Path, *, replace: bool) -> None:
    """Rename the finished temp folder to its final name; an unfinished leftover is replaced."""
    if final_dir.exists():
        if (final_dir / MANIFEST).is_file() and not replace:
            return  # another process finished the same stage first: keep its result
        stale = final_dir.parent / f".{final_dir.name}.old-{os.getpid()}-{time.time_ns()}"
        os.replace(final_dir, stale)
        shutil.rmtree(stale, ignore_errors=True)
    os.replace(tmp_dir, final_dir)


def _check_name(name: str) -> None:
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise ValueError(
            f"stage name {name!r} must be non-empty and use only letters, digits, '-', '_', '.'"
        )


# ------------------------------------------------------------------------------ common stages


def phantom_folder(
    n: int,
    size: int,
    seed: int,
    views: tuple[str, ...] | list[str] = ("PA",),
    *,
    with_masks: bool = True,
    prevalence: dict[str, float] | None = None,
    root: str | os.PathLike = DEFAULT_ROOT,
    workers: int = 1,
    quiet: bool = False,
) -> Path:
    """Dataset folder of phantoms 0..n-1 (stage `phantoms`), rendered once per config;
    `prevalence` overrides finding probabilities (the rest keep `DEFAULT_PREVALENCE`)."""
    from raddino.data.dataset_folder import write_phantom_folder
    from raddino.data.phantom import PhantomConfig

    phantom_config = PhantomConfig(
        size=size, views=tuple(views), with_masks=with_masks, prevalence=prevalence or {}
    )
    config = {"n": n, "seed": seed, "phantom": phantom_config.to_dict()}
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive number of images, got {n!r}")

    def compute(out_dir: Path) -> dict[str, Any]:
        folder = write_phantom_folder(
            out_dir / "data", n, phantom_config, seed, progress=not quiet, workers=workers
        )
        return {"images": len(folder), "subjects": int(folder.table["subject_id"].nunique())}

    return stage("phantoms", config, compute, root, quiet=quiet) / "data"


def embeddings(
    data: str | os.PathLike,
    weights: str,
    *,
    size: int | None = None,
    patches: bool = False,
    patch_mean: bool = False,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 16,
    root: str | os.PathLike = DEFAULT_ROOT,
    quiet: bool = False,
) -> Path:
    """`embeddings.safetensors` (+ JSON) of `data` by `weights` (stage `embeddings`, via embed).

    The config holds the data path and a digest of its image ids, the weights source (not its
    bytes: a weights file changed in place is not noticed), size, outputs and seed.
    """
    from raddino.data.image_sources import list_images
    from raddino.embed import EmbedOptions, embed_dataset

    ids = [item.id for item in list_images(data)]
    config = {
        "data": os.fspath(Path(data).resolve()),
        "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        "weights": weights,
        "size": size,
        "patches": patches,
        "patch_mean": patch_mean,
        "seed": seed,
        "device": device.split(":")[0],
    }
    options = EmbedOptions(
        batch_size=batch_size,
        device=device,
        size=size,
        patches=patches,
        patch_mean=patch_mean,
        seed=seed,
        num_workers=0,
    )

    def compute(out_dir: Path) -> dict[str, Any]:
        record = embed_dataset(data, weights, out_dir / "embeddings.safetensors", options)
        return {"images": len(record["ids"]), "skipped": len(record["skipped"])}

    return stage("embeddings", config, compute, root, quiet=quiet) / "embeddings.safetensors"
