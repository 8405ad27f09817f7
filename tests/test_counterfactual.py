"""Counterfactual finding pairs: the folders differ only by the finding, and the read-out tells a
token that moves with a finding from one that does not."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from raddino.data.phantom import FINDINGS, PhantomConfig
from raddino.eval.counterfactual import (
    _check_paired,
    counterfactual_folders,
    counterfactual_frame,
    counterfactual_readout,
    counterfactual_table,
    prevalence_alone,
)


def test_prevalence_alone_renders_one_finding_and_is_a_valid_config():
    assert set(prevalence_alone(None).values()) == {0.0}
    for finding in FINDINGS:
        prevalence = prevalence_alone(finding)
        PhantomConfig(prevalence=prevalence)  # validates (support_devices >= chest_tube)
        on = {name for name, p in prevalence.items() if p > 0}
        expected = {finding, "support_devices"} if finding == "chest_tube" else {finding}
        assert on == expected
    with pytest.raises(ValueError, match="unknown finding 'edema'"):
        prevalence_alone("edema")


def test_readout_sees_a_consistent_shift_and_not_noise():
    rng = np.random.default_rng(0)
    subjects = np.repeat(np.arange(60), 2)
    without = rng.normal(size=(120, 16))
    direction = np.zeros(16)
    direction[3] = 1.0
    seen = counterfactual_readout(without, without + 0.5 * direction, subjects)
    blind = counterfactual_readout(without, without + 0.5 * rng.normal(size=(120, 16)), subjects)
    assert seen["paired"] == 1.0 and seen["auroc"] > 0.6
    assert 0.3 < blind["paired"] < 0.7 and 0.35 < blind["auroc"] < 0.65
    with pytest.raises(ValueError, match="pairs must match"):
        counterfactual_readout(without, without[:10], subjects)


def _folder(subjects, labels):
    table = pd.DataFrame({"subject_id": subjects})
    return SimpleNamespace(
        table=table, labels_array=lambda: np.asarray(labels, float), label_names=list(FINDINGS)
    )


def test_check_paired_names_what_does_not_pair():
    zeros = np.zeros((2, len(FINDINGS)))
    nodule = zeros.copy()
    nodule[:, FINDINGS.index("nodule")] = 1
    _check_paired({None: _folder(["a", "b"], zeros), "nodule": _folder(["a", "b"], nodule)})
    with pytest.raises(ValueError, match="'nodule' has other subjects"):
        _check_paired({None: _folder(["a", "b"], zeros), "nodule": _folder(["a", "c"], nodule)})
    half = nodule.copy()
    half[1, FINDINGS.index("nodule")] = 0
    with pytest.raises(ValueError, match="1 counterfactual images of 'nodule' lack the finding"):
        _check_paired({None: _folder(["a", "b"], zeros), "nodule": _folder(["a", "b"], half)})


def test_folders_pair_pixel_for_pixel_outside_the_finding(tmp_path):
    folders = counterfactual_folders(["nodule"], 8, 64, 5, runs_root=str(tmp_path))
    base, with_nodule = folders[None], folders["nodule"]
    assert list(base.table["image"]) == list(with_nodule.table["image"])
    for i in range(len(base.table)):
        without = np.asarray(Image.open(base.image_path(i)), dtype=np.float64)
        with_ = np.asarray(Image.open(with_nodule.image_path(i)), dtype=np.float64)
        assert (with_ != without).any()  # a nodule, however faint at 64 px
        changed = np.abs(with_ - without) > 0.01 * np.iinfo(np.uint16).max
        assert changed.mean() < 0.05  # the nodule, not a different subject or exposure
    table = counterfactual_table(
        {"pixels": "pixels:8"},
        folders,
        64,
        tokens=("cls", "patch_mean"),
        features_dir=str(tmp_path / "features"),
        folds=2,
    )
    assert set(table["pixels"]) == {"cls"}  # pixels have one vector, whatever tokens asks
    assert set(table["pixels"]["cls"]) == {"nodule"}
    assert set(table["pixels"]["cls"]["nodule"]) == {"auroc", "paired"}
    with pytest.raises(ValueError, match="tokens must be among 'cls', 'patch_mean'"):
        counterfactual_table({"pixels": "pixels:8"}, folders, 64, tokens=["patches"])


def test_frame_and_plot_read_a_report(tmp_path):
    import json

    import matplotlib

    matplotlib.use("Agg")
    from raddino.viz.pretraining import plot_counterfactuals

    readout = {"auroc": 0.7, "paired": 0.9}
    report = {
        "specs": {"pixels:32": "pixels:32", "random": "random:vit_tiny"},
        "encoders": {
            "pixels:32": {"cls": {"nodule": readout, "fibrosis": {"auroc": 0.95, "paired": 1}}},
            "random": {
                "cls": {"nodule": readout, "fibrosis": readout},
                "patch_mean": {"nodule": readout, "fibrosis": readout},
            },
        },
    }
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    frame = counterfactual_frame(path, "paired", "patch_mean")
    assert list(frame.index) == ["random"] and frame.loc["random", "nodule"] == 0.9
    assert list(frame.columns) == ["nodule", "fibrosis", "mean", "mean of the 1 pixels see"]
    assert frame.loc["random", "mean"] == 0.9
    assert counterfactual_frame(path).loc["pixels:32", "mean of the 1 pixels see"] == 0.95
    assert list(counterfactual_frame(path).index) == ["pixels:32", "random"]
    with pytest.raises(ValueError, match="readout must be 'paired' or 'auroc'"):
        counterfactual_frame(path, "accuracy")
    figure = plot_counterfactuals({"cls": counterfactual_frame(path)})
    assert len(figure.axes) == 2  # the heat map and its colour bar
