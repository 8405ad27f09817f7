"""Dice scores per image and structure, summarised as the paper's "mean (std)" over test images.

Convention (paper Table 6, after [5, 7]): every test image counts, including those without the
finding, so an empty prediction on an empty truth scores 1 and any prediction on an empty truth
scores 0. A structure that is not defined for an image (no mask file, e.g. lung zones on a lateral
view) is NaN and left out of that structure's mean, never scored as 0 or 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

# Paper Table 6 reports these groups as the mean Dice of their members (per image, then averaged).
STRUCTURE_GROUPS: dict[str, tuple[str, ...]] = {
    "lungs": ("left_lung", "right_lung"),
    "lung_zones": tuple(
        f"lung_zone_{side}_{zone}"
        for side in ("left", "right")
        for zone in ("upper", "middle", "lower")
    ),
}


def dice_per_image(
    pred_nshw: torch.Tensor | np.ndarray,
    truth_nshw: torch.Tensor | np.ndarray,
    defined_ns: torch.Tensor | np.ndarray | None = None,
    *,
    empty_score: float = 1.0,
) -> np.ndarray:
    """Dice (N, S) of bool masks (N, S, H, W): `empty_score` if both empty, NaN where undefined.

    Dice = 2 |P ∩ T| / (|P| + |T|), computed exactly in integer counts.
    """
    pred = torch.as_tensor(pred_nshw)
    truth = torch.as_tensor(truth_nshw)
    if pred.shape != truth.shape:
        raise ValueError(
            f"prediction shape {tuple(pred.shape)} differs from truth shape {tuple(truth.shape)}"
        )
    if pred.ndim != 4:
        raise ValueError(f"masks must be (N, S, H, W), got shape {tuple(pred.shape)}")
    for name, tensor in (("prediction", pred), ("truth", truth)):
        if tensor.dtype != torch.bool:
            raise ValueError(f"{name} masks must be bool, got {tensor.dtype}")
    intersection_ns = (pred & truth).sum(dim=(2, 3)).double()
    total_ns = pred.sum(dim=(2, 3)).double() + truth.sum(dim=(2, 3)).double()
    dice_ns = torch.where(
        total_ns > 0,
        2.0 * intersection_ns / total_ns.clamp_min(1.0),
        torch.full_like(total_ns, float(empty_score)),
    )
    if defined_ns is not None:
        defined = torch.as_tensor(defined_ns, dtype=torch.bool)
        if defined.shape != dice_ns.shape:
            raise ValueError(
                f"defined mask shape {tuple(defined.shape)} must be (N, S) = {tuple(dice_ns.shape)}"
            )
        dice_ns = torch.where(defined, dice_ns, torch.full_like(dice_ns, float("nan")))
    return dice_ns.numpy()


def mean_std(values: np.ndarray) -> dict[str, float | int]:
    """Mean and population std (ddof=0) of the finite values, with their count; NaN if none."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(finite.mean()), "std": float(finite.std()), "n": int(finite.size)}


def summarize_dice(
    dice_ns: np.ndarray,
    structures: Sequence[str],
    groups: Mapping[str, Sequence[str]] = STRUCTURE_GROUPS,
) -> dict[str, dict[str, float | int]]:
    """Per-structure and per-group {mean, std, n} over images; a group needs all its members.

    A group's per-image score is the mean of its members' Dice on that image (images missing any
    member are left out), then mean and std are taken over images, as the paper's "Lungs" column.
    """
    dice_ns = np.asarray(dice_ns, dtype=np.float64)
    if dice_ns.ndim != 2 or dice_ns.shape[1] != len(structures):
        raise ValueError(
            f"dice array shape {dice_ns.shape} does not match {len(structures)} structures"
        )
    return {
        name: mean_std(_per_image(dice_ns, columns))
        for name, columns in _columns(structures, groups).items()
    }


def _columns(
    structures: Sequence[str], groups: Mapping[str, Sequence[str]]
) -> dict[str, list[int]]:
    """Columns of each structure, then of each group whose members are all present."""
    structures = list(structures)
    columns = {name: [k] for k, name in enumerate(structures)}
    for group, members in groups.items():
        if set(members) <= set(structures):
            columns[group] = [structures.index(m) for m in members]
    return columns


def _per_image(dice_ns: np.ndarray, columns: Sequence[int]) -> np.ndarray:
    """(N,) Dice of one structure, or a group's member mean (NaN if any member is undefined)."""
    return dice_ns[:, columns].mean(axis=1)


def format_mean_std(stats: Mapping[str, float | int], scale: float = 100.0) -> str:
    """'95.9 (1.5)': the paper's way of printing a Dice summary (in percent by default)."""
    return f"{stats['mean'] * scale:.1f} ({stats['std'] * scale:.1f})"


def paired_difference(
    dice_a_ns: np.ndarray,
    dice_b_ns: np.ndarray,
    structures: Sequence[str],
    groups: Mapping[str, Sequence[str]] = STRUCTURE_GROUPS,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, dict[str, float | int]]:
    """Per structure and group: mean of A - B over the images both score, with a percentile
    bootstrap interval over images (scipy); the images are the same, so their differences pair.

    Groups are averaged per image first, as in `summarize_dice`. {mean, low, high, n}; NaN if no
    image scores the structure under both.
    """
    from scipy.stats import bootstrap

    dice_a_ns, dice_b_ns = (np.asarray(d, dtype=np.float64) for d in (dice_a_ns, dice_b_ns))
    if dice_a_ns.shape != dice_b_ns.shape or dice_a_ns.shape[1:] != (len(structures),):
        raise ValueError(
            f"dice arrays {dice_a_ns.shape} and {dice_b_ns.shape} must both be "
            f"(images, {len(structures)} structures)"
        )
    result = {}
    for name, columns in _columns(structures, groups).items():
        difference = _per_image(dice_a_ns, columns) - _per_image(dice_b_ns, columns)
        difference = difference[np.isfinite(difference)]
        if difference.size == 0:
            nan = float("nan")
            result[name] = {"mean": nan, "low": nan, "high": nan, "n": 0}
            continue
        if difference.size == 1 or np.all(difference == difference[0]):
            low = high = float(difference[0])  # no spread: every resample has the same mean
        else:
            interval = bootstrap(
                (difference,),
                np.mean,
                n_resamples=n_resamples,
                confidence_level=confidence,
                method="percentile",
                rng=np.random.default_rng(seed),
            ).confidence_interval
            low, high = float(interval.low), float(interval.high)
        result[name] = {
            "mean": float(difference.mean()),
            "low": low,
            "high": high,
            "n": int(difference.size),
        }
    return result
