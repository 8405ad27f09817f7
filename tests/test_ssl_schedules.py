"""Schedules and parameter groups equal the official DINOv2 ones element-wise.

Official `train.build_schedulers` cannot be imported without fvcore/xformers, so the official
`CosineScheduler` is instantiated here with exactly the arguments that function passes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from raddino.ssl.heads import DinoHead
from raddino.ssl.schedules import (
    CosineSchedule,
    apply_optim_schedule,
    build_schedules,
    fuse_param_groups,
    param_groups,
    scaled_lr,
)

official_utils = pytest.importorskip("dinov2.utils.utils")
official_groups = pytest.importorskip("dinov2.utils.param_groups")
pytestmark = pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_value": 0.004, "final_value": 1e-6, "total_iters": 500, "warmup_iters": 50},
        {"base_value": 0.04, "final_value": 0.4, "total_iters": 300},
        {"base_value": 0.992, "final_value": 1.0, "total_iters": 7},
        {"base_value": 1.0, "final_value": 0.1, "total_iters": 40, "warmup_iters": 5,
         "start_warmup_value": 0.3, "freeze_iters": 10},
        {"base_value": 0.07, "final_value": 0.07, "total_iters": 30, "warmup_iters": 30,
         "start_warmup_value": 0.04},
    ],
)  # fmt: skip
def test_cosine_schedule_equals_official_elementwise(kwargs):
    ours = CosineSchedule(**kwargs)
    official = official_utils.CosineScheduler(**kwargs)
    assert np.array_equal(ours.values, official.schedule)
    total = kwargs["total_iters"]
    assert [ours[i] for i in range(total + 3)] == [official[i] for i in range(total + 3)]


def test_build_schedules_equals_official_build_schedulers():
    epochs, epoch_length, lr = 6, 20, scaled_lr(0.004, 256)
    ours = build_schedules(
        lr, epochs=epochs, epoch_length=epoch_length, warmup_epochs=2,
        warmup_teacher_temp_epochs=3, freeze_last_layer_epochs=1,
    )  # fmt: skip
    total = epochs * epoch_length
    official_lr = official_utils.CosineScheduler(lr, 1e-6, total, 2 * epoch_length, 0)
    official_wd = official_utils.CosineScheduler(0.04, 0.4, total)
    official_momentum = official_utils.CosineScheduler(0.992, 1.0, total)
    official_temp = official_utils.CosineScheduler(
        0.07, 0.07, 3 * epoch_length, warmup_iters=3 * epoch_length, start_warmup_value=0.04
    )
    official_last = official_utils.CosineScheduler(lr, 1e-6, total, 2 * epoch_length, 0)
    official_last.schedule[: 1 * epoch_length] = 0
    pairs = [
        (ours.lr, official_lr),
        (ours.weight_decay, official_wd),
        (ours.teacher_momentum, official_momentum),
        (ours.teacher_temp, official_temp),
        (ours.last_layer_lr, official_last),
    ]
    for schedule, official in pairs:
        assert [schedule[i] for i in range(total + 2)] == [official[i] for i in range(total + 2)]
    # teacher temperature: linear 0.04 -> 0.07 over the warm-up, then constant
    assert ours.teacher_temp[0] == pytest.approx(0.04) and ours.teacher_temp[59] == pytest.approx(
        0.07
    )
    assert ours.teacher_temp[1000] == 0.07
    assert ours.teacher_momentum[0] == 0.992 and ours.teacher_momentum[total] == 1.0
    assert [ours.last_layer_frozen(i) for i in (0, 19, 20)] == [True, True, False]
    assert ours.last_layer_lr[19] == 0.0 and ours.last_layer_lr[20] == ours.lr[20] > 0


def test_lr_scaling_rules():
    assert scaled_lr(0.004, 1024) == pytest.approx(0.004)
    # RAD-DINO App. C.1: base lr 1e-3, total batch 640 (16 GPUs x 40)
    assert scaled_lr(1e-3, 640) == pytest.approx(1e-3 * math.sqrt(640 / 1024))
    assert scaled_lr(1e-3, 512, "linear_wrt_256") == pytest.approx(2e-3)
    assert scaled_lr(1e-3, 512, "none") == 1e-3
    with pytest.raises(ValueError, match="scaling rule"):
        scaled_lr(1e-3, 512, "cubic")


def _official_backbone(depth=4):
    vision_transformer = pytest.importorskip("dinov2.models.vision_transformer")
    return vision_transformer.DinoVisionTransformer(
        img_size=28, patch_size=14, embed_dim=24, depth=depth, num_heads=2, init_values=1e-5,
        block_chunks=0,
    )  # fmt: skip


def _by_name(groups):
    return {g["name"]: (g["lr_multiplier"], g["wd_multiplier"], g["is_last_layer"]) for g in groups}


def test_param_groups_equal_official_on_official_backbone_and_head():
    backbone = _official_backbone()
    ours = _by_name(param_groups(backbone, lr_decay=0.9, patch_embed_lr_mult=0.2))
    official = _by_name(official_groups.get_params_groups_with_decay(backbone, 0.9, 0.2))
    assert ours == official
    assert ours["cls_token"] == (0.9**5, 1.0, False)  # layer 0; official decays tokens
    assert ours["patch_embed.proj.weight"] == (0.9**5 * 0.2, 1.0, False)
    assert ours["blocks.3.ls2.gamma"] == (0.9, 0.0, False)
    assert ours["norm.weight"] == (1.0, 0.0, False)
    head = DinoHead(24, 50, hidden_dim=32, bottleneck_dim=8)
    ours_head = param_groups(head, 0.9, 0.2)
    official_head = official_groups.get_params_groups_with_decay(head, 0.9, 0.2)
    assert _by_name(ours_head) == _by_name(official_head)
    assert all(g["lr_multiplier"] == 1.0 for g in ours_head)
    assert {g["name"] for g in ours_head if g["is_last_layer"]} == {
        "last_layer.parametrizations.weight.original0",
        "last_layer.parametrizations.weight.original1",
    }


def test_param_groups_equal_official_on_timm_names_with_registers():
    timm = pytest.importorskip("timm")
    model = timm.create_model(
        "vit_small_patch14_reg4_dinov2", pretrained=False, img_size=28, depth=3, num_classes=0
    )
    model.mask_token = nn.Parameter(torch.zeros(1, model.embed_dim))
    ours = _by_name(param_groups(model, 0.9, 0.2))
    official = _by_name(official_groups.get_params_groups_with_decay(model, 0.9, 0.2))
    assert ours == official
    assert ours["mask_token"][0] == 0.9**4 and ours["reg_token"] == (1.0, 1.0, False)


def test_fused_groups_equal_official_and_drive_the_optimizer():
    backbone = _official_backbone(depth=2)
    ours = fuse_param_groups(param_groups(backbone, 0.9, 0.2))
    official = list(
        official_groups.fuse_params_groups(
            official_groups.get_params_groups_with_decay(backbone, 0.9, 0.2)
        )
    )
    assert len(ours) == len(official)
    for mine, theirs in zip(ours, official, strict=True):
        assert [id(p) for p in mine["params"]] == [id(p) for p in theirs["params"]]
        for key in ("lr_multiplier", "wd_multiplier", "is_last_layer"):
            assert mine[key] == theirs[key]
    optimizer = torch.optim.AdamW(ours)
    apply_optim_schedule(optimizer, lr=1e-3, weight_decay=0.04, last_layer_lr=0.0)
    for group in optimizer.param_groups:
        assert group["lr"] == pytest.approx(1e-3 * group["lr_multiplier"])
        assert group["weight_decay"] == pytest.approx(0.04 * group["wd_multiplier"])


def test_zero_last_layer_lr_keeps_prototypes_fixed_during_the_freeze():
    head = DinoHead(8, 16, hidden_dim=12, bottleneck_dim=4)
    optimizer = torch.optim.AdamW(fuse_param_groups(param_groups(head, 0.9, 0.2)))
    schedules = build_schedules(1e-2, epochs=2, epoch_length=3, warmup_epochs=0)
    before = {k: v.clone() for k, v in head.state_dict().items()}
    for iteration in range(2):
        s = schedules
        apply_optim_schedule(
            optimizer, s.lr[iteration], s.weight_decay[iteration], s.last_layer_lr[iteration]
        )
        optimizer.zero_grad()
        head(torch.randn(5, 8)).logsumexp(-1).mean().backward()
        optimizer.step()
    after = head.state_dict()
    assert torch.equal(after["last_layer.weight_v"], before["last_layer.weight_v"])
    assert torch.equal(after["last_layer.weight_g"], before["last_layer.weight_g"])
    assert not torch.equal(after["mlp.0.weight"], before["mlp.0.weight"])
