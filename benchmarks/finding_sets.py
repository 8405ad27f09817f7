"""Is there any finding gain at all, below what two probe sets can resolve? The bar's finding
probes (class token, macro AUPRC) on more probe sets than the bar uses, each encoder minus random
init on the same phantoms, with random init averaged over several draws of its weights (so the
baseline's own luck is measured, not assumed away). Chapters 02 and 12 cite the JSON.

    python benchmarks/finding_sets.py --sets 4 --spec raddino:phantom --spec raddino:general \
        --spec "no_koleo_sharp=runs/pretrain/c4fa0604146a6c0d/teacher_backbone.safetensors" \
        --out raddino/release/sweeps/finding_sets.json    # ~1 min per encoder and set, 2 cores
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from raddino.eval.features import extract
from raddino.eval.probe_tables import probe_phantoms
from raddino.ssl.release import ReleaseEval, finding_probes
from raddino.utils import spec_and_label, versions, write_json_atomic


def macro_auprc(spec: str, evaluation: ReleaseEval, probe_set: int, draw: int, runs: str) -> float:
    """Class-token macro AUPRC over findings on probe set `probe_set` (`draw`: random-init seed)."""
    folder = probe_phantoms(evaluation.probe_n, evaluation.probe_size, probe_set, runs)
    cls_nd = extract(
        spec,
        folder,
        size=evaluation.probe_size,
        which=["cls"],
        cache_dir=f"{runs}/features",
        device=evaluation.device,
        seed=draw,
    )["cls"]
    return finding_probes(cls_nd, folder, evaluation)["macro_auprc"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", action="append", required=True, help="[LABEL=]SPEC, repeatable")
    parser.add_argument("--sets", type=int, default=4, help="probe sets 0 .. N-1")
    parser.add_argument("--draws", type=int, default=3, help="random-init draws per set")
    parser.add_argument("--baseline", default="random:vit_tiny")
    parser.add_argument("--runs", default="runs", help="runs root (probe folders, caches)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    evaluation = ReleaseEval()
    sets = list(range(args.sets))
    baseline = {
        str(s): [macro_auprc(args.baseline, evaluation, s, d, args.runs) for d in range(args.draws)]
        for s in sets
    }
    report: dict = {
        "evaluation": asdict(evaluation),
        "versions": versions(),
        "baseline": {"spec": args.baseline, "draws": args.draws, "macro_auprc": baseline},
        "specs": {},
        "encoders": {},
    }
    for spec, label in map(spec_and_label, args.spec):
        per_set = {str(s): macro_auprc(spec, evaluation, s, s, args.runs) for s in sets}
        differences = [per_set[s] - float(np.mean(baseline[s])) for s in per_set]
        report["specs"][label] = spec
        report["encoders"][label] = {
            "macro_auprc": per_set,
            "minus_baseline": {s: round(d, 4) for s, d in zip(per_set, differences, strict=True)},
            "mean_difference": round(float(np.mean(differences)), 4),
            "sets_ahead": int(sum(d > 0 for d in differences)),
        }
        print(label, report["encoders"][label]["minus_baseline"], flush=True)
        write_json_atomic(args.out, report)  # grows per encoder: a cut-off run keeps what it did
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
