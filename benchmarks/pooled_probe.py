"""Do the findings sit in the patch tokens when the class token misses them? The bar's linear
probes on four features of each encoder: the class token (the bar's, as RAD-DINO probes), the
mean of the patch tokens, both concatenated (DINOv2's linear-evaluation feature), and the patch
grid average-pooled to 4 x 4 cells (where in the image, as the raw-pixel baseline keeps it), on
every probe set of the bar. Chapter 12 cites the JSON.

    python benchmarks/pooled_probe.py --spec raddino:phantom --spec raddino:general \
        --spec random:vit_tiny --out raddino/release/sweeps/pooled_probe.json
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
from raddino.utils import versions, write_json_atomic

FEATURES = ("cls", "patch_mean", "cls+patch_mean", "patch_grid_4x4")
GRID_CELLS = 4


def pooled_grid(spec: str, folder, evaluation: ReleaseEval, seed: int) -> np.ndarray:
    """Patch tokens average-pooled to GRID_CELLS x GRID_CELLS cells: (N, C * cells**2); a random
    init is drawn with the probe set's seed, as `extract` draws it for the token features."""
    import torch.nn.functional as F

    from raddino.eval.patch_grids import cached_patch_grids
    from raddino.models.encoders import get_encoder

    encoder = get_encoder(spec, evaluation.device, seed=seed)
    grids_nlchw = cached_patch_grids(encoder, folder, None, size=evaluation.probe_size)
    cells_nchw = F.adaptive_avg_pool2d(grids_nlchw[:, -1].float(), GRID_CELLS)
    return cells_nchw.flatten(1).numpy()


def probe_features(spec: str, evaluation: ReleaseEval, seed: int, runs_root: str) -> dict:
    """Macro and per-finding AUPRC of each feature of one encoder on probe set `seed`."""
    folder = probe_phantoms(evaluation.probe_n, evaluation.probe_size, seed, runs_root)
    tokens = extract(
        spec,
        folder,
        size=evaluation.probe_size,
        which=["cls", "patch_mean"],
        cache_dir=f"{runs_root}/features",
        device=evaluation.device,
        seed=seed,
    )
    features = {
        "cls": np.asarray(tokens["cls"]),
        "patch_mean": np.asarray(tokens["patch_mean"]),
    }
    features["cls+patch_mean"] = np.concatenate([features["cls"], features["patch_mean"]], 1)
    features["patch_grid_4x4"] = pooled_grid(spec, folder, evaluation, seed)
    results = {}
    for name in FEATURES:
        probes = finding_probes(features[name], folder, evaluation)
        results[name] = {k: probes[k] for k in ("macro_auprc", "finding_auprc")}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", action="append", required=True, help="encoders (repeatable)")
    parser.add_argument("--runs", default="runs", help="runs root (probe folders, caches)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    pixels = [spec for spec in args.spec if spec.startswith("pixels")]
    if pixels:
        parser.error(f"{pixels}: the pixel baseline has no patch tokens to pool")
    torch.set_num_threads(args.threads)
    evaluation = ReleaseEval()
    report: dict = {"evaluation": asdict(evaluation), "versions": versions(), "encoders": {}}
    for spec in args.spec:
        report["encoders"][spec] = {
            str(seed): probe_features(spec, evaluation, seed, args.runs) for seed in evaluation.sets
        }
        macro = {
            s: {f: r["macro_auprc"] for f, r in per.items()}
            for s, per in report["encoders"][spec].items()
        }
        print(spec, macro, flush=True)
        write_json_atomic(args.out, report)  # grows per encoder: a cut-off run keeps what it did
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
