"""Pretraining configs: defaults + a profile + `--set key=value` overrides, validated at the edge.

An unknown key, a value of the wrong type or out of range is a `ValueError` naming the key, so
nothing deep inside the trainer discovers a bad value late.
"""

from __future__ import annotations

import copy
import math
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

PROFILES = ("smoke", "cpu", "ablation", "phantom-release", "general-release", "gpu-paper")

# key -> (lower, upper) inclusive bounds checked after merging; None = unbounded on that side.
_RANGES: dict[str, tuple[float | None, float | None]] = {
    "data.max_images": (0, None),
    "data.phantom_size": (32, 4096),
    "data.pool_size": (1, None),
    "data.pool_refresh": (0, None),
    "data.num_workers": (0, 256),
    "model.drop_path_rate": (0.0, 0.9),
    "dino.head_n_prototypes": (2, None),
    "dino.head_nlayers": (1, 8),
    "dino.koleo_loss_weight": (0.0, None),
    "ibot.mask_sample_probability": (0.0, 1.0),
    "ibot.head_n_prototypes": (2, None),
    "train.batch_size_per_device": (2, None),  # KoLeo needs two samples per crop
    "train.epochs": (1, None),
    "train.epoch_length": (1, None),
    "train.checkpoint_every": (1, None),
    "train.keep_checkpoints": (1, None),
    "teacher.momentum_teacher": (0.0, 1.0),
    "teacher.final_momentum_teacher": (0.0, 1.0),
    "teacher.warmup_teacher_temp": (1e-4, 10.0),
    "teacher.teacher_temp": (1e-4, 10.0),
    "optim.base_lr": (0.0, 10.0),
    "optim.clip_grad": (0.0, None),
    "optim.layerwise_decay": (0.0, 1.0),
    "crops.global_crops_size": (14, 4096),
    "crops.local_crops_size": (14, 4096),
    "crops.local_crops_number": (0, 64),
    "crops.photometric_strength": (0.0, 2.0),
    "crops.random_borders_p": (0.0, 1.0),
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "data.source": ("phantom", "folder", "deadleaves"),
    "train.centering": ("centering", "sinkhorn_knopp"),
    "train.device": ("auto", "cpu", "cuda"),
    "train.precision": ("auto", "fp32", "bf16", "fp16"),
    "train.distributed": ("ddp", "fsdp"),
    "optim.scaling_rule": ("sqrt_wrt_1024", "linear_wrt_256", "none"),
}


def _read_yaml(name: str) -> dict:
    text = resources.files("raddino.ssl").joinpath("configs", f"{name}.yaml").read_text()
    return yaml.safe_load(text) or {}


def default_config() -> dict:
    """The full default config (a nested dict)."""
    return _read_yaml("default")


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Coerce `value` (possibly a string from the command line) to the type of `default`."""
    if isinstance(value, str) and not isinstance(default, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ValueError(f"config key {key!r}: cannot parse {value!r}: {err}") from err
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"config key {key!r}: expected true/false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ValueError(f"config key {key!r}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" and "nan" as strings
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"config key {key!r}: expected a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise ValueError(f"config key {key!r}: must be finite, got {value!r}")
        return float(value)
    if isinstance(default, list):
        if not isinstance(value, list):
            raise ValueError(f"config key {key!r}: expected a list, got {value!r}")
        if default and len(value) != len(default) and key.endswith(("_side", "_min_max")):
            raise ValueError(f"config key {key!r}: expected {len(default)} values, got {value!r}")
        return value
    if isinstance(default, str):
        return str(value)
    return value


def _set(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree[part]
    tree[leaf] = value


def merge(base: dict, overrides: dict[str, Any], source: str) -> dict:
    """Apply flat `{"a.b": value}` overrides to a nested config, rejecting unknown keys."""
    merged = copy.deepcopy(base)
    known = _flatten(base)
    for key, value in overrides.items():
        if key not in known:
            close = [k for k in known if k.split(".")[-1] == key.split(".")[-1]]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{source}: unknown config key {key!r}{hint}")
        _set(merged, key, _coerce(key, value, known[key]))
    return merged


def validate(config: dict) -> dict:
    """Check ranges, choices and cross-field rules; return the config unchanged when valid."""
    flat = _flatten(config)
    for key, (low, high) in _RANGES.items():
        value = flat[key]
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"config key {key!r}={value!r} is outside [{low}, {high}]")
    for key, choices in _CHOICES.items():
        if flat[key] not in choices:
            raise ValueError(f"config key {key!r}={flat[key]!r}: choose one of {choices}")
    for key in ("crops.global_crops_side", "crops.local_crops_side", "ibot.mask_ratio_min_max"):
        low, high = flat[key]
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"config key {key!r}={flat[key]!r}: need 0 < min <= max <= 1")
    if flat["data.source"] == "folder" and not (
        flat["data.path"] and Path(flat["data.path"]).exists()
    ):
        raise ValueError(f"config key 'data.path': {flat['data.path']!r} does not exist")
    if flat["data.prerender"] and flat["data.source"] != "folder" and not flat["data.max_images"]:
        raise ValueError(
            "config key 'data.prerender' needs a finite data set: set 'data.max_images' > 0"
        )
    return config


def parse_set_arguments(pairs: list[str]) -> dict[str, str]:
    """Turn `["a.b=1", ...]` from `--set` into `{"a.b": "1"}`, rejecting malformed items."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def load_config(profile: str = "cpu", overrides: dict[str, Any] | None = None) -> dict:
    """Defaults, then the named profile, then `overrides` (flat dotted keys); validated."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {PROFILES}")
    config = default_config()
    config = merge(config, _flatten(_read_yaml(profile)), source=f"profile {profile!r}")
    config = merge(config, overrides or {}, source="--set")
    return validate(config)


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """`NAME:key=value;key=value` -> (NAME, overrides as `--set` takes them); `NAME:` alone is the
    profile as is. (`;` separates pairs because list values such as `[0.8, 1.0]` hold commas.)"""
    name, sep, rest = text.partition(":")
    if not sep or not name:
        raise ValueError(f"--variant expects NAME:key=value;..., got {text!r}")
    overrides = {}
    for item in filter(None, (part.strip() for part in rest.split(";"))):
        key, has_value, value = item.partition("=")
        if not has_value or not key.strip():
            raise ValueError(f"--variant {text!r}: {item!r} is not key=value")
        overrides[key.strip()] = value.strip()
    return name, overrides
