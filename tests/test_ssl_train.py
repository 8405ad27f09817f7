"""The pretraining loop: runs, resumes bitwise after a kill, stops on NaN and on collapse."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from raddino.ssl.config import load_config
from raddino.ssl.train import CollapseDetected, TrainingDiverged, pretrain


def _smoke(**overrides):
    base = {"train.epochs": 2, "train.epoch_length": 3, "train.checkpoint_every": 2}
    return load_config("smoke", {**base, **overrides})


def test_smoke_run_writes_the_run_folder_contract(tmp_path):
    from raddino.models.weights import load_backbone

    final = pretrain(_smoke(), tmp_path / "run", progress=False)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records] == list(range(6))
    for key in ("total", "dino_global", "dino_local", "koleo", "ibot", "teacher_entropy", "lr"):
        assert all(torch.isfinite(torch.tensor(r[key])) for r in records), key
    assert (tmp_path / "run" / "config.yaml").exists()
    backbone = load_backbone(final)
    assert backbone.embed_dim == 64
    assert backbone(torch.zeros(1, 3, 56, 56)).shape == (1, 64)


def test_killed_and_resumed_run_is_bitwise_identical(tmp_path):
    config = _smoke()
    reference = pretrain(config, tmp_path / "straight", progress=False)
    # "kill" after step 3 (the last checkpoint is at step 3: checkpoint_every=2), then resume
    pretrain(config, tmp_path / "killed", progress=False, stop_at_step=3)
    resumed = pretrain(config, tmp_path / "killed", progress=False)
    expected, got = load_file(reference), load_file(resumed)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    straight = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    again = (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    drop_timing = [
        {k: v for k, v in json.loads(x).items() if k != "images_per_s"} for x in straight
    ]
    assert drop_timing == [
        {k: v for k, v in json.loads(x).items() if k != "images_per_s"} for x in again
    ]


def test_a_changed_config_does_not_resume_silently(tmp_path):
    pretrain(_smoke(**{"train.epochs": 1}), tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="optim.base_lr"):
        pretrain(_smoke(**{"train.epochs": 1, "optim.base_lr": 0.5}), tmp_path / "run")


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    from raddino.ssl import checkpoint as ckpt
    from raddino.ssl import train

    make_normalizer = train.make_normalizer

    def poisoned_from_step_3(backbone, device="cpu"):
        normalize, calls = make_normalizer(backbone, device), {"n": 0}

        def normalize_or_nan(images):
            calls["n"] += 1  # global + local crops: 2 calls per step
            out = normalize(images)
            return out * float("nan") if calls["n"] > 6 else out

        return normalize_or_nan

    monkeypatch.setattr(train, "make_normalizer", poisoned_from_step_3)
    with pytest.raises(TrainingDiverged, match="non-finite loss at step 3"):
        pretrain(_smoke(), tmp_path / "run", progress=False)
    assert ckpt.latest_checkpoint(tmp_path / "run").name == "step_00000001"
    assert not (tmp_path / "run" / "teacher_backbone.safetensors").exists()


def test_collapse_check_fires_on_a_collapsing_config(tmp_path):
    # A very high teacher temperature makes the targets uniform: the "uniform" collapse.
    config = _smoke(
        **{
            "teacher.warmup_teacher_temp": 9.0,
            "teacher.teacher_temp": 9.0,
            "health.collapse_patience": 3,
        }
    )
    with pytest.raises(CollapseDetected, match="collapsed for 3 steps"):
        pretrain(config, tmp_path / "run", progress=False)


def test_worker_processes_and_prerendering_change_nothing_but_speed(tmp_path):
    """Batches built by 2 worker processes from a prerendered set == built inline on demand;
    and a run may resume with the other setting (the config check allows it)."""
    finite = {"data.max_images": 40}
    inline = pretrain(_smoke(**finite), tmp_path / "inline", progress=False)
    parallel = {**finite, "data.num_workers": 2, "data.prerender": True}
    pretrain(_smoke(**parallel), tmp_path / "parallel", progress=False, stop_at_step=3)
    resumed = pretrain(_smoke(**finite), tmp_path / "parallel", progress=False)
    expected, got = load_file(inline), load_file(resumed)
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


def test_prerender_needs_a_finite_data_set():
    with pytest.raises(ValueError, match="data.max_images"):
        _smoke(**{"data.prerender": True})


def test_tensorboard_holds_the_metrics_once_per_step_after_a_resume(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = _smoke(**{"train.tensorboard": True})
    pretrain(config, tmp_path / "run", progress=False, stop_at_step=5)  # "killed" after step 4
    pretrain(config, tmp_path / "run", progress=False)  # resumes from the checkpoint at step 3
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    logged = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for key in ("total", "teacher_entropy", "lr"):
        scalars = events.Scalars(key)
        assert [s.step for s in scalars] == list(range(6)), key
        expected = [record[key] for record in logged]
        assert [s.value for s in scalars] == pytest.approx(expected, rel=1e-6), key


def test_compiled_modules_train_like_eager_ones(tmp_path):
    """train.compile changes how the blocks run, not what they compute (to float rounding)."""
    base = {"train.epochs": 1, "train.epoch_length": 2, "model.drop_path_rate": 0.0}
    eager = load_file(pretrain(_smoke(**base), tmp_path / "eager", progress=False))
    compiled_run = pretrain(_smoke(**base, **{"train.compile": True}), tmp_path / "compiled",
                            progress=False)  # fmt: skip
    compiled = load_file(compiled_run)
    assert eager.keys() == compiled.keys()  # Module.compile keeps the parameter names
    for name in eager:
        torch.testing.assert_close(compiled[name], eager[name], rtol=1e-4, atol=1e-5)
    losses = [
        [
            json.loads(x)["total"]
            for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        ]
        for run in ("eager", "compiled")
    ]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
