"""The release bar along one run: each checkpoint's teacher backbone probed on held-out phantoms
of the given evaluation seeds, beside random init and any `--baseline` encoders. With `--choose`
the curve on the validation set (`raddino.ssl.bar.VALIDATION_SET`, which no bar or sweep reads)
picks the step furthest past the baselines on its weakest bar metric.
Chapters 02 and 12 read the JSON.

    python benchmarks/checkpoint_curve.py --run RUN --checkpoint RUN/checkpoints/step_00000799 \
        --checkpoint ... --final --seed 0 --seed 1 --out raddino/release/sweeps/NAME.json
    python benchmarks/checkpoint_curve.py --run RUN --all-checkpoints --final \
        --baseline raddino:general --choose --out runs/bench/NAME_choice.json
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import torch

from raddino.models.weights import save_backbone
from raddino.ssl.bar import VALIDATION_SET, choice_record
from raddino.ssl.checkpoint import load_checkpoint, run_config
from raddino.ssl.release import (
    ReleaseEval,
    backbone_from_checkpoint,
    class_token_stability,
    frozen_probe_metrics,
    random_init_spec,
)
from raddino.utils import versions, write_json_atomic


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="folder with the run's config")
    parser.add_argument("--checkpoint", action="append", default=[], help="checkpoint folders")
    parser.add_argument(
        "--all-checkpoints", action="store_true", help="every RUN/checkpoints/step_* folder"
    )
    parser.add_argument("--final", action="store_true", help="also RUN/teacher_backbone")
    parser.add_argument(
        "--baseline", action="append", default=[], help="encoders probed beside random init"
    )
    parser.add_argument(
        "--choose",
        action="store_true",
        help=f"probe the validation set (seed {VALIDATION_SET}) and choose a step on it",
    )
    parser.add_argument("--start", help="the run's starting encoder spec, probed as step 0")
    parser.add_argument("--seed", type=int, action="append", help="evaluation seeds (default 0)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", default="runs", help="runs root (probe folders, caches)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = run_config(args.run)
    total = config["train"]["epochs"] * config["train"]["epoch_length"]
    seeds = args.seed or ([] if args.choose else [0])
    if args.choose and VALIDATION_SET not in seeds:
        seeds.append(VALIDATION_SET)
    specs: dict[int, str] = {0: args.start} if args.start else {}
    folders = list(map(Path, args.checkpoint))
    if args.all_checkpoints:
        folders += sorted((args.run / "checkpoints").glob("step_*"))
    if not folders and not args.final:
        raise SystemExit("no checkpoint to probe: give --checkpoint, --all-checkpoints or --final")
    for folder in folders:
        steps_done = int(load_checkpoint(folder)[1]["step"]) + 1
        weights = (
            Path(args.runs) / "checkpoint_curve" / f"{args.out.stem}.step{steps_done}.safetensors"
        )
        specs[steps_done] = str(save_backbone(backbone_from_checkpoint(folder), weights))
    if args.final:
        specs[total] = str(args.run / "teacher_backbone.safetensors")
    report: dict = {"run_config": config, "versions": versions(), "curves": {}}
    for seed in seeds:
        evaluation = ReleaseEval(seed=seed)
        curve: dict = {"evaluation": asdict(evaluation), "steps": {}}
        curve["random"] = frozen_probe_metrics(random_init_spec(config), evaluation, args.runs)
        curve["baselines"] = {
            spec: frozen_probe_metrics(spec, evaluation, args.runs) for spec in args.baseline
        }
        for steps_done, spec in sorted(specs.items()):
            bar = frozen_probe_metrics(spec, evaluation, args.runs)
            stability = class_token_stability(spec, evaluation, args.runs)
            curve["steps"][str(steps_done)] = {"bar": bar, "shift_stability": stability}
            headline = {k: v for k, v in bar.items() if not isinstance(v, dict)}
            print(f"seed {seed} step {steps_done}: {headline} 4px {stability['shift_4px']}")
            report["curves"][str(seed)] = curve
            write_json_atomic(args.out, report)  # a cut-off run keeps what it measured
    if args.choose:
        validation = report["curves"][str(VALIDATION_SET)]
        baselines = {random_init_spec(config): validation["random"], **validation["baselines"]}
        curve_bars = {int(step): entry["bar"] for step, entry in validation["steps"].items()}
        choice = choice_record(curve_bars, baselines)
        report["choice"] = {**choice, "weights": specs[choice["step"]]}
        write_json_atomic(args.out, report)
        print(f"chosen on the validation set (seed {VALIDATION_SET}): step {choice['step']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
