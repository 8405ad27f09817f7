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
The sweep the first H200 session left for the next one (hypotheses in the issue-4 notes: the
recipe's crop and intensity invariances erase what the findings are made of; flat DINO targets):

    python3 benchmarks/gpu_session.py --no-bench --epochs 8 --variant as_is: \
        --variant "layout:crops.global_crops_side=[0.85, 1.0];crops.local_crops_side=[0.3, 0.6]" \
        --variant "gentle:crops.photometric_strength=0.25" \
        --variant "sharp:teacher.teacher_temp=0.015;teacher.warmup_teacher_temp=0.015" \
        --variant "mim:ibot.loss_weight=2.0;ibot.mask_sample_probability=1.0"

That session ran the whole-view sweep instead (raddino/release/sweeps/h200_whole_views.json).
The next one: does the class token drop the collimation-border shortcut (chapter 02) when the
phantom release is retrained with random borders on its crops? A CPU A/B of 12,800 images could
not unlearn it (raddino/release/sweeps/cpu_random_borders_ab.json):

    python3 benchmarks/gpu_session.py --no-bench --epochs 8 --variant as_is: \
        --variant "borders:crops.random_borders_p=0.5" \
        --variant "borders_often:crops.random_borders_p=0.9"

First, though (session 2026-12-03): both releases' class tokens hash where the patch grid cuts
the image (a 4-px shift leaves them at 0.22 of their standardised cosine, a random ViT at 0.78;
`raddino.eval.stability`). CPU A/Bs of 12,800-25,600 images without KoLeo made them steadier
(0.47 after 800 steps) and raised sex accuracy and lung Dice, with findings AUPRC within noise
(raddino/release/sweeps/cpu_koleo_ab.json). Every sweep now records
`class_token_shift_stability`. The retrain to try:

    python3 benchmarks/gpu_session.py --no-bench --epochs 8 --variant as_is: \
        --variant "no_koleo:dino.koleo_loss_weight=0" \
        --variant "no_koleo_sharp:dino.koleo_loss_weight=0;teacher.teacher_temp=0.01;\
teacher.warmup_teacher_temp=0.01"

Since then (second 2026-12-03 session): 3,200 CPU steps without KoLeo steadied the token further
(0.586) and raised lung Dice, and macro AUPRC still did not move on either of two probe sets
(raddino/release/sweeps/cpu_no_koleo_curve.json); the teacher spreads each target over ~100 of
256 prototypes (cpu_no_koleo_geometry.json). Each variant now also records `target_geometry`
(are targets sharp, and do an image's two crops share them?), and its bar is measured on every
probe set of `ReleaseEval.sets` (`raddino.ssl.bar`): judge a variant by its per-set numbers.

Third session: whole-image global views without KoLeo (800 CPU steps) clearly beat random init on
sex on both probe sets, findings still within noise (cpu_whole_no_koleo_ab.json); patch tokens
pooled to a 4 x 4 grid read findings no better for any pretrained encoder than for random init
(pooled_probe.json). The longer GPU run to try next, beside the three above:

    --variant "whole_no_koleo:crops.global_crops_side=[0.9, 1.0];crops.local_crops_number=0;\
dino.koleo_loss_weight=0;teacher.teacher_temp=0.01;teacher.warmup_teacher_temp=0.01"

Fourth session: frontal-only phantoms (as RAD-DINO trained) changed nothing the two-set bar sees
(cpu_frontal_ab.json); keep the laterals. benchmarks/layer_probe.py found the heart's size in
both releases' pooled patch tokens, clearly above random init, while their class tokens miss it;
a labelled reference's class token reads it. Run layer_probe.py on a promising variant's weights
to see whether its class token has started to gather what its patch tokens hold.

Fifth session: counterfactual pairs (benchmarks/finding_counterfactuals.py) showed the release
recipe itself blinds the class token to findings: 400 CPU steps of it from raddino:general undo
the general release's finding sensitivity, while KoLeo off + teacher temperature 0.01 (+ no
intensity jitter) raise it, and that run clears the findings margin against random init and the
general release on both sets (cpu_from_general_ab.json). The GPU variant to regenerate the
phantom release with, then hold to the bar, finding_sets.py and finding_counterfactuals.py:

    --variant "no_koleo_sharp_no_jitter:dino.koleo_loss_weight=0;teacher.teacher_temp=0.01;\
teacher.warmup_teacher_temp=0.01;crops.photometric_strength=0"

Sixth session (CPU): the same recipe for 1,200 steps instead of 400 lost the findings margin
(macro AUPRC 0.246/0.234 -> 0.235/0.217 on the two sets) while lung Dice rose (0.507/0.540 ->
0.528/0.577) and sex cleared random init on both sets (cpu_from_general_ab.json). So a long GPU
run may pass the point where the class token reads findings best. With `--curve-every STEPS` each
variant keeps a checkpoint each STEPS steps, each one is probed on the validation probe set
(`raddino.ssl.bar.VALIDATION_SET`, which no bar or sweep reads), the step furthest past random init
and the general release on its weakest bar metric is chosen (`choose_checkpoint`), and the chosen
teacher is held to the bar's sets like the final one and packed as a release candidate:

    python3 benchmarks/gpu_session.py --no-bench --epochs 20 --curve-every 200 \
        --variant "no_koleo_sharp_no_jitter:dino.koleo_loss_weight=0;teacher.teacher_temp=0.01;\
teacher.warmup_teacher_temp=0.01;crops.photometric_strength=0"

Seventh session (CPU): that recipe from raddino:general at 224 px (400 steps, a checkpoint every
100, chosen on the validation set) cleared findings against random init and the general release
on both sets, missed sex on set 0 and stayed at the general release's lung Dice
(raddino/release/sweeps/candidates/). The chosen step is now packaged on the GPU machine as a
release candidate (RUN/release_candidate/, in candidate_NAME.tar: fp16 weights, manifest with
the validation curve, training record up to that step). If it meets the bar, it ships as
raddino:phantom once its three files and its manifest's name and weights fields are renamed.

Eighth session (H200, 2026-12-04): `--bring-checkpoints` packs each run with every checkpoint cut
to its fp16 teacher before any probing, so the CPU can choose and release a step with the repo's
own tools (`checkpoint_curve.py --choose`, `raddino release --checkpoint --choice`):

    python3 benchmarks/gpu_session.py --no-bench --epochs 40 --curve-every 200 \
        --bring-checkpoints --variant "nj_2000:dino.koleo_loss_weight=0;teacher.teacher_temp=0.01;\
teacher.warmup_teacher_temp=0.01;crops.photometric_strength=0"

2,000 steps took 219 s and the validation curve 84 s more; 1,000 steps (`--epochs 20`) were run
first. On the validation set every metric rose with training after step 400
(raddino/release/sweeps/h200_jitter_free.json). The 2,000-step run's last step shipped as
raddino:phantom (the phantom-release profile is now this recipe); on the bar's sets it misses
only findings against random init on set 1, by 0.001. Its validation curve was still rising at
the end (worst margin +0.0209 at 1,800 steps, +0.0212 at 2,000), so the next lease can try twice
the steps, which fit one 10-minute call (about 7 minutes of steps and 1.5 of validation probes):

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
    for file in files:  # greedy, in order: a part closes when the next file would not fit
        sizes = sum((slim / f).stat().st_size for f in parts[-1])
        if parts[-1] and sizes + (slim / file).stat().st_size > limit:
            parts.append([])
        parts[-1].append(file)
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
    from raddino.ssl.release import package_release

    choice = {
        "report": "sweep.json",
        **choice_record({int(step): m for step, m in curve.items()}, baselines),
        "validation_curve": {step: {k: m[k] for k in BAR_METRICS} for step, m in curve.items()},
    }
    chosen = choice["step"]
    folder = run_dir / "checkpoints" / f"step_{chosen - 1:08d}"
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
        """The release bar, and what the class token keeps (chapter 02's property table)."""
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

            curve, chosen, _ = validation_choice(
                args.runs / name, final, steps, validation, baselines, probes_root, keep
            )
            report["variants"][name] |= {"validation_curve": curve, "chosen_step": chosen}
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
