"""Package a finished pretraining run as a release checkpoint: `raddino release RUN --name NAME`.

Writes `raddino/release/NAME.safetensors` (fp16 teacher backbone), `NAME.json` (manifest: profile,
resolved config, steps, images seen, hardware, wall time, frozen-probe metrics beside a random-init
backbone of the same shape and the `--compare` encoders, sha256) and `NAME.metrics.jsonl`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a finished `raddino pretrain` run folder")
    parser.add_argument("--name", required=True, help="release name, used as raddino:<name>")
    parser.add_argument("--profile", required=True, help="the pretrain profile that made the run")
    parser.add_argument("--out-dir", type=Path, help="default: the package's raddino/release/")
    parser.add_argument(
        "--compare",
        action="append",
        default=None,
        metavar="SPEC",
        help="encoders probed beside it (repeatable; default pixels:32); random-init is always in",
    )
    parser.add_argument("--runs-root", default="runs", help="cache of phantoms and features")


def run(args: argparse.Namespace) -> int:
    from raddino.ssl.release import package_release

    manifest_path = package_release(
        args.run_dir,
        args.name,
        profile=args.profile,
        out_dir=args.out_dir,
        compare=tuple(args.compare or ["pixels:32"]),
        runs_root=args.runs_root,
    )
    probes = json.loads(manifest_path.read_text())["frozen_probes"]
    for spec, metrics in {args.name: probes["this"], **probes["baselines"]}.items():
        headline = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
        print(f"{spec:28s} " + "  ".join(f"{k} {v:.3f}" for k, v in headline.items()))
    print(f"manifest: {manifest_path}")
    return 0
