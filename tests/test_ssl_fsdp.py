"""FSDP2 (`train.distributed: fsdp`) equals DDP and 1 process; resumes exactly, across modes too.

One 2-process torchrun launch (gloo, CPU) runs every distributed scenario in sequence (process
start-up dominates the cost): this file is also that launch's script, see `_launched_main`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

# same global batch (4) for 1 and 2 processes; no drop-path (its draws differ per rank by design)
BASE = {
    "model.drop_path_rate": 0.0,
    "model.layerscale": 1.0,  # not 1e-5: see tests/test_ssl_torchrun.py's COMMON
    "train.epochs": 2,
    "train.epoch_length": 2,
    "train.checkpoint_every": 2,
    "train.batch_size_per_device": 2,
    "optim.warmup_epochs": 0,  # a real learning rate from the first step, so weights move
    "optim.base_lr": 0.05,
}
LOSS_KEYS = ("total", "dino_global", "dino_local", "koleo", "ibot")
FP16_TOL = 3e-4  # half-precision forward: reduction-order differences can flip fp16 roundings
# A logged fp16 loss is itself rounded: one flipped rounding moves it by an ulp, 2**-10 relative
# (seen on CI: dino_global 1.157227 vs 1.156738). Two ulps; the weights keep FP16_TOL.
FP16_LOSS_TOL = 2 * 2**-10
KILL_AT = 2  # the checkpoint after step 1 survives, steps 2..3 are redone on resume

FP16 = "fp16"
# run name -> (distributed mode, stop_at_step, mode of the resumed second half or None)
SCENARIOS = {
    "ddp": ("ddp", None, None),
    "fsdp": ("fsdp", None, None),
    "fsdp_killed_resumed": ("fsdp", KILL_AT, "fsdp"),
    "fsdp_killed_resumed_as_ddp": ("fsdp", KILL_AT, "ddp"),
    "ddp_killed_resumed_as_fsdp": ("ddp", KILL_AT, "fsdp"),
    "ddp_fp16": ("ddp", None, None),
    "fsdp_fp16": ("fsdp", None, None),
}


def _launched_main(out_root: Path) -> None:
    """Body of the torchrun launch: every scenario, one after the other, same process group."""
    from raddino.ssl import parallel
    from raddino.ssl.config import load_config, merge
    from raddino.ssl.train import pretrain

    torch.set_num_threads(1)
    wrapped, wrap = [], parallel.wrap_for_training

    def recording_wrap(meta, config, device):  # proves which runs really were sharded
        sharded = wrap(meta, config, device)
        param_type = type(next(meta.student.parameters()).data).__name__
        wrapped.append([config["train"]["distributed"], sharded, param_type])
        return sharded

    def eager_scaler(amp_dtype, device, sharded):
        # the default scale (2**16) overflows on every early smoke step; this one starts lower
        # and grows each step, so steps are both taken and skipped (all ranks must agree)
        scaler = make_scaler(amp_dtype, device, sharded)
        if scaler is not None:
            scaler = type(scaler)(device.type, init_scale=2.0**9, growth_interval=1)
            scaler_types.append(type(scaler).__name__)
        return scaler

    parallel.wrap_for_training = recording_wrap
    make_scaler, scaler_types = parallel.make_grad_scaler, []
    parallel.make_grad_scaler = eager_scaler
    for name, (mode, stop_at, resume_mode) in SCENARIOS.items():
        precision = FP16 if name.endswith(FP16) else "fp32"
        config = load_config(
            "smoke", {**BASE, "train.distributed": mode, "train.precision": precision}
        )
        pretrain(config, out_root / name, progress=False, stop_at_step=stop_at)
        if resume_mode is not None:
            resumed = merge(config, {"train.distributed": resume_mode}, source="resume")
            pretrain(resumed, out_root / name, progress=False)
    if int(os.environ["RANK"]) == 0:
        (out_root / "wrapped.json").write_text(json.dumps(wrapped))
        (out_root / "scalers.json").write_text(json.dumps(scaler_types))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Run folders: the torchrun scenarios plus `one` (1 process, batch 4)."""
    from raddino.ssl.config import load_config
    from raddino.ssl.train import pretrain

    root = tmp_path_factory.mktemp("fsdp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    cmd += [__file__, str(root)]
    done = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=600
    )  # a loaded 2-core CI box
    assert done.returncode == 0, done.stderr[-4000:]
    one = load_config("smoke", {**BASE, "train.batch_size_per_device": 4})
    pretrain(one, root / "one", progress=False)
    return root


def _teacher(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "teacher_backbone.safetensors")


def _lines(run: Path) -> list[str]:
    return (run / "metrics.jsonl").read_text().splitlines()


def _losses(run: Path) -> list[dict]:
    return [{k: json.loads(line)[k] for k in LOSS_KEYS} for line in _lines(run)]


def _assert_close_runs(a: Path, b: Path, tol: float = 1e-5, loss_tol: float | None = None) -> None:
    expected, got = _teacher(a), _teacher(b)
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=tol, atol=tol, msg=name)
    losses_a, losses_b = _losses(a), _losses(b)
    assert len(losses_a) == 4
    for la, lb in zip(losses_a, losses_b, strict=True):
        for key in LOSS_KEYS:
            bound = (tol if loss_tol is None else loss_tol) * max(1.0, abs(la[key]))
            assert abs(la[key] - lb[key]) <= bound, (key, la, lb)


def test_fsdp_runs_really_were_sharded(runs):
    wrapped = json.loads((runs / "wrapped.json").read_text())
    assert len(wrapped) == 10  # 7 runs + 3 resumptions
    for mode, sharded, param_type in wrapped:
        assert sharded == (mode == "fsdp")
        assert param_type == ("DTensor" if mode == "fsdp" else "Tensor")


def test_fsdp_two_ranks_equal_ddp_two_ranks(runs):
    _assert_close_runs(runs / "ddp", runs / "fsdp")
    start = load_file(runs / "fsdp" / "checkpoints" / "step_00000001" / "state.safetensors")
    final = _teacher(runs / "fsdp")
    name = "blocks.0.attn.qkv.weight"
    assert not torch.equal(start[f"meta.teacher.backbone.{name}"], final[name]), "weights moved"


def test_fsdp_two_ranks_equal_one_process_with_the_same_global_batch(runs):
    _assert_close_runs(runs / "one", runs / "fsdp")


def test_fsdp_checkpoints_have_the_ddp_layout(runs):
    step_dir = Path("checkpoints") / "step_00000003"
    ddp = load_file(runs / "ddp" / step_dir / "state.safetensors")
    fsdp = load_file(runs / "fsdp" / step_dir / "state.safetensors")
    assert ddp.keys() == fsdp.keys()
    for key in ddp:
        assert ddp[key].shape == fsdp[key].shape and ddp[key].dtype == fsdp[key].dtype, key
    ddp_json = json.loads((runs / "ddp" / step_dir / "state.json").read_text())
    fsdp_json = json.loads((runs / "fsdp" / step_dir / "state.json").read_text())
    assert ddp_json["optim"] == fsdp_json["optim"]  # param groups and per-param scalars
    assert any(k.startswith("optim.state.") and k.endswith("exp_avg") for k in fsdp)


def test_fsdp_killed_and_resumed_equals_uninterrupted(runs):
    straight, resumed = _teacher(runs / "fsdp"), _teacher(runs / "fsdp_killed_resumed")
    for name in straight:  # same code path, same reductions: bitwise on CPU
        assert torch.equal(straight[name], resumed[name]), name
    assert _losses(runs / "fsdp") == _losses(runs / "fsdp_killed_resumed")


def test_a_run_resumes_under_the_other_mode(runs):
    _assert_close_runs(runs / "fsdp", runs / "fsdp_killed_resumed_as_ddp")
    _assert_close_runs(runs / "ddp", runs / "ddp_killed_resumed_as_fsdp")


def test_fsdp_on_one_process_warns_and_trains_unsharded():
    from raddino.models.backbone import build_backbone
    from raddino.ssl.config import load_config
    from raddino.ssl.meta_arch import DinoV2MetaArch
    from raddino.ssl.parallel import wrap_for_training

    config = load_config("smoke", {"train.distributed": "fsdp"})
    meta = DinoV2MetaArch(build_backbone("vit_pico"), config)
    with pytest.warns(UserWarning, match="train.distributed=fsdp on a single process"):
        assert wrap_for_training(meta, config, torch.device("cpu")) is False
    assert not any(type(p).__name__ == "DTensor" for p in meta.parameters())


def test_fp16_with_fsdp_equals_fp16_with_ddp(runs):
    scalers = json.loads((runs / "scalers.json").read_text())
    assert scalers == ["GradScaler", "ShardedGradScaler"]  # ddp_fp16, fsdp_fp16
    skipped = [json.loads(line)["skipped_step"] for line in _lines(runs / "fsdp_fp16")]
    assert any(skipped) and not all(skipped), skipped
    assert skipped == [json.loads(line)["skipped_step"] for line in _lines(runs / "ddp_fp16")]
    _assert_close_runs(runs / "ddp_fp16", runs / "fsdp_fp16", tol=FP16_TOL, loss_tol=FP16_LOSS_TOL)


def test_unknown_distributed_mode_is_rejected_naming_the_key():
    from raddino.ssl.config import load_config

    with pytest.raises(ValueError, match="train.distributed"):
        load_config("smoke", {"train.distributed": "zero3"})


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    _launched_main(Path(sys.argv[1]))
