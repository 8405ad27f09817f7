"""Semantic segmentation on a frozen encoder (paper Sec. 4.3, Table 6, Fig. 4, Fig. A.5).

`load_segmentation_set` reads images' masks into the encoder's input frame; `segmentation_inputs`
extracts the frozen patch grids once (or the images, for the end-to-end U-Net);
`fit_and_score` trains one head for all structures (multi-label sigmoid) on a subject-level
70/15/15 split and reports Dice per structure; `few_shot_curve` repeats that for growing training
sets; `run_segmentation` does it all for a dataset folder and a weights spec.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from raddino.eval.dice import summarize_dice
from raddino.eval.model_frame import ModelFrame, model_frame
from raddino.eval.segment_heads import LAYERS_PER_HEAD, build_head
from raddino.eval.segment_train import HeadTrainConfig, evaluate_head, train_head
from raddino.models.preprocessing import Preprocessing, preprocess, with_crop_size

# Paper Table 6 structures (lungs, six lung zones, pneumothorax, chest tube, ribs) plus the heart.
DEFAULT_STRUCTURES: tuple[str, ...] = (
    "left_lung",
    "right_lung",
    *(
        f"lung_zone_{side}_{zone}"
        for side in ("left", "right")
        for zone in ("upper", "middle", "lower")
    ),
    "heart",
    "pneumothorax",
    "chest_tube",
    "ribs",
)
SPLIT_FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)  # paper App. C, by subject


@dataclass
class SegmentationSet:
    """Masks of a dataset folder in the model frame, one row per image."""

    structures: list[str]
    masks_nshw: torch.Tensor  # bool (N, S, H, W) in the model-input frame
    defined_ns: torch.Tensor  # bool (N, S): False where the structure has no mask file
    images_n1hw: torch.Tensor  # float16 (N, 1, H, W) in [0, 1]: the images in the same frame
    frames: list[ModelFrame]
    subject_ids: np.ndarray
    image_ids: list[str]


def _frame_image(image_hw: np.ndarray, frame: ModelFrame, prep: Preprocessing) -> np.ndarray:
    """The grayscale image in the model frame, in [0, 1] (for the U-Net and the overlays)."""
    plain = replace(
        with_crop_size(prep, frame.out_hw[0]),
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        rgb=False,
    )
    return preprocess(image_hw, plain)[0].numpy()


def load_segmentation_set(
    folder: Any,
    structures: Sequence[str],
    prep: Preprocessing,
    size: int | None,
    *,
    progress: bool = True,
) -> SegmentationSet:
    """Read every image's masks of `structures` from a `DatasetFolder` into the model frame.

    The frame is `prep`'s resize + centre crop, at crop `size` if given (same region).
    """
    from tqdm.auto import tqdm

    structures = list(structures)
    unknown = [s for s in structures if s not in folder.structures]
    if unknown:
        raise ValueError(
            f"structure(s) {unknown} are not in {folder.root / 'dataset.json'} "
            f"'structures' (has {folder.structures})"
        )
    if not structures:
        raise ValueError("no structures to segment")
    if len(folder) == 0:
        raise ValueError(f"{folder.root}: no images")
    masks, defined, images, frames = [], [], [], []
    for i in tqdm(range(len(folder)), desc="masks", unit="img", disable=not progress):
        image_hw = folder.read_image(i)
        frame = model_frame(image_hw.shape, prep, size)
        frames.append(frame)
        images.append(_frame_image(image_hw, frame, prep))
        row_masks = np.zeros((len(structures), *frame.out_hw), dtype=bool)
        row_defined = np.zeros(len(structures), dtype=bool)
        for k, structure in enumerate(structures):
            if folder.has_mask(structure, i):
                mask_hw = folder.read_mask(structure, i)
                if mask_hw.shape != image_hw.shape:
                    raise ValueError(
                        f"{folder.mask_path(structure, i)}: mask size {mask_hw.shape} differs "
                        f"from image size {image_hw.shape}"
                    )
                row_masks[k] = frame.transform_mask(mask_hw)
                row_defined[k] = True
        masks.append(row_masks)
        defined.append(row_defined)
    shapes = {m.shape for m in masks}
    if len(shapes) > 1:
        raise ValueError(f"model-frame mask shapes differ {sorted(shapes)}; set a crop size")
    return SegmentationSet(
        structures=structures,
        masks_nshw=torch.from_numpy(np.stack(masks)),
        defined_ns=torch.from_numpy(np.stack(defined)),
        images_n1hw=torch.from_numpy(np.stack(images)[:, None]).to(torch.float16),
        frames=frames,
        subject_ids=folder.table["subject_id"].to_numpy(dtype=str),
        image_ids=list(folder.table["image"]),
    )


def split_rows(folder: Any, seed: int = 0) -> dict[str, np.ndarray]:
    """Row indices of the subject-level 70/15/15 split (a `split` column is kept where given)."""
    from raddino.data.splits import subject_split

    existing = folder.table["split"] if "split" in folder.table else None
    names = subject_split(folder.table["subject_id"], SPLIT_FRACTIONS, seed=seed, existing=existing)
    return {name: np.flatnonzero(names == name) for name in ("train", "val", "test")}


def fit_and_score(
    head_kind: str,
    inputs: torch.Tensor,
    data: SegmentationSet,
    rows: dict[str, np.ndarray],
    config: HeadTrainConfig,
    *,
    channels: int = 128,
    unet_encoder: str = "resnet18",
    progress: bool = True,
) -> dict[str, Any]:
    """Train one head on rows['train'] (model chosen on rows['val']), score rows['test'].

    Returns {"head", "dice" summary, "dice_per_image" (n_test, S), "history", "predicted"}.
    """
    if len(rows["test"]) == 0:
        raise ValueError("the test split is empty: need more subjects")
    embed_dim = int(inputs.shape[2]) if head_kind != "unet" else 0
    with torch.random.fork_rng(devices=[]):  # seeded head initialisation, global RNG untouched
        torch.manual_seed(config.seed)
        head = build_head(
            head_kind, embed_dim, len(data.structures), channels=channels, unet_encoder=unet_encoder
        )
    started = time.perf_counter()
    history = train_head(
        head,
        inputs,
        data.masks_nshw,
        data.defined_ns,
        rows["train"],
        rows["val"],
        config,
        progress=progress,
    )
    seconds = time.perf_counter() - started
    dice_ns, predicted = evaluate_head(
        head, inputs, data.masks_nshw, data.defined_ns, rows["test"], config
    )
    return {
        "head": head,
        "dice": summarize_dice(dice_ns, data.structures),
        "dice_per_image": dice_ns,
        "history": history,
        "predicted": predicted,
        "train_seconds": seconds,
    }


def few_shot_curve(
    head_kind: str,
    inputs: torch.Tensor,
    data: SegmentationSet,
    rows: dict[str, np.ndarray],
    train_sizes: Sequence[int],
    config: HeadTrainConfig,
    *,
    seed: int = 0,
    channels: int = 128,
    unet_encoder: str = "resnet18",
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Dice vs number of training images (paper Fig. 4): nested random subsets of rows['train'].

    Subsets are nested (the first n of one seeded permutation), so points differ only by data.
    """
    order = np.random.default_rng(seed).permutation(rows["train"])
    curve = []
    for n_train in train_sizes:
        if not 1 <= n_train <= len(order):
            raise ValueError(f"few-shot size {n_train} outside 1..{len(order)} training images")
        subset = {**rows, "train": np.sort(order[:n_train])}
        result = fit_and_score(
            head_kind,
            inputs,
            data,
            subset,
            config,
            channels=channels,
            unet_encoder=unet_encoder,
            progress=progress,
        )
        curve.append({"n_train": int(n_train), "dice": result["dice"]})
    return curve


def segmentation_inputs(
    head_kind: str,
    encoder: Any,
    folder: Any,
    data: SegmentationSet,
    size: int | None,
    *,
    cache_dir: str | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> torch.Tensor:
    """What the head trains on: frozen patch grids (N, L, C, h, w) or model-frame images."""
    from raddino.eval.patch_grids import cached_patch_grids

    if head_kind == "unet":
        return data.images_n1hw
    return cached_patch_grids(
        encoder,
        folder,
        cache_dir,
        layers=LAYERS_PER_HEAD[head_kind],
        size=size,
        batch_size=batch_size,
        progress=progress,
    )


def run_segmentation(
    data_dir: str,
    weights: str,
    head_kind: str,
    *,
    structures: Sequence[str] | None = None,
    size: int | None = None,
    mask_size: int | None = None,
    config: HeadTrainConfig | None = None,
    few_shot_sizes: Sequence[int] = (),
    split_seed: int = 0,
    channels: int = 128,
    unet_encoder: str = "resnet18",
    cache_dir: str | None = None,
    progress: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Segment a dataset folder with a frozen encoder + head; (metrics dict, extras for figures).

    `size` is the encoder's input crop; `mask_size` the side of the square on which masks are
    predicted and scored (default: the encoder's input size). With head 'unet' the encoder is
    loaded for its crop region only.
    """
    from raddino.data.dataset_folder import DatasetFolder
    from raddino.eval.patch_grids import load_patch_encoder

    config = config or HeadTrainConfig()
    config.validate()
    folder = DatasetFolder.open(data_dir)
    if structures is None:
        structures = [s for s in DEFAULT_STRUCTURES if s in folder.structures]
        if not structures:
            raise ValueError(f"--data {data_dir}: the dataset lists no segmentation structures")
    encoder = load_patch_encoder(weights, config.device)
    # Masks share the encoder's crop region; `mask_size` only sets their resolution, so every
    # encoder (e.g. raw pixels at 32 x 32) is scored on the same grid.
    prep = encoder.preprocessing_at(size)
    data = load_segmentation_set(folder, structures, prep, mask_size, progress=progress)
    rows = split_rows(folder, split_seed)
    started = time.perf_counter()
    inputs = segmentation_inputs(
        head_kind, encoder, folder, data, size, cache_dir=cache_dir, progress=progress
    )
    feature_seconds = time.perf_counter() - started
    result = fit_and_score(
        head_kind,
        inputs,
        data,
        rows,
        config,
        channels=channels,
        unet_encoder=unet_encoder,
        progress=progress,
    )
    metrics: dict[str, Any] = {
        "task": "segmentation",
        "data": str(data_dir),
        "weights": weights,
        "head": head_kind,
        "structures": list(structures),
        "split_sizes": {name: int(len(r)) for name, r in rows.items()},
        "model_input_hw": list(data.masks_nshw.shape[-2:]),
        "feature_shape": list(inputs.shape[1:]),
        "dice": result["dice"],
        "history": result["history"],
        "timing": {
            "feature_seconds": round(feature_seconds, 3),
            "train_seconds": round(result["train_seconds"], 3),
        },
        "config": {
            **config.to_dict(),
            "size": size,
            "mask_size": mask_size,
            "split_seed": split_seed,
            "channels": channels,
            "unet_encoder": unet_encoder if head_kind == "unet" else None,
        },
    }
    if few_shot_sizes:
        metrics["few_shot"] = few_shot_curve(
            head_kind,
            inputs,
            data,
            rows,
            few_shot_sizes,
            config,
            seed=split_seed,
            channels=channels,
            unet_encoder=unet_encoder,
        )
    extras = {
        "data": data,
        "rows": rows,
        "predicted": result["predicted"],
        "dice_per_image": result["dice_per_image"],
        "head": result["head"],
    }
    return metrics, extras
