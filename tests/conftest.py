"""Shared pytest fixtures: deterministic seeds and few threads so the suite is stable on 2 cores."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield
