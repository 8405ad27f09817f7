"""The prepared GPU session: train both release encoders, then benchmark a gpu-paper step.

One command for a short GPU lease (`device` tool), so it calibrates itself: a 40-step run measures
images/s, and each release run gets the number of epochs that fits its time budget. Everything a
later `raddino release` needs comes back as one tar per run under $OUT; the fp16 general
encoder is written to raddino/release/general.safetensors first, so that the phantom run starts
from exactly the weights that will ship (`init: raddino:general`).

    OUT=/tmp/out PYTHONPATH=. python benchmarks/gpu_session.py            # on the GPU machine
    OUT=/tmp/out PYTHONPATH=. python benchmarks/gpu_session.py --dry-run  # tiny, on a CPU

`--variant "NAME:key=value;key=value"` (repeatable) instead trains phantom-release variants for
`--epochs` each and frozen-probes every one on this machine's GPU with the release bar
(`raddino.ssl.bar.bar_on_sets`, every probe set), beside the shipped phantom and a random init;
`sweep.json` grows after each variant, so a cut-off session still returns what it measured.
`--curve-every STEPS` keeps a checkpoint every STEPS steps and chooses one on the validation
probe set; `--bring-checkpoints` packs each run with its checkpoints cut to fp16 teachers before
any probing, so that the choice and the release are made on the CPU. What each GPU session ran,
found and left for the next one: benchmarks/GPU_SESSIONS.md. The next lease:

    python3 benchmarks/gpu_session.py --no-bench --epochs 80 --curve-every 400 \
        --bring-checkpoints --variant nj_4000:
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from raddino.ssl.config import load_config, parse_variant
from raddino.ssl.train import CollapseDetected, TrainingDiverged, pretrain

RUN_FILES = ("config.yaml", "metrics.jsonl", "hardware.json", "teacher_backbone.safetensors")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def measured_images_per_s(run_dir: Path, skip: int) -> float:
    """Images/s over the logged steps after the first `skip` (warm-up, worker start): total
    images over total time. Not a median of per-step rates: with batches built ahead, steps
    alternate between waiting for data and not, and the median counted only the fast ones
    (it said 3,072 images/s; the steps then averaged 1,605, on the first H200 session)."""
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["images_per_s"] for r in records[skip:]]
    return len(rates) / sum(1.0 / rate for rate in rates)  # harmonic mean = images / seconds


def epochs_for(budget_s: float, images_per_s: float, config: dict, cap: int) -> int:
    """Epochs of the profile's epoch_length that fit `budget_s` at `images_per_s`."""
    per_epoch = config["train"]["batch_size_per_device"] * config["train"]["epoch_length"]
    return max(2, min(cap, int(budget_s * images_per_s / per_epoch)))


OUT_FILE_LIMIT = 16 * 2**20  # the device tool brings back no file from $OUT larger than this


def pack(run_dir: Path, out: Path, files: tuple[str, ...] = RUN_FILES) -> None:
    with tarfile.open(out, "w") as tar:
        for name in files:
            tar.add(run_dir / name, arcname=f"{run_dir.name}/{name}")
    size = out.stat().st_size
    too_big = " - OVER the 16 MiB a file from $OUT may have" if size > OUT_FILE_LIMIT else ""
    log(f"packed {out} ({size / 1e6:.1f} MB){too_big}")


def bring_back(run_dir: Path, out: Path, limit: int = OUT_FILE_LIMIT - 2**20) -> list[Path]:
    """Pack a run for probing and releasing on another machine: its record and every checkpoint
    cut to its fp16 teacher backbone (`teacher_only_checkpoint`), in tars of at most `limit`
    bytes ($OUT brings back 16 MiB a file, 8 files); done before any probing, so that a lease cut
    short still returns the run."""
    from raddino.ssl.checkpoint import teacher_only_checkpoint

    slim = run_dir.parent / "bring_back" / run_dir.name
    shutil.rmtree(slim, ignore_errors=True)
    slim.mkdir(parents=True)
    for name in RUN_FILES[:-1]:  # the final teacher is the last checkpoint's
        shutil.copy2(run_dir / name, slim / name)
    for folder in sorted((run_dir / "checkpoints").glob("step_*")):
        teacher_only_checkpoint(folder, slim)
    files = sorted(p.relative_to(slim) for p in slim.rglob("*") if p.is_file())
    parts: list[list[Path]] = [[]]
    part_size = 0
    for file in files:  # greedy, in order: a part closes when the next file would not fit
        size = (slim / file).stat().st_size
        if parts[-1] and part_size + size > limit:
            parts.append([])
            part_size = 0
        parts[-1].append(file)
        part_size += size
    tars = []
    for index, part in enumerate(parts):
        tars.append(out / f"bring_{run_dir.name}_{index}.tar")
        pack(slim, tars[-1], tuple(map(str, part)))
    return tars


def calibrate(args, tiny: dict, calib_dir: Path, out: Path) -> float:
    """Images/s of a short run of the general profile on this machine."""
    calib = load_config(
        "general-release",
        {
            **tiny,
            "data.max_images": 64 if args.dry_run else 1024,
            "train.epochs": 2,
            "train.epoch_length": 3 if args.dry_run else 20,
            "optim.warmup_epochs": 1,
        },
    )
    pretrain(calib, calib_dir, progress=False)
    images_per_s = measured_images_per_s(calib_dir, skip=15 if not args.dry_run else 2)
    log(f"calibration: {images_per_s:.0f} images/s")
    (out / "calibration.json").write_text(json.dumps({"images_per_s": images_per_s}))

    return images_per_s


def per_set_summary(metrics: dict) -> str:
    """The bar's three numbers on each probe set, for the log (the JSON keeps everything)."""
    keys = ("macro_auprc", "sex_accuracy", "lung_dice")
    return "; ".join(
        f"set {seed}: " + " ".join(f"{k} {m[k]:.3f}" for k in keys)
        for seed, m in metrics["per_set"].items()
    )


def validation_choice(
    run_dir: Path,
    final: Path,
    steps: int,
    validation,
    baselines: list[dict],
    root: str,
    on_step=lambda curve: None,
):
    """Probe every kept checkpoint's teacher and the final one (after `steps` steps) on the
    validation probe set and choose a step by `raddino.ssl.bar.choose_checkpoint`; returns
    (curve, step, its weights). `on_step(curve so far)` is called after each probe."""
    from raddino.models.weights import save_backbone
    from raddino.ssl.bar import choose_checkpoint
    from raddino.ssl.checkpoint import load_checkpoint
    from raddino.ssl.release import backbone_from_checkpoint, frozen_probe_metrics

    weights: dict[int, Path] = {steps: final}  # the run's own final teacher
    for folder in sorted((run_dir / "checkpoints").glob("step_*")):
        steps_done = int(load_checkpoint(folder)[1]["step"]) + 1
        if steps_done not in weights:  # the last checkpoint holds the final teacher already
            path = run_dir / "curve" / f"teacher_step{steps_done}.safetensors"
            weights[steps_done] = save_backbone(backbone_from_checkpoint(folder), path)
    curve = {}
    for step, path in sorted(weights.items()):
        curve[step] = frozen_probe_metrics(str(path), validation, root)
        on_step({str(k): m for k, m in curve.items()})
    for step, metrics in sorted(curve.items()):
        log(f"  validation step {step}: " + per_set_summary({"per_set": {"val": metrics}}))
    chosen = choose_checkpoint(curve, baselines)
    return {str(step): m for step, m in sorted(curve.items())}, chosen, weights[chosen]


def release_chosen(
    run_dir: Path, curve: dict, baselines: dict, evaluation, root: str
) -> tuple[str, ...]:
    """Package the chosen checkpoint as a release candidate in RUN/release_candidate/, here on
    the machine that holds the checkpoint folders (65 MB each for vit_tiny, over what comes back
    from $OUT), with the validation curve it was chosen on, as `raddino release --checkpoint
    --choice` would; returns its files relative to RUN, for the run's tar."""
    from raddino.ssl.bar import BAR_METRICS, choice_record
    from raddino.ssl.checkpoint import checkpoint_after
    from raddino.ssl.release import package_release

    choice = {
        "report": "sweep.json",
        **choice_record({int(step): m for step, m in curve.items()}, baselines),
        "validation_curve": {step: {k: m[k] for k in BAR_METRICS} for step, m in curve.items()},
    }
    chosen = choice["step"]
    folder = checkpoint_after(run_dir, chosen)
    name = f"{run_dir.name}_step{chosen}"
    manifest = package_release(
        run_dir,
        name,
        profile="phantom-release",
        out_dir=run_dir / "release_candidate",
        compare=("pixels:32", "raddino:general"),
        evaluation=evaluation,
        runs_root=root,
        checkpoint=folder,
        choice=choice,
    )
    log(f"{run_dir.name}: chosen step {chosen} packaged as a release candidate, {manifest}")
    return tuple(
        f"release_candidate/{name}{suffix}"
        for suffix in (".safetensors", ".json", ".metrics.jsonl")
    )


def sweep(args, tiny: dict, out: Path) -> None:
    """Train each phantom-release variant, probe it with the release bar, write sweep.json."""
    from dataclasses import asdict

    from raddino.ssl.bar import VALIDATION_SET, bar_on_sets
    from raddino.ssl.checkpoint import latest_checkpoint
    from raddino.ssl.release import (
        ReleaseEval,
        class_token_readouts,
        class_token_stability,
        frozen_probe_metrics,
        random_init_spec,
    )
    from raddino.ssl.target_geometry import meta_from_checkpoint, target_geometry, training_batches

    device = "cuda" if torch.cuda.is_available() else "cpu"
    evaluation = (
        ReleaseEval(device=device)
        if not args.dry_run
        else ReleaseEval(
            probe_n=80,
            segmentation_n=40,
            segmentation_epochs=1,
            device=device,
            probe_seeds=2,
            metadata_folds=2,
        )
    )
    probes_root = str(args.runs / "probes")
    variants = [parse_variant(text) for text in args.variant]
    report: dict = {"evaluation": asdict(evaluation), "epochs": args.epochs, "variants": {}}

    def probe(spec: str) -> dict:
        """The release bar, and what the class token keeps (chapter 12's property table)."""
        readouts = class_token_readouts(spec, evaluation, probes_root)
        report["majority_class"] = readouts["majority class"]
        return {
            **bar_on_sets(spec, evaluation, probes_root),  # every probe set, mean and per set
            "class_token_properties": readouts["encoder"],
            "class_token_shift_stability": class_token_stability(spec, evaluation, probes_root),
        }

    base = load_config("phantom-release", tiny)
    validation = replace(evaluation, seed=VALIDATION_SET)

    def validation_baselines() -> None:  # what a checkpoint has to beat on the validation set
        report["validation"] = {
            spec: frozen_probe_metrics(spec, validation, probes_root)
            for spec in (random_init_spec(base), "raddino:general")
        }

    if not args.bring_checkpoints:  # with it, every probe waits until the runs are packed
        for spec in (random_init_spec(base), "raddino:general", "raddino:phantom"):
            report[spec] = probe(spec)
            log(f"{spec}: {per_set_summary(report[spec])}")
        if args.curve_every:
            validation_baselines()
    started = time.perf_counter()
    trained: list[tuple[str, Path, int]] = []  # with --bring-checkpoints, probed after packing
    for name, overrides in variants:
        if args.deadline_s and time.perf_counter() - started > args.deadline_s:
            log(f"{name} and the rest not started: the sweep is past --deadline-s")
            break
        curve = (
            {"train.checkpoint_every": args.curve_every, "train.keep_checkpoints": 10_000}  # all
            if args.curve_every
            else {}
        )
        config = load_config(
            "phantom-release", {**tiny, "train.epochs": args.epochs, **curve, **overrides}
        )
        tic = time.perf_counter()
        try:
            final = pretrain(config, args.runs / name, progress=False)
        except (CollapseDetected, TrainingDiverged) as error:  # a finding, not a crash
            report["variants"][name] = {"overrides": overrides, "failed": str(error)}
            log(f"{name} failed: {error}")
            (out / "sweep.json").write_text(json.dumps(report, indent=2))
            continue
        train_s = time.perf_counter() - tic
        last = json.loads((args.runs / name / "metrics.jsonl").read_text().splitlines()[-1])
        if args.bring_checkpoints:
            log(f"{name} trained in {train_s:.0f} s; teacher entropy {last['teacher_entropy']}")
            report["variants"][name] = {"overrides": overrides, "train_s": round(train_s, 1)}
            report["variants"][name]["tars"] = [t.name for t in bring_back(args.runs / name, out)]
            (out / "sweep.json").write_text(json.dumps(report, indent=2))
            trained.append((name, final, last["step"] + 1))
            continue
        metrics = probe(str(final))
        meta = meta_from_checkpoint(config, latest_checkpoint(args.runs / name))  # on the CPU
        (batch,) = training_batches(config, meta)
        report["variants"][name] = {
            "overrides": overrides,
            "train_s": round(train_s, 1),
            "last_step": last,
            "frozen_probes": metrics,
            "target_geometry": target_geometry(meta, batch, config["teacher"]["teacher_temp"]),
        }
        summary = per_set_summary(metrics)
        log(f"{name} ({train_s:.0f} s): {summary}; teacher entropy {last['teacher_entropy']}")
        if args.curve_every:
            baselines = list(report["validation"].values())
            curve_metrics, chosen, chosen_weights = validation_choice(
                args.runs / name, final, last["step"] + 1, validation, baselines, probes_root
            )
            entry = report["variants"][name]
            entry |= {"validation_curve": curve_metrics, "chosen_step": chosen}
            if Path(chosen_weights) != Path(final):
                entry["chosen_frozen_probes"] = probe(str(chosen_weights))
            # its own tar: beside the fp32 final teacher it would pass the 16 MiB a file may have
            candidate = release_chosen(
                args.runs / name,
                curve_metrics,
                report["validation"],
                evaluation,
                probes_root,
            )
            log(f"{name}: chosen step {chosen}")
        (out / "sweep.json").write_text(json.dumps(report, indent=2))
        pack(args.runs / name, out / f"variant_{name}.tar")
        if args.curve_every:
            pack(args.runs / name, out / f"candidate_{name}.tar", candidate)
    if trained and args.curve_every:  # a head start on the validation curve the CPU would probe
        validation_baselines()
        (out / "sweep.json").write_text(json.dumps(report, indent=2))
        for name, final, steps in trained:
            baselines = list(report["validation"].values())
            entry = report["variants"][name]

            def keep(curve: dict, entry: dict = entry) -> None:  # a cut-off lease keeps these
                entry["validation_curve"] = curve
                (out / "sweep.json").write_text(json.dumps(report, indent=2))

            _, chosen, _ = validation_choice(
                args.runs / name, final, steps, validation, baselines, probes_root, keep
            )  # keep() has stored the whole curve
            entry["chosen_step"] = chosen
            (out / "sweep.json").write_text(json.dumps(report, indent=2))
            log(f"{name}: chosen step {chosen} on the validation set")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes, for a CPU rehearsal")
    parser.add_argument("--general-s", type=float, default=110.0)
    parser.add_argument("--phantom-s", type=float, default=170.0)
    parser.add_argument("--only", choices=("general", "phantom"), help="one release run")
    parser.add_argument("--epochs", type=int, help="fixed epochs (no calibration)")
    parser.add_argument("--variant", action="append", default=[], help="NAME:key=v;key=v")
    parser.add_argument(
        "--deadline-s", type=float, help="start no further variant after this many seconds"
    )
    parser.add_argument(
        "--curve-every",
        type=int,
        default=0,
        metavar="STEPS",
        help="with --variant: checkpoint every STEPS steps and choose one on the validation set",
    )
    parser.add_argument(
        "--bring-checkpoints",
        action="store_true",
        help="with --variant: pack each run with its checkpoints' fp16 teachers before probing, "
        "and probe only the validation curve (the bar and the release are then made on the CPU)",
    )
    parser.add_argument("--no-bench", action="store_true", help="skip the gpu-paper benchmark")
    parser.add_argument("--runs", type=Path, default=Path("/tmp/gpu_runs"))
    args = parser.parse_args()
    out = Path(os.environ["OUT"])
    out.mkdir(parents=True, exist_ok=True)
    tiny = (
        {
            "data.max_images": 64,
            "data.pool_size": 64,
            "data.num_workers": 2,
            "data.phantom_size": 96,
            "train.batch_size_per_device": 8,
            "train.epoch_length": 2,
            "train.checkpoint_every": 2,
            "crops.global_crops_size": 56,
            "crops.local_crops_size": 28,
        }
        if args.dry_run
        else {}
    )
    log(
        f"torch {torch.__version__}, cuda {torch.cuda.is_available()}, "
        f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}"
    )

    shm = shutil.disk_usage("/dev/shm")
    log(f"/dev/shm free {shm.free / 2**30:.1f} GiB; {os.cpu_count()} CPUs")

    calib_dir = args.runs / "calibrate"
    if args.epochs:
        images_per_s = 0.0
    else:
        images_per_s = calibrate(args, tiny, calib_dir, out)

    if args.variant:
        if not args.epochs:
            raise SystemExit("--variant needs --epochs (the same for every variant)")
        sweep(args, tiny, out)
        runs = ()
    else:
        runs = (("general", args.general_s, 40), ("phantom", args.phantom_s, 60))
    for name, budget, cap in runs:
        if args.only and name != args.only:
            continue
        profile = f"{name}-release"
        base = load_config(profile, tiny)
        epochs = args.epochs or (
            epochs_for(budget, images_per_s, base, cap) if not args.dry_run else 2
        )
        log(f"{profile}: {epochs} epochs x {base['train']['epoch_length']} steps")
        tic = time.perf_counter()
        config = load_config(profile, {**tiny, "train.epochs": epochs})
        final = pretrain(config, args.runs / name, progress=False)
        log(f"{profile}: done in {time.perf_counter() - tic:.0f} s")
        records = (args.runs / name / "metrics.jsonl").read_text().splitlines()
        for line in (records[0], records[len(records) // 2], records[-1]):
            log(f"  {line}")
        pack(args.runs / name, out / f"{name}.tar")
        if name == "general" and not args.dry_run:
            # what the phantom run starts from (init raddino:general), exactly as it will ship
            from raddino.models.weights import RELEASE_DIR, load_backbone, save_backbone

            save_backbone(
                load_backbone(final), RELEASE_DIR / "general.safetensors", dtype=torch.float16
            )

    if torch.cuda.is_available() and not args.no_bench:
        for tag, extra in (("eager", []), ("compiled", ["--compile"])):
            log(f"benchmark gpu-paper ({tag})")
            command = [sys.executable, "benchmarks/train_step.py", "--case", "gpu-paper"]
            command += ["--device", "cuda", "--bf16", "--steps", "5", *extra]
            command += ["--out", str(out / f"bench_gpu-paper_{tag}.json")]
            subprocess.run(command, check=False, timeout=150)
    log("session done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
