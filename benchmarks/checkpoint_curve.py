"""The release bar along one run: each checkpoint's teacher backbone probed on held-out phantoms,
on the test phantoms of the bar (evaluation seed 0) and on a validation set (seed 1) that is the
one to choose a checkpoint by. Chapter 02 reads the JSON.

    python benchmarks/checkpoint_curve.py --run RUN --checkpoint RUN/checkpoints/step_00000799 \
        --checkpoint ... --final --seed 0 --seed 1 --out raddino/release/sweeps/NAME.json
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import torch

from raddino.models.weights import save_backbone
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
    parser.add_argument("--final", action="store_true", help="also RUN/teacher_backbone")
    parser.add_argument("--start", help="the run's starting encoder spec, probed as step 0")
    parser.add_argument("--seed", type=int, action="append", help="evaluation seeds (default 0)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", default="runs", help="runs root (probe folders, caches)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = run_config(args.run)
    total = config["train"]["epochs"] * config["train"]["epoch_length"]
    specs: dict[int, str] = {0: args.start} if args.start else {}
    for folder in map(Path, args.checkpoint):
        steps_done = int(load_checkpoint(folder)[1]["step"]) + 1
        weights = (
            Path(args.runs) / "checkpoint_curve" / f"{args.out.stem}.step{steps_done}.safetensors"
        )
        specs[steps_done] = str(save_backbone(backbone_from_checkpoint(folder), weights))
    if args.final:
        specs[total] = str(args.run / "teacher_backbone.safetensors")
    report: dict = {"run_config": config, "versions": versions(), "curves": {}}
    for seed in args.seed or [0]:
        evaluation = ReleaseEval(seed=seed)
        curve: dict = {"evaluation": asdict(evaluation), "steps": {}}
        curve["random"] = frozen_probe_metrics(random_init_spec(config), evaluation, args.runs)
        for steps_done, spec in sorted(specs.items()):
            bar = frozen_probe_metrics(spec, evaluation, args.runs)
            stability = class_token_stability(spec, evaluation, args.runs)
            curve["steps"][str(steps_done)] = {"bar": bar, "shift_stability": stability}
            headline = {k: v for k, v in bar.items() if not isinstance(v, dict)}
            print(f"seed {seed} step {steps_done}: {headline} 4px {stability['shift_4px']}")
            report["curves"][str(seed)] = curve
            write_json_atomic(args.out, report)  # a cut-off run keeps what it measured
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
