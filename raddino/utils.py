"""Small shared helpers: atomic file writes, run provenance (versions), JSON I/O."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(final_path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `final_path`; on success `os.replace` it into place.

    A crash leaves either the old file or none, never a half-written one.
    """
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{final_path.name}.", suffix=suffix + ".tmp", dir=final_path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp_name)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes 0600 files; give the final file the usual mode
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, final_path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def versions() -> dict[str, str]:
    """Versions of Python and the packages that decide our numbers, for provenance records."""
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("raddino", "torch", "torchvision", "timm", "numpy", "safetensors"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


def hardware_description() -> dict[str, Any]:
    """What a run ran on: CPU model and cores, torch threads, the CUDA device if any."""
    import torch

    info: dict[str, Any] = {
        "machine": platform.machine(),
        "cpu": platform.processor() or _cpu_model_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
        info["cuda_device_count"] = torch.cuda.device_count()
    return info


def _cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def spec_and_label(text: str) -> tuple[str, str]:
    """A benchmark's `--spec` value 'LABEL=SPEC' or 'SPEC' (its own label) -> (spec, label)."""
    label, _, spec = text.rpartition("=")
    return spec, label or spec
