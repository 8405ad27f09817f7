"""Cached short pretraining runs and the ablation chapters' probe summaries."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from raddino.eval.ablations import FINDING_SCALE, by_finding_scale
from raddino.ssl.config import load_config
from raddino.ssl.short_runs import (
    distinct_images,
    init_fingerprint,
    pretrain_stage,
    short_run_overrides,
    training_curves,
)

SMOKE = {"train.epochs": 1, "train.epoch_length": 2, "train.checkpoint_every": 1}


def test_a_finished_run_is_reused_not_retrained(tmp_path):
    first = pretrain_stage("smoke", SMOKE, runs_root=str(tmp_path))
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["metrics"]["steps"] == 2 and manifest["metrics"]["images_seen"] == 8
    assert (first / "teacher_backbone.safetensors").is_file()
    assert not (tmp_path / "pretrain-work").exists() or not any(
        (tmp_path / "pretrain-work").iterdir()
    ), "checkpoints of a finished run are removed"
    again = pretrain_stage("smoke", SMOKE, runs_root=str(tmp_path))
    assert again == first
    assert json.loads((again / "manifest.json").read_text()) == manifest
    other = pretrain_stage("smoke", {**SMOKE, "ibot.enabled": False}, runs_root=str(tmp_path))
    assert other != first
    curves = training_curves({"mim": first, "no mim": other})
    ibot = curves[(curves["metric"] == "ibot")]
    assert set(ibot["run"]) == {"mim"}, "a run without iBOT logs no iBOT loss"
    assert len(curves[curves["metric"] == "total"]) == 4
    from raddino.viz.pretraining import plot_training_curves

    figure = plot_training_curves(curves, ("total", "ibot", "koleo", "lr", "absent"), columns=3)
    panels = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["total", "ibot", "koleo", "lr"]  # 2 rows of 3
    assert len(figure.axes) == 6 and [len(ax.lines) for ax in panels] == [2, 1, 2, 2]


def test_init_fingerprint_follows_the_file_content(tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"one")
    first = init_fingerprint(str(weights))
    weights.write_bytes(b"two")
    assert first.startswith("sha256:") and init_fingerprint(str(weights)) != first
    assert init_fingerprint("random") == "random"


def test_short_run_overrides_are_valid_keys_of_the_ablation_profile():
    config = load_config("ablation", short_run_overrides("random", 3, 4))
    assert config["model"]["init"] == "random"
    assert (config["train"]["epoch_length"], config["train"]["batch_size_per_device"]) == (3, 4)


def test_distinct_images_is_the_stream_or_the_cap():
    config = load_config("ablation")
    steps = config["train"]["epochs"] * config["train"]["epoch_length"]
    stream = config["data"]["pool_size"] + steps * config["data"]["pool_refresh"]
    assert distinct_images(config) == stream
    capped = load_config("ablation", {"data.max_images": 50})
    assert distinct_images(capped) == 50


def test_finding_scale_groups_average_their_own_findings():
    rng = np.random.default_rng(0)
    findings = [*FINDING_SCALE["large"], *FINDING_SCALE["small"][:-1]]  # one small one unscored
    rows = [
        {"encoder": enc, "finding": f, "auprc_mean": rng.uniform(), "chance": rng.uniform() / 4}
        for enc in ("a", "b")
        for f in findings
    ]
    rows += [{"encoder": e, "finding": "macro", "auprc_mean": 0.5, "chance": np.nan} for e in "ab"]
    frame = pd.DataFrame(rows)
    summary = by_finding_scale(frame).set_index(["encoder", "scale"])
    for enc in ("a", "b"):
        mine = frame[frame["encoder"] == enc].set_index("finding")
        large = mine.loc[list(FINDING_SCALE["large"]), "auprc_mean"].mean()
        small = mine.loc[list(FINDING_SCALE["small"][:-1]), "auprc_mean"].mean()
        assert summary.loc[(enc, "large"), "auprc"] == pytest.approx(large)
        assert summary.loc[(enc, "small"), "auprc"] == pytest.approx(small)
        assert summary.loc[(enc, "small"), "findings"] == len(FINDING_SCALE["small"]) - 1
        assert summary.loc[(enc, "macro"), "auprc"] == 0.5


def test_resolution_keeps_the_local_to_global_ratio_on_the_patch_grid(tmp_path):
    from raddino.cli import build_parser
    from raddino.ssl.pretrain_cli import resolve_config
    from raddino.ssl.short_runs import resolution_overrides

    crops = load_config("ablation")["crops"]  # 112 / 56
    assert resolution_overrides(crops, 56) == {
        "crops.global_crops_size": 56,
        "crops.local_crops_size": 28,
    }
    assert resolution_overrides(crops, 224)["crops.local_crops_size"] == 112
    args = build_parser().parse_args(
        ["pretrain", "--profile", "gpu-paper", "--out", str(tmp_path), "--resolution", "224"]
        + ["--set", f"data.path={tmp_path}"]
    )
    config = resolve_config(args)  # gpu-paper: 518 / 196 -> 224 / 84
    assert config["crops"]["global_crops_size"] == 224
    assert config["crops"]["local_crops_size"] == 84
