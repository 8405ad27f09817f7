"""Classification metrics of the paper's evaluations: AUPRC (Tables 2-4, A.1), AUROC, accuracy.

Scores come from scikit-learn (`average_precision_score`, `roc_auc_score`); this module adds what
the evaluations need around them: unknown labels (NaN) excluded per label, labels that cannot be
scored (no positive or no negative) reported instead of silently scored, macro averages over the
scored labels, and mean/std over seeds or folds. Dice lives with segmentation (`eval/segment*`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _as_binary_pair(labels_n: Any, scores_n: Any) -> tuple[np.ndarray, np.ndarray]:
    labels_n = np.asarray(labels_n, dtype=np.float64).reshape(-1)
    scores_n = np.asarray(scores_n, dtype=np.float64).reshape(-1)
    if labels_n.shape != scores_n.shape:
        raise ValueError(f"{labels_n.size} labels but {scores_n.size} scores")
    if labels_n.size == 0:
        raise ValueError("no labelled samples to score")
    if np.isnan(labels_n).any():
        raise ValueError("labels contain NaN (unknown); drop them first (see multilabel_scores)")
    if not np.isin(labels_n, (0.0, 1.0)).all():
        raise ValueError(f"labels must be 0 or 1, got values {sorted(set(labels_n.tolist()))}")
    if not np.isfinite(scores_n).all():
        raise ValueError("scores contain NaN or infinite values")
    return labels_n, scores_n


def auprc(labels_n: Any, scores_n: Any) -> float:
    """Area under the precision-recall curve (average precision); needs >= 1 positive."""
    from sklearn.metrics import average_precision_score

    labels_n, scores_n = _as_binary_pair(labels_n, scores_n)
    if not (labels_n == 1).any():
        raise ValueError("AUPRC is undefined without a positive sample")
    return float(average_precision_score(labels_n, scores_n))


def auroc(labels_n: Any, scores_n: Any) -> float:
    """Area under the ROC curve; needs both a positive and a negative sample."""
    from sklearn.metrics import roc_auc_score

    labels_n, scores_n = _as_binary_pair(labels_n, scores_n)
    if labels_n.min() == labels_n.max():
        raise ValueError("AUROC is undefined unless both classes are present")
    return float(roc_auc_score(labels_n, scores_n))


def accuracy(true_n: Any, predicted_n: Any) -> float:
    """Fraction of exact matches between class codes."""
    true_n, predicted_n = np.asarray(true_n).reshape(-1), np.asarray(predicted_n).reshape(-1)
    if true_n.shape != predicted_n.shape:
        raise ValueError(f"{true_n.size} true classes but {predicted_n.size} predictions")
    if true_n.size == 0:
        raise ValueError("accuracy of zero samples is undefined")
    return float(np.mean(true_n == predicted_n))


def multilabel_scores(labels_nl: Any, scores_nl: Any, names: Sequence[str]) -> dict[str, Any]:
    """Per-label AUPRC/AUROC (NaN labels excluded per label) + macro means over scored labels.

    A label whose known values lack a positive or a negative is not scored; it is listed under
    `unscored` with the reason, so a macro average never hides which labels it covers.
    """
    labels_nl = np.asarray(labels_nl, dtype=np.float64)
    scores_nl = np.asarray(scores_nl, dtype=np.float64)
    if labels_nl.ndim != 2 or labels_nl.shape != scores_nl.shape:
        raise ValueError(f"labels {labels_nl.shape} and scores {scores_nl.shape} must be (N, L)")
    if labels_nl.shape[1] != len(names):
        raise ValueError(f"{labels_nl.shape[1]} label columns but {len(names)} names")
    per_label: dict[str, dict[str, float | int]] = {}
    unscored: dict[str, str] = {}
    for column, name in enumerate(names):
        known_n = ~np.isnan(labels_nl[:, column])
        truth_n = labels_nl[known_n, column]
        positives = int((truth_n == 1).sum())
        negatives = int((truth_n == 0).sum())
        if positives == 0 or negatives == 0:
            unscored[name] = f"{positives} positives and {negatives} negatives among known labels"
            continue
        scores_n = scores_nl[known_n, column]
        per_label[name] = {
            "auprc": auprc(truth_n, scores_n),
            "auroc": auroc(truth_n, scores_n),
            "n": int(truth_n.size),
            "n_positive": positives,
            "prevalence": positives / truth_n.size,
        }
    macro = {
        key: float(np.mean([m[key] for m in per_label.values()])) if per_label else float("nan")
        for key in ("auprc", "auroc")
    }
    return {"per_label": per_label, "macro": macro, "unscored": unscored}


def mean_std(values: Sequence[float]) -> dict[str, float | int]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) of finite values."""
    values_n = np.asarray(list(values), dtype=np.float64)
    if values_n.size == 0 or not np.isfinite(values_n).all():
        raise ValueError(f"mean_std needs finite values, got {values_n.tolist()}")
    std = float(values_n.std(ddof=1)) if values_n.size > 1 else 0.0
    return {"mean": float(values_n.mean()), "std": std, "n": int(values_n.size)}
