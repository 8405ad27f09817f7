"""DINOv2 training schedules and optimiser parameter groups (official `train.py`, `param_groups`).

Per-iteration schedules (official defaults, `OFFICIAL_EPOCH_LENGTH` iterations per epoch):
* lr: linear warm-up 0 -> lr over `warmup_epochs`, then cosine to `min_lr` (1e-6);
  lr = base_lr * sqrt(total_batch / 1024) ("sqrt_wrt_1024", the only rule in the official code;
  RAD-DINO, App. C.1: base lr 1e-3, batch 640, i.e. lr ~= 7.9e-4 after scaling);
* last-layer lr: the lr schedule with the first `freeze_last_layer_epochs` (1) set to 0 -- official
  DINOv2 freezes the prototypes this way (AdamW with lr 0 neither steps nor decays them);
* weight decay 0.04 -> 0.4 cosine; teacher EMA momentum 0.992 -> 1 cosine;
* teacher temperature: linear 0.04 -> 0.07 over `warmup_teacher_temp_epochs` (30), then 0.07.

Parameter groups: layer-wise lr decay (0.9 per block from the top) and patch-embedding lr x0.2,
no weight decay on biases, norms and LayerScale gammas -- exactly official
`get_params_groups_with_decay`, including its choices that may surprise (class/position/mask
tokens DO get weight decay; register tokens fall into the top group, multiplier 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from torch import nn


class CosineSchedule:
    """Values per iteration: `freeze_iters` zeros, linear warm-up, then half-cosine to `final`.

    Indexing past the end returns `final_value` (official `CosineScheduler`).
    """

    def __init__(
        self,
        base_value: float,
        final_value: float,
        total_iters: int,
        warmup_iters: int = 0,
        start_warmup_value: float = 0.0,
        freeze_iters: int = 0,
    ) -> None:
        if min(total_iters, warmup_iters, freeze_iters) < 0:
            raise ValueError("schedule iteration counts must be >= 0")
        if warmup_iters + freeze_iters > total_iters:
            raise ValueError(
                f"warmup_iters ({warmup_iters}) + freeze_iters ({freeze_iters}) exceed "
                f"total_iters ({total_iters})"
            )
        self.final_value = final_value
        self.total_iters = total_iters
        n_cosine = total_iters - warmup_iters - freeze_iters
        steps = np.arange(n_cosine)  # angle pi * step / n: 0 .. pi (n-1)/n, never reaches pi
        angle = np.pi * steps / max(n_cosine, 1)  # this operation order gives official's bits
        cosine = final_value + 0.5 * (base_value - final_value) * (1 + np.cos(angle))
        warmup = np.linspace(start_warmup_value, base_value, warmup_iters)  # ends AT base_value
        self.values = np.concatenate([np.zeros(freeze_iters), warmup, cosine])

    def __getitem__(self, iteration: int) -> float:
        if iteration < 0:
            raise IndexError(f"schedule iteration must be >= 0, got {iteration}")
        if iteration >= self.total_iters:
            return self.final_value
        return float(self.values[iteration])

    def __len__(self) -> int:
        return self.total_iters


def scaled_lr(base_lr: float, total_batch_size: int, rule: str = "sqrt_wrt_1024") -> float:
    """Lr for a total batch (all ranks): official sqrt rule, linear /256 (DINO v1), or none."""
    if total_batch_size < 1:
        raise ValueError(f"total batch size must be >= 1, got {total_batch_size}")
    if rule == "sqrt_wrt_1024":
        return base_lr * math.sqrt(total_batch_size / 1024.0)
    if rule == "linear_wrt_256":
        return base_lr * total_batch_size / 256.0
    if rule == "none":
        return base_lr
    raise ValueError(
        f"lr scaling rule must be 'sqrt_wrt_1024', 'linear_wrt_256' or 'none', got {rule!r}"
    )


@dataclass
class DinoSchedules:
    """All per-iteration schedules of a DINOv2 run (official `build_schedulers`)."""

    lr: CosineSchedule
    weight_decay: CosineSchedule
    teacher_momentum: CosineSchedule
    teacher_temp: CosineSchedule
    last_layer_lr: CosineSchedule
    freeze_last_layer_iters: int

    def last_layer_frozen(self, iteration: int) -> bool:
        """Whether the head's last layer (prototypes) must not move at this iteration."""
        return iteration < self.freeze_last_layer_iters


def build_schedules(
    lr: float,
    epochs: int = 100,
    epoch_length: int = 1250,
    warmup_epochs: int = 10,
    min_lr: float = 1e-6,
    weight_decay: float = 0.04,
    weight_decay_end: float = 0.4,
    momentum_teacher: float = 0.992,
    final_momentum_teacher: float = 1.0,
    warmup_teacher_temp: float = 0.04,
    teacher_temp: float = 0.07,
    warmup_teacher_temp_epochs: int = 30,
    freeze_last_layer_epochs: int = 1,
) -> DinoSchedules:
    """Schedules with official defaults; `lr` is the already-scaled lr (see `scaled_lr`)."""
    total_iters = epochs * epoch_length
    lr_schedule = CosineSchedule(lr, min_lr, total_iters, warmup_epochs * epoch_length, 0.0)
    last_layer_lr = CosineSchedule(lr, min_lr, total_iters, warmup_epochs * epoch_length, 0.0)
    freeze_iters = min(freeze_last_layer_epochs * epoch_length, total_iters)
    last_layer_lr.values[:freeze_iters] = 0.0
    temp_iters = warmup_teacher_temp_epochs * epoch_length
    return DinoSchedules(
        lr=lr_schedule,
        weight_decay=CosineSchedule(weight_decay, weight_decay_end, total_iters),
        teacher_momentum=CosineSchedule(momentum_teacher, final_momentum_teacher, total_iters),
        teacher_temp=CosineSchedule(
            teacher_temp, teacher_temp, temp_iters, temp_iters, warmup_teacher_temp
        ),
        last_layer_lr=last_layer_lr,
        freeze_last_layer_iters=freeze_iters,
    )


_LAYER0_NAMES = ("pos_embed", "patch_embed", "mask_token", "cls_token")


def layer_id(name: str, num_layers: int) -> int:
    """Depth of a backbone parameter: 0 for embeddings/tokens, i + 1 for `blocks.i.`, else top.

    Official substring rules: a name containing `pos_embed`, `patch_embed`, `mask_token` or
    `cls_token` is layer 0; `blocks.<i>.` (also `blocks.<chunk>.<i>.` when the name has a leading
    `.blocks.`) is i + 1; anything else (final norm, register tokens, ...) is num_layers + 1.
    """
    if any(token in name for token in _LAYER0_NAMES):
        return 0
    if ".blocks." in name and ".residual." not in name:
        return int(name[name.find(".blocks.") :].split(".")[2]) + 1
    if "blocks." in name and "residual." not in name:
        return int(name[name.find("blocks.") :].split(".")[1]) + 1
    return num_layers + 1


def param_groups(
    model: nn.Module,
    lr_decay: float = 0.9,
    patch_embed_lr_mult: float = 0.2,
    num_layers: int | None = None,
) -> list[dict]:
    """One dict per trainable parameter: params, name, lr_multiplier, wd_multiplier, is_last_layer.

    `num_layers` defaults to len(model.blocks) (a ViT backbone) or 0 (a head: every lr multiplier
    is 1 then, as official). Apply it to each sub-model (backbone, heads) separately, as official.
    """
    if num_layers is None:
        num_layers = len(model.blocks) if hasattr(model, "blocks") else 0
    groups = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lr_multiplier = 1.0
        if num_layers > 0:
            lr_multiplier = lr_decay ** (num_layers + 1 - layer_id(name, num_layers))
        if "patch_embed" in name:
            lr_multiplier *= patch_embed_lr_mult
        no_decay = name.endswith(".bias") or "norm" in name or "gamma" in name
        groups.append(
            {
                "params": param,
                "name": name,
                "lr_multiplier": lr_multiplier,
                "wd_multiplier": 0.0 if no_decay else 1.0,
                "is_last_layer": "last_layer" in name,
            }
        )
    return groups


def fuse_param_groups(groups: Iterable[dict]) -> list[dict]:
    """Merge per-parameter dicts with equal (lr_multiplier, wd_multiplier, is_last_layer)."""
    fused: dict[tuple, dict] = {}
    for group in groups:
        key = (group["lr_multiplier"], group["wd_multiplier"], group["is_last_layer"])
        if key not in fused:
            fused[key] = {
                "params": [],
                "lr_multiplier": key[0],
                "wd_multiplier": key[1],
                "is_last_layer": key[2],
            }
        fused[key]["params"].append(group["params"])
    return list(fused.values())


def apply_optim_schedule(optimizer, lr: float, weight_decay: float, last_layer_lr: float) -> None:
    """Set each optimiser group's lr and weight decay from the schedules and its multipliers."""
    for group in optimizer.param_groups:
        group_lr = last_layer_lr if group["is_last_layer"] else lr
        group["lr"] = group_lr * group["lr_multiplier"]
        group["weight_decay"] = weight_decay * group["wd_multiplier"]
