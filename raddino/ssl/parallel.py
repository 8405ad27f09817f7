"""Data parallelism and mixed precision for the pretraining loop: DDP-style or FSDP2, fp16 scaling.

`ddp` (default): every rank holds the whole model and `average_gradients` averages the gradients
with one explicit all-reduce per step. `fsdp`: the student AND the teacher are sharded with
`torch.distributed.fsdp.fully_shard` (FSDP2): each backbone block, then each backbone, then each
head, then the meta-architecture as the root (its forward is the one call per step that runs both
branches, which FSDP2 needs from its root). FSDP reduce-scatters the gradients itself.

The teacher is sharded exactly like the student, so the EMA update is an element-wise update of
each rank's local shards (`update_teacher_ema`): exact, and no rank ever holds a full copy.
Checkpoints always hold full, unsharded tensors in the DDP layout (`gather_full_state`,
`shard_state_like`), so a run saved under one mode resumes under the other.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import torch
from torch import nn

from raddino.ssl.distributed import all_reduce_sum, world_size


def autocast_dtype(config: dict, device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA by default, fp32 (no autocast) on CPU; fp16 also works on CPU (torch >= 2.3)."""
    precision = config["train"]["precision"]
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def check_precision_supported(config: dict, device: torch.device) -> None:
    """Fail early, naming `train.precision`, when this device cannot autocast to the asked dtype."""
    precision = config["train"]["precision"]
    if precision not in ("bf16", "fp16"):
        return
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    try:
        with torch.autocast(device.type, dtype=dtype):
            probe = torch.ones(2, 2, device=device) @ torch.ones(2, 2, device=device)
    except (RuntimeError, AssertionError) as err:
        raise ValueError(
            f"config key 'train.precision'={precision!r}: autocast to {dtype} is not supported "
            f"on device {device.type!r} in torch {torch.__version__} ({err})"
        ) from err
    if probe.dtype != dtype:
        raise ValueError(
            f"config key 'train.precision'={precision!r}: autocast on {device.type!r} computed "
            f"{probe.dtype} instead of {dtype} in torch {torch.__version__}"
        )


def compile_modules(meta: nn.Module) -> None:
    """`torch.compile` every transformer block and head of student and teacher in place
    (`Module.compile` keeps parameter names, so checkpoints are unchanged): fuses the norms,
    GELU, layer-scale products and residual adds that run as separate memory-bound kernels in
    eager mode (on an H200, blocks alone took a gpu-paper step from 0.52 to 0.40 s). Call after
    `wrap_for_training`."""
    for branch in (meta.student, meta.teacher):
        for block in branch["backbone"].blocks:
            block.compile()
        for name, module in branch.items():
            if name != "backbone":
                module.compile()


def wrap_for_training(meta: nn.Module, config: dict, device: torch.device) -> bool:
    """Shard `meta` in place with FSDP2 when `train.distributed` is `fsdp`; True when sharded.

    Call before building the optimizer (sharding replaces every parameter by a DTensor).
    No mixed-precision policy: precision comes from the loop's autocast, as under DDP, so both
    modes compute the same numbers.
    """
    if config["train"]["distributed"] != "fsdp":
        return False
    if world_size() == 1:
        warnings.warn(
            "train.distributed=fsdp on a single process: nothing to shard, training unsharded",
            stacklevel=2,
        )
        return False
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    # FSDP2 warns that the backbone returns views (its dict of cls/patch slices): in-place ops on
    # them would skip its backward hook. Nothing here writes to them in place, and the parity
    # tests (tests/test_ssl_fsdp.py: FSDP == DDP gradients and weights) would catch it if it did.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
    mesh = init_device_mesh(device.type, (world_size(),))
    for branch in (meta.student, meta.teacher):
        backbone = branch["backbone"]
        for block in backbone.blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(backbone, mesh=mesh)
        # the meta-architecture calls `forward_features`, not `forward`: hook that method too
        register_fsdp_forward_method(backbone, "forward_features")
        for name, head in branch.items():
            if name != "backbone":
                fully_shard(head, mesh=mesh)
    fully_shard(meta, mesh=mesh)  # the root: holds no parameters of its own
    return True


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor (a view sharing storage); a plain tensor unchanged."""
    from torch.distributed.tensor import DTensor

    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


@torch.no_grad()
def update_teacher_ema(meta: nn.Module, momentum: float) -> None:
    """teacher <- momentum * teacher + (1 - momentum) * student, on local shards under FSDP.

    Student and teacher are sharded identically, so shard i of one matches shard i of the other.
    """
    student = [_local(p) for p in meta.student.parameters()]
    teacher = [_local(p) for p in meta.teacher.parameters()]
    if [s.shape for s in student] != [t.shape for t in teacher]:
        raise RuntimeError("student and teacher parameters are not laid out alike")
    torch._foreach_mul_(teacher, momentum)
    torch._foreach_add_(teacher, student, alpha=1.0 - momentum)


def average_gradients(params: Iterable[nn.Parameter], sharded: bool) -> None:
    """Mean of the gradients over ranks in one flat all-reduce (what DDP does, made explicit).

    Nothing to do under FSDP: its backward already reduce-scattered the averaged gradients.
    """
    n_ranks = world_size()
    if n_ranks == 1 or sharded:
        return
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    all_reduce_sum(flat).div_(n_ranks)
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def full_value(value: torch.Tensor) -> torch.Tensor:
    """A DTensor gathered to its full tensor (a collective: every rank calls it); plain as is."""
    from torch.distributed.tensor import DTensor

    if isinstance(value, DTensor):
        value = value.full_tensor()
    return value.detach()


def gather_full_state(
    state_dict: dict[str, torch.Tensor], keep: bool = True
) -> dict[str, torch.Tensor]:
    """A state dict with every DTensor gathered into a full CPU tensor (every rank calls).

    With `keep=False` this rank only takes part in the gathers and gets `{}` (as `cpu_offload`
    of `get_model_state_dict` does for ranks > 0). Hand-written instead of torch's
    `get_model_state_dict(full_state_dict=True)`, which in torch 2.14 fails on the DINO head's
    official key names ("'ParametrizedLinear' object has no attribute 'weight_g'"), and of
    `get_optimizer_state_dict`, which keys moments by parameter name instead of the DDP ids.
    """
    gathered = {}
    for name, value in state_dict.items():
        value = full_value(value)
        if keep:
            gathered[name] = value.cpu()
    return gathered


def shard_like(full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`full` cut into this rank's shard with the layout of DTensor `like` (no communication)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if not isinstance(like, DTensor):
        return full
    if tuple(full.shape) != tuple(like.shape):
        raise ValueError(
            f"checkpoint tensor shape {tuple(full.shape)} != model {tuple(like.shape)}"
        )
    full = full.to(device=like.device, dtype=like.dtype)
    return distribute_tensor(full, like.device_mesh, like.placements, src_data_rank=None)


def shard_state_like(
    full_state: dict[str, torch.Tensor], current: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Full tensors from a checkpoint cut to the layout of the model's `current` state dict."""
    return {
        name: shard_like(value, current[name]) if name in current else value
        for name, value in full_state.items()
    }


def gather_full_optimizer_state(optimizer: torch.optim.Optimizer, keep: bool = True) -> dict:
    """`optimizer.state_dict()` with sharded moments gathered: the DDP layout (every rank calls).

    With `keep=False` this rank only takes part in the gathers and gets `{}`.
    """
    state_dict = optimizer.state_dict()
    full_state = {}
    for param_id, param_state in state_dict["state"].items():
        full = {k: full_value(v) if torch.is_tensor(v) else v for k, v in param_state.items()}
        if keep:
            full_state[param_id] = full
    return {**state_dict, "state": full_state} if keep else {}


def shard_optimizer_state(optimizer: torch.optim.Optimizer, full_state: dict) -> dict:
    """A full (DDP-layout) optimizer state dict cut to this optimizer's sharded parameters."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state = {}
    for param_id, param_state in full_state["state"].items():
        param = params[int(param_id)]
        state[param_id] = {
            name: shard_like(value, param)
            if name != "step" and torch.is_tensor(value) and value.shape == param.shape
            else value
            for name, value in param_state.items()
        }
    return {**full_state, "state": state}


def unsharded_teacher_backbone(
    meta: nn.Module, sharded: bool, keep: bool = True
) -> nn.Module | None:
    """The teacher backbone with full weights: under FSDP gathered (every rank calls) into a
    fresh copy that only ranks with `keep` build; the others get None."""
    teacher = meta.teacher["backbone"]
    if not sharded:
        return teacher
    from raddino.models.backbone import build_backbone_from_config

    full_state = gather_full_state(teacher.state_dict(), keep=keep)
    if not keep:
        return None
    full = build_backbone_from_config(teacher.config)
    full.load_state_dict(full_state)
    for attr in ("preprocessing", "pos_embed_interpolation", "pos_embed_antialias"):
        setattr(full, attr, getattr(teacher, attr))
    return full


# ---- fp16 loss scaling -----------------------------------------------------------------------


def make_grad_scaler(amp_dtype: torch.dtype | None, device: torch.device, sharded: bool):
    """A loss scaler for fp16 autocast (None otherwise).

    Under FSDP each rank checks only its gradient shards for inf/NaN, so the sharded scaler
    all-reduces that finding: every rank then skips (or takes) the same step.
    """
    if amp_dtype != torch.float16:
        return None
    if sharded:
        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

        return ShardedGradScaler(device.type)
    return torch.amp.GradScaler(device.type)


def scaler_state_for_json(scaler) -> dict | None:
    """The scaler's state (plain numbers) for `state.json`; None without a scaler."""
    if scaler is None:
        return None
    return {k: (float(v) if k == "scale" else v) for k, v in scaler.state_dict().items()}
