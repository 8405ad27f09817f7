"""A/B of recipe variants on 2 CPU cores: short continual runs from a release, each held to the
release bar and to the class-token property table (chapter 12), beside the run's starting point.

Every variant continues the same starting encoder with the same data, seed and steps, and differs
only in its `--variant` overrides, so the differences between variants are the variants' effects
(at this budget: a few hundred steps at 112 px). Runs are cached pipeline stages
(`raddino.ssl.short_runs.pretrain_stage`): a rerun or an interrupted run does not retrain what is
finished, and the JSON grows after each variant.

    python benchmarks/cpu_recipe_ab.py --variant as_is: \
        --variant "borders:crops.random_borders_p=0.5" \
        --variant "borders_often:crops.random_borders_p=0.9" \
        --out raddino/release/sweeps/cpu_random_borders_ab.json   # chapter 12 reads it
    (about 10 minutes per variant on 2 cores, evaluation included)
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import torch

from raddino.ssl.bar import bar_on_sets
from raddino.ssl.config import parse_variant
from raddino.ssl.release import (
    ReleaseEval,
    class_token_readouts,
    class_token_stability,
    training_record,
)
from raddino.ssl.short_runs import pretrain_stage
from raddino.ssl.train import CollapseDetected, TrainingDiverged
from raddino.utils import versions, write_json_atomic


def measure(spec: str, evaluation: ReleaseEval, runs_root: str, report: dict) -> dict:
    """The release bar and the class-token property row of one encoder; the majority-class row
    (the same probe phantoms for every encoder) goes to the report once."""
    readouts = class_token_readouts(spec, evaluation, runs_root)
    report["majority_class"] = readouts["majority class"]
    return {
        "bar": bar_on_sets(spec, evaluation, runs_root),  # every probe set, mean and per set
        "class_token_properties": readouts["encoder"],
        "class_token_shift_stability": class_token_stability(spec, evaluation, runs_root),
    }


def resumed_report(path: Path, fresh: dict, variants: dict) -> dict:
    """The report at `path` when it was made with the same profile, start, common overrides and
    evaluation, so that a rerun with more variants measures only the new ones; else `fresh`.
    A variant name already in it with other overrides is an error, not a silent overwrite."""
    if not path.is_file():
        return fresh
    old = json.loads(path.read_text())
    as_saved = json.loads(json.dumps(fresh))  # tuples (ReleaseEval.sets) read back as lists
    same = ("profile", "common_overrides", "evaluation")
    if any(old.get(key) != as_saved[key] for key in same) or "start" not in old:
        print(f"{path}: made with other settings; starting a new report")
        return fresh
    for name, overrides in variants.items():
        kept = old["variants"].get(name)
        if kept is not None and kept["overrides"] != overrides:
            raise SystemExit(
                f"{path}: variant {name!r} was measured with overrides {kept['overrides']}, "
                f"not {overrides}; rename it or choose another --out"
            )
    return {**old, "versions": fresh["versions"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="ablation", help="pretraining profile of every run")
    parser.add_argument("--init", default="raddino:phantom", help="the starting encoder")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--pool-size", type=int, default=512, help="rendered phantoms in memory")
    parser.add_argument("--variant", action="append", required=True, help="NAME:key=v;key=v")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", default="runs", help="runs root (stages, probe folders, caches)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/cpu_recipe_ab.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    variants = dict(parse_variant(text) for text in args.variant)
    epoch_length = 40
    common = {
        "model.init": args.init,
        "train.epochs": str(max(1, args.steps // epoch_length)),
        "train.epoch_length": str(epoch_length),
        "train.checkpoint_every": str(epoch_length),
        "data.pool_size": str(args.pool_size),
    }
    evaluation = ReleaseEval()
    report = {
        "profile": args.profile,
        "common_overrides": common,
        "versions": versions(),
        "evaluation": asdict(evaluation),
        "variants": {},
    }
    report = resumed_report(args.out, report, variants)
    if "start" not in report:
        report["start"] = {"spec": args.init, **measure(args.init, evaluation, args.runs, report)}
        write_json_atomic(args.out, report)
    for name, overrides in variants.items():
        if name in report["variants"]:
            print(f"{name}: measured in {args.out} already")
            continue
        try:
            run_dir = pretrain_stage(args.profile, {**common, **overrides}, runs_root=args.runs,
                                     progress=True)  # fmt: skip
        except (CollapseDetected, TrainingDiverged) as error:  # a finding, not a crash
            report["variants"][name] = {"overrides": overrides, "failed": str(error)}
            write_json_atomic(args.out, report)
            print(f"{name} stopped: {error}")
            continue
        spec = str(run_dir / "teacher_backbone.safetensors")
        report["variants"][name] = {
            "overrides": overrides,
            # the run's own step time (metrics.jsonl), also when the stage cache had the run
            "wall_s": training_record(run_dir)["train_wall_s"],
            **measure(spec, evaluation, args.runs, report),
        }
        write_json_atomic(args.out, report)  # a cut-off sweep keeps what it measured
        bar = report["variants"][name]["bar"]
        print(name, json.dumps({k: v for k, v in bar.items() if not isinstance(v, dict)}))
    write_json_atomic(args.out, report)
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
