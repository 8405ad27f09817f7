"""Linear probes on frozen features: multi-label findings, per-label and macro AUPRC over seeds.

The paper (Tables 2-4, A.1; App. C.3) trains a linear classifier on a frozen backbone with BCE,
AdamW (base lr 5e-5, batch 96), a cosine schedule for 100 epochs and keeps the last checkpoint,
and reports the mean and std of AUPRC over five seeds, with subject-level splits. Two methods:

- "torch": that recipe on cached features (no image augmentation, so the default lr is 1e-3;
  pass lr=5e-5 for the paper's value), optional early stopping on the validation loss;
- "sklearn": one standardised `LogisticRegression` per label, the fast CPU path.

Unknown labels (NaN) are left out per label. Without an official `split` column each seed draws
its own subject split (seed = split_seed + i), so the std covers split variation; with one, the
split is fixed and seeds only change the torch probe's initialisation and batch order (the
sklearn fit is deterministic, so its std is then 0). A label without a positive or a negative in
a seed's train or test split is skipped in that seed and recorded (or an error, if asked); each
seed's macro AUPRC averages the labels probed in that seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

METHODS = ("sklearn", "torch")
TOKENS = ("cls", "patch_mean")


@dataclass(frozen=True)
class ProbeConfig:
    """How to fit and score the probes (validated by `validate`, errors name the argument)."""

    method: str = "sklearn"
    token: str = "cls"
    seeds: int = 5
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)  # paper: 60/20/20 by subject
    split_seed: int = 0
    on_missing_positives: str = "skip"  # or "error": a label without positives in train/test
    c: float = 1.0  # sklearn: inverse L2 strength
    max_iter: int = 1000  # sklearn
    epochs: int = 100  # torch
    batch_size: int = 96  # torch (paper: 96)
    lr: float = 1e-3  # torch (paper: 5e-5 with image augmentation)
    weight_decay: float = 0.01  # torch: AdamW's default
    patience: int | None = None  # torch: None keeps the last epoch, as the paper

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"--method must be one of {METHODS}, got {self.method!r}")
        if self.token not in TOKENS:
            raise ValueError(f"--token must be one of {TOKENS}, got {self.token!r}")
        if self.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {self.seeds}")
        if self.on_missing_positives not in ("skip", "error"):
            raise ValueError("on_missing_positives must be 'skip' or 'error'")
        for name in ("c", "lr", "epochs", "batch_size", "max_iter"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be > 0")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"--patience must be >= 1, got {self.patience}")


# ------------------------------------------------------------------------------ splits
def probe_split(
    subjects_n: np.ndarray,
    labels_nl: np.ndarray,
    fractions: Sequence[float],
    seed: int,
    official_n: np.ndarray | None = None,
) -> np.ndarray:
    """train/val/test per row by subject: official rows keep theirs, the rest are stratified."""
    from raddino.data.splits import subject_split

    has_official = official_n is not None and (official_n != "").any()
    splits_n = subject_split(
        subjects_n,
        fractions,
        seed,
        labels=labels_nl,
        existing=official_n if has_official else None,
    )
    assert_subjects_disjoint(subjects_n, splits_n)
    return splits_n


def assert_subjects_disjoint(subjects_n: np.ndarray, splits_n: np.ndarray) -> None:
    """Raise if any subject has images in two splits (leakage between train and test)."""
    import pandas as pd

    per_subject = pd.Series(splits_n).groupby(pd.Series(subjects_n)).nunique()
    leaked = per_subject[per_subject > 1]
    if len(leaked):
        raise ValueError(
            f"subject {leaked.index[0]!r} has images in several splits "
            f"({len(leaked)} such subjects): splits must be by subject"
        )


# ------------------------------------------------------------------------------ probes
def _standardise(train_nd: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean_d = train_nd.mean(axis=0)
    std_d = train_nd.std(axis=0)
    std_d[std_d < 1e-12] = 1.0  # constant features stay constant (0) instead of dividing by 0
    return [((x - mean_d) / std_d).astype(np.float32) for x in (train_nd, *others)]


def fit_predict_sklearn(
    train_nd: np.ndarray, train_nl: np.ndarray, test_md: np.ndarray, config: ProbeConfig, seed: int
) -> np.ndarray:
    """Scores (M, L): one LogisticRegression per label on its known training rows."""

    from threadpoolctl import threadpool_limits

    train_nd, test_md = _standardise(train_nd, test_md)
    scores_ml = np.full((len(test_md), train_nl.shape[1]), np.nan)
    # One BLAS thread: these small problems run several times faster than with a contended pool.
    with threadpool_limits(limits=1):
        for column in range(train_nl.shape[1]):
            _fit_one_label(train_nd, train_nl, test_md, scores_ml, column, config, seed)
    return scores_ml


def _fit_one_label(
    train_nd: np.ndarray,
    train_nl: np.ndarray,
    test_md: np.ndarray,
    scores_ml: np.ndarray,
    column: int,
    config: ProbeConfig,
    seed: int,
) -> None:
    from sklearn.linear_model import LogisticRegression

    known = ~np.isnan(train_nl[:, column])
    targets = train_nl[known, column]
    if len(np.unique(targets)) < 2:
        return  # cannot be fitted: scores stay NaN and the caller records why
    model = LogisticRegression(C=config.c, max_iter=config.max_iter, random_state=seed)
    model.fit(train_nd[known], targets.astype(np.int64))
    scores_ml[:, column] = model.decision_function(test_md)


def fit_predict_torch(
    train_nd: np.ndarray,
    train_nl: np.ndarray,
    val_vd: np.ndarray,
    val_vl: np.ndarray,
    test_md: np.ndarray,
    config: ProbeConfig,
    seed: int,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Scores (M, L) of a linear layer trained with masked BCE, AdamW and a cosine schedule."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # (96, D) x (D, L) steps: thread start-up costs more than it saves
    try:
        return _train_linear(train_nd, train_nl, val_vd, val_vl, test_md, config, seed)
    finally:
        torch.set_num_threads(threads)


def _train_linear(
    train_nd: np.ndarray,
    train_nl: np.ndarray,
    val_vd: np.ndarray,
    val_vl: np.ndarray,
    test_md: np.ndarray,
    config: ProbeConfig,
    seed: int,
) -> tuple[np.ndarray, dict[str, Any]]:
    import torch
    from torch import nn

    train_nd, val_vd, test_md = _standardise(train_nd, val_vd, test_md)
    generator = torch.Generator().manual_seed(seed)
    x_train, y_train = torch.from_numpy(train_nd), torch.from_numpy(train_nl.astype(np.float32))
    x_val, y_val = torch.from_numpy(val_vd), torch.from_numpy(val_vl.astype(np.float32))
    layer = nn.Linear(train_nd.shape[1], train_nl.shape[1])
    with torch.no_grad():
        nn.init.normal_(layer.weight, std=0.01, generator=generator)
        layer.bias.zero_()
    optimizer = torch.optim.AdamW(
        layer.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True
    )
    steps_per_epoch = math.ceil(len(x_train) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps)),
    )

    def masked_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        known = ~torch.isnan(targets)
        losses = nn.functional.binary_cross_entropy_with_logits(
            logits, torch.nan_to_num(targets), reduction="none"
        )
        return (losses * known).sum() / known.sum().clamp(min=1)

    history: dict[str, Any] = {"val_loss": [], "epochs_run": 0, "selected_epoch": None}
    best = (math.inf, None, -1)
    for epoch in range(config.epochs):
        order = torch.randperm(len(x_train), generator=generator)
        x_epoch, y_epoch = x_train[order], y_train[order]  # one gather, then contiguous slices
        for start in range(0, len(order), config.batch_size):
            stop = start + config.batch_size
            loss = masked_bce(layer(x_epoch[start:stop]), y_epoch[start:stop])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        history["epochs_run"] = epoch + 1
        if len(x_val):
            with torch.no_grad():
                val_loss = float(masked_bce(layer(x_val), y_val))
            history["val_loss"].append(val_loss)
            if val_loss < best[0]:
                best = (val_loss, {k: v.clone() for k, v in layer.state_dict().items()}, epoch)
            if config.patience is not None and epoch - best[2] >= config.patience:
                break
    if config.patience is not None and best[1] is not None:
        layer.load_state_dict(best[1])
        history["selected_epoch"] = best[2] + 1
    else:
        history["selected_epoch"] = history["epochs_run"]
    with torch.no_grad():
        scores_ml = layer(torch.from_numpy(test_md)).numpy().astype(np.float64)
    return scores_ml, history


# ------------------------------------------------------------------------------ the battery
def check_inputs(
    features_nd: np.ndarray,
    labels_nl: np.ndarray,
    subjects_n: np.ndarray,
    names: Sequence[str],
    source: str,
) -> None:
    """Clear errors for mismatched counts, empty data, non-finite features, all-NaN labels."""
    if features_nd.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {features_nd.shape}")
    if len(features_nd) == 0:
        raise ValueError(f"{source}: no rows (empty dataset)")
    if labels_nl.shape != (len(features_nd), len(names)):
        raise ValueError(
            f"{len(features_nd)} feature rows but labels of shape {labels_nl.shape} from {source} "
            f"(expected ({len(features_nd)}, {len(names)})): features and labels do not match"
        )
    if len(subjects_n) != len(features_nd):
        raise ValueError(f"{len(features_nd)} feature rows but {len(subjects_n)} subject ids")
    if not np.isfinite(features_nd).all():
        raise ValueError("features contain NaN or infinite values")
    for column, name in enumerate(names):
        if np.isnan(labels_nl[:, column]).all():
            raise ValueError(f"{source}: label column {name!r} is entirely blank/NaN (no labels)")


def _missing_positive_messages(
    labels_nl: np.ndarray, splits_n: np.ndarray, names: Sequence[str], needed: Sequence[str]
) -> dict[str, str]:
    """label -> why it cannot be probed (no positive or no negative in a needed split)."""
    out = {}
    for column, name in enumerate(names):
        for split in needed:
            values = labels_nl[splits_n == split, column]
            positives, negatives = int((values == 1).sum()), int((values == 0).sum())
            if positives == 0 or negatives == 0:
                out[name] = (
                    f"label {name!r}: {positives} positives, {negatives} negatives in {split}"
                )
                break
    return out


def run_probes(
    features_nd: np.ndarray,
    labels_nl: np.ndarray,
    subjects_n: np.ndarray,
    names: Sequence[str],
    config: ProbeConfig,
    *,
    official_splits_n: np.ndarray | None = None,
    source: str = "labels.csv",
    progress: bool = True,
) -> dict[str, Any]:
    """Fit and score probes for every seed; returns per-seed runs and mean/std summaries."""
    from tqdm.auto import tqdm

    from raddino.eval.metrics import mean_std, multilabel_scores

    config.validate()
    names = list(names)
    features_nd = np.asarray(features_nd, dtype=np.float32)
    labels_nl = np.asarray(labels_nl, dtype=np.float64)
    subjects_n = np.asarray(subjects_n).astype(str)
    check_inputs(features_nd, labels_nl, subjects_n, names, source)
    fixed_split = official_splits_n is not None and (np.asarray(official_splits_n) != "").all()
    runs = []
    for index in tqdm(range(config.seeds), desc=f"probe ({config.method})", disable=not progress):
        split_seed = config.split_seed + (0 if fixed_split else index)
        splits_n = probe_split(
            subjects_n, labels_nl, config.split_fractions, split_seed, official_splits_n
        )
        unusable = _missing_positive_messages(labels_nl, splits_n, names, ("train", "test"))
        if unusable and config.on_missing_positives == "error":
            raise ValueError(f"{source}: " + "; ".join(unusable.values()))
        usable = [c for c, n in enumerate(names) if n not in unusable]
        if not usable:
            raise ValueError(f"{source}: no label has positives and negatives in train and test")
        train, val, test = (splits_n == s for s in ("train", "val", "test"))
        if config.method == "torch" and config.patience is not None and not val.any():
            raise ValueError("early stopping (--patience) needs validation rows; none in split")
        y = labels_nl[:, usable]
        history = None
        if config.method == "sklearn":
            scores = fit_predict_sklearn(
                features_nd[train], y[train], features_nd[test], config, index
            )
        else:
            scores, history = fit_predict_torch(
                features_nd[train],
                y[train],
                features_nd[val],
                y[val],
                features_nd[test],
                config,
                index,
            )
        scored = multilabel_scores(y[test], scores, [names[c] for c in usable])
        runs.append(
            {
                "seed": index,
                "split_seed": split_seed,
                "n_images": {s: int((splits_n == s).sum()) for s in ("train", "val", "test")},
                "n_subjects": {
                    s: int(len(np.unique(subjects_n[splits_n == s])))
                    for s in ("train", "val", "test")
                },
                "macro": scored["macro"],
                "per_label": scored["per_label"],
                "not_probed": {**unusable, **scored["unscored"]},
                **({"history": history} if history is not None else {}),
            }
        )
    summary_labels = {}
    for name in names:
        values = [r["per_label"][name] for r in runs if name in r["per_label"]]
        if values:
            summary_labels[name] = {
                key: mean_std([v[key] for v in values]) for key in ("auprc", "auroc", "prevalence")
            }
    macro = {key: mean_std([r["macro"][key] for r in runs]) for key in ("auprc", "auroc")}
    return {
        "summary": {"macro": macro, "per_label": summary_labels},
        "labels_not_probed": sorted({n for r in runs for n in r["not_probed"]}),
        "split": "official" if fixed_split else "subject split per seed",
        "runs": runs,
    }


def probe_features(
    features: Any, config: ProbeConfig, labels: Sequence[str] | None = None, progress: bool = True
) -> dict[str, Any]:
    """`run_probes` on a `FeatureSet` (its token, labels, subjects and official split)."""
    names = list(labels) if labels else features.label_names
    return run_probes(
        features[config.token],
        features.labels(names),
        features.subjects,
        names,
        config,
        official_splits_n=features.splits,
        source=features.labels_source,
        progress=progress,
    )


def probe_config_dict(config: ProbeConfig) -> dict[str, Any]:
    """The config as recorded in metrics.json."""
    return asdict(config)
