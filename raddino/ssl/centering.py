"""Teacher targets for DINO and iBOT: EMA-centred softmax or Sinkhorn-Knopp, reduced across ranks.

Both losses turn teacher logits into target distributions the same way, so the logic lives here
once. Two modes, named as in the official config key `train.centering`:

* ``"centering"``: softmax((logits - centre) / T). The centre is an EMA (momentum 0.9) of the
  batch mean of the teacher logits, updated with the OFFICIAL DEFERRED rule: the mean of step t is
  all-reduced and stored as *pending*; it is folded into the centre only at the start of step t+1,
  so a step's targets use the centre of previous batches only.
* ``"sinkhorn_knopp"``: 3 iterations of Sinkhorn-Knopp normalisation with global sums (the
  prototype sums and the sample count are all-reduced), as in SwAV / DINOv2. No centre is used.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from raddino.ssl.distributed import all_reduce_max, all_reduce_sum

CenteringMode = Literal["centering", "sinkhorn_knopp"]
CENTERING_MODES: tuple[str, ...] = ("centering", "sinkhorn_knopp")


@torch.no_grad()
def sinkhorn_knopp(
    teacher_logits_nk: torch.Tensor, teacher_temp: float, n_iterations: int = 3
) -> torch.Tensor:
    """Sinkhorn-Knopp assignment of N samples (over all ranks) to K prototypes; rows sum to 1.

    Same iterations as official `sinkhorn_knopp_teacher`: from exp(logits / T), alternately give
    every prototype total mass 1/K and every sample mass 1/N_total, then rescale samples to
    probability vectors; prototype sums and N_total are all-reduced. For float32 safety we divide
    each prototype's row by its (global) max before the first step instead of dividing the whole
    matrix by its sum: the first prototype normalisation absorbs any per-prototype factor, so the
    result is mathematically identical, but exp cannot overflow (official's does beyond logits of
    ~88 T) and no prototype row can underflow to 0/0. A sample whose every entry underflows gets a
    zero target instead of official's NaN.
    """
    if teacher_logits_nk.ndim != 2:
        raise ValueError(
            f"teacher logits must be (N, K), got shape {tuple(teacher_logits_nk.shape)}"
        )
    logits_nk = teacher_logits_nk.float()
    n_local, n_prototypes = logits_nk.shape
    # no .item() here or below: no host-device sync; with no rows anywhere all tensors are empty
    n_total = all_reduce_sum(torch.tensor(float(n_local), device=logits_nk.device))
    if n_local:
        prototype_max_k = logits_nk.max(dim=0).values
    else:
        prototype_max_k = logits_nk.new_full((n_prototypes,), float("-inf"))
    all_reduce_max(prototype_max_k)

    # In-place chain: one (N, K) copy, since K = 65536 prototypes x N patches can be gigabytes.
    q_kn = logits_nk.sub(prototype_max_k).div_(teacher_temp).exp_().t()  # (K, N): SwAV notation
    tiny = torch.finfo(q_kn.dtype).tiny
    for _ in range(n_iterations):
        q_kn /= all_reduce_sum(q_kn.sum(dim=1, keepdim=True))  # each prototype: mass 1/K ...
        q_kn /= n_prototypes
        q_kn /= q_kn.sum(dim=0, keepdim=True).clamp_(min=tiny)  # ... each sample: mass 1/N_total
        q_kn /= n_total
    q_kn *= n_total  # samples become probability vectors
    return q_kn.t()


class TeacherCentering(nn.Module):
    """Teacher logits (N, K) -> targets (N, K); owns the EMA centre and its pending update.

    The state dict holds the centre (1, K) plus the pending batch mean, so a resumed run continues
    exactly; official checkpoints (centre only, iBOT's shaped (1, 1, K)) load too.
    """

    def __init__(
        self,
        n_prototypes: int,
        mode: CenteringMode = "centering",
        momentum: float = 0.9,
        sinkhorn_iterations: int = 3,
    ) -> None:
        super().__init__()
        if mode not in CENTERING_MODES:
            raise ValueError(f"centering mode must be one of {CENTERING_MODES}, got {mode!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"centre momentum must be in [0, 1], got {momentum}")
        if n_prototypes < 1 or sinkhorn_iterations < 1:
            raise ValueError("n_prototypes and sinkhorn_iterations must be >= 1")
        self.mode = mode
        self.n_prototypes = n_prototypes
        self.momentum = momentum
        self.sinkhorn_iterations = sinkhorn_iterations
        self.register_buffer("center", torch.zeros(1, n_prototypes))
        self.register_buffer("pending_batch_center", torch.zeros(1, n_prototypes))
        self.register_buffer("has_pending_update", torch.zeros((), dtype=torch.bool))
        self.register_load_state_dict_pre_hook(_accept_official_center)

    @torch.no_grad()
    def forward(self, teacher_logits_nk: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        """Targets for this step; in centering mode also queues this batch's mean for next step."""
        if teacher_logits_nk.ndim != 2 or teacher_logits_nk.shape[1] != self.n_prototypes:
            raise ValueError(
                f"teacher logits must be (N, {self.n_prototypes}), "
                f"got {tuple(teacher_logits_nk.shape)}"
            )
        if teacher_temp <= 0:
            raise ValueError(f"teacher temperature must be > 0, got {teacher_temp}")
        if self.mode == "sinkhorn_knopp":
            return sinkhorn_knopp(teacher_logits_nk, teacher_temp, self.sinkhorn_iterations)
        self.apply_pending_update()
        targets_nk = F.softmax((teacher_logits_nk.float() - self.center) / teacher_temp, dim=-1)
        self.queue_update(teacher_logits_nk)
        return targets_nk

    @torch.no_grad()
    def queue_update(self, teacher_logits_nk: torch.Tensor) -> None:
        """Store the global (all-ranks) batch mean of the logits; applied at the next call.

        Official DINO divides the all-reduced sum by local_len * world_size, iBOT averages the
        per-rank means; we divide the all-reduced sum by the all-reduced count (the exact global
        mean), which equals both whenever ranks hold equal numbers of rows (always on 1 rank).
        One all-reduce carries [sum over rows, row count]. A batch with no rows on any rank
        queues nothing (official would produce NaN). No host-device sync (no `.item()`).
        """
        logits_nk = teacher_logits_nk.float()
        sum_and_count = torch.cat(
            [logits_nk.sum(dim=0), logits_nk.new_tensor([float(logits_nk.shape[0])])]
        )
        all_reduce_sum(sum_and_count)
        count = sum_and_count[-1]
        self.pending_batch_center.copy_((sum_and_count[:-1] / count.clamp(min=1)).unsqueeze(0))
        self.has_pending_update.copy_(count > 0)

    @torch.no_grad()
    def apply_pending_update(self) -> None:
        """Fold the queued batch mean into the EMA centre (no-op when nothing is queued)."""
        updated = self.center * self.momentum + self.pending_batch_center * (1 - self.momentum)
        self.center.copy_(torch.where(self.has_pending_update, updated, self.center))
        self.has_pending_update.fill_(False)


def _accept_official_center(
    module: TeacherCentering, state_dict: dict, prefix: str, *args: object
) -> None:
    """Load official `center` buffers ((1, K) DINO, (1, 1, K) iBOT) that lack our pending state."""
    key = prefix + "center"
    if key in state_dict and state_dict[key].numel() == module.n_prototypes:
        state_dict[key] = state_dict[key].reshape(1, module.n_prototypes)
    if key in state_dict and prefix + "pending_batch_center" not in state_dict:
        state_dict[prefix + "pending_batch_center"] = torch.zeros_like(module.pending_batch_center)
        state_dict[prefix + "has_pending_update"] = torch.zeros_like(module.has_pending_update)
