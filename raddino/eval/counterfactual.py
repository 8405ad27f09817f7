"""Does a frozen class token see a finding when nothing else changes? Counterfactual phantom pairs.

The bar's finding probes read 600 phantoms whose subjects, views and acquisitions all differ, so a
finding's signal competes with everything else a class token holds, and a 0.01-0.02 difference
between encoders is within one probe set's luck. Phantoms can do what X-rays cannot: render the
same subject, view, acquisition and noise twice, once without any finding and once with exactly
one (`PhantomConfig.prevalence` draws the same random numbers whatever the probabilities, so only
the finding differs). Two read-outs per finding, on subjects held out from the read-out's fit:

- `auroc`: a standardised logistic regression (the bar's probe) fitted on the pairs of the other
  subjects scores held-out images; AUROC of with- over without-images (0.5 = blind). Subjects
  still differ, so this is the bar's question with the confounds and label noise removed.
- `paired`: the fraction of held-out pairs whose with-image scores above its own without-image
  (a tie counts half); the subject is then the same, so this asks only whether the finding
  moves the token along the read-out's direction (0.5 = blind, 1 = always).

Written here because no library renders counterfactual radiographs; the probes are scikit-learn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

PIXELS_SEE = 0.9  # a finding raw pixels tell apart at this held-out AUROC is plainly visible


def prevalence_alone(finding: str | None) -> dict[str, float]:
    """Finding probabilities that render `finding` in every image and no other (None: none)."""
    from raddino.data.phantom import FINDINGS

    if finding is not None and finding not in FINDINGS:
        raise ValueError(f"unknown finding {finding!r}; expected one of {FINDINGS}")
    prevalence = {name: 0.0 for name in FINDINGS}
    if finding is not None:
        prevalence[finding] = 1.0
    if finding == "chest_tube":  # a chest tube is a support device: it carries that label too
        prevalence["support_devices"] = 1.0
    return prevalence


def counterfactual_folders(
    findings: Sequence[str],
    n: int,
    size: int,
    seed: int,
    runs_root: str = "runs",
    views: tuple[str, ...] = ("PA", "AP"),
) -> dict[str | None, Any]:
    """{None: phantoms 0..n-1 without findings, finding: the same phantoms with only it}, as
    cached dataset folders (`raddino.pipeline.phantom_folder`)."""
    from raddino.data.dataset_folder import DatasetFolder
    from raddino.pipeline import phantom_folder

    folders: dict[str | None, Any] = {}
    for finding in (None, *findings):
        path = phantom_folder(
            n,
            size,
            seed,
            views=views,
            with_masks=False,
            prevalence=prevalence_alone(finding),
            root=runs_root,
            quiet=True,
        )
        folders[finding] = DatasetFolder.open(path)
    _check_paired(folders)
    return folders


def _check_paired(folders: Mapping[str | None, Any]) -> None:
    """Raise unless every folder holds the same images of the same subjects and each finding's
    folder has its finding in every image (a counterfactual that did not render is an error)."""
    base = folders[None].table
    for finding, folder in folders.items():
        table = folder.table
        if list(table["subject_id"]) != list(base["subject_id"]):
            raise ValueError(
                f"counterfactual folder of {finding!r} has other subjects than the base"
            )
        labels = folder.labels_array()
        if finding is None:
            if np.nansum(labels) != 0:
                raise ValueError("the base folder of the counterfactual pairs has findings")
            continue
        missing = int((labels[:, list(folder.label_names).index(finding)] != 1).sum())
        if missing:
            raise ValueError(f"{missing} counterfactual images of {finding!r} lack the finding")


def counterfactual_readout(
    without_nd: np.ndarray,
    with_nd: np.ndarray,
    subjects_n: np.ndarray,
    *,
    c: float = 0.1,
    folds: int = 5,
) -> dict[str, float]:
    """Held-out `auroc` and `paired` accuracy (module docstring) of one finding, averaged over
    `folds` subject folds; row i of `without_nd` and of `with_nd` is the same phantom."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    without_nd, with_nd = np.asarray(without_nd), np.asarray(with_nd)
    if without_nd.shape != with_nd.shape or len(subjects_n) != len(without_nd):
        raise ValueError(
            f"pairs must match: without {without_nd.shape}, with {with_nd.shape}, "
            f"{len(subjects_n)} subjects"
        )
    aurocs, paired = [], []
    for train, test in GroupKFold(n_splits=folds).split(without_nd, groups=subjects_n):
        x_train = np.concatenate([without_nd[train], with_nd[train]])
        y_train = np.r_[np.zeros(len(train)), np.ones(len(train))]
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        model.fit(x_train, y_train)
        score_without = model.decision_function(without_nd[test])
        score_with = model.decision_function(with_nd[test])
        y_test = np.r_[np.zeros(len(test)), np.ones(len(test))]
        aurocs.append(roc_auc_score(y_test, np.r_[score_without, score_with]))
        # a tie (the finding did not change the token at all) is a coin flip, not a miss
        paired.append(
            float(np.mean(score_with > score_without) + 0.5 * np.mean(score_with == score_without))
        )
    return {"auroc": round(float(np.mean(aurocs)), 4), "paired": round(float(np.mean(paired)), 4)}


def counterfactual_table(
    specs: Mapping[str, str],
    folders: Mapping[str | None, Any],
    size: int,
    *,
    tokens: Sequence[str] = ("cls",),
    features_dir: str = "runs/features",
    device: str = "cpu",
    seed: int = 0,
    c: float = 0.1,
    folds: int = 5,
) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """{encoder label: {token: {finding: counterfactual_readout}}} of each encoder spec's class
    token ("cls") and/or mean patch token ("patch_mean"); the pixel baseline has only "cls".
    `specs`: label -> spec; features are cached by `raddino.eval.features.extract`."""
    from raddino.eval.features import extract

    unknown = [t for t in tokens if t not in ("cls", "patch_mean")]
    if unknown or not tokens:
        raise ValueError(f"tokens must be among 'cls', 'patch_mean', got {list(tokens)!r}")
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    subjects_n = folders[None].table["subject_id"].to_numpy()
    for label, spec in specs.items():
        is_pixels = str(spec).startswith("pixels")
        which = ["cls"] if is_pixels else list(tokens)
        features = {  # finding (None: without) -> the extracted tokens of its folder
            finding: extract(
                spec,
                folder,
                size=None if is_pixels else size,
                which=which,
                cache_dir=features_dir,
                device=device,
                seed=seed,
            )
            for finding, folder in folders.items()
        }
        out[label] = {
            token: {
                finding: counterfactual_readout(
                    features[None][token], tokens_nd[token], subjects_n, c=c, folds=folds
                )
                for finding, tokens_nd in features.items()
                if finding is not None
            }
            for token in which
        }
    return out


def counterfactual_frame(path: str | Any, readout: str = "auroc", token: str = "cls") -> Any:
    """A `benchmarks/finding_counterfactuals.py` report as a table: rows encoders that have
    `token`, columns findings, their mean, and the mean over the findings that the report's
    raw-pixel baseline tells apart; values one read-out ("auroc" or "paired")."""
    import json
    from pathlib import Path

    import pandas as pd

    if readout not in ("paired", "auroc"):
        raise ValueError(f"readout must be 'paired' or 'auroc', got {readout!r}")
    report = json.loads(Path(path).read_text())
    rows = {
        encoder: {finding: result[readout] for finding, result in tokens[token].items()}
        for encoder, tokens in report["encoders"].items()
        if token in tokens
    }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame = frame.assign(mean=frame.mean(axis=1))  # over all findings, the invisible ones too
    pixels = [
        t["cls"] for e, t in report["encoders"].items() if report["specs"][e].startswith("pixels")
    ]
    if pixels:  # the findings a linear read-out of raw pixels tells apart (AUROC >= 0.9)
        seen = [f for f, result in pixels[0].items() if result["auroc"] >= PIXELS_SEE]
        frame[f"mean of the {len(seen)} pixels see"] = frame[seen].mean(axis=1)
    return frame
