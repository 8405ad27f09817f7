"""Checkpoints: full training state round-trips exactly, atomically, without unpickling."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from raddino.ssl import checkpoint as ckpt


def _trained_optimizer() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.99))
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(5, 4)).square().mean().backward()
        optimizer.step()
    return model, optimizer


def test_optimizer_state_round_trip_continues_identically(tmp_path):
    model, optimizer = _trained_optimizer()
    opt_tensors, opt_meta = ckpt.flatten_optimizer_state(optimizer.state_dict())
    tensors = {**ckpt.prefixed("model", model.state_dict()), **opt_tensors}
    folder = ckpt.save_checkpoint(tmp_path, step=3, tensors=tensors, meta={"optim": opt_meta})

    loaded_tensors, meta = ckpt.load_checkpoint(folder)
    clone = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 2))
    clone.load_state_dict(ckpt.unprefixed("model", loaded_tensors))
    clone_opt = torch.optim.AdamW(clone.parameters(), lr=0.5)
    clone_opt.load_state_dict(ckpt.unflatten_optimizer_state(loaded_tensors, meta["optim"]))
    assert clone_opt.param_groups[0]["betas"] == (0.9, 0.99)

    batch = torch.randn(5, 4)
    for net, opt in ((model, optimizer), (clone, clone_opt)):
        opt.zero_grad()
        net(batch).square().mean().backward()
        opt.step()
    for a, b in zip(model.parameters(), clone.parameters(), strict=True):
        assert torch.equal(a, b)


def test_rng_state_round_trip():
    tensors, meta = ckpt.capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    random.seed(123)
    np.random.seed(123)  # noqa: NPY002
    torch.manual_seed(123)
    ckpt.restore_rng_state(tensors, meta)
    got = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    assert got[0] == expected[0] and got[1] == expected[1]
    assert torch.equal(got[2], expected[2])


def test_latest_pointer_and_pruning(tmp_path):
    for step in (10, 20, 30):
        ckpt.save_checkpoint(tmp_path, step, {"x": torch.full((2,), float(step))}, {}, keep=2)
    folders = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*"))
    assert folders == ["step_00000020", "step_00000030"]
    latest = ckpt.latest_checkpoint(tmp_path)
    tensors, meta = ckpt.load_checkpoint(latest)
    assert meta["step"] == 30 and tensors["x"][0].item() == 30.0


def test_a_leftover_temporary_folder_is_ignored_and_replaced(tmp_path):
    leftover = tmp_path / "checkpoints" / ".tmp-step_00000040"
    leftover.mkdir(parents=True)
    (leftover / "state.safetensors").write_bytes(b"half written")
    assert ckpt.latest_checkpoint(tmp_path) is None
    ckpt.save_checkpoint(tmp_path, 40, {"x": torch.ones(1)}, {})
    assert not leftover.exists()
    assert ckpt.latest_checkpoint(tmp_path).name == "step_00000040"


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    folder = ckpt.save_checkpoint(tmp_path, 1, {"x": torch.ones(1)}, {})
    (folder / "state.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(ValueError, match="cannot read checkpoint .*step_00000001"):
        ckpt.load_checkpoint(folder)
