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


def short_run_overrides(init: str, epoch_length: int, batch: int) -> dict[str, Any]:
    """The `--set` keys the ablation chapters' short runs share: start weights, steps per epoch
    and images per step; each chapter adds the one key it varies."""
    return {
        "model.init": init,
        "train.epoch_length": epoch_length,
        "train.batch_size_per_device": batch,
    }


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
    """Long frame (run, step, metric, value) of runs' metrics, for plots; each value is a run
    folder or a metrics `.jsonl` file (a release's `NAME.metrics.jsonl`)."""
    frames = []
    for name, source in run_dirs.items():
        path = Path(source)
        frame = pd.read_json(path if path.is_file() else path / "metrics.jsonl", lines=True)
        long = frame.melt(id_vars="step", var_name="metric", value_name="value")
        frames.append(long.assign(run=name))
    return pd.concat(frames, ignore_index=True)


# (row label, config getter, the paper's setting key, "=literal" text, or None)
_RECIPE_ROWS: tuple[tuple[str, Any, str | None], ...] = (
    ("backbone", lambda c: c["model"]["arch"], None),
    ("initialisation", lambda c: c["model"]["init"], "pretrain.init"),
    ("data", lambda c: c["data"]["source"], None),
    ("global crops (px)", lambda c: c["crops"]["global_crops_size"], "pretrain.global_crop_output"),
    ("local crops (px)", lambda c: c["crops"]["local_crops_size"], "pretrain.local_crop_output"),
    ("local crops per image", lambda c: c["crops"]["local_crops_number"], None),
    (
        "images per step per device",
        lambda c: c["train"]["batch_size_per_device"],
        "=40 (x 16 GPUs)",
    ),
    ("steps", lambda c: c["train"]["epochs"] * c["train"]["epoch_length"], "pretrain.steps"),
    ("base lr (per 1024 images)", lambda c: c["optim"]["base_lr"], "pretrain.base_lr"),
    ("prototypes (DINO head)", lambda c: c["dino"]["head_n_prototypes"], None),
    ("teacher targets", lambda c: c["train"]["centering"], None),
    ("teacher temperature", lambda c: c["teacher"]["teacher_temp"], None),
    ("EMA momentum start", lambda c: c["teacher"]["momentum_teacher"], None),
    ("iBOT masked modelling", lambda c: c["ibot"]["enabled"], None),
)


def recipe_table(configs: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Key settings of several resolved pretraining configs side by side, with the paper's value
    (App. C.1, `raddino.paper`) where the text states one."""
    from raddino.paper import paper_setting

    rows = {}
    for label, getter, paper_key in _RECIPE_ROWS:
        row = {name: getter(config) for name, config in configs.items()}
        if paper_key is None:
            row["paper (RAD-DINO)"] = "–"
        elif paper_key.startswith("="):
            row["paper (RAD-DINO)"] = paper_key[1:]
        else:
            row["paper (RAD-DINO)"] = paper_setting(paper_key)
        rows[label] = row
    return pd.DataFrame.from_dict(rows, orient="index").astype(str)


def resolution_overrides(crops: Mapping[str, Any], resolution: int) -> dict[str, int]:
    """Global crop side `resolution`; local crops keep the ratio of the `crops` section they
    replace (on the 14-px patch grid), as `raddino pretrain --resolution` does."""
    ratio = crops["local_crops_size"] / crops["global_crops_size"]
    local = max(14, round(resolution * ratio / 14) * 14)
    return {"crops.global_crops_size": int(resolution), "crops.local_crops_size": int(local)}


def available_init(init: str) -> tuple[str, str]:
    """`init`, or `random` when it names a release this checkout does not ship; with a note."""
    from raddino.models.weights import release_names

    if init.startswith("raddino:") and init.removeprefix("raddino:") not in release_names():
        return "random", f"{init} is not shipped in raddino/release/: runs start from random init"
    return init, f"runs start from {init}"
