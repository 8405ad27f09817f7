"""Class-token attention maps of the last block (paper Fig. A.2) and an attention-on-finding score.

The paper shows, qualitatively, that some heads of the last block attend to devices and findings.
On phantoms we can measure it: the fraction of a head's class-token attention mass that falls
inside a finding's mask, next to the mask's area fraction (what uniform attention would give).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_FINDING_STRUCTURES: tuple[str, ...] = ("chest_tube", "pneumothorax", "pleural_effusion")


def _attention_module(encoder_or_model: Any) -> Any:
    """The module with `last_self_attention` (our backbone), from an encoder or the model itself."""
    model = getattr(encoder_or_model, "model", encoder_or_model)
    if not hasattr(model, "last_self_attention"):
        name = getattr(encoder_or_model, "name", type(encoder_or_model).__name__)
        raise ValueError(
            f"attention maps need a raddino backbone (with last_self_attention); {name!r} is not"
        )
    return model


@torch.no_grad()
def class_attention_maps(encoder_or_model: Any, images_bchw: torch.Tensor) -> torch.Tensor:
    """Last block's class-token -> patch attention (B, heads, h, w) for preprocessed images.

    Each head's map sums to at most 1 (the rest goes to the class and register tokens).
    """
    model = _attention_module(encoder_or_model)
    device = next(model.parameters()).device
    return model.last_self_attention(images_bchw.to(device)).float().cpu()


def upsample_maps(maps_bkhw: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    """Patch-grid maps -> image-sized maps (B, K, H, W), nearest (each patch a flat square)."""
    return F.interpolate(maps_bkhw.float(), size=tuple(out_hw), mode="nearest")


def mask_coverage(masks_bhw: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """Fraction of each patch inside the mask (B, h, w): area pooling of a model-frame mask."""
    masks = masks_bhw.float().unsqueeze(1)
    height, width = masks.shape[-2:]
    if height % grid_hw[0] or width % grid_hw[1]:
        raise ValueError(f"mask size {(height, width)} is not a multiple of the grid {grid_hw}")
    return F.adaptive_avg_pool2d(masks, grid_hw)[:, 0]


def attention_mass_inside(maps_bkhw: torch.Tensor, masks_bhw: torch.Tensor) -> torch.Tensor:
    """Share of each head's patch attention that falls inside the mask (B, K), in [0, 1].

    Maps are renormalised over patches first, so the share is comparable with the mask's area
    fraction (`mask_coverage(...).mean((1, 2))`), the share of uniform attention.
    """
    if maps_bkhw.shape[0] != masks_bhw.shape[0]:
        raise ValueError(f"{maps_bkhw.shape[0]} attention maps but {masks_bhw.shape[0]} masks")
    coverage_bhw = mask_coverage(masks_bhw, tuple(maps_bkhw.shape[-2:]))
    weights_bkhw = maps_bkhw.float() / maps_bkhw.float().sum((2, 3), keepdim=True).clamp_min(1e-12)
    return (weights_bkhw * coverage_bhw.unsqueeze(1)).sum((2, 3))


def attention_on_findings(
    weights: str,
    data_dir: str,
    structures: Sequence[str] = DEFAULT_FINDING_STRUCTURES,
    *,
    size: int | None = None,
    batch_size: int = 8,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Per structure, over images where it is present: attention share inside vs area share.

    Reports the mean over images of the head-averaged share, of the best head's share (the head
    chosen per structure by its mean share), the area fraction (chance) and their ratio (lift).
    """
    from tqdm.auto import tqdm

    from raddino.data.dataset_folder import DatasetFolder
    from raddino.eval.model_frame import model_frame
    from raddino.eval.patch_grids import load_patch_encoder

    folder = DatasetFolder.open(data_dir)
    unknown = [s for s in structures if s not in folder.structures]
    if unknown:
        raise ValueError(f"structure(s) {unknown} not in {folder.root / 'dataset.json'}")
    encoder = load_patch_encoder(weights, device)
    prep = encoder.preprocessing_at(size)
    shares: dict[str, list[np.ndarray]] = {s: [] for s in structures}
    areas: dict[str, list[float]] = {s: [] for s in structures}
    for start in tqdm(range(0, len(folder), batch_size), desc="attention", disable=not progress):
        rows = range(start, min(start + batch_size, len(folder)))
        images = [folder.read_image(i) for i in rows]
        maps_bkhw = class_attention_maps(encoder, encoder.prepare(images, size))
        for b, i in enumerate(rows):
            frame = model_frame(images[b].shape, prep)
            for structure in structures:
                if not folder.has_mask(structure, i):
                    continue
                mask = torch.from_numpy(frame.transform_mask(folder.read_mask(structure, i)))
                if not mask.any():
                    continue
                shares[structure].append(attention_mass_inside(maps_bkhw[b : b + 1], mask[None])[0])
                areas[structure].append(float(mask.float().mean()))
    results = {}
    for structure in structures:
        if not shares[structure]:
            results[structure] = {"n_images": 0}
            continue
        share_nk = torch.stack(shares[structure]).numpy()
        best_head = int(share_nk.mean(0).argmax())
        chance = float(np.mean(areas[structure]))
        results[structure] = {
            "n_images": int(share_nk.shape[0]),
            "mean_share": float(share_nk.mean()),
            "best_head": best_head,
            "best_head_share": float(share_nk[:, best_head].mean()),
            "area_fraction": chance,
            "lift": float(share_nk.mean() / chance),
            "best_head_lift": float(share_nk[:, best_head].mean() / chance),
        }
    return {"task": "attention_on_findings", "weights": weights, "structures": results}
