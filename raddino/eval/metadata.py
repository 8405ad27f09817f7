"""Patient metadata from frozen features (paper Table 7, App. C.3): sex, age, weight and BMI bins.

A scikit-learn `LogisticRegression` (default settings, as the paper: lbfgs, 100 iterations) per
variable, evaluated by 5-fold cross-validation with folds by subject (stratified by class), and
reported as mean (std) accuracy over folds. Age, weight and BMI are cut into the paper's five bins
(`raddino.data.metadata_bins`); rows with a missing value are left out and counted. Each result
also carries the majority-class accuracy of the same folds, the floor a useful encoder must beat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

METADATA_VARIABLES: tuple[str, ...] = ("sex", "age", "weight_kg", "bmi")


@dataclass(frozen=True)
class MetadataConfig:
    """Which variables, how many folds, and the classifier settings."""

    variables: tuple[str, ...] = METADATA_VARIABLES
    folds: int = 5
    seed: int = 0
    token: str = "cls"
    standardize: bool = True  # scale features on each training fold (helps lbfgs converge)
    max_iter: int = 100  # scikit-learn's default, as the paper ("default settings")

    def validate(self) -> None:
        unknown = [v for v in self.variables if v not in METADATA_VARIABLES]
        if unknown or not self.variables:
            raise ValueError(
                f"--variables {list(self.variables)}: choose from {METADATA_VARIABLES}"
            )
        if self.folds < 2:
            raise ValueError(f"--folds must be >= 2, got {self.folds}")
        if self.max_iter < 1:
            raise ValueError(f"--max-iter must be >= 1, got {self.max_iter}")


def metadata_targets(
    table: pd.DataFrame, variable: str, source: str = "labels.csv"
) -> tuple[np.ndarray, tuple[str, ...]]:
    """(class code per row, -1 = unknown; class names) for one metadata variable."""
    from raddino.data.metadata_bins import SEX_CLASSES, bin_labels, bin_metadata, encode_sex

    if variable not in table.columns:
        raise ValueError(f"{source}: no {variable!r} column (metadata columns: sex, age, ...)")
    if variable == "sex":
        return encode_sex(table[variable].fillna("").tolist()), SEX_CLASSES
    values = pd.to_numeric(table[variable], errors="coerce").to_numpy(dtype=np.float64)
    return bin_metadata(variable, values), bin_labels(variable)


def cross_validate_variable(
    features_nd: np.ndarray,
    codes_n: np.ndarray,
    subjects_n: np.ndarray,
    config: MetadataConfig,
) -> dict[str, Any]:
    """Accuracy per fold of a logistic regression, folds by subject and stratified by class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    from raddino.data.splits import subject_kfold
    from raddino.eval.metrics import accuracy, mean_std

    folds_n = subject_kfold(subjects_n, config.folds, config.seed, strata=codes_n)
    fold_accuracy, majority_accuracy = [], []
    for fold in range(config.folds):
        train, test = folds_n != fold, folds_n == fold
        if not test.any() or len(np.unique(codes_n[train])) < 2:
            raise ValueError(f"fold {fold} has no test rows or a single training class")
        steps = [StandardScaler()] if config.standardize else []
        model = make_pipeline(*steps, LogisticRegression(max_iter=config.max_iter))
        with threadpool_limits(limits=1):  # small problems: one BLAS thread is faster
            model.fit(features_nd[train], codes_n[train])
        fold_accuracy.append(accuracy(codes_n[test], model.predict(features_nd[test])))
        majority = np.bincount(codes_n[train]).argmax()
        majority_accuracy.append(accuracy(codes_n[test], np.full(int(test.sum()), majority)))
    return {
        "accuracy": mean_std(fold_accuracy),
        "fold_accuracy": fold_accuracy,
        "majority_class_accuracy": mean_std(majority_accuracy),
    }


def run_metadata(
    features_nd: np.ndarray,
    table: pd.DataFrame,
    config: MetadataConfig,
    *,
    source: str = "labels.csv",
) -> dict[str, Any]:
    """Cross-validated accuracy for each metadata variable (see module doc)."""
    config.validate()
    features_nd = np.asarray(features_nd, dtype=np.float32)
    if features_nd.ndim != 2 or len(features_nd) != len(table):
        raise ValueError(
            f"{features_nd.shape[0] if features_nd.ndim else 0} feature rows but {len(table)} "
            f"rows in {source}: features and metadata do not match"
        )
    if len(table) == 0:
        raise ValueError(f"{source}: no rows (empty dataset)")
    if not np.isfinite(features_nd).all():
        raise ValueError("features contain NaN or infinite values")
    subjects_n = table["subject_id"].astype(str).to_numpy()
    results = {}
    for variable in config.variables:
        codes_n, classes = metadata_targets(table, variable, source)
        known = codes_n >= 0
        if not known.any():
            raise ValueError(f"{source}: column {variable!r} has no usable values (all blank)")
        present = np.unique(codes_n[known])
        if len(present) < 2:
            raise ValueError(
                f"{source}: column {variable!r} has a single class ({classes[present[0]]}) "
                "among known rows; nothing to predict"
            )
        n_subjects = len(np.unique(subjects_n[known]))
        if n_subjects < config.folds:
            raise ValueError(
                f"{source}: {variable!r} is known for {n_subjects} subjects, fewer than "
                f"--folds {config.folds}"
            )
        scores = cross_validate_variable(
            features_nd[known], codes_n[known], subjects_n[known], config
        )
        counts = np.bincount(codes_n[known], minlength=len(classes))
        results[variable] = {
            **scores,
            "classes": list(classes),
            "class_counts": dict(zip(classes, counts.tolist(), strict=True)),
            "n_images": int(known.sum()),
            "n_unknown": int((~known).sum()),
            "n_subjects": n_subjects,
        }
    return {"variables": results}


def metadata_from_features(features: Any, config: MetadataConfig) -> dict[str, Any]:
    """`run_metadata` on a `FeatureSet` (its token and its dataset's metadata columns)."""
    return run_metadata(
        features[config.token], features.table, config, source=features.labels_source
    )


def metadata_config_dict(config: MetadataConfig) -> dict[str, Any]:
    return asdict(config)


def format_table(results: dict[str, Any], variables: Sequence[str] | None = None) -> str:
    """A plain-text "variable: mean (std)" table, as the paper's Table 7 prints it."""
    lines = []
    for name, result in results["variables"].items():
        if variables is not None and name not in variables:
            continue
        acc, base = result["accuracy"], result["majority_class_accuracy"]
        lines.append(
            f"{name:10s} accuracy {100 * acc['mean']:.1f} ({100 * acc['std']:.1f})   "
            f"majority class {100 * base['mean']:.1f}   n={result['n_images']}"
        )
    return "\n".join(lines)
