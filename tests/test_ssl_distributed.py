"""Cross-rank reductions: 2 gloo ranks with half batches each give the 1-rank full-batch result.

Workers run in spawned processes (file:// rendezvous, no ports) and save their results; the test
process computes the single-process reference and compares (<= 1e-6).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from raddino.ssl import distributed
from raddino.ssl.dino_loss import DinoClsTokenLoss
from raddino.ssl.ibot_loss import IbotPatchLoss
from raddino.ssl.masking import masks_to_indices_and_weights

WORLD = 2
N_GLOBAL, BATCH, N_LOCAL, K, GRID = 2, 8, 2, 32, 16  # BATCH = images per crop over all ranks
TEMPS = (0.04, 0.06, 0.07)
CENTERINGS = ("centering", "sinkhorn_knopp")
ATOL = 1e-6


def _inputs(step: int) -> dict[str, torch.Tensor]:
    """Full-batch inputs of one step, identical in every process."""
    gen = torch.Generator().manual_seed(100 + step)
    masks_bn = torch.rand(N_GLOBAL * BATCH, GRID, generator=gen) < 0.3
    masks_bn.view(N_GLOBAL, BATCH, GRID)[:, BATCH // 2 :, : 3 + step] = True  # rank 1 masks more
    return {
        "teacher_gbk": torch.randn(N_GLOBAL, BATCH, K, generator=gen) + step,
        "student_gbk": torch.randn(N_GLOBAL, BATCH, K, generator=gen) * 0.1,
        "student_lbk": torch.randn(N_LOCAL, BATCH, K, generator=gen) * 0.1,
        "masks_bn": masks_bn,  # (n_global * BATCH, GRID) crop-major, as the collate stacks
        "teacher_patch_bnk": torch.randn(N_GLOBAL * BATCH, GRID, K, generator=gen) * 0.5 + step,
        "student_patch_bnk": torch.randn(N_GLOBAL * BATCH, GRID, K, generator=gen) * 0.1,
    }


def _shard(inputs: dict[str, torch.Tensor], rank: int, world: int) -> dict[str, torch.Tensor]:
    """This rank's share: BATCH / world images of every crop."""
    per_rank = BATCH // world
    images = slice(rank * per_rank, (rank + 1) * per_rank)
    crop_major = torch.arange(N_GLOBAL * BATCH).view(N_GLOBAL, BATCH)[:, images].flatten()
    return {
        "teacher_gbk": inputs["teacher_gbk"][:, images],
        "student_gbk": inputs["student_gbk"][:, images],
        "student_lbk": inputs["student_lbk"][:, images],
        "masks_bn": inputs["masks_bn"][crop_major],
        "teacher_patch_bnk": inputs["teacher_patch_bnk"][crop_major],
        "student_patch_bnk": inputs["student_patch_bnk"][crop_major],
    }


def _run_steps(rank: int, world: int, centering: str) -> dict[str, torch.Tensor]:
    """Three training-like steps of the DINO and iBOT losses on this rank's shard."""
    dino, ibot = DinoClsTokenLoss(K, centering=centering), IbotPatchLoss(K, centering=centering)
    out: dict[str, torch.Tensor] = {}
    for step, temp in enumerate(TEMPS):
        shard = _shard(_inputs(step), rank, world)
        targets = dino.teacher_targets(shard["teacher_gbk"], temp)
        losses = dino(shard["student_gbk"], targets, shard["student_lbk"])
        indices_m, weights_m = masks_to_indices_and_weights(shard["masks_bn"])
        teacher_mk = shard["teacher_patch_bnk"].flatten(0, 1)[indices_m]
        student_mk = shard["student_patch_bnk"].flatten(0, 1)[indices_m]
        patch_targets = ibot.teacher_targets(teacher_mk, temp)
        ibot_loss = ibot(student_mk, patch_targets, weights_m, n_images=shard["masks_bn"].shape[0])
        # a data-parallel step averages gradients, i.e. optimises the mean of the rank losses
        for name, value in (("dino", losses.total), ("ibot", ibot_loss)):
            out[f"{name}_loss_{step}"] = distributed.all_reduce_sum(value.detach().clone()) / world
        out[f"dino_targets_{step}"] = targets
        out[f"ibot_targets_{step}"] = patch_targets
        out[f"dino_center_{step}"] = dino.centering.center.clone()
        out[f"ibot_center_{step}"] = ibot.centering.center.clone()
    dino.centering.apply_pending_update()
    ibot.centering.apply_pending_update()
    out["dino_center_final"] = dino.centering.center.clone()
    out["ibot_center_final"] = ibot.centering.center.clone()
    return out


def _worker(rank: int, world: int, rendezvous: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world)
    try:
        assert distributed.world_size() == world and distributed.rank() == rank
        for centering in CENTERINGS:
            result = _run_steps(rank, world, centering)
            torch.save(result, Path(out_dir) / f"{centering}_rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_helpers_are_identity_without_a_process_group():
    assert not distributed.is_distributed()
    assert distributed.world_size() == 1 and distributed.rank() == 0
    tensor = torch.tensor([1.0, -2.0])
    assert distributed.all_reduce_sum(tensor) is tensor and tensor.tolist() == [1.0, -2.0]
    assert distributed.all_reduce_max(tensor).tolist() == [1.0, -2.0]


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory) -> Path:
    """Spawn the 2 gloo ranks once (both centering modes) and return their output folder."""
    out_dir = tmp_path_factory.mktemp("ranks")
    rendezvous = f"file://{out_dir / 'rendezvous'}"
    mp.spawn(_worker, args=(WORLD, rendezvous, str(out_dir)), nprocs=WORLD, join=True)
    return out_dir


@pytest.mark.parametrize("centering", CENTERINGS)
def test_two_ranks_with_half_batches_equal_one_rank_with_the_full_batch(
    two_rank_results, centering
):
    ranks = [
        torch.load(two_rank_results / f"{centering}_rank{r}.pt", weights_only=True)
        for r in range(WORLD)
    ]
    reference = _run_steps(rank=0, world=1, centering=centering)

    for step in range(len(TEMPS)):
        for name in ("dino_loss", "ibot_loss"):
            for result in ranks:
                torch.testing.assert_close(
                    result[f"{name}_{step}"], reference[f"{name}_{step}"], atol=ATOL, rtol=0
                )
        # each rank's targets are its rows of the full-batch targets
        full = reference[f"dino_targets_{step}"]
        half = BATCH // WORLD
        for rank, result in enumerate(ranks):
            torch.testing.assert_close(
                result[f"dino_targets_{step}"], full[:, rank * half : (rank + 1) * half],
                atol=ATOL, rtol=0,
            )  # fmt: skip
        masks = _inputs(step)["masks_bn"]
        crop_major = torch.arange(N_GLOBAL * BATCH).view(N_GLOBAL, BATCH)
        rank_of_image = (crop_major % BATCH) // half  # (n_global, BATCH) -> owning rank
        rank_of_patch = rank_of_image.flatten()[masks.nonzero()[:, 0]]
        for rank, result in enumerate(ranks):
            torch.testing.assert_close(
                result[f"ibot_targets_{step}"],
                reference[f"ibot_targets_{step}"][rank_of_patch == rank],
                atol=ATOL,
                rtol=0,
            )
    for key in ("dino_center_final", "ibot_center_final"):
        for result in ranks:
            torch.testing.assert_close(result[key], reference[key], atol=ATOL, rtol=0)
        if centering == "centering":
            assert reference[key].abs().max() > 0.1  # the centres really moved
