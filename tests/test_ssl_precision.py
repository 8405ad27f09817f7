"""`train.precision: fp16`: autocast + GradScaler (on CPU too), skipped steps, resumable scaler."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch
from safetensors.torch import load_file

from raddino.ssl import parallel
from raddino.ssl.config import load_config
from raddino.ssl.train import pretrain


def _smoke(**overrides):
    base = {"train.epochs": 2, "train.epoch_length": 3, "train.checkpoint_every": 2}
    return load_config("smoke", {**base, **overrides})


def _records(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _scaler_factory(monkeypatch, **options) -> None:
    """Make the loop build a GradScaler with the given options (init_scale, growth_interval)."""

    def make(amp_dtype, device, sharded):
        assert amp_dtype == torch.float16 and not sharded
        return torch.amp.GradScaler(device.type, **options)

    monkeypatch.setattr(parallel, "make_grad_scaler", make)


def test_fp16_trains_on_cpu_and_stores_the_scaler_state(tmp_path):
    pretrain(_smoke(**{"train.precision": "fp16"}), tmp_path / "fp16", progress=False)
    pretrain(_smoke(**{"train.epochs": 1}), tmp_path / "fp32", progress=False)
    fp16, fp32 = _records(tmp_path / "fp16"), _records(tmp_path / "fp32")
    assert all("loss_scale" not in r and "skipped_step" not in r for r in fp32)
    for key in ("total", "dino_global", "koleo", "ibot"):
        assert all(torch.isfinite(torch.tensor(r[key])) for r in fp16), key
    # a step is skipped exactly when the scale shrinks, and then no gradient norm is logged
    previous_scale = 2.0**16  # GradScaler's initial scale
    for record in fp16:
        assert record["skipped_step"] == (record["loss_scale"] < previous_scale), record
        assert (record["grad_norm"] is None) == record["skipped_step"], record
        previous_scale = record["loss_scale"]
    # fp16 autocast really computed in half precision: the first loss is close, not equal
    assert fp16[0]["total"] != fp32[0]["total"]
    assert abs(fp16[0]["total"] - fp32[0]["total"]) < 5e-2 * abs(fp32[0]["total"])
    last = tmp_path / "fp16" / "checkpoints" / "step_00000005" / "state.json"
    assert json.loads(last.read_text())["grad_scaler"]["scale"] == fp16[-1]["loss_scale"]
    fp32_state = (tmp_path / "fp32" / "checkpoints" / "step_00000002" / "state.json").read_text()
    assert json.loads(fp32_state)["grad_scaler"] is None


def test_inf_gradients_skip_the_step_and_are_logged_not_fatal(tmp_path, monkeypatch):
    from raddino.ssl.meta_arch import DinoV2MetaArch
    from raddino.ssl.train import build_backbone_for

    _scaler_factory(monkeypatch, init_scale=1e38)  # loss * scale overflows: every grad is inf
    config = _smoke(**{"train.precision": "fp16", "train.epochs": 1})
    pretrain(config, tmp_path / "run", progress=False)
    records = _records(tmp_path / "run")
    assert [r["skipped_step"] for r in records] == [True, True, True]
    assert [r["grad_norm"] for r in records] == [None, None, None]
    assert [r["loss_scale"] for r in records] == pytest.approx([5e37, 2.5e37, 1.25e37])
    assert all(torch.isfinite(torch.tensor(r["total"])) for r in records)
    # no step was taken: the student still holds its initial weights
    torch.manual_seed(config["train"]["seed"])
    initial = DinoV2MetaArch(build_backbone_for(config), config).student.state_dict()
    saved = load_file(tmp_path / "run" / "checkpoints" / "step_00000002" / "state.safetensors")
    for name, value in initial.items():
        assert torch.equal(saved[f"meta.student.{name}"], value), name


def test_fp16_killed_and_resumed_is_bitwise_identical_with_the_scaler_state(tmp_path, monkeypatch):
    # growth every step: the scale doubles until gradients overflow, then halves (skips happen),
    # so the resumed run only matches if the scaler state came back from the checkpoint
    _scaler_factory(monkeypatch, init_scale=2.0**12, growth_interval=1)
    config = _smoke(**{"train.precision": "fp16"})
    reference = pretrain(config, tmp_path / "straight", progress=False)
    pretrain(config, tmp_path / "killed", progress=False, stop_at_step=3)
    resumed = pretrain(config, tmp_path / "killed", progress=False)
    expected, got = load_file(reference), load_file(resumed)
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    straight, again = _records(tmp_path / "straight"), _records(tmp_path / "killed")
    for record in straight + again:
        record.pop("images_per_s")
    assert straight == again
    scales = [r["loss_scale"] for r in straight]
    skipped = [r["skipped_step"] for r in straight]
    assert any(skipped) and not all(skipped), (skipped, scales)  # steps taken and skipped


def test_a_precision_the_device_cannot_autocast_is_rejected_naming_the_key(monkeypatch):
    def no_fp16_autocast(device_type, dtype=None, **kwargs):
        raise RuntimeError(f"autocast {device_type} does not support {dtype}")

    monkeypatch.setattr(torch, "autocast", no_fp16_autocast)
    with pytest.raises(ValueError, match="'train.precision'='fp16'.*does not support"):
        parallel.check_precision_supported(
            _smoke(**{"train.precision": "fp16"}), torch.device("cpu")
        )


def test_an_autocast_that_does_not_cast_is_rejected_naming_the_key(monkeypatch):
    monkeypatch.setattr(torch, "autocast", lambda *args, **kwargs: contextlib.nullcontext())
    with pytest.raises(ValueError, match=r"'train.precision'='bf16'.*float32 instead of"):
        parallel.check_precision_supported(
            _smoke(**{"train.precision": "bf16"}), torch.device("cpu")
        )


def test_fp32_and_auto_need_no_probe(monkeypatch):
    monkeypatch.setattr(torch, "autocast", None)  # would raise TypeError if it were used
    for precision in ("fp32", "auto"):
        parallel.check_precision_supported(
            _smoke(**{"train.precision": precision}), torch.device("cpu")
        )


def test_unknown_precision_is_rejected_naming_the_key():
    with pytest.raises(ValueError, match="train.precision"):
        _smoke(**{"train.precision": "fp8"})


def test_koleo_runs_in_float32_under_autocast():
    from raddino.ssl.koleo_loss import koleo_loss

    features_bd = torch.randn(16, 32, generator=torch.Generator().manual_seed(0))
    reference = koleo_loss(features_bd)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = koleo_loss(features_bd)
    assert under_autocast.dtype == torch.float32
    assert torch.equal(under_autocast, reference)
