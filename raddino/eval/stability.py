"""How far a frozen class token moves when the image barely does.

A class token worth probing changes little when the whole image moves by one pixel, and a lot
between two patients. We measure both on the same scale: class tokens are standardised per
dimension over the unshifted images (as the linear probes standardise them), and the score is
the mean cosine between an image's token and its shifted copy's. 1 means unmoved; the cosine
between two different images is about 0, so a score near 0 says that a one-pixel shift changes
the token as much as changing the patient (a token that hashes its input rather than reading it).

Written here because no library measures it: shifts use edge replication, not wrap-around, so
no content jumps across the image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_SHIFTS = (1, 2, 4, 8, 16)  # 16: one whole patch of a /16 ViT, which re-aligns the grid


def shifted_right(image_hw: np.ndarray, pixels: int) -> np.ndarray:
    """The image moved `pixels` to the right; the left edge column fills the gap."""
    if pixels < 1 or pixels >= image_hw.shape[1]:
        raise ValueError(f"shift must be in [1, width), got {pixels} for width {image_hw.shape[1]}")
    out = np.empty_like(image_hw)
    out[:, pixels:] = image_hw[:, :-pixels]
    out[:, :pixels] = image_hw[:, :1]
    return out


def standardised_cosines(
    tokens_nc: np.ndarray, moved_nc: np.ndarray, reference_nc: np.ndarray
) -> np.ndarray:
    """(N,) cosine of row i of `tokens_nc` and of `moved_nc`, after standardising both with the
    per-dimension mean and std of `reference_nc`."""
    mean = reference_nc.mean(0)
    std = reference_nc.std(0) + 1e-6

    def unit(x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, dtype=np.float64) - mean) / std
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)

    return (unit(tokens_nc) * unit(moved_nc)).sum(1)


def shift_stability(
    encoder: Any,
    images_hw: Sequence[np.ndarray],
    shifts: Sequence[int] = DEFAULT_SHIFTS,
    size: int | None = None,
    batch_size: int = 32,
) -> dict[str, float]:
    """{"shift_<k>px": mean standardised cosine of each image and its k-px shift, ...,
    "other_image": the same between image i and image i+1} for an `Encoder`'s class token."""
    if len(images_hw) < 3:
        raise ValueError(f"shift stability needs at least 3 images, got {len(images_hw)}")

    def class_tokens(images: Sequence[np.ndarray]) -> np.ndarray:
        chunks = []
        for start in range(0, len(images), batch_size):
            batch = encoder.prepare(images[start : start + batch_size], size)
            chunks.append(encoder.features(batch)["cls"].float().cpu().numpy())
        return np.concatenate(chunks)

    base_nc = class_tokens(images_hw)
    out = {
        f"shift_{k}px": float(
            standardised_cosines(
                base_nc, class_tokens([shifted_right(i, k) for i in images_hw]), base_nc
            ).mean()
        )
        for k in shifts
    }
    out["other_image"] = float(
        standardised_cosines(base_nc, np.roll(base_nc, 1, axis=0), base_nc).mean()
    )
    return out


def shift_stability_table(
    encoders: Mapping[str, str],
    folder: Any,
    *,
    n: int = 128,
    size: int | None = None,
    shifts: Sequence[int] = DEFAULT_SHIFTS,
    device: str = "cpu",
    seed: int = 0,
) -> pd.DataFrame:
    """One `shift_stability` row per encoder (display name -> spec) on the first `n` images of a
    dataset folder, at ViT input side `size` (None: each encoder's own; the pixel baseline always
    keeps its own grid)."""
    from raddino.models.encoders import get_encoder

    images = [folder.read_image(i) for i in range(min(n, len(folder)))]
    rows = {
        name: shift_stability(
            get_encoder(spec, device, seed=seed),
            images,
            shifts,
            None if spec.startswith("pixels") else size,
        )
        for name, spec in encoders.items()
    }
    return pd.DataFrame.from_dict(rows, orient="index")
