"""The DINOv2 pretraining loop: one code path from 1 CPU process to N GPU nodes under torchrun.

Read top to bottom: set up (distributed, model, optimiser, schedules, data), resume if the run
folder has a checkpoint, then per step: schedules -> batch -> losses -> backward -> gradient
all-reduce -> clip -> step -> EMA teacher -> log -> checkpoint. The run folder holds
`config.yaml`, `metrics.jsonl`, `checkpoints/` and, at the end, `teacher_backbone.safetensors`
(loadable by `raddino.models.weights.load_backbone`).

Data parallelism is explicit: every rank averages gradients with one all-reduce per step (the
same reduction DDP performs, written out so that the losses' own cross-rank reductions and this
one sit side by side). A rank that dies makes the others fail at their next collective within
`train.collective_timeout_s` instead of hanging.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from tqdm.auto import tqdm

from raddino.ssl import checkpoint as ckpt
from raddino.ssl.data import BatchMaker, FolderSource, PhantomSource
from raddino.ssl.distributed import all_reduce_sum, rank, world_size
from raddino.ssl.meta_arch import DinoV2MetaArch, SslBatch
from raddino.ssl.schedules import (
    apply_optim_schedule,
    build_schedules,
    fuse_param_groups,
    param_groups,
    scaled_lr,
)
from raddino.utils import hardware_description, versions, write_json_atomic, write_text_atomic


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


def setup_distributed(config: dict) -> torch.device:
    """Join the torchrun process group when launched by torchrun; choose the device."""
    wanted = config["train"]["device"]
    use_cuda = wanted == "cuda" or (wanted == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("config key 'train.device' is 'cuda' but no CUDA device is available")
    if (
        "WORLD_SIZE" in os.environ
        and int(os.environ["WORLD_SIZE"]) > 1
        and not dist.is_initialized()
    ):
        timeout = datetime.timedelta(seconds=config["train"]["collective_timeout_s"])
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timeout)
    if use_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local_rank)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def autocast_dtype(config: dict, device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA by default, fp32 (no autocast) on CPU."""
    precision = config["train"]["precision"]
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


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


def make_normalizer(backbone):
    """(N, 1, H, W) in [0, 1] -> (N, 3, H, W) normalised with the backbone's own statistics."""
    prep = backbone.preprocessing
    mean = torch.tensor(prep.mean).view(1, 3, 1, 1)
    std = torch.tensor(prep.std).view(1, 3, 1, 1)

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
    return torch.optim.AdamW(fuse_param_groups(groups), betas=betas)


def make_source(config: dict):
    data = config["data"]
    if data["source"] == "phantom":
        return PhantomSource(config["train"]["seed"], data["phantom_size"], data["phantom_views"])
    if data["source"] == "folder":
        return FolderSource(data["path"], config["train"]["seed"], data["max_images"])
    from raddino.data.deadleaves import DeadLeavesSource

    return DeadLeavesSource(config["train"]["seed"], data["phantom_size"])


# ---- run folder ------------------------------------------------------------------------------


def prepare_run_dir(run_dir: Path, config: dict, write: bool = True) -> None:
    """Write `config.yaml`; an existing run must have the same config (auto-resume)."""
    config_path = run_dir / "config.yaml"
    if config_path.exists():
        previous = yaml.safe_load(config_path.read_text())
        if previous != config:
            flat_old, flat_new = _flat(previous), _flat(config)
            changed = sorted(
                k for k in flat_old.keys() | flat_new.keys() if flat_old.get(k) != flat_new.get(k)
            )
            raise ValueError(
                f"{config_path} exists with a different config (keys {changed}); "
                "resume with the same settings or choose a new --out"
            )
        return
    if write:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(config_path, yaml.safe_dump(config, sort_keys=False))


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _truncate_metrics(path: Path, first_step: int) -> None:
    """Drop logged steps >= first_step (written after the checkpoint we resume from)."""
    if not path.exists():
        return
    kept = [
        line
        for line in path.read_text().splitlines()
        if line and json.loads(line)["step"] < first_step
    ]
    write_text_atomic(path, "".join(line + "\n" for line in kept))


# ---- the loop --------------------------------------------------------------------------------


def _to_device(batch: SslBatch, device: torch.device) -> SslBatch:
    if device.type == "cpu":
        return batch
    batch.global_crops = batch.global_crops.to(device, non_blocking=True)
    if batch.local_crops is not None:
        batch.local_crops = batch.local_crops.to(device, non_blocking=True)
    if batch.masks is not None:
        for field in ("masks_bn", "mask_indices_m", "masks_weight_m", "n_masked_patches"):
            setattr(batch.masks, field, getattr(batch.masks, field).to(device, non_blocking=True))
    return batch


def _mean_over_ranks(losses: dict[str, torch.Tensor]) -> dict[str, float]:
    """Loss terms and diagnostics averaged over ranks (one all-reduce), for logging."""
    names = sorted(losses)
    values = torch.stack([losses[k].detach().float() for k in names])
    all_reduce_sum(values).div_(world_size())
    return {k: round(float(v), 6) for k, v in zip(names, values.tolist(), strict=True)}


def _average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Mean of the gradients over ranks, in one flat all-reduce (what DDP does, made explicit)."""
    n_ranks = world_size()
    if n_ranks == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    all_reduce_sum(flat).div_(n_ranks)
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()


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
    prepare_run_dir(run_dir, config, write=is_main)  # every rank checks, rank 0 writes
    if is_main and not (run_dir / "hardware.json").exists():  # what the release manifest cites
        write_json_atomic(
            run_dir / "hardware.json", {**hardware_description(), "world_size": world_size()}
        )
    if dist.is_initialized():
        dist.barrier()
    torch.manual_seed(config["train"]["seed"])  # identical initial weights on every rank
    backbone = build_backbone_for(config)
    meta = DinoV2MetaArch(backbone, config).to(device)
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
    make_batch = BatchMaker(
        config, make_source(config), rank(), world_size(), make_normalizer(backbone)
    )
    make_batch.patch_size = backbone.patch_size
    student_params = [p for p in meta.student.parameters() if p.requires_grad]
    last_layer_params = [p for n, p in meta.student.named_parameters() if "last_layer" in n]
    amp_dtype = autocast_dtype(config, device)

    start_step, collapsed_steps = 0, 0
    latest = ckpt.latest_checkpoint(run_dir)
    if latest is not None:
        tensors, state = ckpt.load_checkpoint(latest)
        meta.load_state_dict(ckpt.unprefixed("meta", tensors))
        optimizer.load_state_dict(ckpt.unflatten_optimizer_state(tensors, state["optim"]))
        ckpt.restore_rng_state(tensors, state["rng"])
        if f"rng.torch.rank{rank()}" in tensors:  # each rank's own drop-path stream
            torch.set_rng_state(tensors[f"rng.torch.rank{rank()}"])
        start_step, collapsed_steps = state["step"] + 1, state["collapsed_steps"]
    metrics_path = run_dir / "metrics.jsonl"
    if is_main:
        _truncate_metrics(metrics_path, start_step)

    total_steps = train_cfg["epochs"] * train_cfg["epoch_length"]
    end_step = total_steps if stop_at_step is None else min(stop_at_step, total_steps)
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
            batch = _to_device(make_batch(step), device)

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
            losses["total"].backward()
            _average_gradients(student_params)
            if schedules.last_layer_frozen(step):
                for param in last_layer_params:
                    param.grad = None
            max_norm = optim_cfg["clip_grad"] or float("inf")  # 0 = no clipping
            grad_norm = torch.nn.utils.clip_grad_norm_(student_params, max_norm)
            optimizer.step()
            meta.update_teacher(schedules.teacher_momentum[step])

            record = _mean_over_ranks(losses)
            record.update(
                step=step,
                lr=schedules.lr[step],
                momentum=schedules.teacher_momentum[step],
                teacher_temp=schedules.teacher_temp[step],
                grad_norm=round(float(grad_norm), 6),
                world_size=world_size(),
                images_per_s=round(total_batch / (time.perf_counter() - tic), 2),
            )
            collapsed = record["teacher_entropy"] > 0.98 or record["batch_entropy"] < 0.05
            collapsed_steps = collapsed_steps + 1 if collapsed else 0
            if is_main:
                with metrics_path.open("a") as handle:
                    handle.write(json.dumps(record) + "\n")
                bar.set_postfix(
                    loss=f"{record['total']:.3f}",
                    ent=f"{record['teacher_entropy']:.2f}",
                    lr=f"{record['lr']:.1e}",
                    ips=f"{record['images_per_s']:.0f}",
                )

            if (step + 1) % train_cfg["checkpoint_every"] == 0 or step + 1 == total_steps:
                _save(
                    run_dir, step, meta, optimizer, collapsed_steps, train_cfg["keep_checkpoints"]
                )
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

    final = run_dir / "teacher_backbone.safetensors"
    if end_step == total_steps and is_main:
        save_backbone(meta.teacher["backbone"], final)
    return final


def _save(run_dir: Path, step: int, meta, optimizer, collapsed_steps: int, keep: int) -> None:
    """Rank 0 writes the checkpoint (with every rank's torch RNG state); the others wait."""
    rank_rng = {}
    if dist.is_initialized():
        states = [torch.empty_like(torch.get_rng_state()) for _ in range(world_size())]
        dist.all_gather(states, torch.get_rng_state())
        rank_rng = {f"rng.torch.rank{r}": s for r, s in enumerate(states)}
    if rank() == 0:
        opt_tensors, opt_meta = ckpt.flatten_optimizer_state(optimizer.state_dict())
        rng_tensors, rng_meta = ckpt.capture_rng_state()
        tensors = {
            **ckpt.prefixed("meta", meta.state_dict()),
            **opt_tensors,
            **rng_tensors,
            **rank_rng,
        }
        state = {
            "optim": opt_meta,
            "rng": rng_meta,
            "collapsed_steps": collapsed_steps,
            "versions": versions(),
        }
        ckpt.save_checkpoint(run_dir, step, tensors, state, keep=keep)
    if dist.is_initialized():
        dist.barrier()
