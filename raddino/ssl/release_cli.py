"""Package a finished pretraining run as a release checkpoint: `raddino release RUN --name NAME`.

Writes `raddino/release/NAME.safetensors` (fp16 teacher backbone), `NAME.json` (manifest: profile,
resolved config, steps, images seen, hardware, wall time, frozen-probe metrics on every probe set
beside a random-init backbone of the same shape and the `--compare` encoders, sha256) and
`NAME.metrics.jsonl`. `raddino release --reprobe NAME` measures a shipped release again under the
current bar and rewrites only its manifest's frozen probes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", type=Path, nargs="?", help="a finished `raddino pretrain` run folder"
    )
    parser.add_argument("--name", help="release name, used as raddino:<name>")
    parser.add_argument("--profile", help="the pretrain profile that made the run")
    parser.add_argument(
        "--reprobe",
        metavar="NAME",
        help="instead of packaging: probe the shipped release NAME and its baselines again",
    )
    parser.add_argument("--out-dir", type=Path, help="default: the package's raddino/release/")
    parser.add_argument(
        "--compare",
        action="append",
        default=None,
        metavar="SPEC",
        help="encoders probed beside it (repeatable; default pixels:32); random-init is always in",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="release this checkpoint folder of RUN (its teacher) instead of the final teacher",
    )
    parser.add_argument(
        "--choice",
        type=Path,
        help="the `benchmarks/checkpoint_curve.py --choose` report that chose a step: its "
        "checkpoint is released (unless --checkpoint names it) and the choice kept in the manifest",
    )
    parser.add_argument("--runs-root", default="runs", help="cache of phantoms and features")


def run(args: argparse.Namespace) -> int:
    from raddino.ssl.release import package_release, reprobe_release

    if args.reprobe:
        if args.run_dir or args.name or args.compare:
            raise SystemExit("--reprobe NAME takes no run folder, --name or --compare")
        name = args.reprobe
        manifest_path = reprobe_release(name, release_dir=args.out_dir, runs_root=args.runs_root)
    else:
        missing = [
            flag
            for flag, value in [
                ("RUN", args.run_dir),
                ("--name", args.name),
                ("--profile", args.profile),
            ]
            if not value
        ]
        if missing:
            raise SystemExit(f"packaging a run needs {', '.join(missing)} (or use --reprobe NAME)")
        choice = checkpoint_choice(args.choice) if args.choice else None
        checkpoint = chosen_checkpoint(args.run_dir, choice, args.checkpoint, args.choice)
        name = args.name
        manifest_path = package_release(
            args.run_dir,
            name,
            profile=args.profile,
            out_dir=args.out_dir,
            compare=tuple(args.compare or ["pixels:32"]),
            runs_root=args.runs_root,
            checkpoint=checkpoint,
            choice=choice,
        )
    print_bar(json.loads(manifest_path.read_text())["frozen_probes"], name)
    print(f"manifest: {manifest_path}")
    return 0


def chosen_checkpoint(
    run_dir: Path, choice: dict | None, given: Path | None, report: Path | None
) -> Path | None:
    """The checkpoint folder to release: the one a choice report chose (step N is the folder
    `step_{N-1}`, as checkpoints count from 0), which an explicit `--checkpoint` must match."""
    if choice is None:
        return given
    from raddino.ssl.checkpoint import checkpoint_after

    chosen = checkpoint_after(run_dir, choice["step"])
    if given is not None and given.resolve() != chosen.resolve():
        raise SystemExit(
            f"--checkpoint {given} is not the step {choice['step']} that {report} chose ({chosen})"
        )
    return chosen


def checkpoint_choice(report_path: Path) -> dict:
    """What a manifest keeps of a `checkpoint_curve.py --choose` report: the choice and the bar's
    three metrics of every probed step on the validation set."""
    from raddino.ssl.bar import BAR_METRICS

    report = json.loads(report_path.read_text())
    if "choice" not in report:
        raise SystemExit(f"{report_path}: no 'choice' (made without --choose?)")
    choice = report["choice"]
    steps = report["curves"][str(choice["seed"])]["steps"]
    return {
        "report": report_path.name,
        **{k: v for k, v in choice.items() if k != "weights"},
        "validation_curve": {
            step: {m: entry["bar"][m] for m in BAR_METRICS} for step, entry in steps.items()
        },
    }


def print_bar(probes: dict, name: str) -> None:
    """One line per encoder (mean over probe sets), then the per-set verdict against each
    baseline."""
    from raddino.ssl.bar import compare_on_sets

    for spec, metrics in {name: probes["this"], **probes["baselines"]}.items():
        headline = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
        print(f"{spec:28s} " + "  ".join(f"{k} {v:.3f}" for k, v in headline.items()))
    for spec, metrics in probes["baselines"].items():
        for metric, result in compare_on_sets(probes["this"], metrics).items():
            diffs = " ".join(f"{d:+.3f}" for d in result["difference_per_set"].values())
            word = "clearly beats" if result["clearly_beats"] else "does not clearly beat"
            print(f"{name} {word} {spec} on {metric}: per set {diffs}")
