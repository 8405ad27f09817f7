"""Load backbone weights from every family we meet, strictly, and save our own checkpoints.

`load_backbone(source)` autodetects: a `microsoft/rad-dino`-style Hugging Face folder, that repo's
`backbone_compatible.safetensors` (official DINOv2 key names), an official DINOv2 `.pth`, a timm
state dict, raddino's own `.safetensors` (config in its metadata), `raddino:<name>` release
checkpoints, or a hub id `owner/name`. Every family sets its own preprocessing and
position-embedding interpolation on the returned model. Nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from raddino.models.backbone import (
    POS_EMBED_INTERPOLATIONS,
    DinoVisionBackbone,
    build_backbone,
    build_backbone_from_config,
)
from raddino.models.preprocessing import DINOV2_IMAGENET, RAD_DINO, Preprocessing
from raddino.models.weight_layouts import (
    Tensors,
    convert_hf_state_dict,
    convert_official_state_dict,
    convert_timm_state_dict,
    options_from_hf_config,
    options_from_state_dict,
    preprocessing_from_hf_processor,
)
from raddino.utils import atomic_path

CHECKPOINT_FORMAT = "raddino.backbone/1"
RELEASE_DIR = Path(__file__).resolve().parents[1] / "release"
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

ACCEPTED = (
    "a Hugging Face folder (config.json + model.safetensors), a .safetensors or .pth/.pt file "
    "(official DINOv2, timm or raddino layout), 'raddino:<name>', or a hub id 'owner/name'"
)


# --------------------------------------------------------------------------------- reading files
def read_tensors(path: Path) -> tuple[Tensors, dict[str, str]]:
    """Tensors and metadata of a .safetensors file, or tensors of a .pth read with weights_only."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                return {k: handle.get_tensor(k) for k in handle.keys()}, handle.metadata() or {}
        except Exception as err:  # safetensors raises its own error types
            raise ValueError(f"{path}: not a readable safetensors file ({err})") from err
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path}: refusing to unpickle non-tensor objects (weights_only=True): {err}"
        ) from err
    return _unwrap_state_dict(loaded, path), {}


def _unwrap_state_dict(loaded: Any, path: Path) -> Tensors:
    """Find the tensor dict inside common containers: {'model': ...}, {'teacher': ...}, ..."""
    if isinstance(loaded, dict):
        for container in ("teacher", "model", "state_dict"):
            if isinstance(loaded.get(container), dict):
                loaded = loaded[container]
                break
    if not isinstance(loaded, dict) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise ValueError(f"{path}: expected a dict of tensors (a state dict)")
    if loaded and all(k.startswith("backbone.") for k in loaded if not _is_ssl_head(k)):
        heads = sorted({k.split(".")[0] for k in loaded if _is_ssl_head(k)})
        if heads:  # a DINOv2 training checkpoint: the projection heads are not the backbone
            warnings.warn(f"{path}: ignoring SSL head weights {heads}", stacklevel=3)
        loaded = {k.removeprefix("backbone."): v for k, v in loaded.items() if not _is_ssl_head(k)}
    return dict(loaded)


def _is_ssl_head(key: str) -> bool:
    return key.startswith(("dino_head.", "ibot_head."))


# --------------------------------------------------------------------------------- loading
def load_state_dict_strict(model: DinoVisionBackbone, state: Tensors, origin: str) -> None:
    """Load `state` into `model`; any missing/unexpected key or shape mismatch -> ValueError."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        problems = [
            f"{label} ({len(items)}): {', '.join(items)}"
            for label, items in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatches", mismatched),
            )
            if items
        ]
        raise ValueError(f"{origin}: weights do not match the backbone; " + "; ".join(problems))
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)


def _finish(
    model: DinoVisionBackbone,
    *,
    preprocessing: Preprocessing,
    interpolation: str,
    antialias: bool = False,
    device: str | torch.device = "cpu",
) -> DinoVisionBackbone:
    model.preprocessing = preprocessing
    model.pos_embed_interpolation = interpolation
    model.pos_embed_antialias = antialias
    return model.to(device).eval()


def _load_hf_folder(folder: Path, device: str | torch.device) -> DinoVisionBackbone:
    config_path = folder / "config.json"
    weight_path = next((folder / n for n in HF_WEIGHT_FILES if (folder / n).exists()), None)
    if not config_path.exists() or weight_path is None:
        present = sorted(p.name for p in folder.iterdir())
        raise FileNotFoundError(
            f"{folder}: not a Hugging Face model folder (need config.json and one of "
            f"{list(HF_WEIGHT_FILES)}; found {present})"
        )
    hf_config = json.loads(config_path.read_text())
    options = options_from_hf_config(hf_config, str(config_path))
    model = build_backbone(options.pop("name"), **options)
    state = convert_hf_state_dict(read_tensors(weight_path)[0])
    if not hf_config.get("use_mask_token", True) and "mask_token" not in state:
        state["mask_token"] = torch.zeros_like(model.mask_token)  # config says: no mask token
    load_state_dict_strict(model, state, str(weight_path))
    processor = folder / "preprocessor_config.json"
    if processor.exists():
        preprocessing = preprocessing_from_hf_processor(processor)
    elif re.search(r"rad[-_]?dino", f"{folder.name} {hf_config.get('_name_or_path', '')}", re.I):
        preprocessing = RAD_DINO
    else:
        preprocessing = DINOV2_IMAGENET
    registers = hf_config["model_type"] == "dinov2_with_registers"
    return _finish(
        model,
        preprocessing=preprocessing,
        interpolation="transformers",
        antialias=registers,  # Dinov2WithRegisters resamples with antialias=True
        device=device,
    )


def _load_file(path: Path, device: str | torch.device) -> DinoVisionBackbone:
    state, metadata = read_tensors(path)
    origin = str(path)
    if "raddino_config" in metadata:
        if "preprocessing" not in metadata:
            raise ValueError(f"{origin}: raddino checkpoint metadata lacks 'preprocessing'")
        config = json.loads(metadata["raddino_config"])
        model = build_backbone_from_config(config)
        load_state_dict_strict(model, state, origin)
        interpolation = metadata.get("pos_embed_interpolation", "dinov2")
        if interpolation not in POS_EMBED_INTERPOLATIONS:
            raise ValueError(f"{origin}: metadata pos_embed_interpolation {interpolation!r}")
        return _finish(
            model,
            preprocessing=Preprocessing.from_dict(json.loads(metadata["preprocessing"])),
            interpolation=interpolation,
            antialias=metadata.get("pos_embed_antialias", "false") == "true",
            device=device,
        )
    if any(k.startswith(("embeddings.", "encoder.layer.")) for k in state):
        raise ValueError(
            f"{origin}: transformers Dinov2Model weights; pass the folder holding it and its "
            "config.json instead of the file"
        )
    official = "mask_token" in state or "register_tokens" in state
    official_registers = "register_tokens" in state  # our layout names them reg_token
    state = convert_official_state_dict(state) if official else convert_timm_state_dict(state)
    options = options_from_state_dict(state, origin)
    model = build_backbone(options.pop("name"), **options)
    if not official:  # timm drops DINOv2's mask token (inference never uses it)
        state.setdefault("mask_token", torch.zeros_like(model.mask_token))
    load_state_dict_strict(model, state, origin)
    beside = path.parent / "preprocessor_config.json"
    if beside.exists():
        preprocessing = preprocessing_from_hf_processor(beside)
    elif "backbone_compatible" in path.name or re.search(r"rad[-_]?dino", str(path), re.I):
        preprocessing = RAD_DINO
    else:
        preprocessing = DINOV2_IMAGENET
    # Official models with registers resample by size with antialias (their hub configs set
    # interpolate_offset=0, interpolate_antialias=True); the others use the +0.1 scale factor.
    return _finish(
        model,
        preprocessing=preprocessing,
        interpolation="transformers" if official_registers else "dinov2",
        antialias=official_registers,
        device=device,
    )


def release_names() -> list[str]:
    """Names usable as `raddino:<name>` (checkpoints shipped in raddino/release/)."""
    return sorted(p.stem for p in RELEASE_DIR.glob("*.safetensors")) if RELEASE_DIR.is_dir() else []


def _download_from_hub(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(
            repo_id,
            allow_patterns=["config.json", "preprocessor_config.json", *HF_WEIGHT_FILES],
        )
    except Exception as err:  # offline, unknown repo, auth...: all mean "get it another way"
        raise FileNotFoundError(
            f"could not fetch {repo_id!r} from the Hugging Face Hub ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no detail'}). On a machine with network "
            f"run `hf download {repo_id} --local-dir <folder>` (or git clone "
            f"https://huggingface.co/{repo_id}), copy the folder here and pass its path"
        ) from err
    return Path(folder)


def load_backbone(
    source: str | os.PathLike, *, device: str | torch.device = "cpu"
) -> DinoVisionBackbone:
    """Load a backbone (eval mode) from any supported weights source, strictly (see module doc)."""
    text = str(source)
    if text.startswith("raddino:"):
        name = text.removeprefix("raddino:")
        path = RELEASE_DIR / f"{name}.safetensors"
        if not path.exists():
            available = ", ".join(release_names()) or f"none ({RELEASE_DIR} has no checkpoints)"
            raise FileNotFoundError(f"no release checkpoint {name!r}; available: {available}")
        return _load_file(path, device)
    path = Path(source).expanduser()
    if path.is_dir():
        return _load_hf_folder(path, device)
    if path.is_file():
        if path.suffix not in (".safetensors", ".pth", ".pt", ".bin"):
            raise ValueError(f"{path}: unknown weights file type {path.suffix!r}; {ACCEPTED}")
        return _load_file(path, device)
    if _HUB_ID.match(text) and path.suffix not in (".safetensors", ".pth", ".pt", ".bin"):
        return _load_hf_folder(_download_from_hub(text), device)
    raise FileNotFoundError(f"weights {text!r} not found; expected {ACCEPTED}")


def save_backbone(
    model: DinoVisionBackbone, path: str | os.PathLike, *, dtype: torch.dtype | None = None
) -> Path:
    """Write weights + config/preprocessing/interpolation metadata to one safetensors file."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: backbone checkpoints are .safetensors files")
    tensors = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v)
        .detach()
        .cpu()
        .contiguous()
        for k, v in model.state_dict().items()
    }
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "raddino_config": json.dumps(model.config),
        "preprocessing": json.dumps(model.preprocessing.to_dict()),
        "pos_embed_interpolation": model.pos_embed_interpolation,
        "pos_embed_antialias": "true" if model.pos_embed_antialias else "false",
    }
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path
