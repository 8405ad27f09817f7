"""Patch-token grids of a dataset's images from any encoder, computed once for the dense evaluators.

Segmentation heads, correspondence and attention all need the frozen encoder's patch grids in the
model frame. `load_patch_encoder` returns an encoder of the registry (`raddino.models.encoders`:
ours, timm, transformers, open_clip, raw pixels); `extract_patch_grids` runs it once over the
images (batched, with progress) and keeps the grids in memory as float16; `cached_patch_grids`
also keeps them on disk, so a rerun (another head, seed or notebook) skips the encoder.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

GRIDS_FORMAT = "raddino.patch-grids/1"


def load_patch_encoder(spec: str, device: str = "cpu") -> Any:
    """An encoder from the registry (`raddino.models.encoders.get_encoder`) for `spec`."""
    from raddino.models.encoders import get_encoder

    return get_encoder(spec, device=device)


def layer_selection(encoder: Any, count: int) -> int | list[int]:
    """The last `count` blocks; a shallower model repeats its first blocks to make `count` grids.

    (A depth-2 test model gives blocks [0, 0, 0, 1] for a 4-level pyramid.)
    """
    depth = getattr(getattr(encoder, "model", None), "depth", None)
    if isinstance(depth, int) and depth < count:
        return [max(depth - count + i, 0) for i in range(count)]
    return count


def extract_patch_grids(
    encoder: Any,
    read_image: Callable[[int], np.ndarray],
    n_images: int,
    *,
    layers: int = 1,
    size: int | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> torch.Tensor:
    """Patch grids (N, L, C, h, w) float16 of the last `layers` blocks (last one last) on the CPU.

    `read_image(i)` returns image i as float32 (H, W) in [0, 1]. One pass of the encoder: heads
    trained on these grids never run the backbone again.
    """
    from tqdm.auto import tqdm

    if n_images < 1:
        raise ValueError("no images to extract features from")
    if layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    grids: torch.Tensor | None = None
    with tqdm(total=n_images, desc="patch features", unit="img", disable=not progress) as bar:
        for start in range(0, n_images, batch_size):
            rows = range(start, min(start + batch_size, n_images))
            batch_bchw = encoder.prepare([read_image(i) for i in rows], size)
            with torch.inference_mode():
                if layers == 1:
                    patch = encoder.features(batch_bchw)["patch"]
                    if patch is None:
                        raise ValueError(f"encoder {encoder.name!r} has no patch tokens")
                    per_layer = [patch]
                else:
                    per_layer = encoder.intermediate(batch_bchw, layer_selection(encoder, layers))
            # list of (B, h, w, C) -> (B, L, C, h, w)
            batch_blchw = torch.stack([grid.permute(0, 3, 1, 2) for grid in per_layer], dim=1)
            if grids is None:
                grids = torch.empty((n_images, *batch_blchw.shape[1:]), dtype=torch.float16)
            grids[start : start + len(rows)] = batch_blchw.to("cpu", torch.float16)
            bar.update(len(rows))
    assert grids is not None
    return grids


def cached_patch_grids(
    encoder: Any,
    folder: Any,
    cache_dir: str | os.PathLike | None,
    *,
    layers: int = 1,
    size: int | None = None,
    batch_size: int = 16,
    progress: bool = True,
    read_image: Callable[[int], np.ndarray] | None = None,
) -> torch.Tensor:
    """`extract_patch_grids` over a dataset folder, kept in `cache_dir` when one is given.

    The cache file is named by a hash of what decides the numbers (encoder spec and tensor
    digest, preprocessing at `size`, layer selection, dataset fingerprint); a rerun loads it
    instead of running the encoder. Written atomically once complete (safetensors, no pickle).
    """
    from safetensors.torch import load_file, save_file

    from raddino.embed import state_digest
    from raddino.eval.features import dataset_fingerprint
    from raddino.utils import atomic_path, write_json_atomic

    read_image = read_image or folder.read_image
    if cache_dir is None:
        return extract_patch_grids(
            encoder, read_image, len(folder), layers=layers, size=size,
            batch_size=batch_size, progress=progress,
        )  # fmt: skip
    spec = {
        "format": GRIDS_FORMAT,
        "encoder": encoder.name,
        "weights_digest": state_digest(encoder),
        "preprocessing": encoder.preprocessing_at(size).to_dict(),
        "layers": layer_selection(encoder, layers),
        "dataset": dataset_fingerprint(folder),
    }
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]
    path = Path(cache_dir) / f"patch-grids-{key}.safetensors"
    if path.is_file():
        grids = load_file(path)["grids"]
        if grids.shape[0] != len(folder):
            raise ValueError(f"{path}: {grids.shape[0]} rows for {len(folder)} images; delete it")
        return grids
    grids = extract_patch_grids(
        encoder, read_image, len(folder), layers=layers, size=size,
        batch_size=batch_size, progress=progress,
    )  # fmt: skip
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file({"grids": grids.contiguous()}, str(tmp), metadata={"format": GRIDS_FORMAT})
    write_json_atomic(path.with_suffix(".json"), spec)
    return grids
