"""Linear probes of a frozen encoder on a dataset folder's findings: AUPRC/AUROC over seeds.

Features are extracted once per (encoder, resolution, dataset) and cached (see --cache-dir), or
read from a `raddino embed` output with --features. Splits are by subject (the dataset's `split`
column when present). Writes metrics.json: per-label and macro mean ± std, per-seed numbers,
labels that could not be probed and why, the config and the package versions.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_feature_arguments(parser: argparse.ArgumentParser) -> None:
    """--data / --weights | --features and extraction options (shared with `raddino metadata`)."""
    parser.add_argument("--data", required=True, help="dataset folder (labels.csv + dataset.json)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--weights",
        help="encoder spec: raddino:<name>, a weights path, random:<arch>, timm:<model>[@file], "
        "hf:<folder>, open_clip:<model>[@file], pixels[:S]",
    )
    source.add_argument("--features", help="a `raddino embed` FILE.safetensors of this dataset")
    parser.add_argument("--out", required=True, help="metrics.json to write")
    parser.add_argument("--token", choices=("cls", "patch_mean"), default="cls")
    parser.add_argument("--size", type=int, help="input crop size (default: the encoder's own)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    parser.add_argument("--num-workers", type=int, default=0, help="image decoding processes")
    parser.add_argument("--cache-dir", default="runs/features", help="feature cache folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of random:<arch> weights")


def load_feature_set(args: argparse.Namespace) -> Any:
    """The FeatureSet the arguments name: cached extraction, or a given embeddings file."""
    from raddino.eval.features import extract, load_features

    if args.features:
        return load_features(args.features, args.data)
    return extract(
        args.weights,
        args.data,
        size=args.size,
        cache_dir=args.cache_dir,
        device=args.device,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        seed=args.seed,
    )


def source_config(args: argparse.Namespace, features: Any) -> dict[str, Any]:
    """Where the features came from, for metrics.json."""
    record = features.record
    return {
        "data": str(args.data),
        "weights": args.weights or record.get("weights"),
        "features_file": str(features.path),
        "weights_digest": record.get("weights_digest"),
        "preprocessing": record.get("preprocessing"),
        "token": args.token,
        "n_images": len(features),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_feature_arguments(parser)
    parser.add_argument("--method", choices=("sklearn", "torch"), default="sklearn")
    parser.add_argument("--seeds", type=int, default=5, help="probe runs (default 5, as the paper)")
    parser.add_argument("--labels", help="comma-separated labels (default: all of dataset.json)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the first subject split")
    parser.add_argument(
        "--split-fractions", default="0.6,0.2,0.2", help="train,val,test shares of images"
    )
    parser.add_argument(
        "--strict", action="store_true", help="a label without positives in a split is an error"
    )
    parser.add_argument("--c", type=float, default=1.0, help="sklearn: inverse L2 strength")
    parser.add_argument("--epochs", type=int, default=100, help="torch")
    parser.add_argument("--lr", type=float, default=1e-3, help="torch (paper: 5e-5)")
    parser.add_argument("--probe-batch-size", type=int, default=96, help="torch (paper: 96)")
    parser.add_argument(
        "--patience", type=int, help="torch: early stopping on val loss (default: last epoch)"
    )


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ValueError(f"--split-fractions {text!r}: expected three numbers like 0.6,0.2,0.2")
    return values


def run(args: argparse.Namespace) -> int:
    from raddino.eval.probe import ProbeConfig, probe_config_dict, probe_features
    from raddino.eval.report import write_metrics_json

    config = ProbeConfig(
        method=args.method,
        token=args.token,
        seeds=args.seeds,
        split_fractions=_fractions(args.split_fractions),
        split_seed=args.split_seed,
        on_missing_positives="error" if args.strict else "skip",
        c=args.c,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.probe_batch_size,
        patience=args.patience,
    )
    config.validate()
    features = load_feature_set(args)
    names = args.labels.split(",") if args.labels else features.label_names
    metrics = probe_features(features, config, names)
    write_metrics_json(
        args.out,
        "probe",
        metrics,
        {"probe": probe_config_dict(config), **source_config(args, features), "labels": names},
    )
    summary = metrics["summary"]
    for name, values in summary["per_label"].items():
        print(f"{name:22s} AUPRC {values['auprc']['mean']:.3f} ± {values['auprc']['std']:.3f}")
    macro = summary["macro"]["auprc"]
    print(f"{'macro':22s} AUPRC {macro['mean']:.3f} ± {macro['std']:.3f} ({config.seeds} seeds)")
    if metrics["labels_not_probed"]:
        print(
            f"not probed in some seeds: {', '.join(metrics['labels_not_probed'])}", file=sys.stderr
        )
    print(f"wrote {args.out}")
    return 0
