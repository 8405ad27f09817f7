"""The DINOv2 pretraining loop: one code path from 1 CPU process to N GPU nodes under torchrun.

Read top to bottom: set up (distributed, model, optimiser, schedules, data), resume if the run
folder has a checkpoint, then per step: schedules -> batch -> losses -> backward -> gradient
all-reduce -> clip -> step -> EMA teacher -> log -> checkpoint. The run folder holds
`config.yaml`, `metrics.jsonl`, `checkpoints/` and, at the end, `teacher_backbone.safetensors`
(loadable by `raddino.models.weights.load_backbone`).

Data parallelism (`raddino.ssl.parallel`): under `train.distributed: ddp` every rank averages
gradients with one explicit all-reduce per step (the reduction DDP performs, written out so that
the losses' own cross-rank reductions and this one sit side by side); under `fsdp` student and
teacher are sharded with FSDP2 and checkpoints still hold full tensors in the same layout.
`train.precision: fp16` scales the loss with a GradScaler; a step it skips (inf gradients) is
logged, not treated as divergence. A rank that dies makes the others fail at their next
collective within `train.collective_timeout_s` instead of hanging.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from raddino.ssl import checkpoint as ckpt
from raddino.ssl import health, parallel
from raddino.ssl.data import BatchMaker, FolderSource, PhantomSource, PrerenderedSource
from raddino.ssl.distributed import all_reduce_sum, rank, setup_distributed, world_size
from raddino.ssl.meta_arch import DinoV2MetaArch, SslBatch
from raddino.ssl.schedules import (
    apply_optim_schedule,
    build_schedules,
    fuse_param_groups,
    param_groups,
    scaled_lr,
)
from raddino.utils import hardware_description, write_json_atomic


class TrainingDiverged(RuntimeError):
    """A non-finite loss: the run stops and keeps its last good checkpoint."""


class CollapseDetected(RuntimeError):
    """Teacher targets stayed collapsed (uniform or single-prototype) for too many steps."""


class PeerLost(RuntimeError):
    """A collective failed: another rank died, was killed or stalled past the timeout."""


@contextlib.contextmanager
def _stop_clearly_if_a_peer_is_lost(run_dir: Path, timeout_s: int):
    """Turn a failed collective (gloo/NCCL say "connection reset" or time out) into one clear error.

    The survivors stop at their next collective instead of hanging; the run keeps its last
    checkpoint and resumes from it when relaunched.
    """
    try:
        yield
    except (TrainingDiverged, CollapseDetected):
        raise
    except RuntimeError as err:  # c10d errors are RuntimeError subclasses
        if not dist.is_initialized():
            raise
        raise PeerLost(
            f"rank {rank()} lost contact with another rank (it died, was killed, or stalled "
            f"past train.collective_timeout_s={timeout_s}); last checkpoint: "
            f"{ckpt.latest_checkpoint(run_dir)}; relaunch the same command to resume. "
            f"Cause: {str(err).splitlines()[0][:300]}"
        ) from err


# ---- set-up ----------------------------------------------------------------------------------


def build_backbone_for(config: dict):
    """Random init (`model.init: random`) or continual pretraining from any loadable weights."""
    from raddino.models.backbone import build_backbone
    from raddino.models.weights import load_backbone

    model_cfg = config["model"]
    if model_cfg["init"] == "random":
        backbone = build_backbone(
            model_cfg["arch"],
            drop_path_rate=model_cfg["drop_path_rate"],
            layerscale_init=model_cfg["layerscale"],
        )
    else:
        loaded = load_backbone(model_cfg["init"])
        options = {k: v for k, v in loaded.config.items() if k != "name"}
        options["drop_path_rate"] = model_cfg["drop_path_rate"]
        backbone = build_backbone(loaded.config["name"], **options)
        backbone.load_state_dict(loaded.state_dict())
        backbone.preprocessing = loaded.preprocessing
        backbone.pos_embed_interpolation = loaded.pos_embed_interpolation
    return backbone


def make_normalizer(backbone, device: torch.device | str = "cpu"):
    """(N, 1, H, W) in [0, 1] -> (N, 3, H, W) normalised with the backbone's own statistics."""
    prep = backbone.preprocessing
    mean = torch.tensor(prep.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(prep.std, device=device).view(1, 3, 1, 1)

    def normalize(images_n1hw: torch.Tensor) -> torch.Tensor:
        return (images_n1hw.expand(-1, 3, -1, -1) - mean) / std

    return normalize


def build_optimizer(meta: DinoV2MetaArch, config: dict) -> torch.optim.Optimizer:
    """AdamW with official per-parameter lr (layer decay, patch-embed multiplier) and wd groups."""
    optim_cfg = config["optim"]
    groups = []
    for name, module in meta.student.items():
        if name == "backbone":
            groups += param_groups(
                module, optim_cfg["layerwise_decay"], optim_cfg["patch_embed_lr_mult"]
            )
        else:
            groups += param_groups(module, num_layers=0)
    betas = (optim_cfg["adamw_beta1"], optim_cfg["adamw_beta2"])
    # On CUDA one fused kernel does the whole update (no measurable change to a gpu-paper step on
    # an H200, but fewer launches); not for FSDP's sharded parameters, nor on CPU, where foreach
    # is the tested, bitwise-resumable path.
    on_cuda = all(p.is_cuda for p in meta.student.parameters())
    fused = on_cuda and config["train"]["distributed"] != "fsdp"
    return torch.optim.AdamW(fuse_param_groups(groups), betas=betas, fused=fused or None)


def make_source(config: dict):
    """The configured image source; prerendered into shared memory when `data.prerender`."""
    data = config["data"]
    if data["source"] == "phantom":
        source = PhantomSource(config["train"]["seed"], data["phantom_size"], data["phantom_views"])
    elif data["source"] == "folder":
        source = FolderSource(data["path"], config["train"]["seed"], data["max_images"])
    else:
        from raddino.data.deadleaves import DeadLeavesSource

        source = DeadLeavesSource(config["train"]["seed"], data["phantom_size"])
    if data["prerender"]:
        return PrerenderedSource(source, source.length or data["max_images"])
    return source


class _StepBatches(torch.utils.data.Dataset):
    """Item i = the batch of step `start + i`: batches are a pure function of the step, so
    worker processes build them ahead in any order and the loader hands them back in order."""

    def __init__(self, make_batch: BatchMaker, start: int, end: int) -> None:
        self.make_batch, self.start, self.end = make_batch, start, end

    def __len__(self) -> int:
        return self.end - self.start

    def __getitem__(self, i: int) -> SslBatch:
        return self.make_batch(self.start + i)


def batch_stream(make_batch: BatchMaker, start: int, end: int, workers: int, pin: bool):
    """Batches of steps start .. end-1: built here, or ahead by `workers` processes."""
    if workers == 0:
        return (make_batch(step) for step in range(start, end))
    loader = torch.utils.data.DataLoader(
        _StepBatches(make_batch, start, end),
        batch_size=None,  # each item already is a batch
        num_workers=workers,
        pin_memory=pin,
        prefetch_factor=2,  # batches in flight: 2 per worker, in shared memory
        multiprocessing_context="fork",  # workers share the (prerendered) images
        generator=torch.Generator(),  # its seed draw must not advance the global (drop-path) RNG
    )
    return iter(loader)


# ---- the loop --------------------------------------------------------------------------------


def _to_device(batch: SslBatch, device: torch.device, normalize) -> SslBatch:
    """The batch on `device`, its (N, 1, H, W) crops normalised there to (N, 3, H, W)."""
    if device.type != "cpu":
        _copy_to(batch, device)
    batch.global_crops = normalize(batch.global_crops)
    if batch.local_crops is not None:
        batch.local_crops = normalize(batch.local_crops)
    return batch


def _copy_to(batch: SslBatch, device: torch.device) -> None:
    batch.global_crops = batch.global_crops.to(device, non_blocking=True)
    if batch.local_crops is not None:
        batch.local_crops = batch.local_crops.to(device, non_blocking=True)
    if batch.masks is not None:
        for field in ("masks_bn", "mask_indices_m", "masks_weight_m", "n_masked_patches"):
            setattr(batch.masks, field, getattr(batch.masks, field).to(device, non_blocking=True))


def _mean_over_ranks(losses: dict[str, torch.Tensor]) -> dict[str, float]:
    """Loss terms and diagnostics averaged over ranks (one all-reduce), for logging."""
    names = sorted(losses)
    values = torch.stack([losses[k].detach().float() for k in names])
    all_reduce_sum(values).div_(world_size())
    return {k: round(float(v), 6) for k, v in zip(names, values.tolist(), strict=True)}


def _optimizer_step(optimizer: torch.optim.Optimizer, scaler) -> bool:
    """Step (through the fp16 scaler when there is one); True when the scaler skipped the step."""
    if scaler is None:
        optimizer.step()
        return False
    scale_before = scaler.get_scale()
    scaler.step(optimizer)  # skipped when any (unscaled) gradient is inf/NaN
    scaler.update()  # ... and then the scale shrinks: that is how a skip shows
    return scaler.get_scale() < scale_before


def _open_tensorboard(run_dir: Path, start_step: int):
    """A SummaryWriter on RUN/tensorboard/; on resume it purges events from `start_step` on,
    as metrics.jsonl drops its records after the checkpoint."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ValueError(
            "config key 'train.tensorboard' is true but the tensorboard package is missing: "
            "pip install 'raddino[tensorboard]'"
        ) from err
    return SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step)


def _finite_or_none(value: float) -> float | None:
    """A number for metrics.jsonl; None (JSON null) for inf/NaN, which JSON cannot hold."""
    return round(value, 6) if math.isfinite(value) else None


def pretrain(
    config: dict, run_dir: str | Path, *, progress: bool = True, stop_at_step: int | None = None
) -> Path:
    """Run (or resume) DINOv2 pretraining into `run_dir`; returns the final teacher backbone path.

    `stop_at_step` ends the run early after that many steps (tests use it to simulate a kill).
    """
    from raddino.models.weights import save_backbone

    run_dir = Path(run_dir)
    device = setup_distributed(config)
    is_main = rank() == 0
    ckpt.prepare_run_dir(run_dir, config, write=is_main)  # every rank checks, rank 0 writes
    if is_main and not (run_dir / "hardware.json").exists():  # what the release manifest cites
        write_json_atomic(
            run_dir / "hardware.json", {**hardware_description(), "world_size": world_size()}
        )
    if dist.is_initialized():
        dist.barrier()
    torch.manual_seed(config["train"]["seed"])  # identical initial weights on every rank
    backbone = build_backbone_for(config)
    meta = DinoV2MetaArch(backbone, config).to(device)
    parallel.check_precision_supported(config, device)
    sharded = parallel.wrap_for_training(meta, config, device)  # before the optimizer sees params
    if config["train"]["compile"]:
        parallel.compile_modules(meta)
    torch.manual_seed(config["train"]["seed"] * 1000 + rank())  # drop-path streams differ per rank
    optimizer = build_optimizer(meta, config)
    train_cfg, optim_cfg, teacher_cfg = config["train"], config["optim"], config["teacher"]
    total_batch = train_cfg["batch_size_per_device"] * world_size()
    schedules = build_schedules(
        lr=scaled_lr(optim_cfg["base_lr"], total_batch, optim_cfg["scaling_rule"]),
        epochs=train_cfg["epochs"],
        epoch_length=train_cfg["epoch_length"],
        warmup_epochs=optim_cfg["warmup_epochs"],
        min_lr=optim_cfg["min_lr"],
        weight_decay=optim_cfg["weight_decay"],
        weight_decay_end=optim_cfg["weight_decay_end"],
        momentum_teacher=teacher_cfg["momentum_teacher"],
        final_momentum_teacher=teacher_cfg["final_momentum_teacher"],
        warmup_teacher_temp=teacher_cfg["warmup_teacher_temp"],
        teacher_temp=teacher_cfg["teacher_temp"],
        warmup_teacher_temp_epochs=teacher_cfg["warmup_teacher_temp_epochs"],
        freeze_last_layer_epochs=optim_cfg["freeze_last_layer_epochs"],
    )
    make_batch = BatchMaker(config, make_source(config), rank(), world_size())
    normalize = make_normalizer(backbone, device)
    make_batch.patch_size = backbone.patch_size
    student_params = [p for p in meta.student.parameters() if p.requires_grad]
    last_layer_params = [p for n, p in meta.student.named_parameters() if "last_layer" in n]
    amp_dtype = parallel.autocast_dtype(config, device)
    scaler = parallel.make_grad_scaler(amp_dtype, device, sharded)

    start_step, collapsed_steps = ckpt.restore_training_state(run_dir, meta, optimizer, scaler)
    metrics_path = run_dir / "metrics.jsonl"
    if is_main:
        ckpt.truncate_metrics(metrics_path, start_step)
    board = _open_tensorboard(run_dir, start_step) if is_main and train_cfg["tensorboard"] else None

    total_steps = train_cfg["epochs"] * train_cfg["epoch_length"]
    end_step = total_steps if stop_at_step is None else min(stop_at_step, total_steps)
    batches = batch_stream(
        make_batch, start_step, end_step, config["data"]["num_workers"], device.type == "cuda"
    )
    bar = tqdm(
        range(start_step, end_step),
        initial=start_step,
        total=total_steps,
        disable=not (progress and is_main),
        desc="pretrain",
    )
    with _stop_clearly_if_a_peer_is_lost(run_dir, train_cfg["collective_timeout_s"]):
        for step in bar:
            tic = time.perf_counter()
            apply_optim_schedule(
                optimizer,
                schedules.lr[step],
                schedules.weight_decay[step],
                schedules.last_layer_lr[step],
            )
            batch = _to_device(next(batches), device, normalize)

            meta.student.train()
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                losses = meta(batch, teacher_temp=schedules.teacher_temp[step])
            finite = torch.isfinite(losses["total"].detach()).float()
            if all_reduce_sum(finite).item() < world_size():
                terms = {k: float(v.detach()) for k, v in losses.items()}
                raise TrainingDiverged(
                    f"non-finite loss at step {step} ({terms}); the run stopped and keeps its "
                    f"last good checkpoint {ckpt.latest_checkpoint(run_dir)}"
                )

            optimizer.zero_grad(set_to_none=True)
            (losses["total"] if scaler is None else scaler.scale(losses["total"])).backward()
            parallel.average_gradients(student_params, sharded)
            if schedules.last_layer_frozen(step):
                for param in last_layer_params:
                    param.grad = None
            if scaler is not None:
                scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            max_norm = optim_cfg["clip_grad"] or float("inf")  # 0 = no clipping
            grad_norm = torch.nn.utils.clip_grad_norm_(student_params, max_norm)  # global norm
            skipped = _optimizer_step(optimizer, scaler)
            parallel.update_teacher_ema(meta, schedules.teacher_momentum[step])

            record = _mean_over_ranks(losses)
            record.update(
                step=step,
                lr=schedules.lr[step],
                momentum=schedules.teacher_momentum[step],
                teacher_temp=schedules.teacher_temp[step],
                grad_norm=_finite_or_none(float(parallel.full_value(grad_norm))),
                world_size=world_size(),
                images_per_s=round(total_batch / (time.perf_counter() - tic), 2),
            )
            if scaler is not None:  # fp16: a skipped step (inf gradients) is logged, not fatal
                record.update(skipped_step=skipped, loss_scale=scaler.get_scale())
            collapsed_steps = collapsed_steps + 1 if health.collapsed(record) else 0
            if is_main:
                with metrics_path.open("a") as handle:
                    handle.write(json.dumps(record) + "\n")
                if board is not None:
                    for key, value in record.items():
                        if key != "step" and isinstance(value, int | float):
                            board.add_scalar(key, value, step)
                bar.set_postfix(
                    loss=f"{record['total']:.3f}",
                    ent=f"{record['teacher_entropy']:.2f}",
                    lr=f"{record['lr']:.1e}",
                    mom=f"{record['momentum']:.4f}",
                    ips=f"{record['images_per_s']:.0f}",
                )

            if (step + 1) % train_cfg["checkpoint_every"] == 0 or step + 1 == total_steps:
                ckpt.save_training_state(
                    run_dir, step, meta, optimizer, scaler, collapsed_steps, train_cfg
                )
                if board is not None:
                    board.flush()  # events up to the checkpoint survive a kill
            if (
                collapsed_steps >= config["health"]["collapse_patience"]
                and config["health"]["fail_on_collapse"]
            ):
                raise CollapseDetected(
                    f"teacher targets collapsed for {collapsed_steps} steps (teacher entropy "
                    f"{record['teacher_entropy']:.3f} of ln K, batch entropy "
                    f"{record['batch_entropy']:.3f}); "
                    "lower the teacher temperature or the number of prototypes"
                )

    if board is not None:
        board.close()
    final = run_dir / "teacher_backbone.safetensors"
    if end_step == total_steps:
        teacher = parallel.unsharded_teacher_backbone(meta, sharded, keep=is_main)
        if is_main:
            save_backbone(teacher, final)
    return final
