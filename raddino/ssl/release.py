"""Release checkpoints: a finished run's teacher backbone as fp16 safetensors in `raddino/release/`,
with a manifest of how it was made (config, steps, images, hardware, wall time) and how good it is
(frozen probes on held-out phantoms beside a random-init backbone of the same shape and raw pixels).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from raddino.ssl.health import flat_targets_warning, read_metrics
from raddino.utils import atomic_path, hardware_description, versions, write_json_atomic

MAX_RELEASE_MB = 25.0


@dataclass(frozen=True)
class ReleaseEval:
    """Held-out phantoms of the frozen-probe bar; the defaults are the book's `cpu` profile sizes,
    so a manifest's numbers are the ones chapters 06-08 print (same folders, same caches).

    The segmentation head trains the paper's 100 epochs (App. C): at 12 it was still learning,
    and every encoder looked alike (lung Dice random 0.378 / general 0.388 / phantom 0.385; at
    100: 0.434 / 0.532 / 0.607). Probe set `s` is probe phantoms of seed s + 2 and segmentation
    phantoms of seed s + 3 (`frozen_probe_metrics`); a `random:` baseline's probes and sex read-out
    use a network drawn with seed s (`extract`), its segmentation one drawn with seed 0."""

    probe_n: int = 600
    probe_size: int = 224
    probe_seeds: int = 5
    probe_c: float = 0.1
    metadata_folds: int = 5
    segmentation_n: int = 160
    segmentation_size: int = 112
    segmentation_epochs: int = 100
    seed: int = 0  # the probe set of one `frozen_probe_metrics` call
    sets: tuple[int, ...] = (0, 1)  # the probe sets a release is judged on (`raddino.ssl.bar`)
    device: str = "cpu"


def frozen_probe_metrics(spec: str, evaluation: ReleaseEval, runs_root: str = "runs") -> dict:
    """Macro AUPRC over findings (linear probes), sex accuracy and lung Dice (linear head) of one
    frozen encoder on held-out phantoms (seeds 2 and 3 of `phantom_folder`; training uses 0)."""
    from raddino.eval.features import extract
    from raddino.eval.metadata import MetadataConfig
    from raddino.eval.probe_tables import probe_phantoms
    from raddino.eval.segment import run_segmentation
    from raddino.eval.segment_train import HeadTrainConfig
    from raddino.eval.tables import metadata_per_variable
    from raddino.pipeline import phantom_folder

    ev = evaluation
    is_pixels = spec.startswith("pixels")
    folder = probe_phantoms(ev.probe_n, ev.probe_size, ev.seed, runs_root)
    features = extract(
        spec,
        folder,
        size=None if is_pixels else ev.probe_size,
        which=["cls"],
        cache_dir=f"{runs_root}/features",
        device=ev.device,
        seed=ev.seed,
    )["cls"]
    findings = finding_probes(features, folder, ev)
    metadata = metadata_per_variable(
        features,
        folder.table,
        MetadataConfig(variables=("sex",), folds=ev.metadata_folds, seed=ev.seed),
    )["sex"]
    if "error" in metadata:
        raise ValueError(f"sex accuracy of {spec} cannot be measured: {metadata['error']}")
    seg_dir = phantom_folder(
        ev.segmentation_n,
        ev.segmentation_size,
        ev.seed + 3,
        views=("PA", "AP"),
        root=runs_root,
        quiet=True,
    )
    segmentation, _ = run_segmentation(
        str(seg_dir),
        spec,
        "linear",
        size=None if is_pixels else ev.segmentation_size,
        mask_size=ev.segmentation_size,
        config=HeadTrainConfig(epochs=ev.segmentation_epochs, seed=ev.seed, device=ev.device),
        split_seed=ev.seed,
        cache_dir=f"{runs_root}/patch_grids",
        progress=False,
    )
    return {
        "macro_auprc": findings["macro_auprc"],
        "macro_auprc_std": findings["macro_auprc_std"],
        "sex_accuracy": round(float(metadata["accuracy"]["mean"]), 4),
        "sex_majority_accuracy": round(float(metadata["majority_class_accuracy"]["mean"]), 4),
        "lung_dice": round(float(segmentation["dice"]["lungs"]["mean"]), 4),
        "finding_auprc": findings["finding_auprc"],
    }


def finding_probes(features_nd: Any, folder: Any, evaluation: ReleaseEval) -> dict:
    """The bar's linear probes on one feature matrix (N, D) of the probe phantoms `folder`:
    macro AUPRC over findings (mean and spread over probe seeds) and each finding's AUPRC."""
    from raddino.eval.probe import ProbeConfig, run_probes

    config = ProbeConfig(method="sklearn", seeds=evaluation.probe_seeds, c=evaluation.probe_c)
    summary = run_probes(
        features_nd,
        folder.labels_array(),
        folder.table["subject_id"].to_numpy(),
        folder.label_names,
        config,
        progress=False,
    )["summary"]
    macro = summary["macro"]["auprc"]
    return {
        "macro_auprc": round(float(macro["mean"]), 4),
        "macro_auprc_std": round(float(macro["std"]), 4),
        "finding_auprc": {
            k: round(float(v["auprc"]["mean"]), 4) for k, v in summary["per_label"].items()
        },
    }


def class_token_readouts(spec: str, evaluation: ReleaseEval, runs_root: str = "runs") -> dict:
    """Chapter 12's class-token property row of one encoder and the majority-class row, on the
    bar's probe phantoms: {"encoder": {property: accuracy}, "majority class": {...}}."""
    from raddino.eval.ablations import global_property_table
    from raddino.eval.probe_tables import probe_phantoms

    ev = evaluation
    folder = probe_phantoms(ev.probe_n, ev.probe_size, ev.seed, runs_root)
    table = global_property_table(
        {spec: spec},
        folder,
        size=ev.probe_size,
        folds=ev.metadata_folds,
        seed=ev.seed,
        runs_root=runs_root,
        device=ev.device,
    )
    rows = {"encoder": spec, "majority class": "majority class"}
    return {
        key: {k: round(float(v), 4) for k, v in table.loc[row].items()} for key, row in rows.items()
    }


def class_token_stability(spec: str, evaluation: ReleaseEval, runs_root: str = "runs") -> dict:
    """`raddino.eval.stability.shift_stability` of one encoder's class token on the first 128 of
    the bar's probe phantoms: {"shift_1px": ..., "shift_4px": ..., ..., "other_image": ...}."""
    from raddino.eval.probe_tables import probe_phantoms
    from raddino.eval.stability import shift_stability_table

    ev = evaluation
    folder = probe_phantoms(ev.probe_n, ev.probe_size, ev.seed, runs_root)
    table = shift_stability_table(
        {spec: spec}, folder, n=128, size=ev.probe_size, device=ev.device, seed=ev.seed
    )
    return {k: round(float(v), 4) for k, v in table.loc[spec].items()}


def random_init_spec(config: dict) -> str:
    """The untrained baseline of the same shape as a run's backbone."""
    return f"random:{config['model']['arch']}"


def training_record(run_dir: Path, steps: int | None = None) -> dict[str, Any]:
    """Steps, images seen and step wall time, read from the run's own metrics.jsonl; with `steps`,
    those of the run's first `steps` steps (a release of an earlier checkpoint of the run)."""
    from raddino.ssl.checkpoint import run_config

    config = run_config(run_dir)
    records = read_metrics(run_dir)
    world = int(records[-1].get("world_size", 1)) if records else 1
    global_batch = config["train"]["batch_size_per_device"] * world
    expected = config["train"]["epochs"] * config["train"]["epoch_length"]
    if len(records) != expected:
        raise ValueError(
            f"{run_dir}/metrics.jsonl: {len(records)} steps logged, the config runs {expected}"
        )
    if steps is not None:
        if not 1 <= steps <= expected:
            raise ValueError(f"{run_dir}: steps must be within 1..{expected}, got {steps}")
        records = records[:steps]
    steps = len(records)
    wall_s = sum(global_batch / r["images_per_s"] for r in records if r.get("images_per_s"))
    hardware_path = run_dir / "hardware.json"
    hardware = (
        json.loads(hardware_path.read_text())
        if hardware_path.is_file()
        else {**hardware_description(), "recorded": "when packaged (the run kept no hardware.json)"}
    )
    return {
        "config": config,
        "steps": steps,
        "images_seen": steps * global_batch,
        "train_wall_s": round(wall_s, 1),
        "hardware": hardware,
        "final_losses": {
            k: records[-1][k] for k in ("total", "dino_global", "ibot", "koleo") if k in records[-1]
        },
        "final_teacher_entropy": records[-1]["teacher_entropy"],
        "flat_targets_warning": flat_targets_warning(records),
    }


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def package_release(
    run_dir: str | os.PathLike,
    name: str,
    *,
    profile: str,
    out_dir: str | os.PathLike | None = None,
    compare: tuple[str, ...] = ("pixels:32",),
    evaluation: ReleaseEval | None = None,
    runs_root: str = "runs",
    checkpoint: str | os.PathLike | None = None,
    choice: dict | None = None,
) -> Path:
    """Write `NAME.safetensors` (fp16), `NAME.json` (manifest) and `NAME.metrics.jsonl` (the
    training curve) for a finished run; returns the manifest path. With `checkpoint` (a folder of
    `RUN/checkpoints/`) the release is that checkpoint's teacher and the curve ends at its step;
    `choice` (how the step was chosen, e.g. `benchmarks/checkpoint_curve.py --choose`) is kept."""
    from raddino.models.weights import RELEASE_DIR, load_backbone, save_backbone

    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else RELEASE_DIR
    evaluation = evaluation or ReleaseEval()
    final = run_dir / "teacher_backbone.safetensors"
    if checkpoint is None:
        if not final.is_file():
            raise FileNotFoundError(f"{final}: the run has not finished (no final teacher)")
        backbone, record = load_backbone(final), training_record(run_dir)
        chosen = None
    else:
        # training_record refuses an unfinished run (fewer steps logged than configured); the
        # final teacher need not be here (a run brought back as teacher-only checkpoints)
        backbone, steps = released_checkpoint(run_dir, Path(checkpoint))
        record = training_record(run_dir, steps=steps)
        run_steps = record["config"]["train"]["epochs"] * record["config"]["train"]["epoch_length"]
        chosen = {"step": steps, "run_steps": run_steps, "choice": choice}
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path = save_backbone(backbone, out_dir / f"{name}.safetensors", dtype=torch.float16)
    size_mb = weights_path.stat().st_size / 1e6
    if size_mb > MAX_RELEASE_MB:
        weights_path.unlink()
        raise ValueError(f"{name}: {size_mb:.1f} MB in fp16, over the {MAX_RELEASE_MB} MB limit")
    with atomic_path(out_dir / f"{name}.metrics.jsonl") as tmp:
        if chosen is None:
            shutil.copyfile(run_dir / "metrics.jsonl", tmp)
        else:  # the curve up to the released step
            lines = (run_dir / "metrics.jsonl").read_text().splitlines(keepends=True)
            Path(tmp).write_text("".join([line for line in lines if line.strip()][:steps]))

    manifest = {
        "name": name,
        "profile": profile,
        "weights": weights_path.name,
        "sha256": sha256_of(weights_path),
        "size_mb": round(size_mb, 2),
        "dtype": "float16",
        **{k: v for k, v in record.items() if k != "config"},
        **({"released_checkpoint": chosen} if chosen is not None else {}),
        "config": record["config"],
        "frozen_probes": release_probes(
            str(weights_path),
            [random_init_spec(record["config"]), *compare],
            evaluation,
            runs_root,
        ),
        "versions": versions(),
    }
    manifest_path = out_dir / f"{name}.json"
    write_json_atomic(manifest_path, manifest)
    return manifest_path


def release_probes(
    weights: str, baselines: list[str], evaluation: ReleaseEval, runs_root: str = "runs"
) -> dict:
    """A manifest's `frozen_probes`: the bar of the released weights and of each baseline on
    every probe set of `evaluation.sets` (`raddino.ssl.bar.bar_on_sets`)."""
    from raddino.ssl.bar import bar_on_sets

    metrics = {spec: bar_on_sets(spec, evaluation, runs_root) for spec in [weights, *baselines]}
    return {
        "evaluation": asdict(evaluation),
        "this": metrics[weights],
        "baselines": {spec: metrics[spec] for spec in baselines},
    }


def reprobe_release(
    name: str,
    *,
    release_dir: str | os.PathLike | None = None,
    evaluation: ReleaseEval | None = None,
    runs_root: str = "runs",
) -> Path:
    """Measure a shipped release and its manifest's baselines again under `evaluation` (when the
    bar changes) and rewrite the manifest's `frozen_probes`; how it was made is kept as it was."""
    from raddino.models.weights import RELEASE_DIR

    out_dir = Path(release_dir or RELEASE_DIR)
    manifest = read_release_manifest(name, out_dir)
    weights = out_dir / manifest["weights"]
    if sha256_of(weights) != manifest["sha256"]:
        raise ValueError(f"{weights}: sha256 differs from {name}.json; not the release it records")
    baselines = list(manifest["frozen_probes"]["baselines"])
    manifest["frozen_probes"] = release_probes(
        str(weights), baselines, evaluation or ReleaseEval(), runs_root
    )
    manifest["frozen_probes"]["versions"] = versions()  # top-level versions made the release
    manifest_path = out_dir / f"{name}.json"
    write_json_atomic(manifest_path, manifest)
    return manifest_path


def released_checkpoint(run_dir: Path, folder: Path):
    """(teacher backbone, steps done) of a checkpoint folder of `run_dir`; one of another run is
    an error (its config and curve would not be this run's)."""
    from raddino.ssl.checkpoint import load_checkpoint

    if folder.resolve().parents[1] != run_dir.resolve():
        raise ValueError(f"{folder}: not a checkpoint of {run_dir} (it is under {folder.parent})")
    steps = int(load_checkpoint(folder)[1]["step"]) + 1
    return backbone_from_checkpoint(folder), steps


def backbone_from_checkpoint(checkpoint_dir: str | os.PathLike, which: str = "teacher"):
    """The student's or the teacher's backbone of a training checkpoint folder (to probe both
    during a run, or to release a checkpoint other than the final one)."""
    from raddino.ssl import checkpoint as ckpt
    from raddino.ssl.train import build_backbone_for

    if which not in ("teacher", "student"):
        raise ValueError(f"which must be 'teacher' or 'student', got {which!r}")
    checkpoint_dir = Path(checkpoint_dir)
    config = ckpt.run_config(checkpoint_dir.parents[1])
    tensors, _ = ckpt.load_checkpoint(checkpoint_dir)
    weights = ckpt.unprefixed(f"meta.{which}.backbone", tensors)
    if not weights:
        raise KeyError(f"{checkpoint_dir}: no {which} backbone tensors in the checkpoint")
    backbone = build_backbone_for({**config, "model": {**config["model"], "init": "random"}})
    backbone.load_state_dict(weights)
    return backbone.eval()


def read_release_manifest(name: str, release_dir: str | os.PathLike | None = None) -> dict:
    """The manifest `NAME.json` beside a shipped release checkpoint."""
    from raddino.models.weights import RELEASE_DIR

    path = Path(release_dir or RELEASE_DIR) / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest for release {name!r}")
    return json.loads(path.read_text())
