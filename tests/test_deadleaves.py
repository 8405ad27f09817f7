"""Dead-leaves images: deterministic, in range, and covered by shapes (not an empty canvas)."""

from __future__ import annotations

import numpy as np
import pytest

from raddino.data.deadleaves import DeadLeavesSource, render_dead_leaves


def test_deterministic_and_distinct():
    a = render_dead_leaves(3, seed=7, size=64)
    assert np.array_equal(a, render_dead_leaves(3, seed=7, size=64))
    assert not np.array_equal(a, render_dead_leaves(4, seed=7, size=64))
    assert not np.array_equal(a, render_dead_leaves(3, seed=8, size=64))


def test_values_and_structure():
    images = np.stack([render_dead_leaves(i, seed=0, size=96) for i in range(8)])
    assert images.dtype == np.float32 and images.min() >= 0.0 and images.max() <= 1.0
    # occluding shapes of many grey levels: each image has many distinct values and no flat majority
    for image in images:
        _, counts = np.unique(image, return_counts=True)
        assert counts.max() / image.size < 0.5
        assert len(counts) > 50


def test_source_and_bad_size():
    source = DeadLeavesSource(seed=1, size=32)
    assert source.image(0).shape == (32, 32)
    with pytest.raises(ValueError, match="size must be >= 8"):
        render_dead_leaves(0, seed=0, size=4)
