"""Registry of frozen image encoders to compare: ours, timm, transformers, open_clip, raw pixels.

`get_encoder(spec)` returns an `Encoder`: one interface for every evaluator (probes, metadata,
segmentation), whatever the model family. Specs:

    raddino:<name> | <path load_backbone accepts>   our backbone (release, HF folder, DINOv2, ...)
    random:<arch>[@seed]                             our backbone, random init (vit_pico, ...)
    timm:<model_name>[@weights_file]                 any timm model (random init without weights)
    hf:<folder>                                      a transformers vision model folder
    open_clip:<model_name or config.json>[@weights]  an open_clip image tower
    pixels[:S]                                       raw pixels downsampled to S x S (default 32)

Each encoder carries its own `preprocessing` (how an (H, W) float [0, 1] image becomes its
input) and names which token the paper probed (`token`: "cls" or "pooled"). Adapters for other
libraries live in `raddino.models.foreign_encoders`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from raddino.models.preprocessing import Preprocessing, preprocess_batch, with_crop_size

DEFAULT_PIXEL_SIZE = 32
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
Layers = int | Sequence[int]


class Encoder(nn.Module):
    """A frozen encoder: (B, C, S, S) model input -> {"cls": (B, D), "patch": (B, h, w, D)}.

    Subclasses implement `forward_features` and `intermediate_from_input`; `features` and
    `intermediate` also accept a list of (H, W) float images and preprocess them first.
    """

    kind: str = "?"

    def __init__(
        self,
        spec: str,
        model: nn.Module | None,
        *,
        embed_dim: int,
        patch_size: int | None,
        preprocessing: Preprocessing,
        token: str,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.name = spec
        self.model = model  # the wrapped module (e.g. DinoVisionBackbone), for attention maps etc.
        self.embed_dim = embed_dim  # width of "cls" and of the patch tokens
        self.patch_size = patch_size  # input pixels per token side (None: pixel baseline)
        self.preprocessing = preprocessing
        self.token = token  # "cls" or "pooled": what the "cls" output is, per the paper's choice
        self.config = {"spec": spec, "kind": self.kind, **(config or {})}
        self.eval()

    # -------------------------------------------------------------------------- inputs
    def prepare(self, images_hw: Sequence[np.ndarray], size: int | None = None) -> torch.Tensor:
        """Preprocess (H, W) float [0, 1] images -> model input (B, C, S, S) on the device."""
        prep = self.preprocessing_at(size)
        return preprocess_batch(list(images_hw), prep).to(self.device)

    def preprocessing_at(self, size: int | None) -> Preprocessing:
        """This encoder's preprocessing at crop `size` (None: native); checks the patch grid."""
        if size is None:
            return self.preprocessing
        if self.patch_size and size % self.patch_size:
            raise ValueError(f"--size {size} is not a multiple of {self.name}'s patch size")
        return with_crop_size(self.preprocessing, size)

    def grid_size(self, size: int | None = None) -> tuple[int, int]:
        """(h, w) of the patch grid for inputs of crop `size` (None: native); CNN maps round up."""
        crop = self.preprocessing_at(size).crop_size
        side = -(-crop // (self.patch_size or 1))
        return side, side

    @property
    def device(self) -> torch.device:
        tensor = next(iter(self.state_dict().values()), None)
        return tensor.device if tensor is not None else torch.device("cpu")

    def _as_input(self, images: Any) -> torch.Tensor:
        if isinstance(images, torch.Tensor) and images.ndim == 4:
            return images.to(self.device)
        return self.prepare(images)

    # -------------------------------------------------------------------------- outputs
    def forward_features(self, x_bchw: torch.Tensor) -> dict[str, torch.Tensor | None]:
        raise NotImplementedError

    def intermediate_from_input(self, x_bchw: torch.Tensor, layers: Layers) -> list[torch.Tensor]:
        raise NotImplementedError

    @torch.inference_mode()
    def features(self, images: Any) -> dict[str, torch.Tensor | None]:
        """{"cls": (B, D), "patch": (B, h, w, D) or None} for model inputs or (H, W) images."""
        return self.forward_features(self._as_input(images))

    @torch.inference_mode()
    def intermediate(self, images: Any, layers: Layers = 1) -> list[torch.Tensor]:
        """Grids (B, h, w, C) of the last `layers` blocks (int) or of chosen block indices."""
        return self.intermediate_from_input(self._as_input(images), layers)

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x_bchw)["cls"]


def layer_indices(layers: Layers, depth: int) -> list[int]:
    """Block indices (0-based) for an int (last n) or a list (negatives allowed)."""
    if isinstance(layers, int):
        if not 1 <= layers <= depth:
            raise ValueError(f"layers={layers}: need 1 <= n <= depth ({depth})")
        return list(range(depth - layers, depth))
    out = []
    for index in layers:
        if not -depth <= int(index) < depth:
            raise ValueError(f"layer index {index} out of range for depth {depth}")
        out.append(int(index) % depth)
    return out


# ------------------------------------------------------------------------------------ ours
class BackboneEncoder(Encoder):
    """Our DINOv2-layout ViT (`raddino.models.backbone`): final-normed CLS and patch tokens."""

    kind = "raddino"

    def __init__(self, spec: str, backbone: nn.Module) -> None:
        super().__init__(
            spec,
            backbone,
            embed_dim=backbone.embed_dim,
            patch_size=backbone.patch_size,
            preprocessing=backbone.preprocessing,
            token="cls",
            config={"model_config": backbone.config},
        )

    def forward_features(self, x_bchw: torch.Tensor) -> dict[str, torch.Tensor | None]:
        out = self.model.forward_features(x_bchw)
        return {"cls": out["cls"], "patch": out["patch"]}

    def intermediate_from_input(self, x_bchw: torch.Tensor, layers: Layers) -> list[torch.Tensor]:
        layers = layers if isinstance(layers, int) else list(layers)
        return [o["patch"] for o in self.model.get_intermediate_layers(x_bchw, layers, norm=True)]


# ---------------------------------------------------------------------------------- pixels
class PixelEncoder(Encoder):
    """The raw-pixel baseline: the image at S x S, flattened as "cls", the grid as "patch"."""

    kind = "pixels"

    def __init__(self, spec: str, size: int) -> None:
        prep = Preprocessing(
            name=f"pixels@{size}",
            resize_shortest_edge=size,
            crop_size=size,
            resample="bilinear",  # antialiased downsampling with either backend
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            rgb=False,
        )
        super().__init__(
            spec, None, embed_dim=size * size, patch_size=None, preprocessing=prep, token="cls"
        )
        self.pixel_size = size

    def preprocessing_at(self, size: int | None) -> Preprocessing:
        if size is not None and size != self.pixel_size:
            raise ValueError(f"{self.name}: the pixel grid is fixed by the spec; use pixels:{size}")
        return self.preprocessing

    def forward_features(self, x_bchw: torch.Tensor) -> dict[str, torch.Tensor | None]:
        return {"cls": x_bchw.flatten(1), "patch": x_bchw.permute(0, 2, 3, 1)}

    def intermediate_from_input(self, x_bchw: torch.Tensor, layers: Layers) -> list[torch.Tensor]:
        count = layers if isinstance(layers, int) else len(list(layers))
        return [x_bchw.permute(0, 2, 3, 1)] * count  # no layers: the same pixel grid each time


# -------------------------------------------------------------------------------- registry
def _split_weights(rest: str) -> tuple[str, str | None]:
    name, _, weights = rest.partition("@")
    return name, (weights or None)


def get_encoder(spec: str, device: str = "cpu", *, seed: int = 0) -> Encoder:
    """Build the encoder `spec` names (see module doc), in eval mode on `device`."""
    spec = str(spec).strip()
    if not spec:
        raise ValueError("empty encoder spec")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine")
    kind, _, rest = spec.partition(":")
    if kind == "pixels":
        size = DEFAULT_PIXEL_SIZE if not rest else _positive_int(rest, spec)
        encoder: Encoder = PixelEncoder(spec, size)
    elif kind == "random":
        from raddino.embed import load_embedding_model

        arch, seed_text = _split_weights(rest)
        seed = _positive_int(seed_text, spec, allow_zero=True) if seed_text else seed
        backbone, _ = load_embedding_model(f"random:{arch}", "cpu", seed)
        encoder = BackboneEncoder(spec, backbone)
    elif kind in ("timm", "hf", "open_clip"):
        from raddino.models import foreign_encoders as foreign

        if kind == "timm":
            encoder = foreign.TimmEncoder(spec, *_split_weights(rest))
        elif kind == "hf":
            encoder = foreign.HFEncoder(spec, Path(rest).expanduser())
        else:
            encoder = foreign.OpenClipEncoder(spec, *_split_weights(rest))
    else:  # raddino:<name> and every path load_backbone accepts
        from raddino.models.weights import load_backbone

        encoder = BackboneEncoder(spec, load_backbone(spec))
    return encoder.to(device).eval().requires_grad_(False)  # frozen: evaluators never train it


def _positive_int(text: str, spec: str, allow_zero: bool = False) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < (0 if allow_zero else 1):
        raise ValueError(f"encoder spec {spec!r}: {text!r} is not a valid size/seed")
    return value
