"""Tiny bitmap glyphs for the burned-in lead side marker (our own 5x7 font, two letters)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

_GLYPHS = {
    "L": (
        "X....",
        "X....",
        "X....",
        "X....",
        "X....",
        "X....",
        "XXXXX",
    ),
    "R": (
        "XXXX.",
        "X...X",
        "X...X",
        "XXXX.",
        "X.X..",
        "X..X.",
        "X...X",
    ),
}


@lru_cache(maxsize=32)
def glyph(letter: str, height_px: int) -> np.ndarray:
    """Bitmap of `letter` scaled (nearest) to `height_px` rows, bool (height_px, ~5/7 width).

    Cached (read-only): every image of a size burns in the same two letters.
    """
    if letter not in _GLYPHS:
        raise ValueError(f"no glyph for marker letter {letter!r}; have {sorted(_GLYPHS)}")
    bitmap = np.array([[c == "X" for c in row] for row in _GLYPHS[letter]], dtype=bool)
    height_px = max(int(height_px), 7)
    width_px = max(int(round(height_px * 5 / 7)), 5)
    rows = (np.arange(height_px) * 7) // height_px
    cols = (np.arange(width_px) * 5) // width_px
    scaled = bitmap[rows][:, cols]
    scaled.setflags(write=False)
    return scaled
