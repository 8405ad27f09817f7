"""Shared pytest fixtures: deterministic seeds and few threads so the suite is stable on 2 cores."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def finished_smoke_run(tmp_path_factory):
    """A finished 3-step `smoke` pretraining run (checkpoints after steps 2 and 3), shared by the
    tests that package, probe or inspect a run; tests only read it."""
    from raddino.ssl.config import load_config
    from raddino.ssl.train import pretrain

    run_dir = tmp_path_factory.mktemp("smoke_run") / "run"
    config = load_config("smoke", {"train.epochs": 1, "train.epoch_length": 3})
    pretrain(config, run_dir, progress=False)
    return run_dir
