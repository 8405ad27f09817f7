"""Patient-metadata bins of the paper (App. C.3): age, weight and BMI each cut into five classes.

Intervals are left-closed, right-open (`20 <= age < 40` is "20-40"); the first and last bins are
open ended. Missing values (NaN) map to code -1 so they are never silently counted in a class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# name -> (inner edges, class labels); len(labels) == len(edges) + 1.
METADATA_BINS: dict[str, tuple[tuple[float, ...], tuple[str, ...]]] = {
    "age": ((20.0, 40.0, 60.0, 80.0), ("<20", "20-40", "40-60", "60-80", ">80")),
    "weight_kg": ((50.0, 65.0, 80.0, 95.0), ("<50", "50-65", "65-80", "80-95", ">95")),
    "bmi": ((18.5, 25.0, 30.0, 35.0), ("<18.5", "18.5-25", "25-30", "30-35", ">35")),
}

SEX_CLASSES: tuple[str, ...] = ("F", "M")


def bin_labels(name: str) -> tuple[str, ...]:
    """The class labels of metadata variable `name` (e.g. "age"), in code order."""
    return _lookup(name)[1]


def bin_metadata(name: str, values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Bin `values` of metadata variable `name` into class codes 0..4 (int64; NaN -> -1)."""
    edges, _ = _lookup(name)
    values_n = np.asarray(values, dtype=np.float64)
    codes_n = np.digitize(values_n, np.asarray(edges), right=False).astype(np.int64)
    codes_n[np.isnan(values_n)] = -1
    return codes_n


def encode_sex(values: Sequence[str]) -> np.ndarray:
    """Map "F"/"M" (case-insensitive) to 0/1; anything else (blank, NaN) to -1."""
    lookup = {"F": 0, "M": 1}
    return np.array(
        [lookup.get(str(v).strip().upper(), -1) for v in values],
        dtype=np.int64,
    )


def _lookup(name: str) -> tuple[tuple[float, ...], tuple[str, ...]]:
    if name not in METADATA_BINS:
        raise ValueError(f"unknown metadata variable {name!r}; known: {sorted(METADATA_BINS)}")
    return METADATA_BINS[name]
