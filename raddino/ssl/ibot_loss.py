"""iBOT masked-patch loss: the student predicts the teacher's targets for patches it did not see.

Only masked patches of the global crops enter (flattened to M rows, as official `forward_masked`).
Each masked patch of image i is weighted 1 / (number of masked patches in image i), the weighted
cross-entropies are summed and divided by the number of global-crop images on this rank (masked
or not), so every masked image contributes its mean patch loss and unmasked images count as 0:

    loss = -(1 / n_images) * sum_m w_m * sum_k target[m, k] * log_softmax(student[m] / 0.1)[k]

Official then multiplies by `loss_scales * ibot_loss_scale` = 2 * (1 / n_global_crops) = 1 for the
two global crops it supports, so that factor is omitted here. Targets come from the shared
centring module with iBOT's own centre (centering mode) or Sinkhorn-Knopp over all masked patches
of all ranks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from raddino.ssl.centering import CenteringMode, TeacherCentering


def masked_patch_loss(
    student_masked_logits_mk: torch.Tensor,
    teacher_probs_mk: torch.Tensor,
    masks_weight_m: torch.Tensor,
    n_images: int,
    student_temp: float = 0.1,
) -> torch.Tensor:
    """Weighted cross-entropy over the M masked patches of this rank, divided by `n_images`."""
    if (
        student_masked_logits_mk.shape != teacher_probs_mk.shape
        or student_masked_logits_mk.ndim != 2
    ):
        raise ValueError(
            f"student logits {tuple(student_masked_logits_mk.shape)} and teacher targets "
            f"{tuple(teacher_probs_mk.shape)} must both be (n_masked, K)"
        )
    if masks_weight_m.shape != student_masked_logits_mk.shape[:1]:
        raise ValueError(
            f"masks_weight {tuple(masks_weight_m.shape)} must have one entry per masked patch "
            f"({student_masked_logits_mk.shape[0]})"
        )
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    student_log_probs_mk = F.log_softmax(student_masked_logits_mk.float() / student_temp, dim=-1)
    cross_entropy_m = -(teacher_probs_mk * student_log_probs_mk).sum(dim=-1)
    return (cross_entropy_m * masks_weight_m).sum() / n_images


class IbotPatchLoss(nn.Module):
    """iBOT loss module: owns its own teacher centring state (separate from DINO's)."""

    def __init__(
        self,
        n_prototypes: int = 65536,
        student_temp: float = 0.1,
        centering: CenteringMode = "centering",
        center_momentum: float = 0.9,
        sinkhorn_iterations: int = 3,
    ) -> None:
        super().__init__()
        self.student_temp = student_temp
        self.centering = TeacherCentering(
            n_prototypes, centering, center_momentum, sinkhorn_iterations
        )

    @torch.no_grad()
    def teacher_targets(
        self, teacher_masked_logits_mk: torch.Tensor, teacher_temp: float
    ) -> torch.Tensor:
        """Targets (M, K) for the masked patches; call once per step (queues the centre update)."""
        return self.centering(teacher_masked_logits_mk, teacher_temp)

    def forward(
        self,
        student_masked_logits_mk: torch.Tensor,
        teacher_probs_mk: torch.Tensor,
        masks_weight_m: torch.Tensor,
        n_images: int,
    ) -> torch.Tensor:
        """Masked-patch loss for this rank (see module docstring)."""
        return masked_patch_loss(
            student_masked_logits_mk, teacher_probs_mk, masks_weight_m, n_images, self.student_temp
        )
