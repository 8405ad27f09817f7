"""Linear-probe speed on cached features: five seeds on 10,000 feature vectors (goal: seconds).

Synthetic features (N, D) with L multi-label targets from a random linear teacher plus noise,
10 % unknown labels and two images per subject; times `run_probes` end to end (subject splits,
standardisation, fitting, AUPRC/AUROC) for each method, and reports seconds per seed and the
macro AUPRC reached (a sanity check that the probes learn; not a goal).

Usage: python benchmarks/probe_speed.py [--n 10000] [--dim 768] [--labels 12] [--seeds 5]
       [--methods sklearn,torch] [--out runs/benchmarks/probe_speed.json]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def synthetic_features(
    n: int, dim: int, labels: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features (N, D) float32, labels (N, L) with NaN, subject ids (N,))."""
    features_nd = rng.standard_normal((n, dim)).astype(np.float32)
    teacher_dl = rng.standard_normal((dim, labels)) / np.sqrt(dim)
    logits_nl = features_nd @ teacher_dl + rng.standard_normal((n, labels))
    labels_nl = (logits_nl > np.quantile(logits_nl, 0.8, axis=0)).astype(np.float64)
    labels_nl[rng.random((n, labels)) < 0.1] = np.nan
    subjects_n = np.array([f"subject-{i // 2}" for i in range(n)])
    return features_nd, labels_nl, subjects_n


def main() -> None:
    import torch

    from raddino.eval.probe import ProbeConfig, run_probes
    from raddino.utils import versions, write_json_atomic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--labels", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--methods", default="sklearn,torch")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", default="runs/benchmarks/probe_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    features_nd, labels_nl, subjects_n = synthetic_features(
        args.n, args.dim, args.labels, np.random.default_rng(0)
    )
    names = [f"label_{i}" for i in range(args.labels)]
    results = {}
    for method in args.methods.split(","):
        config = ProbeConfig(method=method, seeds=args.seeds)
        started = time.perf_counter()
        out = run_probes(features_nd, labels_nl, subjects_n, names, config, progress=False)
        seconds = time.perf_counter() - started
        results[method] = {
            "seconds_total": round(seconds, 3),
            "seconds_per_seed": round(seconds / args.seeds, 3),
            "macro_auprc_mean": out["summary"]["macro"]["auprc"]["mean"],
            "macro_auprc_std": out["summary"]["macro"]["auprc"]["std"],
        }
        print(
            f"{method:8s} {args.seeds} seeds on {args.n} x {args.dim}, {args.labels} labels: "
            f"{seconds:.2f} s ({seconds / args.seeds:.2f} s/seed), macro AUPRC "
            f"{results[method]['macro_auprc_mean']:.3f} ± {results[method]['macro_auprc_std']:.3f}"
        )
    record = {
        "benchmark": "probe_speed",
        "setup": {k: v for k, v in vars(args).items() if k != "out"},
        "results": results,
        "versions": versions(),
    }
    write_json_atomic(args.out, record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
