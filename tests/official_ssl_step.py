"""CPU re-derivation of official DINOv2 `SSLMetaArch.forward_backward` and `update_teacher`.

Why re-derived and not imported: `dinov2.train.ssl_meta_arch` asserts xFormers at import, pulls
fvcore and FSDP through `dinov2.train` / `dinov2.fsdp`, moves every input with `.cuda()`, feeds the
student backbone a LIST of crops (nested tensors: xFormers only) and concatenates the head inputs
with `fmha.BlockDiagonalMask`. This module follows that method statement by statement (same order,
same buffers, same loss scales) with the OFFICIAL components (`DinoVisionTransformer`, `DINOHead`,
`DINOLoss`, `iBOTPatchLoss`, `KoLeoLoss`), changing only:

* no `.cuda()` (CPU tensors), no FSDP resharding / stream synchronisation, no grad scaler;
* the student backbone runs the global and local crops in two calls instead of one nested call
  (the nested path is a block-diagonal attention over the concatenation: the same per-image math;
  only stochastic depth would differ, which is why the parity test uses drop_path 0);
* the head inputs are concatenated / split with `torch.cat` / `Tensor.split` along dim 1, which
  is exactly what `BlockDiagonalMask.from_tensor_list` / `.split` do to the tensors;
* `update_teacher` walks `self.student[k].parameters()` instead of FSDP flat parameters (the same
  elements, the same `_foreach_mul_` / `_foreach_add_` formula).

Written for this test from the official source; no official code is copied.
"""

from __future__ import annotations

import types

import torch
from dinov2.layers import DINOHead
from dinov2.loss import DINOLoss, KoLeoLoss, iBOTPatchLoss
from dinov2.loss import ibot_patch_loss as official_ibot_module
from torch import nn

# Official `iBOTPatchLoss.sinkhorn_knopp_teacher` all-reduces the masked-patch count WITHOUT an
# `is_initialized()` guard; on one rank an all-reduce is the identity, so the test swaps the
# module's `dist` for this single-rank stand-in (see `single_rank_official_ibot`).
SINGLE_RANK_DIST = types.SimpleNamespace(
    is_initialized=lambda: False,
    get_world_size=lambda: 1,
    all_reduce=lambda tensor, *args, **kwargs: None,
)


def single_rank_official_ibot(monkeypatch) -> None:
    """Let official iBOT Sinkhorn-Knopp run without a process group (one rank: identity)."""
    monkeypatch.setattr(official_ibot_module, "dist", SINGLE_RANK_DIST)


def official_head(in_dim: int, head_cfg: dict) -> DINOHead:
    """Official `DINOHead` with the sizes of one of our config sections (`dino` / `ibot`)."""
    return DINOHead(
        in_dim=in_dim,
        out_dim=head_cfg["head_n_prototypes"],
        hidden_dim=head_cfg["head_hidden_dim"],
        bottleneck_dim=head_cfg["head_bottleneck_dim"],
        nlayers=head_cfg["head_nlayers"],
    )


class OfficialSslStep:
    """Official student/teacher step on CPU; `forward_backward` returns official `loss_dict`."""

    def __init__(self, student: nn.ModuleDict, teacher: nn.ModuleDict, config: dict) -> None:
        dino_cfg, ibot_cfg = config["dino"], config["ibot"]
        self.student, self.teacher = student, teacher
        self.centering = config["train"]["centering"]
        self.n_local_crops = config["crops"]["local_crops_number"]
        self.do_dino = dino_cfg["loss_weight"] > 0
        self.do_koleo = dino_cfg["koleo_loss_weight"] > 0
        self.do_ibot = ibot_cfg["loss_weight"] > 0
        self.ibot_separate_head = ibot_cfg["separate_head"]
        self.dino_loss_weight = dino_cfg["loss_weight"]
        self.koleo_loss_weight = dino_cfg["koleo_loss_weight"]
        self.ibot_loss_weight = ibot_cfg["loss_weight"]
        self.dino_loss = DINOLoss(dino_cfg["head_n_prototypes"])
        self.koleo_loss = KoLeoLoss()
        ibot_out_dim = (ibot_cfg if self.ibot_separate_head else dino_cfg)["head_n_prototypes"]
        self.ibot_patch_loss = iBOTPatchLoss(ibot_out_dim)
        for param in self.teacher.parameters():
            param.requires_grad = False

    @torch.no_grad()
    def _teacher_output(self, images: dict, teacher_temp: float):
        """Official nested `get_teacher_output`: centred / Sinkhorn targets for DINO and iBOT."""
        global_crops, n_global_crops = images["collated_global_crops"], 2
        mask_indices_list = images["mask_indices_list"]
        n_masked_patches = mask_indices_list.shape[0]
        upperbound = images["upperbound"]
        out = self.teacher["backbone"](global_crops, is_training=True)
        cls_tokens = out["x_norm_clstoken"].chunk(n_global_crops)
        cls_tokens = torch.cat((cls_tokens[1], cls_tokens[0]))  # reversed: A matched to B
        patch_tokens = out["x_norm_patchtokens"]
        dim, n_cls_tokens = patch_tokens.shape[-1], cls_tokens.shape[0]

        masked_ibot_targets = None
        if self.do_ibot and not self.ibot_separate_head:
            buffer = patch_tokens.new_zeros(upperbound + n_cls_tokens, dim)
            buffer[:n_cls_tokens].copy_(cls_tokens)
            torch.index_select(
                patch_tokens.flatten(0, 1),
                dim=0,
                index=mask_indices_list,
                out=buffer[n_cls_tokens : n_cls_tokens + n_masked_patches],
            )
            after_head = self.teacher["dino_head"](buffer)
            cls_after_head = after_head[:n_cls_tokens]
            masked_after_head = after_head[n_cls_tokens : n_cls_tokens + n_masked_patches]
        elif self.do_ibot:
            buffer = patch_tokens.new_zeros(upperbound, dim)
            torch.index_select(
                patch_tokens.flatten(0, 1),
                dim=0,
                index=mask_indices_list,
                out=buffer[:n_masked_patches],
            )
            cls_after_head = self.teacher["dino_head"](cls_tokens)
            masked_after_head = self.teacher["ibot_head"](buffer)[:n_masked_patches]
        else:
            cls_after_head = self.teacher["dino_head"](cls_tokens)

        if self.centering == "centering":
            dino_targets = self.dino_loss.softmax_center_teacher(
                cls_after_head, teacher_temp=teacher_temp
            ).view(n_global_crops, -1, *cls_after_head.shape[1:])
            self.dino_loss.update_center(cls_after_head)
            if self.do_ibot:
                masked_after_head = masked_after_head.unsqueeze(0)
                masked_ibot_targets = self.ibot_patch_loss.softmax_center_teacher(
                    masked_after_head[:, :n_masked_patches], teacher_temp=teacher_temp
                ).squeeze(0)
                self.ibot_patch_loss.update_center(masked_after_head[:n_masked_patches])
        elif self.centering == "sinkhorn_knopp":
            dino_targets = self.dino_loss.sinkhorn_knopp_teacher(
                cls_after_head, teacher_temp=teacher_temp
            ).view(n_global_crops, -1, *cls_after_head.shape[1:])
            if self.do_ibot:
                masked_ibot_targets = self.ibot_patch_loss.sinkhorn_knopp_teacher(
                    masked_after_head,
                    teacher_temp=teacher_temp,
                    n_masked_patches_tensor=images["n_masked_patches"],
                )
        else:
            raise NotImplementedError(self.centering)
        return dino_targets, masked_ibot_targets

    def forward_backward(self, images: dict, teacher_temp: float) -> dict[str, torch.Tensor]:
        """One official step: losses (official `loss_dict` + `total`), gradients accumulated."""
        n_global_crops, n_local_crops = 2, self.n_local_crops
        global_crops, local_crops = images["collated_global_crops"], images["collated_local_crops"]
        masks = images["collated_masks"]
        mask_indices_list = images["mask_indices_list"]
        n_masked_patches = mask_indices_list.shape[0]
        upperbound, masks_weight = images["upperbound"], images["masks_weight"]
        n_local_crops_loss_terms = max(n_local_crops * n_global_crops, 1)
        n_global_crops_loss_terms = (n_global_crops - 1) * n_global_crops
        n_loss_terms = n_global_crops_loss_terms + n_local_crops_loss_terms
        ibot_loss_scale = 1.0 / n_global_crops

        dino_targets, masked_ibot_targets = self._teacher_output(images, teacher_temp)

        loss_dict: dict[str, torch.Tensor] = {}
        loss_accumulator = 0
        backbone = self.student["backbone"]  # official: one nested call on [global, local]
        global_out = backbone(global_crops, masks=masks, is_training=True)
        local_out = backbone(local_crops, masks=None, is_training=True)

        head_inputs = [
            local_out["x_norm_clstoken"].unsqueeze(0),
            global_out["x_norm_clstoken"].unsqueeze(0),
        ]
        if self.do_ibot:
            dim = global_out["x_norm_clstoken"].shape[-1]
            patch_tokens = global_out["x_norm_patchtokens"]
            buffer = patch_tokens.new_zeros(upperbound, dim)
            buffer[:n_masked_patches].copy_(
                torch.index_select(patch_tokens.flatten(0, 1), dim=0, index=mask_indices_list)
            )
            if not self.ibot_separate_head:
                head_inputs.append(buffer.unsqueeze(0))
            else:
                student_masked_after_head = self.student["ibot_head"](buffer)[:n_masked_patches]

        # official: fmha.BlockDiagonalMask.from_tensor_list(...) concatenates along dim 1
        sizes = [tokens.shape[1] for tokens in head_inputs]
        outputs = list(self.student["dino_head"](torch.cat(head_inputs, dim=1)).split(sizes, 1))
        student_local_after_head = outputs.pop(0).squeeze(0)
        student_global_after_head = outputs.pop(0).squeeze(0)
        if self.do_ibot and not self.ibot_separate_head:
            student_masked_after_head = outputs.pop(0).squeeze(0)[:n_masked_patches]

        if n_local_crops > 0:
            dino_local_crops_loss = (
                self.dino_loss(
                    student_output_list=student_local_after_head.chunk(n_local_crops),
                    teacher_out_softmaxed_centered_list=dino_targets,
                )
                / n_loss_terms
            )
            loss_dict["dino_local_crops_loss"] = dino_local_crops_loss
            loss_accumulator += self.dino_loss_weight * dino_local_crops_loss

        loss_scales = 2
        if self.do_dino:
            dino_global_crops_loss = (
                self.dino_loss(
                    student_output_list=[student_global_after_head],
                    teacher_out_softmaxed_centered_list=[dino_targets.flatten(0, 1)],
                )
                * loss_scales
                / n_loss_terms
            )
            loss_dict["dino_global_crops_loss"] = dino_global_crops_loss
            loss_accumulator += self.dino_loss_weight * dino_global_crops_loss
            if self.do_koleo:
                koleo_loss = self.koleo_loss_weight * sum(
                    self.koleo_loss(tokens) for tokens in global_out["x_norm_clstoken"].chunk(2)
                )
                loss_accumulator += koleo_loss
                loss_dict["koleo_loss"] = koleo_loss / loss_scales

        if self.do_ibot:
            ibot_patch_loss = (
                self.ibot_patch_loss.forward_masked(
                    student_masked_after_head,
                    masked_ibot_targets,
                    student_masks_flat=masks,
                    n_masked_patches=n_masked_patches,
                    masks_weight=masks_weight,
                )
                * loss_scales
                * ibot_loss_scale
            )
            loss_dict["ibot_loss"] = ibot_patch_loss / 2
            loss_accumulator += self.ibot_loss_weight * ibot_patch_loss

        loss_accumulator.backward()
        loss_dict["total"] = loss_accumulator.detach()
        return {name: value.detach() for name, value in loss_dict.items()}

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """Official EMA: teacher *= m; teacher += (1 - m) * student, over all sub-networks."""
        student_params, teacher_params = [], []
        for key in self.student.keys():
            student_params += list(self.student[key].parameters())
            teacher_params += list(self.teacher[key].parameters())
        torch._foreach_mul_(teacher_params, momentum)
        torch._foreach_add_(teacher_params, student_params, alpha=1 - momentum)
