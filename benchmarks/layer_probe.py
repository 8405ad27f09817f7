"""Do earlier blocks keep the findings that the last one drops? The bar's linear probes on the
patch tokens of every block of each encoder, pooled two ways: the mean over the image, and a
2 x 2 grid of cells (which half of the chest), on every probe set of the bar. A pretrained
encoder whose middle blocks read findings better than random init's would point at a feature to
probe; none that do says the pretraining never put them there. Chapters 02 and 12 cite the JSON.

    python benchmarks/layer_probe.py --spec raddino:phantom --spec raddino:general \
        --spec random:vit_tiny --out raddino/release/sweeps/layer_probe.json   # ~6 min, 2 cores

`--spec LABEL=SPEC` names an encoder in the report, e.g. the labelled reference that
`benchmarks/supervised_reference.py` leaves in runs/:

    --spec "supervised reference=runs/supervised_reference.safetensors"
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from raddino.eval.patch_grids import cached_patch_grids
from raddino.eval.probe_tables import probe_phantoms
from raddino.models.encoders import get_encoder
from raddino.ssl.release import ReleaseEval, finding_probes
from raddino.utils import spec_and_label, versions, write_json_atomic

POOLINGS = {"patch_mean": 1, "grid_2x2": 2}  # feature name: cells per side


def probe_blocks(spec: str, evaluation: ReleaseEval, seed: int, runs_root: str) -> dict:
    """{block: {pooling: macro and per-finding AUPRC}} of one encoder on probe set `seed`; a
    random init is drawn with the set's seed, as the bar draws it."""
    folder = probe_phantoms(evaluation.probe_n, evaluation.probe_size, seed, runs_root)
    encoder = get_encoder(spec, evaluation.device, seed=seed)
    depth = encoder.model.depth
    grids_nlchw = cached_patch_grids(
        encoder, folder, f"{runs_root}/patch_grids", layers=depth, size=evaluation.probe_size
    ).float()  # (N, depth, C, h, w): every block's output
    results = {}
    for block in range(depth):
        results[str(block)] = {}
        for name, cells in POOLINGS.items():
            pooled_nd = F.adaptive_avg_pool2d(grids_nlchw[:, block], cells).flatten(1).numpy()
            probes = finding_probes(pooled_nd, folder, evaluation)
            results[str(block)][name] = {k: probes[k] for k in ("macro_auprc", "finding_auprc")}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", action="append", required=True, help="[LABEL=]SPEC, repeatable")
    parser.add_argument("--runs", default="runs", help="runs root (probe folders, caches)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    specs = dict(spec_and_label(text) for text in args.spec)
    pixels = [spec for spec in specs if spec.startswith("pixels")]
    if pixels:
        parser.error(f"{pixels}: the pixel baseline has no blocks to probe")
    torch.set_num_threads(args.threads)
    evaluation = ReleaseEval()
    report: dict = {
        "evaluation": asdict(evaluation),
        "versions": versions(),
        "poolings": POOLINGS,
        "encoders": {},
    }
    for spec, label in specs.items():
        report["encoders"][label] = {
            str(seed): probe_blocks(spec, evaluation, seed, args.runs) for seed in evaluation.sets
        }
        if label != spec:
            report.setdefault("specs", {})[label] = spec
        best = {
            seed: max(per[block]["patch_mean"]["macro_auprc"] for block in per)
            for seed, per in report["encoders"][label].items()
        }
        print(label, "best block's patch-mean macro AUPRC per set:", best, flush=True)
        write_json_atomic(args.out, report)  # grows per encoder: a cut-off run keeps what it did
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
