"""Training checkpoints that lose nothing and unpickle nothing.

A checkpoint is a folder `RUN/checkpoints/step_XXXXXXXX/` with `state.safetensors` (every tensor:
model, optimizer moments, loss centres, RNG states) and `state.json` (everything else: step, sampler
position, optimizer hyper-parameters, Python/NumPy RNG states). The folder is written under a
temporary name and renamed into place, then `latest` is updated atomically, so a SIGKILL at any
moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from raddino.utils import write_text_atomic

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
