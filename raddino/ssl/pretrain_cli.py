"""DINOv2 (continual) pretraining: `raddino pretrain --profile P --out RUN [--set key=value ...]`.

A run folder is resumed automatically when it exists with the same config. Launch on many
processes with `torchrun --nproc-per-node N -m raddino.cli pretrain ...` (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from raddino.ssl.config import PROFILES  # light: yaml + stdlib

    parser.add_argument("--profile", default="cpu", choices=PROFILES, help="base settings")
    parser.add_argument("--out", required=True, type=Path, help="run folder (created or resumed)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.epochs=3 (repeatable)",
    )
    parser.add_argument("--resume", action="store_true", help="require an existing run to resume")
    parser.add_argument("--no-mim", action="store_true", help="ablation: iBOT masked modelling off")
    parser.add_argument("--init", help="random, or weights for continual pretraining")
    parser.add_argument("--resolution", type=int, help="global crop size (local crops scale along)")
    parser.add_argument("--max-images", type=int, help="data-size ablation: use only N images")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def resolve_config(args: argparse.Namespace) -> dict:
    """Profile + --set + the ablation shortcuts, validated."""
    from raddino.ssl.config import load_config, parse_set_arguments

    overrides: dict = parse_set_arguments(args.overrides)
    if args.no_mim:
        overrides["ibot.enabled"] = False
    if args.init:
        overrides["model.init"] = args.init
    if args.max_images is not None:
        overrides["data.max_images"] = args.max_images
    if args.resolution is not None:
        from raddino.ssl.short_runs import resolution_overrides

        crops = load_config(args.profile, overrides)["crops"]
        overrides.update(resolution_overrides(crops, args.resolution))
    return load_config(args.profile, overrides)


def run(args: argparse.Namespace) -> int:
    from raddino.ssl.train import pretrain

    config = resolve_config(args)
    if args.resume and not (args.out / "config.yaml").exists():
        raise FileNotFoundError(f"--resume: {args.out} holds no run to resume")
    final = pretrain(config, args.out, progress=not args.no_progress)
    print(f"teacher backbone: {final}")
    from raddino.ssl.health import flat_targets_warning, read_metrics

    if final.is_file() and (warning := flat_targets_warning(read_metrics(args.out))):
        print(f"warning: {warning}")
    return 0
