"""Training checkpoints that lose nothing and unpickle nothing.

A checkpoint is a folder `RUN/checkpoints/step_XXXXXXXX/` with `state.safetensors` (every tensor:
model, optimizer moments, loss centres, RNG states) and `state.json` (everything else: step, sampler
position, optimizer hyper-parameters, Python/NumPy RNG states). The folder is written under a
temporary name and renamed into place, then `latest` is updated atomically, so a SIGKILL at any
moment leaves the previous checkpoint intact.

Tensors are always full (unsharded): under FSDP `save_training_state` gathers the shards and
`restore_training_state` cuts them again, so a run resumes under `ddp` or `fsdp` alike. The fp16
loss scaler's state is plain numbers in `state.json`. The run folder's `config.yaml` and
`metrics.jsonl` bookkeeping for auto-resume lives here too.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from safetensors.torch import load_file, save_file

from raddino.ssl import parallel
from raddino.ssl.distributed import rank, world_size
from raddino.utils import versions, write_text_atomic

STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"


# ---- RNG state -------------------------------------------------------------------------------


def capture_rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Python, NumPy (global), torch CPU and CUDA generator states as (tensors, json)."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    version, mt_state, gauss = random.getstate()
    kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()  # noqa: NPY002 (third-party global state)
    tensors["rng.numpy.keys"] = torch.from_numpy(np_keys.astype(np.int64))
    meta = {
        "python": [version, list(mt_state), gauss],
        "numpy": [kind, int(np_pos), int(np_has_gauss), float(np_gauss)],
    }
    return tensors, meta


def restore_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state`."""
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    version, mt_state, gauss = meta["python"]
    random.setstate((version, tuple(mt_state), gauss))
    kind, pos, has_gauss, cached = meta["numpy"]
    keys = tensors["rng.numpy.keys"].numpy().astype(np.uint32)
    np.random.set_state((kind, keys, pos, has_gauss, cached))  # noqa: NPY002


# ---- optimizer state -------------------------------------------------------------------------


def flatten_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a torch optimizer state dict into safetensors-able tensors and JSON metadata."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, param_state in state_dict["state"].items():
        for name, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"optim.state.{param_id}.{name}"] = value
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    groups = [
        {k: list(v) if isinstance(v, tuple) else v for k, v in g.items()}
        for g in state_dict["param_groups"]
    ]
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict:
    """Inverse of `flatten_optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim.state."):
            param_id, name = key[len("optim.state.") :].split(".", 1)
            state.setdefault(int(param_id), {})[name] = value
    for param_id, values in meta["scalars"].items():
        state.setdefault(int(param_id), {}).update(values)
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


# ---- checkpoint folders ----------------------------------------------------------------------


def _step_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:08d}"


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write one checkpoint folder atomically, point `latest` at it, keep the newest `keep`."""
    run_dir = Path(run_dir)
    final = _step_dir(run_dir, step)
    tmp = final.with_name(f".tmp-{final.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    save_file(contiguous, tmp / STATE_TENSORS)
    (tmp / STATE_JSON).write_text(json.dumps({"step": step, **meta}, indent=1))
    if final.exists():  # a rerun of the same step (after a crash between rename and `latest`)
        shutil.rmtree(final)
    tmp.rename(final)
    write_text_atomic(run_dir / "checkpoints" / "latest", final.name + "\n")
    existing = sorted(p for p in final.parent.glob("step_*") if p.is_dir())
    for old in existing[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoint_after(run_dir: str | Path, steps_done: int) -> Path:
    """The folder of the checkpoint written after `steps_done` steps (folders count from 0)."""
    return _step_dir(Path(run_dir), steps_done - 1)


TEACHER_ONLY = "teacher_only"  # state.json key of a checkpoint cut down to its teacher backbone


def teacher_only_checkpoint(folder: str | Path, run_dir: str | Path) -> Path:
    """Copy checkpoint `folder` into `run_dir/checkpoints/` as its teacher backbone alone, in fp16
    (5.7 MB for vit_tiny instead of the 65 MB training state), for bringing a run's checkpoints
    back from a GPU lease whose files may be 16 MiB each. Probing and `raddino release
    --checkpoint` read it like a full one; resuming from it is an error."""
    tensors, meta = load_checkpoint(folder)
    prefix = "meta.teacher.backbone."
    teacher = {k: v.half() for k, v in tensors.items() if k.startswith(prefix)}
    if not teacher:
        raise KeyError(f"{folder}: no {prefix}* tensors to keep")
    note = {TEACHER_ONLY: f"the teacher backbone (fp16) of {Path(folder).name}"}
    return save_checkpoint(run_dir, meta["step"], teacher, note, keep=1_000_000)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The folder that `latest` names, or None when the run has no complete checkpoint."""
    pointer = Path(run_dir) / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    folder = pointer.parent / pointer.read_text().strip()
    if not (folder / STATE_TENSORS).exists() or not (folder / STATE_JSON).exists():
        raise ValueError(f"{pointer} names {folder.name}, which is incomplete or missing")
    return folder


def load_checkpoint(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint folder: (tensors, meta). Nothing is unpickled."""
    folder = Path(folder)
    try:
        tensors = load_file(folder / STATE_TENSORS)
        meta = json.loads((folder / STATE_JSON).read_text())
    except (OSError, json.JSONDecodeError, Exception) as err:  # safetensors raises its own types
        raise ValueError(f"cannot read checkpoint {folder}: {err}") from err
    return tensors, meta


def prefixed(prefix: str, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`{name: t}` -> `{prefix.name: t}` for packing several state dicts into one file."""
    return {f"{prefix}.{k}": v for k, v in state_dict.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of `prefixed` for one prefix."""
    start = prefix + "."
    return {k[len(start) :]: v for k, v in tensors.items() if k.startswith(start)}


# ---- run folders and whole training states ------------------------------------------------


def run_config(run_dir: str | Path) -> dict:
    """`RUN/config.yaml`, the resolved config the run was made with."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a run folder (no resolved config.yaml)")
    return yaml.safe_load(path.read_text())


# keys that may change between a run and its resumption: they change how a run is computed,
# never what it computes (tests hold each to that)
_SWITCHABLE_ON_RESUME = frozenset({"train.distributed", "data.num_workers", "data.prerender"})


def prepare_run_dir(run_dir: Path, config: dict, write: bool = True) -> None:
    """Write `config.yaml`; an existing run must have the same config (auto-resume).

    Only `_SWITCHABLE_ON_RESUME` keys may differ (checkpoints have one layout for ddp and fsdp;
    batches are the same with or without worker processes and prerendering).
    """
    config_path = run_dir / "config.yaml"
    if config_path.exists():
        previous = yaml.safe_load(config_path.read_text())
        flat_old, flat_new = _flat(previous), _flat(config)
        changed = sorted(
            k for k in flat_old.keys() | flat_new.keys() if flat_old.get(k) != flat_new.get(k)
        )
        if changed and write:
            for key in set(changed) & _SWITCHABLE_ON_RESUME:
                print(f"resuming {run_dir} with {key}={flat_new[key]} (was {flat_old[key]})")
        if set(changed) - _SWITCHABLE_ON_RESUME:
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


def truncate_metrics(path: Path, first_step: int) -> None:
    """Drop logged steps >= first_step (written after the checkpoint we resume from)."""
    if not path.exists():
        return
    kept = [
        line
        for line in path.read_text().splitlines()
        if line and json.loads(line)["step"] < first_step
    ]
    write_text_atomic(path, "".join(line + "\n" for line in kept))


def save_training_state(
    run_dir: Path,
    step: int,
    meta: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    collapsed_steps: int,
    train_cfg: dict,
) -> None:
    """Rank 0 writes the checkpoint (full tensors, every rank's torch RNG state); others wait."""
    rank_rng = {}
    if dist.is_initialized():
        states = [torch.empty_like(torch.get_rng_state()) for _ in range(world_size())]
        dist.all_gather(states, torch.get_rng_state())
        rank_rng = {f"rng.torch.rank{r}": s for r, s in enumerate(states)}
    # full tensors whatever the parallel mode: gathered from the shards under FSDP (collectives)
    meta_state = parallel.gather_full_state(meta.state_dict(), keep=rank() == 0)
    optim_state = parallel.gather_full_optimizer_state(optimizer, keep=rank() == 0)
    if rank() == 0:
        opt_tensors, opt_meta = flatten_optimizer_state(optim_state)
        rng_tensors, rng_meta = capture_rng_state()
        tensors = {
            **prefixed("meta", meta_state),
            **opt_tensors,
            **rng_tensors,
            **rank_rng,
        }
        state = {
            "optim": opt_meta,
            "rng": rng_meta,
            "collapsed_steps": collapsed_steps,
            "grad_scaler": parallel.scaler_state_for_json(scaler),
            "versions": versions(),
        }
        save_checkpoint(run_dir, step, tensors, state, keep=train_cfg["keep_checkpoints"])
    if dist.is_initialized():
        dist.barrier()


def restore_training_state(
    run_dir: Path,
    meta: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
) -> tuple[int, int]:
    """Load the latest checkpoint (full tensors, cut to shards under FSDP), if there is one.

    Returns (first step to run, collapsed steps so far); (0, 0) for a new run.
    """
    latest = latest_checkpoint(run_dir)
    if latest is None:
        return 0, 0
    tensors, state = load_checkpoint(latest)
    if TEACHER_ONLY in state:
        raise ValueError(
            f"{latest}: a teacher-only checkpoint ({state[TEACHER_ONLY]}) cannot resume training"
        )
    meta_state = unprefixed("meta", tensors)
    meta.load_state_dict(parallel.shard_state_like(meta_state, meta.state_dict()))
    full_optim = unflatten_optimizer_state(tensors, state["optim"])
    optimizer.load_state_dict(parallel.shard_optimizer_state(optimizer, full_optim))
    if scaler is not None and state.get("grad_scaler") is not None:
        scaler.load_state_dict(state["grad_scaler"])
    restore_rng_state(tensors, state["rng"])
    if f"rng.torch.rank{rank()}" in tensors:  # each rank's own drop-path stream
        torch.set_rng_state(tensors[f"rng.torch.rank{rank()}"])
    return state["step"] + 1, state["collapsed_steps"]
