"""metrics.json: an evaluation's numbers together with its config and the versions that made them.

Every evaluator (`probe`, `metadata`, segmentation, ...) writes one of these beside its result so
a run can be traced and compared; `read_metrics_json` checks the format on the way back in.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from pathlib import Path
from typing import Any

METRICS_FORMAT = "raddino.metrics/1"
_EXTRA_PACKAGES = ("scikit-learn", "transformers", "open_clip_torch", "pandas")


def provenance_versions() -> dict[str, str]:
    """`raddino.utils.versions()` plus the packages evaluators depend on, where installed."""
    import importlib.metadata as md

    from raddino.utils import versions

    out = versions()
    for name in _EXTRA_PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


def _json_safe(value: Any) -> Any:
    """NaN/inf -> None (JSON has no NaN); numpy scalars/arrays -> Python values."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, str):  # numpy scalar or array
        return _json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def metrics_record(
    evaluation: str, metrics: dict[str, Any], config: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """The JSON-ready record: format, evaluation name, UTC time, config, metrics, versions."""
    record = {
        "format": METRICS_FORMAT,
        "evaluation": evaluation,
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": config,
        "metrics": metrics,
        **extra,
        "versions": provenance_versions(),
    }
    return _json_safe(record)


def write_metrics_json(
    path: str | os.PathLike,
    evaluation: str,
    metrics: dict[str, Any],
    config: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """Write `metrics_record(...)` to `path` atomically (strict JSON: NaN becomes null)."""
    from raddino.utils import write_text_atomic

    path = Path(path)
    if path.suffix != ".json":
        raise ValueError(f"--out {path}: metrics files end in .json")
    record = metrics_record(evaluation, metrics, config, **extra)
    write_text_atomic(path, json.dumps(record, indent=2, allow_nan=False) + "\n")
    return record


def read_metrics_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read a metrics.json written by `write_metrics_json`; errors name the file and the cause."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metrics file not found: {path}")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(record, dict) or record.get("format") != METRICS_FORMAT:
        raise ValueError(f"{path}: not a {METRICS_FORMAT} file")
    return record
