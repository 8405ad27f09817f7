"""DINO class-token loss: student crops distil the teacher's centred, sharpened global-crop targets.

Loss = sum over (student crop s, teacher crop t) pairs of mean_b CE(target_t[b], softmax(s[b]/0.1)),
divided by the number of pairs, where the pairs are
* global-global, CROSS-PAIRED: student global crop i against teacher global crop j != i
  (official: the teacher tokens are "chunked and cat'd in reverse so A is matched to B");
* local-global: every student local crop against every teacher global crop.
Official normalisation: n_terms = G * (G - 1) + max(L * G, 1). The `max(., 1)` is an official
quirk: with no local crops (L = 0) the sum is divided by G * (G - 1) + 1, not G * (G - 1); we
keep it so losses match the official numbers.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from raddino.ssl.centering import CenteringMode, TeacherCentering


class DinoLossOutput(NamedTuple):
    """The DINO loss and its parts (official `dino_global_crops_loss`, `dino_local_crops_loss`)."""

    total: torch.Tensor
    global_crops: torch.Tensor
    local_crops: torch.Tensor


def mean_cross_entropy_matrix(
    teacher_probs_tbk: torch.Tensor, student_log_probs_sbk: torch.Tensor
) -> torch.Tensor:
    """(T, S) matrix: [t, s] = mean over b of -sum_k teacher[t, b, k] * log_student[s, b, k]."""
    batch = teacher_probs_tbk.shape[1]
    return -torch.einsum("tbk,sbk->ts", teacher_probs_tbk, student_log_probs_sbk) / batch


def cross_paired_dino_loss(
    student_global_logits_gbk: torch.Tensor,
    teacher_probs_gbk: torch.Tensor,
    student_local_logits_lbk: torch.Tensor | None = None,
    student_temp: float = 0.1,
) -> DinoLossOutput:
    """DINO loss from student logits and teacher targets, crops stacked on dim 0 (crop, batch, K).

    Global crop pairs with the same index (same view for student and teacher) are excluded.
    """
    n_global, batch, n_prototypes = teacher_probs_gbk.shape
    if n_global < 2:
        raise ValueError(f"DINO needs >= 2 global crops for cross-pairing, got {n_global}")
    if student_global_logits_gbk.shape != teacher_probs_gbk.shape:
        raise ValueError(
            f"student global logits {tuple(student_global_logits_gbk.shape)} and teacher targets "
            f"{tuple(teacher_probs_gbk.shape)} must both be (n_global, batch, K)"
        )
    n_local = 0 if student_local_logits_lbk is None else student_local_logits_lbk.shape[0]
    if n_local and student_local_logits_lbk.shape[1:] != (batch, n_prototypes):
        raise ValueError(
            f"student local logits {tuple(student_local_logits_lbk.shape)} must be "
            f"(n_local, {batch}, {n_prototypes})"
        )
    n_terms = n_global * (n_global - 1) + max(n_local * n_global, 1)

    student_global_log_probs = F.log_softmax(student_global_logits_gbk.float() / student_temp, -1)
    global_ce_ts = mean_cross_entropy_matrix(teacher_probs_gbk, student_global_log_probs)
    same_crop = torch.eye(n_global, dtype=torch.bool, device=global_ce_ts.device)
    global_loss = global_ce_ts.masked_fill(same_crop, 0.0).sum() / n_terms

    if n_local:
        student_local_log_probs = F.log_softmax(student_local_logits_lbk.float() / student_temp, -1)
        local_loss = (
            mean_cross_entropy_matrix(teacher_probs_gbk, student_local_log_probs).sum() / n_terms
        )
    else:
        local_loss = global_loss.new_zeros(())
    return DinoLossOutput(global_loss + local_loss, global_loss, local_loss)


class DinoClsTokenLoss(nn.Module):
    """DINO loss module: owns the teacher centring state (EMA centre or Sinkhorn-Knopp)."""

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
        self, teacher_logits_gbk: torch.Tensor, teacher_temp: float
    ) -> torch.Tensor:
        """Target distributions (n_global, batch, K) from teacher head logits of the global crops.

        Call once per step: in centering mode it uses the centre of previous steps and queues
        this batch's (all-reduced) mean for the next call.
        """
        if teacher_logits_gbk.ndim != 3:
            raise ValueError(
                "teacher logits must be (n_global, batch, K), "
                f"got {tuple(teacher_logits_gbk.shape)}"
            )
        probs_nk = self.centering(teacher_logits_gbk.flatten(0, 1), teacher_temp)
        return probs_nk.view(teacher_logits_gbk.shape)

    def forward(
        self,
        student_global_logits_gbk: torch.Tensor,
        teacher_probs_gbk: torch.Tensor,
        student_local_logits_lbk: torch.Tensor | None = None,
    ) -> DinoLossOutput:
        """Cross-paired DINO loss (see module docstring) for this rank's batch."""
        return cross_paired_dino_loss(
            student_global_logits_gbk,
            teacher_probs_gbk,
            student_local_logits_lbk,
            self.student_temp,
        )
