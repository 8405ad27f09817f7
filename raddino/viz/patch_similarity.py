"""The logic of the live patch explorer, without widgets: patch features per (encoder, layer)
cached in memory, cosine-similarity maps, top-k matches, click-to-patch, heatmap overlays as PNG.
`raddino.viz.explorer_widget.PatchExplorer` wires it to ipywidgets; tests run it headless.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # annotations only: importing torch at top level would slow `raddino --help`
    import torch

    from raddino.eval.model_frame import ModelFrame

HEATMAP_ALPHA = 0.55  # as the static explorer: the X-ray stays visible under the colours
QUERY_COLOUR, MATCH_COLOUR, BEST_COLOUR = (0, 229, 255), (255, 255, 255), (255, 40, 40)


@dataclass(frozen=True)
class PatchMatch:
    """One target patch and its cosine similarity to the query patch."""

    row: int
    col: int
    cosine: float


def check_index(value: Any, count: int, argument: str, what: str) -> int:
    """`value` as an int in [-count, count) (negatives count from the end) or a clear error."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{argument}={value!r}: expected an integer index of {what}")
    if not -count <= int(value) < count:
        raise ValueError(f"{argument}={value} out of range: {count} {what} (0..{count - 1})")
    return int(value) % count


class PatchFeatureStore:
    """Patch grids of a few images for several encoders, each computed once and kept in memory.

    `encoders` maps a display name to an encoder of `raddino.models.encoders` or a spec string
    (loaded on first use). The last `layers` blocks (fewer if the model is shallower) are
    extracted in one pass per encoder (`raddino.eval.patch_grids.extract_patch_grids`); `layer`
    indexes them, shallowest first, -1 = the deepest.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        encoders: Mapping[str, Any],
        *,
        layers: int = 4,
        size: int | None = None,
        device: str = "cpu",
        batch_size: int = 8,
        progress: bool = False,
    ) -> None:
        if len(images) == 0:
            raise ValueError("images: need at least one image")
        self.images = [np.asarray(image, dtype=np.float32) for image in images]
        for i, image in enumerate(self.images):
            if image.ndim != 2:
                raise ValueError(f"images[{i}] must be (H, W) grey, got shape {image.shape}")
            if not np.all(np.isfinite(image)):
                raise ValueError(f"images[{i}] contains NaN or infinite values")
        if not encoders:
            raise ValueError("encoders: need at least one name -> encoder or spec")
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
            raise ValueError(f"layers={layers!r}: expected the number of last blocks (>= 1)")
        self.encoder_names = [str(name) for name in encoders]
        self.layers = layers
        self.size = size
        self.device = device
        self.batch_size = batch_size
        self.progress = progress
        self._sources = dict(zip(self.encoder_names, encoders.values(), strict=True))
        self._grids_nlchw: dict[str, torch.Tensor] = {}  # name -> (N, L, C, h, w) float16
        self._labels: dict[str, list[str]] = {}
        self._preprocessing: dict[str, Any] = {}

    def _check_encoder(self, encoder: str) -> str:
        if encoder not in self._sources:
            raise ValueError(f"encoder={encoder!r} is unknown; choose one of {self.encoder_names}")
        return encoder

    def _compute(self, name: str) -> None:
        """Run encoder `name` once over all images (all offered layers) and keep the grids."""
        from raddino.eval.patch_grids import extract_patch_grids, load_patch_encoder

        source = self._sources[name]
        encoder = load_patch_encoder(source, self.device) if isinstance(source, str) else source
        depth = getattr(getattr(encoder, "model", None), "depth", None)
        if getattr(encoder, "kind", "") == "pixels":  # no blocks: one grid of raw pixels
            count, labels = 1, ["pixels"]
        elif isinstance(depth, int):  # a shallow model offers all its blocks, none twice
            count = min(self.layers, depth)
            labels = [f"block {b}" for b in range(depth - count, depth)]
        else:
            count = self.layers
            labels = [f"last - {count - 1 - k}" if k < count - 1 else "last" for k in range(count)]
        self._grids_nlchw[name] = extract_patch_grids(
            encoder,
            lambda i: self.images[i],
            len(self.images),
            layers=count,
            size=self.size,
            batch_size=self.batch_size,
            progress=self.progress,
        )
        self._preprocessing[name] = encoder.preprocessing_at(self.size)
        self._labels[name] = labels

    def grids(self, encoder: str) -> torch.Tensor:
        """Patch grids (N, L, C, h, w) float16 of `encoder` (computed on first use)."""
        if self._check_encoder(encoder) not in self._grids_nlchw:
            self._compute(encoder)
        return self._grids_nlchw[encoder]

    def layer_labels(self, encoder: str) -> list[str]:
        """Names of the offered layers of `encoder`, shallowest first (e.g. "block 10")."""
        self.grids(encoder)
        return self._labels[encoder]

    def grid_hw(self, encoder: str) -> tuple[int, int]:
        """(h, w) of `encoder`'s patch grid."""
        return tuple(self.grids(encoder).shape[-2:])

    def model_frame(self, encoder: str, image: int) -> ModelFrame:
        """Where image `image`'s pixels land in `encoder`'s input (`raddino.eval.model_frame`)."""
        from raddino.eval.model_frame import model_frame

        self.grids(encoder)
        image = check_index(image, len(self.images), "image", "images")
        return model_frame(self.images[image].shape, self._preprocessing[encoder])

    def patch_grid(self, encoder: str, layer: int, image: int) -> torch.Tensor:
        """The (h, w, C) patch grid of image `image` at offered layer `layer` of `encoder`."""
        grids = self.grids(encoder)
        layer = check_index(layer, grids.shape[1], "layer", f"layers of {encoder!r}")
        image = check_index(image, grids.shape[0], "image", "images")
        return grids[image, layer].permute(1, 2, 0)

    def similarity(
        self,
        *,
        encoder: str,
        layer: int,
        query_image: int,
        query_row: int,
        query_col: int,
        target_image: int,
    ) -> np.ndarray:
        """Cosine similarity (h, w) float32 of the query patch to every target patch."""
        from raddino.eval.correspondence import similarity_maps

        count = len(self.images)
        query_image = check_index(query_image, count, "query_image", "images")
        target_image = check_index(target_image, count, "target_image", "images")
        query_hwc = self.patch_grid(encoder, layer, query_image)
        target_hwc = self.patch_grid(encoder, layer, target_image)
        h, w = query_hwc.shape[:2]
        row = check_index(query_row, h, "query_row", "patch rows")
        col = check_index(query_col, w, "query_col", "patch columns")
        return similarity_maps(query_hwc, target_hwc, np.array([[row, col]]))[0].numpy()


def top_k_patches(
    similarity_hw: np.ndarray, k: int, exclude: tuple[int, int] | None = None
) -> list[PatchMatch]:
    """The `k` most similar patches, best first (ties: row-major order); `exclude` is left out."""
    sims = np.asarray(similarity_hw, dtype=np.float64)
    if sims.ndim != 2:
        raise ValueError(f"similarity_hw must be (h, w), got shape {sims.shape}")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k={k!r}: expected a positive number of matches")
    flat = sims.ravel().copy()
    if exclude is not None:
        row = check_index(exclude[0], sims.shape[0], "exclude row", "patch rows")
        col = check_index(exclude[1], sims.shape[1], "exclude col", "patch columns")
        flat[row * sims.shape[1] + col] = np.nan
    order = np.argsort(-flat, kind="stable")  # NaN (the excluded patch) sorts last
    order = order[: min(int(k), int(np.isfinite(flat).sum()))]
    return [
        PatchMatch(int(i // sims.shape[1]), int(i % sims.shape[1]), float(flat[i])) for i in order
    ]


def click_to_patch(
    x: float, y: float, width: float, height: float, grid_hw: tuple[int, int]
) -> tuple[int, int]:
    """(row, col) of the patch under a click at (x, y) on a view `width` x `height` wide."""
    if width <= 0 or height <= 0:
        raise ValueError(f"view size must be positive, got {width} x {height}")
    row = int(np.clip(np.floor(y / height * grid_hw[0]), 0, grid_hw[0] - 1))
    col = int(np.clip(np.floor(x / width * grid_hw[1]), 0, grid_hw[1] - 1))
    return row, col


def render_overlay_png(
    image_hw: np.ndarray,
    grid_hw: tuple[int, int],
    *,
    frame: ModelFrame | None = None,
    similarity_hw: np.ndarray | None = None,
    marks: Sequence[tuple[int, int, tuple[int, int, int], str]] = (),
    display_px: int = 256,
    value_range: tuple[float, float] | None = (-1.0, 1.0),
    colormap: str = "inferno",
) -> bytes:
    """PNG of the model's view of an image (its crop, via `frame`), one cell per patch.

    Optional cosine heatmap (blended, `value_range` -> colormap; None: the map's own min..max)
    and rectangle marks (row, col, rgb, label). Cells are whole pixels so patches stay exact.
    """
    import matplotlib
    from PIL import Image, ImageDraw

    rows, cols = int(grid_hw[0]), int(grid_hw[1])
    cell = max(1, int(display_px) // max(rows, cols))
    out_w, out_h = cols * cell, rows * cell
    grey = Image.fromarray(np.clip(np.asarray(image_hw, dtype=np.float32), 0.0, 1.0), mode="F")
    if frame is not None:  # the crop footprint in image pixels (may reach outside: zero padding)
        (left, top), (right, bottom) = frame.to_image(
            np.array([[0.0, 0.0], [frame.out_hw[1], frame.out_hw[0]]])
        )
        grey = grey.transform(
            (out_w, out_h), Image.Transform.EXTENT, (left, top, right, bottom),
            resample=Image.Resampling.BILINEAR,
        )  # fmt: skip
    else:
        grey = grey.resize((out_w, out_h), resample=Image.Resampling.BILINEAR)
    rgb_hw3 = np.repeat(np.asarray(grey, dtype=np.float32)[..., None], 3, axis=2)
    if similarity_hw is not None:
        sims = np.asarray(similarity_hw, dtype=np.float64)
        if sims.shape != (rows, cols):
            raise ValueError(f"similarity_hw has shape {sims.shape}, expected {(rows, cols)}")
        low, high = value_range if value_range is not None else (sims.min(), sims.max())
        if value_range is not None and not low < high:
            raise ValueError(f"value_range={value_range}: need low < high")
        scaled = np.clip((sims - low) / max(high - low, 1e-12), 0.0, 1.0)
        colours_hw3 = matplotlib.colormaps[colormap](scaled)[..., :3]
        colours_hw3 = np.kron(colours_hw3, np.ones((cell, cell, 1)))  # one block per patch
        rgb_hw3 = (1 - HEATMAP_ALPHA) * rgb_hw3 + HEATMAP_ALPHA * colours_hw3
    picture = Image.fromarray(np.round(rgb_hw3 * 255).astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(picture)
    for row, col, colour, label in marks:
        box = (col * cell, row * cell, (col + 1) * cell - 1, (row + 1) * cell - 1)
        draw.rectangle(box, outline=colour, width=max(1, cell // 12))
        if label and cell >= 12:  # the rank on a dark tag, readable over any heatmap colour
            tag = draw.textbbox((box[0] + 2, box[1] + 1), label)
            draw.rectangle((tag[0] - 1, tag[1] - 1, tag[2] + 1, tag[3] + 1), fill=(0, 0, 0))
            draw.text((box[0] + 2, box[1] + 1), label, fill=colour)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
