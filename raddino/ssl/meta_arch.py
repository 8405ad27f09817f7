"""DINOv2 student/teacher meta-architecture: forward passes and losses, no backward.

The student (backbone + DINO head [+ iBOT head]) sees global crops (half of them block-masked) and
local crops; the teacher, an EMA of the student, sees the unmasked global crops. The losses:
DINO on class tokens (cross-paired global crops + local crops), iBOT on the masked patch tokens,
KoLeo on the student's backbone class tokens. Backward, clipping and the optimiser step live in
the training loop (`raddino.ssl.train`), which reads top to bottom.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, fields, replace

import torch
from torch import nn

from raddino.ssl.dino_loss import DinoClsTokenLoss
from raddino.ssl.distributed import world_size
from raddino.ssl.heads import DinoHead
from raddino.ssl.ibot_loss import IbotPatchLoss
from raddino.ssl.koleo_loss import koleo_loss_per_crop
from raddino.ssl.masking import IbotMasks


@dataclass
class SslBatch:
    """One rank's batch: crops stacked crop-major, so crop g of image b is row g * B + b."""

    global_crops: torch.Tensor  # (G * B, C, H, W)
    local_crops: torch.Tensor | None  # (L * B, C, h, w) or None when there are no local crops
    masks: IbotMasks | None  # block masks of the global crops (G * B, N) for iBOT
    n_global: int
    n_local: int

    @property
    def batch_size(self) -> int:
        return self.global_crops.shape[0] // self.n_global

    def pin_memory(self) -> SslBatch:
        """Page-locked tensors for asynchronous copies to the GPU (a DataLoader calls this)."""
        pinned = {
            f.name: getattr(self, f.name).pin_memory()
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        if self.masks is not None:
            pinned["masks"] = replace(
                self.masks,
                **{
                    f.name: getattr(self.masks, f.name).pin_memory()
                    for f in fields(self.masks)
                    if isinstance(getattr(self.masks, f.name), torch.Tensor)
                },
            )
        return replace(self, **pinned)


def _make_head(in_dim: int, cfg: dict) -> DinoHead:
    return DinoHead(
        in_dim,
        n_prototypes=cfg["head_n_prototypes"],
        n_layers=cfg["head_nlayers"],
        hidden_dim=cfg["head_hidden_dim"],
        bottleneck_dim=cfg["head_bottleneck_dim"],
    )


class DinoV2MetaArch(nn.Module):
    """Student and EMA teacher with DINO/iBOT heads; `forward` returns a dict of losses."""

    def __init__(self, backbone: nn.Module, config: dict) -> None:
        super().__init__()
        dino_cfg, ibot_cfg = config["dino"], config["ibot"]
        self.use_ibot = bool(ibot_cfg["enabled"]) and ibot_cfg["loss_weight"] > 0
        self.separate_ibot_head = self.use_ibot and bool(ibot_cfg["separate_head"])
        self.dino_weight = float(dino_cfg["loss_weight"])
        self.koleo_weight = float(dino_cfg["koleo_loss_weight"])
        self.ibot_weight = float(ibot_cfg["loss_weight"])
        centering = config["train"]["centering"]

        embed_dim = backbone.embed_dim
        student = {"backbone": backbone, "dino_head": _make_head(embed_dim, dino_cfg)}
        if self.separate_ibot_head:
            student["ibot_head"] = _make_head(embed_dim, ibot_cfg)
        self.student = nn.ModuleDict(student)
        self.teacher = copy.deepcopy(self.student)
        for param in self.teacher.parameters():
            param.requires_grad_(False)
        for module in self.teacher.modules():  # the teacher never drops paths
            if hasattr(module, "drop_prob"):
                module.drop_prob = 0.0

        self.dino_loss = DinoClsTokenLoss(dino_cfg["head_n_prototypes"], centering=centering)
        ibot_prototypes = (ibot_cfg if self.separate_ibot_head else dino_cfg)["head_n_prototypes"]
        self.ibot_loss = (
            IbotPatchLoss(ibot_prototypes, centering=centering) if self.use_ibot else None
        )

    def _ibot_head(self, branch: nn.ModuleDict) -> DinoHead:
        return branch["ibot_head"] if self.separate_ibot_head else branch["dino_head"]

    @torch.no_grad()
    def teacher_targets(self, batch: SslBatch, teacher_temp: float) -> dict[str, torch.Tensor]:
        """Teacher DINO targets (G, B, K) and iBOT targets (M, K) for this step."""
        self.teacher.eval()
        out = self.teacher["backbone"].forward_features(batch.global_crops)
        cls_gbc = out["cls"].view(batch.n_global, batch.batch_size, -1)
        dino_logits_gbk = self.teacher["dino_head"](cls_gbc)
        targets = {"dino": self.dino_loss.teacher_targets(dino_logits_gbk, teacher_temp)}
        if self.use_ibot and batch.masks is not None:
            patches_nc = out["patch"].flatten(0, 2)  # (G * B * N, C)
            masked_nc = patches_nc[batch.masks.mask_indices_m]
            ibot_logits_mk = self._ibot_head(self.teacher)(masked_nc)
            targets["ibot"] = self.ibot_loss.teacher_targets(ibot_logits_mk, teacher_temp)
        return targets

    def forward(self, batch: SslBatch, teacher_temp: float) -> dict[str, torch.Tensor]:
        """Losses of one step: `total` plus each term and a few diagnostics (detached)."""
        targets = self.teacher_targets(batch, teacher_temp)
        # Without MIM (`--no-mim`, or iBOT weight 0) the student sees UNMASKED global crops.
        # Official DINOv2 masks them whenever masks were drawn, even at iBOT weight 0; our
        # ablation removes masked modelling entirely.
        masks_bn = batch.masks.masks_bn if (self.use_ibot and batch.masks is not None) else None

        backbone = self.student["backbone"]
        global_out = backbone.forward_features(batch.global_crops, masks_bn=masks_bn)
        cls_gbc = global_out["cls"].view(batch.n_global, batch.batch_size, -1)
        global_logits_gbk = self.student["dino_head"](cls_gbc)
        local_logits_lbk = None
        if batch.n_local:
            local_cls = backbone.forward_features(batch.local_crops)["cls"]
            local_cls_lbc = local_cls.view(batch.n_local, batch.batch_size, -1)
            local_logits_lbk = self.student["dino_head"](local_cls_lbc)

        dino = self.dino_loss(global_logits_gbk, targets["dino"], local_logits_lbk)
        losses = {
            "dino_global": dino.global_crops,
            "dino_local": dino.local_crops,
            "koleo": koleo_loss_per_crop(gather_batch(cls_gbc)),
        }
        total = self.dino_weight * dino.total + self.koleo_weight * losses["koleo"]
        if "ibot" in targets:
            patches_nc = global_out["patch"].flatten(0, 2)
            masked_nc = patches_nc[batch.masks.mask_indices_m]
            student_ibot_mk = self._ibot_head(self.student)(masked_nc)
            losses["ibot"] = self.ibot_loss(
                student_ibot_mk,
                targets["ibot"],
                batch.masks.masks_weight_m,
                n_images=batch.global_crops.shape[0],
            )
            total = total + self.ibot_weight * losses["ibot"]
        losses["total"] = total
        losses.update(collapse_diagnostics(targets["dino"], cls_gbc))
        return losses

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """teacher <- momentum * teacher + (1 - momentum) * student, parameter by parameter."""
        student_params = list(self.student.parameters())
        teacher_params = list(self.teacher.parameters())
        torch._foreach_mul_(teacher_params, momentum)
        torch._foreach_add_(teacher_params, student_params, alpha=1.0 - momentum)


def gather_batch(tokens_gbc: torch.Tensor) -> torch.Tensor:
    """(G, B, C) of this rank -> (G, world * B, C) of all ranks, differentiably.

    KoLeo's nearest neighbours are taken over the GLOBAL batch (official DINOv2 takes them within
    each rank's batch), so the objective does not depend on how the batch is split over ranks.
    The backward of all_gather sums every rank's gradient into each rank's slice; after the
    loop's gradient averaging that is exactly the gradient of the global KoLeo term.
    """
    if world_size() == 1:
        return tokens_gbc
    import torch.distributed as dist
    from torch.distributed._functional_collectives import all_gather_single_autograd

    # gathers along dim 0 only: (B, G, C) per rank -> (world * B, G, C), rank-major like 1 process
    gathered_bgc = all_gather_single_autograd(
        tokens_gbc.transpose(0, 1).contiguous(), 0, dist.group.WORLD
    )
    return gathered_bgc.transpose(0, 1)


@torch.no_grad()
def collapse_diagnostics(teacher_probs_gbk: torch.Tensor, student_cls_gbc: torch.Tensor) -> dict:
    """Signals of the two DINO collapse modes, as fractions of their bounds.

    `teacher_entropy`: mean entropy of the teacher targets / ln K (1 = uniform collapse);
    `batch_entropy`: entropy of the batch-mean target / ln K (0 = one-prototype collapse);
    `feature_std`: std over the batch of the normalised student class tokens, times sqrt(C)
    (about 1 for spread features, 0 when all images map to one point);
    `target_crop_overlap`: Bhattacharyya coefficient sum_k sqrt(p1_k p2_k) between the targets of
    an image's first two global crops, batch mean (1 = the crops agree; two sharp targets on
    different prototypes give 0, so sharp targets that crops do not share show up here).
    """
    probs_nk = teacher_probs_gbk.flatten(0, 1).float()
    log_k = math.log(probs_nk.shape[-1])
    entropy_n = -(probs_nk * probs_nk.clamp_min(1e-12).log()).sum(-1)
    mean_k = probs_nk.mean(0)
    batch_entropy = -(mean_k * mean_k.clamp_min(1e-12).log()).sum()
    feats = nn.functional.normalize(student_cls_gbc.flatten(0, 1).float(), dim=-1)
    feature_std = feats.std(dim=0).mean() * math.sqrt(feats.shape[-1])
    out = {
        "teacher_entropy": entropy_n.mean() / log_k,
        "batch_entropy": batch_entropy / log_k,
        "feature_std": feature_std,
    }
    if teacher_probs_gbk.shape[0] >= 2:
        first_bk, second_bk = teacher_probs_gbk[0].float(), teacher_probs_gbk[1].float()
        out["target_crop_overlap"] = (first_bk * second_bk).sqrt().sum(-1).mean()
    return out
