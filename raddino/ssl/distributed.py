"""Explicit cross-rank reductions for the SSL losses; identity when torch.distributed is not set up.

Every loss that needs a statistic over the global batch (centre update, Sinkhorn-Knopp sums,
sample counts) calls these helpers, so the one-process and many-process code paths are the same
lines of code and the reductions are visible at the call site.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when a default process group is initialised (the helpers then really reduce)."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of ranks in the default process group (1 without one)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank in the default process group (0 without one)."""
    return dist.get_rank() if is_distributed() else 0


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over all ranks IN PLACE and return it (unchanged on a single process)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    """Element-wise max of `tensor` over all ranks IN PLACE, returned (identity on one process)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor
