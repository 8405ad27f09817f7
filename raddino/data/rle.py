"""Run-length encoded masks of SIIM-ACR Pneumothorax and CANDID-PTX, decoded to boolean arrays.

Both datasets use the SIIM challenge's *relative* RLE: space-separated pairs (gap, length) where
each gap counts pixels from the end of the previous run, over the image flattened column by column
(Fortran order: down the first column, then the next). "-1" (or a blank cell) means "no mask".
Hand-written: no maintained library decodes this variant (pycocotools' RLE is a different format).
"""

from __future__ import annotations

import numpy as np

EMPTY_RLE_MARKERS: tuple[str, ...] = ("", "-1")


def is_empty_rle(text: object) -> bool:
    """True for the "no mask" markers: NaN/None, blank, or "-1"."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return True
    return str(text).strip() in EMPTY_RLE_MARKERS


def decode_relative_rle(text: str, height: int, width: int) -> np.ndarray:
    """Decode one relative RLE string into a bool (height, width) mask; ValueError if malformed."""
    if height <= 0 or width <= 0:
        raise ValueError(f"mask size must be positive, got {height}x{width}")
    mask_flat_fortran = np.zeros(height * width, dtype=bool)
    if is_empty_rle(text):
        return mask_flat_fortran.reshape(width, height).T
    try:
        numbers = np.array([int(token) for token in str(text).split()], dtype=np.int64)
    except ValueError:
        raise ValueError(f"RLE has a non-integer token: {_preview(text)!r}") from None
    if numbers.size % 2:
        raise ValueError(f"RLE needs (gap, length) pairs, got {numbers.size} numbers")
    gaps, lengths = numbers[0::2], numbers[1::2]
    if (gaps < 0).any() or (lengths <= 0).any():
        raise ValueError("RLE gaps must be >= 0 and run lengths > 0")
    # Run i starts after all previous gaps and runs: start_i = sum(gaps[:i+1]) + sum(lengths[:i]).
    starts = np.cumsum(gaps) + np.concatenate(([0], np.cumsum(lengths)[:-1]))
    ends = starts + lengths
    if ends[-1] > height * width:
        raise ValueError(
            f"RLE runs past the end of a {height}x{width} image "
            f"(last run ends at pixel {int(ends[-1])} of {height * width}); wrong image size?"
        )
    # Mark run starts with +1 and ends with -1; a cumulative sum is then 1 exactly inside runs.
    edges = np.zeros(height * width + 1, dtype=np.int64)
    np.add.at(edges, starts, 1)
    np.add.at(edges, ends, -1)
    mask_flat_fortran = np.cumsum(edges[:-1]) > 0
    return mask_flat_fortran.reshape(width, height).T


def decode_relative_rle_union(texts: list[str], height: int, width: int) -> np.ndarray:
    """Union of several RLE strings of one image (SIIM/CANDID list one row per component)."""
    mask_hw = np.zeros((height, width), dtype=bool)
    for text in texts:
        mask_hw |= decode_relative_rle(text, height, width)
    return mask_hw


def encode_relative_rle(mask_hw: np.ndarray) -> str:
    """Encode a bool (H, W) mask as relative RLE ("-1" if empty); the inverse of the decoder."""
    flat = np.asarray(mask_hw, dtype=bool).T.reshape(-1)  # column-major order
    padded = np.concatenate(([False], flat, [False])).astype(np.int8)
    changes = np.flatnonzero(np.diff(padded))
    if changes.size == 0:
        return "-1"
    starts, ends = changes[0::2], changes[1::2]
    gaps = starts - np.concatenate(([0], ends[:-1]))
    pairs = np.stack([gaps, ends - starts], axis=1).reshape(-1)
    return " ".join(str(int(v)) for v in pairs)


def _preview(text: object, limit: int = 60) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "..."
