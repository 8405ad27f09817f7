"""Encoders from other libraries behind the `Encoder` interface: timm, transformers, open_clip.

Each adapter reads the family's own preprocessing and returns "cls" (the token the paper probed
for that family) and the final patch grid; see `raddino.models.encoders` for the registry.
"""

from __future__ import annotations

import inspect
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from raddino.models.encoders import IMAGENET_MEAN, IMAGENET_STD, Encoder, Layers, layer_indices
from raddino.models.preprocessing import Preprocessing


# ------------------------------------------------------------------------------------ timm
class TimmEncoder(Encoder):
    """Any timm model: "cls" is timm's own pooled/pre-logits feature, "patch" its final map."""

    kind = "timm"

    def __init__(self, spec: str, model_name: str, weights: str | None) -> None:
        import timm
        from timm.data import resolve_model_data_config

        try:
            model = timm.create_model(model_name, pretrained=False, num_classes=0)
        except RuntimeError as err:  # timm's "Unknown model" error
            raise ValueError(f"{spec}: {err}") from err
        if weights is not None:
            _load_timm_weights(model, Path(weights), spec)
        data = resolve_model_data_config(model)
        channels, height, width = data["input_size"]
        if height != width:
            raise ValueError(f"{spec}: non-square input {height}x{width} is not supported")
        prep = Preprocessing(
            name=f"timm:{model_name}",
            resize_shortest_edge=int(height / data.get("crop_pct", 1.0)),  # timm's floor rule
            crop_size=height,
            resample=data.get("interpolation", "bicubic"),
            mean=_three(data["mean"]),
            std=_three(data["std"]),
            rgb=channels == 3,
        )
        if hasattr(model, "patch_embed"):
            patch = model.patch_embed.patch_size
            patch_size = int(patch[0] if isinstance(patch, tuple | list) else patch)
        else:
            patch_size = int(model.feature_info[-1]["reduction"])
        pooled = getattr(model, "head_hidden_size", None) or model.num_features
        if pooled != model.num_features:
            raise ValueError(f"{spec}: pooled width {pooled} differs from feature width")
        token = "cls" if getattr(model, "global_pool", None) == "token" else "pooled"
        config = {"model_name": model_name, "weights": weights}
        super().__init__(
            spec,
            model,
            embed_dim=int(model.num_features),
            patch_size=patch_size,
            preprocessing=prep,
            token=token,
            config=config,
        )

    def preprocessing_at(self, size: int | None) -> Preprocessing:
        fixed = getattr(self.model, "dynamic_img_size", True) is False
        if fixed and size is not None and size != self.preprocessing.crop_size:
            raise ValueError(
                f"{self.name}: this timm model takes {self.preprocessing.crop_size} px inputs "
                f"only (built without dynamic_img_size), got --size {size}"
            )
        return super().preprocessing_at(size)

    def _grid(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """timm's final features -> (B, h, w, C) whatever layout the model returns."""
        if tokens.ndim == 4:
            if getattr(self.model, "output_fmt", "NCHW") == "NHWC":
                return tokens
            return tokens.permute(0, 2, 3, 1)
        grid_h, grid_w = height // self.patch_size, width // self.patch_size
        prefix = tokens.shape[1] - grid_h * grid_w
        if prefix < 0:
            raise ValueError(f"{self.name}: {tokens.shape[1]} tokens for a {grid_h}x{grid_w} grid")
        return tokens[:, prefix:].reshape(tokens.shape[0], grid_h, grid_w, tokens.shape[-1])

    def forward_features(self, x_bchw: torch.Tensor) -> dict[str, torch.Tensor | None]:
        tokens = self.model.forward_features(x_bchw)
        pooled_bc = self.model.forward_head(tokens, pre_logits=True)
        return {"cls": pooled_bc, "patch": self._grid(tokens, *x_bchw.shape[-2:])}

    def intermediate_from_input(self, x_bchw: torch.Tensor, layers: Layers) -> list[torch.Tensor]:
        if not hasattr(self.model, "forward_intermediates"):
            raise ValueError(f"{self.name}: this timm model gives no intermediate feature maps")
        kwargs = {"indices": layers if isinstance(layers, int) else list(layers)}
        if "norm" in inspect.signature(self.model.forward_intermediates).parameters:
            kwargs["norm"] = True
        maps = self.model.forward_intermediates(x_bchw, intermediates_only=True, **kwargs)
        return [m.permute(0, 2, 3, 1) for m in maps]  # NCHW -> (B, h, w, C)


def _three(values: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(v) for v in values)
    return values * 3 if len(values) == 1 else values


def _load_timm_weights(model: nn.Module, path: Path, spec: str) -> None:
    """Load a timm state dict strictly, except the classifier (the encoder has none)."""
    from raddino.models.weights import read_tensors

    if not path.is_file():
        raise FileNotFoundError(f"{spec}: weights file not found: {path}")
    state, _ = read_tensors(path)
    classifier = model.pretrained_cfg.get("classifier") or "head"
    names = classifier if isinstance(classifier, list | tuple) else [classifier]
    state = {k: v for k, v in state.items() if not any(k.startswith(f"{n}.") for n in names)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path}: does not fit {spec} (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )


# ------------------------------------------------------------------------------ transformers
class HFEncoder(Encoder):
    """A transformers vision model folder (CLIPVision, Dinov2, ViT, ...): CLS and patch tokens.

    "cls" is the CLS token of the final-normed sequence; CLIP, whose sequence output is not
    normed, gives its `pooler_output` (= post-layernorm CLS, what its projection reads).
    """

    kind = "hf"

    def __init__(self, spec: str, folder: Path) -> None:
        from transformers import AutoModel

        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{spec}: {folder} has no config.json (not a model folder)")
        model = AutoModel.from_pretrained(folder)
        if hasattr(model, "vision_model") and not hasattr(model, "embeddings"):
            model = model.vision_model  # a two-tower model (e.g. CLIPModel): keep the image side
        config = getattr(model, "config", None)
        patch = getattr(config, "patch_size", None)
        hidden = getattr(config, "hidden_size", None)
        if not isinstance(patch, int) or not isinstance(hidden, int):
            raise ValueError(f"{spec}: only ViT-like models (config.patch_size, hidden_size)")
        super().__init__(
            spec,
            model,
            embed_dim=hidden,
            patch_size=patch,
            preprocessing=_hf_preprocessing(folder, config),
            token="cls",
            config={"model_type": config.model_type, "folder": str(folder)},
        )
        params = inspect.signature(model.forward).parameters
        self._kwargs = (
            {"interpolate_pos_encoding": True} if "interpolate_pos_encoding" in params else {}
        )
        self._final_norm = getattr(model, "layernorm", None) or getattr(
            model, "post_layernorm", None
        )
        self._normed_sequence = not hasattr(model, "post_layernorm")

    def _tokens_to_grid(self, tokens_bnc: torch.Tensor, x_bchw: torch.Tensor) -> torch.Tensor:
        grid_h, grid_w = x_bchw.shape[-2] // self.patch_size, x_bchw.shape[-1] // self.patch_size
        prefix = tokens_bnc.shape[1] - grid_h * grid_w  # CLS (+ registers)
        return tokens_bnc[:, prefix:].reshape(len(tokens_bnc), grid_h, grid_w, -1)

    def forward_features(self, x_bchw: torch.Tensor) -> dict[str, torch.Tensor | None]:
        out = self.model(pixel_values=x_bchw, **self._kwargs)
        sequence_bnc = out.last_hidden_state
        if self._normed_sequence or getattr(out, "pooler_output", None) is None:
            cls_bc = sequence_bnc[:, 0]
        else:
            cls_bc = out.pooler_output
        return {"cls": cls_bc, "patch": self._tokens_to_grid(sequence_bnc, x_bchw)}

    def intermediate_from_input(self, x_bchw: torch.Tensor, layers: Layers) -> list[torch.Tensor]:
        out = self.model(pixel_values=x_bchw, output_hidden_states=True, **self._kwargs)
        blocks = out.hidden_states[1:]  # [0] is the embedding output
        grids = []
        for index in layer_indices(layers, len(blocks)):
            tokens = blocks[index]
            tokens = self._final_norm(tokens) if self._final_norm is not None else tokens
            grids.append(self._tokens_to_grid(tokens, x_bchw))
        return grids


def _hf_preprocessing(folder: Path, config: Any) -> Preprocessing:
    """The folder's preprocessor_config.json; without one, resize+crop to config.image_size."""
    from raddino.models.weight_layouts import preprocessing_from_hf_processor

    processor = folder / "preprocessor_config.json"
    if processor.is_file():
        return preprocessing_from_hf_processor(processor)
    size = int(getattr(config, "image_size", 224))
    warnings.warn(
        f"{folder}: no preprocessor_config.json; using resize+crop {size}, ImageNet statistics",
        stacklevel=3,
    )
    return Preprocessing(
        name=f"hf-default@{size}",
        resize_shortest_edge=size,
        crop_size=size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


# -------------------------------------------------------------------------------- open_clip
class OpenClipEncoder(Encoder):
    """An open_clip image tower: "cls" = final-normed class token before the projection.

    The class token (not the projected embedding) keeps "cls" and the patch tokens in one
    width, as for every other encoder; the paper probed contrastive models on their [CLS].
    """

    kind = "open_clip"

    def __init__(self, spec: str, model_name: str, weights: str | None) -> None:
        try:
            import open_clip
        except ImportError as err:
            raise ValueError(
                f"{spec}: open_clip is not installed (pip install open_clip_torch)"
            ) from err
        if model_name.endswith(".json"):  # a config file: register it under its stem
            config_path = Path(model_name)
            if not config_path.is_file():
                raise FileNotFoundError(f"{spec}: config file not found: {config_path}")
            json.loads(config_path.read_text())  # clear error if it is not JSON
            open_clip.add_model_config(config_path)
            model_name = config_path.stem
        if weights is not None and not Path(weights).is_file():
            raise FileNotFoundError(f"{spec}: weights file not found: {weights}")
        try:
            model = open_clip.create_model(
                model_name,
                pretrained=weights,
                load_weights=weights is not None,
                pretrained_text=False,
            )
        except RuntimeError as err:  # unknown model name
            raise ValueError(f"{spec}: {err}") from err
        visual = model.visual
        cfg = open_clip.get_model_preprocess_cfg(model)
        size = cfg.get("size", 224)
        size = int(size[0] if isinstance(size, tuple | list) else size)
        prep = Preprocessing(
            name=f"open_clip:{model_name}",
            resize_shortest_edge=size,
            crop_size=size,
            resample=cfg.get("interpolation", "bicubic"),
            mean=_three(cfg.get("mean", IMAGENET_MEAN)),
            std=_three(cfg.get("std", IMAGENET_STD)),
        )
        patch = visual.patch_size
        width = visual.transformer.width if hasattr(visual, "transformer") else visual.output_dim
        super().__init__(
            spec,
            visual,
            embed_dim=int(width),
            patch_size=int(patch[0] if isinstance(patch, tuple | list) else patch),
            preprocessing=prep,
            token="cls",
            config={"model_name": model_name, "weights": weights},
        )

    def preprocessing_at(self, size: int | None) -> Preprocessing:
        if size is not None and size != self.preprocessing.crop_size:
            raise ValueError(
                f"{self.name}: open_clip towers take {self.preprocessing.crop_size} px inputs only "
                f"(they do not resample position embeddings), got --size {size}"
            )
        return self.preprocessing

    def _run(self, x_bchw: torch.Tensor, layers: Layers, extra: bool) -> dict[str, Any]:
        return self.model.forward_intermediates(
            x_bchw,
            indices=layers if isinstance(layers, int) else list(layers),
            normalize_intermediates=True,
            intermediates_only=True,
            output_fmt="NCHW",
            output_extra_tokens=extra,
        )

    def forward_features(self, x_bchw: torch.Tensor) -> dict[str, torch.Tensor | None]:
        out = self._run(x_bchw, 1, extra=True)
        return {
            "cls": out["image_intermediates_prefix"][-1][:, 0],
            "patch": out["image_intermediates"][-1].permute(0, 2, 3, 1),
        }

    def intermediate_from_input(self, x_bchw: torch.Tensor, layers: Layers) -> list[torch.Tensor]:
        out = self._run(x_bchw, layers, extra=False)
        return [grid.permute(0, 2, 3, 1) for grid in out["image_intermediates"]]
