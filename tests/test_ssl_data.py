"""Pretraining image sources: a prerendered set holds exactly what its source renders."""

from __future__ import annotations

import numpy as np

from raddino.data.deadleaves import DeadLeavesSource
from raddino.ssl.data import PhantomSource, PrerenderedSource


def test_prerendered_images_equal_on_demand_rendering():
    for source in (PhantomSource(3, 64, ["PA", "LATERAL"]), DeadLeavesSource(3, 48)):
        bank = PrerenderedSource(source, 9, workers=2)
        for index in range(9):
            assert np.array_equal(bank.image(index), source.image(index)), (source, index)
        assert np.array_equal(bank.image(9 + 4), source.image(4))  # a finite set cycles
