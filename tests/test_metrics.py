"""Metrics on constructed cases: AUPRC/AUROC by hand and vs scikit-learn, NaN, macro, report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from raddino.eval.metrics import accuracy, auprc, auroc, mean_std, multilabel_scores
from raddino.eval.report import read_metrics_json, write_metrics_json


def test_auprc_and_auroc_by_hand():
    labels, scores = [1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]
    # ranks: 0.9 (+) precision 1 at recall 1/2; 0.7 (+) precision 2/3 at recall 1
    assert auprc(labels, scores) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # positive-negative pairs ordered correctly: (0.9,0.8) (0.9,0.1) (0.7,0.1), not (0.7,0.8)
    assert auroc(labels, scores) == pytest.approx(3 / 4)
    assert auprc([0, 1, 1], [0.1, 0.5, 0.9]) == 1.0
    # constant scores: AUPRC is the prevalence, AUROC one half
    assert auprc([1, 0, 0, 0], [0.3] * 4) == pytest.approx(0.25)
    assert auroc([1, 0, 0, 0], [0.3] * 4) == pytest.approx(0.5)


def test_auprc_matches_sklearn_on_random_cases():
    rng = np.random.default_rng(0)
    for _ in range(5):
        labels = (rng.random(200) < 0.15).astype(int)
        scores = rng.standard_normal(200) + labels
        assert auprc(labels, scores) == pytest.approx(average_precision_score(labels, scores))
        assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))


def test_undefined_and_bad_inputs_are_errors():
    with pytest.raises(ValueError, match="without a positive"):
        auprc([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="both classes"):
        auroc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        auprc([1, np.nan, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="3 labels but 2 scores"):
        auprc([1, 0, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="0 or 1"):
        auprc([2, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN or infinite"):
        auprc([1, 0], [np.inf, 0.2])


def test_multilabel_excludes_nan_per_label_and_macro_covers_scored_labels():
    rng = np.random.default_rng(1)
    labels = (rng.random((60, 3)) < 0.3).astype(float)
    labels[::4, 0] = np.nan  # unknown on a quarter of label a
    labels[:, 2] = 0.0  # label c has no positive
    labels[5, 2] = np.nan
    scores = rng.standard_normal((60, 3)) + np.nan_to_num(labels)
    out = multilabel_scores(labels, scores, ["a", "b", "c"])
    known = ~np.isnan(labels[:, 0])
    expected_a = average_precision_score(labels[known, 0], scores[known, 0])
    assert out["per_label"]["a"]["auprc"] == pytest.approx(expected_a)
    assert out["per_label"]["a"]["n"] == known.sum()
    assert out["per_label"]["b"]["auprc"] == pytest.approx(
        average_precision_score(labels[:, 1], scores[:, 1])
    )
    assert set(out["per_label"]) == {"a", "b"}
    assert "0 positives" in out["unscored"]["c"]
    assert out["macro"]["auprc"] == pytest.approx(
        (out["per_label"]["a"]["auprc"] + out["per_label"]["b"]["auprc"]) / 2
    )
    with pytest.raises(ValueError, match="names"):
        multilabel_scores(labels, scores, ["a", "b"])


def test_mean_std_and_accuracy():
    values = [0.5, 0.7, 0.9]
    out = mean_std(values)
    assert out["mean"] == pytest.approx(0.7)
    assert out["std"] == pytest.approx(np.std(values, ddof=1))
    assert mean_std([0.3])["std"] == 0.0
    with pytest.raises(ValueError):
        mean_std([])
    with pytest.raises(ValueError):
        mean_std([0.1, float("nan")])
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    with pytest.raises(ValueError, match="predictions"):
        accuracy([0, 1], [0])


def test_metrics_json_roundtrip_has_config_versions_and_no_nan(tmp_path):
    path = tmp_path / "metrics.json"
    write_metrics_json(path, "probe", {"macro": float("nan"), "x": np.float32(0.5)}, {"seeds": 5})
    text = path.read_text()
    assert "NaN" not in text
    record = read_metrics_json(path)
    assert record["metrics"] == {"macro": None, "x": 0.5}
    assert record["config"] == {"seeds": 5}
    assert record["evaluation"] == "probe"
    assert "torch" in record["versions"] and "scikit-learn" in record["versions"]
    with pytest.raises(ValueError, match=".json"):
        write_metrics_json(tmp_path / "m.txt", "probe", {}, {})
    (tmp_path / "other.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="other.json"):
        read_metrics_json(tmp_path / "other.json")
