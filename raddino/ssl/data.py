"""Pretraining batches as a pure function of (seed, step, rank): resumable and world-size invariant.

Which images a step sees, their crops and the iBOT masks depend only on the seed and the step, and
the global batch is the same whatever the number of ranks (rank r takes rows r*B .. r*B+B-1). So a
resumed run needs no sampler state beyond the step, and 2 ranks x B equals 1 rank x 2B.

Images come from an `ImageSource` (phantoms rendered on the fly, or a dataset folder) through an
optional pool: `pool_size` images kept in memory, `pool_refresh` of them replaced by never-seen
images each step, so that rendering does not stall training. The pool content at any step is
itself a function of the step (slot k holds the newest image written to it), rebuilt on resume.
`PrerenderedSource` instead renders a finite set once, on every core, into shared memory: the
fast path when batches are built by several worker processes (`data.num_workers`), whose pools
would otherwise each render the same images again.
"""

from __future__ import annotations

import mmap
import os

import numpy as np
import torch
from tqdm.auto import tqdm

from raddino.ssl.masking import IbotMasks, ibot_masks_from, sample_ibot_masks
from raddino.ssl.meta_arch import SslBatch


class PhantomSource:
    """Phantom `index` rendered on demand (quantised as the dataset folders store them)."""

    def __init__(self, seed: int, size: int, views: list[str]) -> None:
        from raddino.data.phantom import PhantomConfig, tune_allocator_for_rendering
        from raddino.data.phantom.dataset import PhantomDataset

        tune_allocator_for_rendering()  # process-wide malloc tuning: ~25 % faster rendering

        config = PhantomConfig(size=size, views=tuple(v.upper() for v in views), with_masks=False)
        self._dataset = PhantomDataset(1, seed, config)
        self.length: int | None = None  # endless

    def image(self, index: int) -> np.ndarray:
        return self._dataset.render_image(index)


class FolderSource:
    """Images of a dataset folder (or `max_images` of them), cycled in a seeded order."""

    def __init__(self, path: str, seed: int, max_images: int = 0) -> None:
        from raddino.data.dataset_folder import DatasetFolder

        self._folder = DatasetFolder.open(path)
        order = np.random.default_rng(seed).permutation(len(self._folder))
        self._order = order[:max_images] if max_images else order
        self.length: int | None = len(self._order)

    def image(self, index: int) -> np.ndarray:
        return self._folder.read_image(int(self._order[index % len(self._order)]))


# What a prerender worker reads and writes, inherited through fork (set only while rendering).
_RENDER_SOURCE = None
_RENDER_BUFFER = None


def _render_into(args: tuple[int, int, int, int]) -> int:
    """Prerender worker: images start .. stop-1 into the shared buffer; returns how many."""
    start, stop, n_images, side = args
    bank = np.frombuffer(_RENDER_BUFFER, dtype=np.float32).reshape(n_images, side, side)
    for index in range(start, stop):
        bank[index] = _RENDER_SOURCE.image(index)
    return stop - start


class PrerenderedSource:
    """Images 0 .. n-1 of `source`, rendered once in parallel into shared memory.

    Values are exactly `source.image(i)`, so batches equal those of the on-demand source; the
    buffer is an anonymous shared mapping, so forked batch workers read it without copies.
    """

    def __init__(self, source, n_images: int, workers: int | None = None) -> None:
        global _RENDER_SOURCE, _RENDER_BUFFER
        import multiprocessing

        first = np.asarray(source.image(0), dtype=np.float32)
        side = first.shape[0]
        if first.shape != (side, side):
            raise ValueError(f"prerender needs square images, got {first.shape}")
        self._buffer = mmap.mmap(-1, n_images * side * side * 4)  # MAP_SHARED | MAP_ANONYMOUS
        self._bank = np.frombuffer(self._buffer, dtype=np.float32).reshape(n_images, side, side)
        self.length: int | None = n_images
        workers = workers or len(os.sched_getaffinity(0))
        chunk = max(1, min(64, n_images // (4 * workers) or 1))
        tasks = [(a, min(a + chunk, n_images), n_images, side) for a in range(0, n_images, chunk)]
        _RENDER_SOURCE, _RENDER_BUFFER = source, self._buffer
        try:
            with (
                multiprocessing.get_context("fork").Pool(workers) as pool,
                tqdm(total=n_images, desc="prerender", unit="img") as bar,
            ):
                for done in pool.imap_unordered(_render_into, tasks):
                    bar.update(done)
        finally:
            _RENDER_SOURCE, _RENDER_BUFFER = None, None

    def image(self, index: int) -> np.ndarray:
        return self._bank[index % self.length]


class ImagePool:
    """`size` images; at step s slots (s*R + j) % size get image size + s*R + j, j < R."""

    def __init__(self, source, size: int, refresh: int, max_images: int = 0) -> None:
        self.source, self.size, self.refresh = source, size, refresh
        self.max_images = max_images  # > 0: only images 0 .. max_images-1 exist (data scaling)
        self._slots: dict[int, tuple[int, np.ndarray]] = {}

    def _image_index(self, raw_index: int) -> int:
        return raw_index % self.max_images if self.max_images else raw_index

    def slot_index_at(self, slot: int, step: int) -> int:
        """Raw image index held by `slot` once the refresh of `step` has happened."""
        # Write w (w = t*R + j for steps t <= step) puts image size + w into slot w % size.
        n_writes = (step + 1) * self.refresh
        if n_writes <= slot:
            return slot  # never refreshed: the initial image
        newest_write = slot + self.size * ((n_writes - 1 - slot) // self.size)
        return self.size + newest_write

    def images_at(self, step: int, slots: list[int]) -> list[np.ndarray]:
        """The images in `slots` at `step`, rendering only what changed since last asked."""
        out = []
        for slot in slots:
            raw = self.slot_index_at(slot, step)
            cached = self._slots.get(slot)
            if cached is None or cached[0] != raw:
                cached = (raw, self.source.image(self._image_index(raw)))
                self._slots[slot] = cached
            out.append(cached[1])
        return out


def _generator(*keys: int) -> torch.Generator:
    """A torch generator seeded from a tuple of ints (stable across processes and runs)."""
    seed = int(np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator().manual_seed(seed % (2**63))


class BatchMaker:
    """Builds rank `rank`'s `SslBatch` of step `step` (see module docstring).

    With `normalize=None` crops stay (N, 1, H, W) in [0, 1]: a third of the bytes to pass from
    worker processes and to copy to the GPU, where the trainer normalises them.
    """

    def __init__(self, config: dict, source, rank: int, world_size: int, normalize=None) -> None:
        from raddino.ssl.crops import MultiCropAugmentation

        crops = config["crops"]
        self.seed = int(config["train"]["seed"])
        self.batch_size = int(config["train"]["batch_size_per_device"])
        self.rank, self.world_size = rank, world_size
        self.global_batch = self.batch_size * world_size
        data = config["data"]
        pool_size = max(int(data["pool_size"]), self.global_batch)
        self.pool = ImagePool(source, pool_size, int(data["pool_refresh"]), int(data["max_images"]))
        self.augment = MultiCropAugmentation.from_config(crops)
        self.n_local = int(crops["local_crops_number"])
        self.patch_size = None  # set by the trainer from the backbone
        self.ibot = config["ibot"]
        self.normalize = normalize

    def __call__(self, step: int) -> SslBatch:
        picker = _generator(self.seed, step, 1)
        slots = torch.randperm(self.pool.size, generator=picker)[: self.global_batch].tolist()
        mine = slots[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        images = self.pool.images_at(step, mine)
        globals_, locals_ = [], []
        for offset, image_hw in enumerate(images):
            sample_index = step * self.global_batch + self.rank * self.batch_size + offset
            crops = self.augment(
                torch.from_numpy(image_hw)[None], _generator(self.seed, sample_index, 2)
            )
            globals_.append(crops["global"])
            locals_.append(crops["local"])
        # crop-major stacking: crop g of image b is row g * B + b
        global_crops = torch.stack([torch.stack(c) for c in zip(*globals_, strict=True)]).flatten(
            0, 1
        )
        local_crops = None
        if self.n_local:
            local_crops = torch.stack([torch.stack(c) for c in zip(*locals_, strict=True)]).flatten(
                0, 1
            )
            local_crops = self._normalized(local_crops)
        n_global = global_crops.shape[0] // self.batch_size
        masks = self._masks(step, n_global, global_crops.shape[-1] // self.patch_size)
        return SslBatch(self._normalized(global_crops), local_crops, masks, n_global, self.n_local)

    def _normalized(self, crops_n1hw: torch.Tensor) -> torch.Tensor:
        return crops_n1hw if self.normalize is None else self.normalize(crops_n1hw)

    def _masks(self, step: int, n_global: int, grid: int) -> IbotMasks | None:
        """Masks drawn for the GLOBAL batch, then this rank's rows (world-size invariant)."""
        if not self.ibot["enabled"]:
            return None
        full = sample_ibot_masks(
            n_global * self.global_batch,
            grid,
            tuple(self.ibot["mask_ratio_min_max"]),
            self.ibot["mask_sample_probability"],
            generator=_generator(self.seed, step, 3),
        )
        rows = [
            g * self.global_batch + self.rank * self.batch_size + b
            for g in range(n_global)
            for b in range(self.batch_size)
        ]
        return ibot_masks_from(full.masks_bn[rows], full.upperbound)
