"""Which findings does each class token see when nothing else changes? Counterfactual phantom
pairs (the same subject, view, acquisition and noise, without any finding and with exactly one),
read out by the bar's probe on held-out subjects (`raddino.eval.counterfactual`). Chapter 12 cites
the JSON; it grows per encoder, so a cut-off run keeps what it measured.

    python benchmarks/finding_counterfactuals.py --spec random:vit_tiny --spec raddino:general \
        --spec raddino:phantom --spec pixels:32 \
        --out raddino/release/sweeps/finding_counterfactuals.json   # ~15 min on 2 cores
    python benchmarks/finding_counterfactuals.py --draw 1 --spec "random draw 1=random:vit_tiny" \
        --out raddino/release/sweeps/finding_counterfactuals.json   # another random init
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from raddino.data.phantom import FINDINGS
from raddino.eval.counterfactual import counterfactual_folders, counterfactual_table
from raddino.utils import spec_and_label, versions, write_json_atomic


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", action="append", required=True, help="[LABEL=]SPEC, repeatable")
    parser.add_argument("--n", type=int, default=200, help="phantoms per folder (2 per subject)")
    parser.add_argument("--size", type=int, default=224, help="phantom and encoder input side")
    parser.add_argument(
        "--seed", type=int, default=100, help="phantom world (0 trains, 2-6 are probe sets)"
    )
    parser.add_argument("--draw", type=int, default=0, help="weights seed of random: specs")
    parser.add_argument("--runs", default="runs", help="runs root (phantom folders, caches)")
    parser.add_argument("--tokens", nargs="+", default=["cls", "patch_mean"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folders = counterfactual_folders(FINDINGS, args.n, args.size, args.seed, args.runs)
    report = {"n": args.n, "size": args.size, "seed": args.seed, "versions": versions()}
    if args.out.is_file():  # same phantoms: keep the encoders measured before
        old = json.loads(args.out.read_text())
        if all(old.get(k) == report[k] for k in ("n", "size", "seed")):
            report = {**old, "versions": report["versions"]}
    report.setdefault("specs", {})
    report.setdefault("encoders", {})
    for spec, label in map(spec_and_label, args.spec):
        report["specs"][label] = spec
        report.setdefault("draws", {})[label] = args.draw  # the weights of a random: spec
        report["encoders"][label] = counterfactual_table(
            {label: spec}, folders, args.size, tokens=args.tokens,
            features_dir=f"{args.runs}/features", seed=args.draw,
        )[label]  # fmt: skip
        for token, table in report["encoders"][label].items():
            print(label, token, {f: r["auroc"] for f, r in table.items()}, flush=True)
        write_json_atomic(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
