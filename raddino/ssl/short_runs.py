"""Short pretraining runs for the book's ablation chapters (resolution, initialisation, data size,
MIM), cached as pipeline stages: a chapter never retrains what another chapter or a rerun made,
and an interrupted run resumes from its last checkpoint."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

RUN_FILES = ("teacher_backbone.safetensors", "metrics.jsonl", "config.yaml", "hardware.json")


def init_fingerprint(init: str) -> str:
    """What the initial weights are, for the cache key: a release or file by content (sha256), a
    hub id or `random` by name. A retrained release therefore invalidates the runs made from it."""
    from raddino.models.weights import RELEASE_DIR
    from raddino.ssl.release import sha256_of

    if init.startswith("raddino:"):
        path = RELEASE_DIR / f"{init.removeprefix('raddino:')}.safetensors"
    else:
        path = Path(init).expanduser()
    return f"sha256:{sha256_of(path)}" if path.is_file() else init


def pretrain_stage(
    profile: str,
    overrides: Mapping[str, Any] | None = None,
    *,
    runs_root: str = "runs",
    progress: bool = False,
) -> Path:
    """Folder with `teacher_backbone.safetensors`, `metrics.jsonl` and `config.yaml` of the run
    `profile` + `overrides` (flat dotted keys, as `--set`); trained only if not cached."""
    from raddino.pipeline import config_hash, stage
    from raddino.ssl.config import load_config
    from raddino.ssl.release import training_record
    from raddino.ssl.train import pretrain

    config = load_config(profile, dict(overrides or {}))
    key = {"pretrain": config, "init_weights": init_fingerprint(config["model"]["init"])}
    # Checkpoints live outside the stage's temporary folder so that a killed run resumes.
    work_dir = Path(runs_root) / "pretrain-work" / config_hash(key)

    def compute(out_dir: Path) -> dict[str, Any]:
        pretrain(config, work_dir, progress=progress)
        for name in RUN_FILES:
            shutil.copy2(work_dir / name, out_dir / name)
        record = training_record(out_dir)
        return {k: record[k] for k in ("steps", "images_seen", "train_wall_s")}

    result = stage("pretrain", key, compute, runs_root, quiet=True)
    shutil.rmtree(work_dir, ignore_errors=True)  # the finished stage holds what is kept
    return result


def distinct_images(config: Mapping[str, Any]) -> int:
    """How many different images a run can have seen: the data-size axis of the scaling chapter."""
    data, train = config["data"], config["train"]
    steps = train["epochs"] * train["epoch_length"]
    streamed = data["pool_size"] + steps * data["pool_refresh"]
    return min(data["max_images"], streamed) if data["max_images"] else streamed


def training_curves(run_dirs: Mapping[str, str | Path]) -> pd.DataFrame:
    """Long frame (run, step, metric, value) of the runs' metrics.jsonl files, for plots."""
    frames = []
    for name, run_dir in run_dirs.items():
        frame = pd.read_json(Path(run_dir) / "metrics.jsonl", lines=True)
        long = frame.melt(id_vars="step", var_name="metric", value_name="value")
        frames.append(long.assign(run=name))
    return pd.concat(frames, ignore_index=True)
