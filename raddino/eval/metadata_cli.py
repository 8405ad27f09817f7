"""Predict patient metadata (sex, age, weight, BMI bins) from frozen features (paper Table 7).

Logistic regression per variable, 5-fold cross-validation by subject; prints and writes
mean (std) accuracy with the majority-class floor, the class counts, the config and versions.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from raddino.eval.probe_cli import add_feature_arguments

    add_feature_arguments(parser)
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (by subject)")
    parser.add_argument("--cv-seed", type=int, default=0, help="seed of the fold assignment")
    parser.add_argument(
        "--variables", default="sex,age,weight_kg,bmi", help="comma-separated metadata columns"
    )
    parser.add_argument(
        "--no-standardize", action="store_true", help="fit on raw features, as sklearn defaults"
    )


def run(args: argparse.Namespace) -> int:
    from raddino.eval.metadata import (
        MetadataConfig,
        format_table,
        metadata_config_dict,
        metadata_from_features,
    )
    from raddino.eval.probe_cli import load_feature_set, source_config
    from raddino.eval.report import write_metrics_json

    config = MetadataConfig(
        variables=tuple(v.strip() for v in args.variables.split(",") if v.strip()),
        folds=args.folds,
        seed=args.cv_seed,
        token=args.token,
        standardize=not args.no_standardize,
    )
    config.validate()
    features = load_feature_set(args)
    metrics = metadata_from_features(features, config)
    write_metrics_json(
        args.out,
        "metadata",
        metrics,
        {"metadata": metadata_config_dict(config), **source_config(args, features)},
    )
    print(format_table(metrics))
    print(f"wrote {args.out}")
    return 0
