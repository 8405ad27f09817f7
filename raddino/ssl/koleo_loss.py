"""KoLeo regulariser (Sablayrolles et al. 2018): push each class token from its nearest neighbour.

For L2-normalised features x_1..x_B of ONE crop on this rank:
    loss = -mean_i log(||x_i - x_nn(i)|| + eps),  nn(i) = argmax_{j != i} <x_i, x_j>
Official DINOv2 applies it to the student backbone class tokens of each global crop separately
(never between the two crops of the same image) and sums over the crops; the caller multiplies by
`koleo_loss_weight` (0.1). It is not reduced across ranks (official neither).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def koleo_loss(features_bd: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """KoLeo loss of one set of B >= 2 feature vectors (B, D), computed in float32.

    The distance is `F.pairwise_distance(..., eps=eps)`, i.e. ||x - y + eps||, as official's
    `nn.PairwiseDistance(2, eps=1e-8)`. The diagonal is excluded with -inf (official uses -1,
    which can pick a sample as its own neighbour if all others are exactly antipodal).
    """
    if features_bd.ndim != 2 or features_bd.shape[0] < 2:
        raise ValueError(f"KoLeo needs features shaped (B >= 2, D), got {tuple(features_bd.shape)}")
    # Autocast off (as official): in bf16/fp16 the neighbour search and log-distances lose the
    # small differences KoLeo is about.
    with torch.autocast(features_bd.device.type, enabled=False):
        normed_bd = F.normalize(features_bd.float(), p=2, dim=-1, eps=eps)
        with torch.no_grad():
            dots_bb = normed_bd @ normed_bd.t()
            dots_bb.fill_diagonal_(float("-inf"))
            nearest_b = dots_bb.argmax(dim=1)
        distances_b = F.pairwise_distance(normed_bd, normed_bd[nearest_b], p=2, eps=eps)
        return -torch.log(distances_b + eps).mean()


def koleo_loss_per_crop(cls_tokens_gbd: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Sum over global crops g of `koleo_loss(cls_tokens_gbd[g])` (official per-crop KoLeo)."""
    if cls_tokens_gbd.ndim != 3:
        raise ValueError(
            f"class tokens must be (n_global, batch, dim), got {tuple(cls_tokens_gbd.shape)}"
        )
    return sum(koleo_loss(crop_bd, eps) for crop_bd in cls_tokens_gbd)
