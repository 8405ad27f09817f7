"""Phantoms as a dataset: written to a dataset folder (resumable) or rendered on the fly in memory.

`write_phantom_folder` is what `raddino phantom` runs; `PhantomDataset` is a torch Dataset giving
bit-identical pixels to the folder's PNGs for the same (seed, index), without touching the disk.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from raddino.data.dataset_folder import (
    METADATA_COLUMNS,
    DatasetFolder,
    dequantize_image,
    quantize_image,
    write_index,
    write_png,
)
from raddino.data.phantom.config import FINDINGS, PhantomConfig
from raddino.utils import atomic_path, versions, write_json_atomic

SPLIT_FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)  # train, val, test (of images)


def write_phantom_folder(
    out_dir: str | os.PathLike,
    n: int,
    config: PhantomConfig,
    seed: int,
    *,
    progress: bool = True,
    workers: int = 1,
    name: str = "phantom",
) -> DatasetFolder:
    """Render phantoms 0..n-1 into `out_dir` as a dataset folder; a rerun resumes a killed run.

    Each image's files (PNG, masks, then a JSON record in `.work/`) are written atomically; the
    CSVs and dataset.json are assembled from the records at the end and `.work/` is removed, so an
    interrupted-then-resumed run yields exactly the folder an uninterrupted one does.
    """
    from tqdm.auto import tqdm

    from raddino.data.phantom.config import LANDMARK_NAMES, MASK_NAMES
    from raddino.data.splits import subject_split

    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if not isinstance(config, PhantomConfig):
        raise ValueError(f"config must be a PhantomConfig, got {type(config).__name__}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    out_dir = Path(out_dir)
    generator = {"name": "raddino.data.phantom", "n": n, "seed": seed, "config": config.to_dict()}
    work_dir = out_dir / ".work"
    if (out_dir / "dataset.json").is_file():
        existing = json.loads((out_dir / "dataset.json").read_text()).get("generator")
        if existing != json.loads(json.dumps(generator)):
            raise ValueError(
                f"--out {out_dir} already holds a different dataset; choose a new folder"
            )
        folder = DatasetFolder.open(out_dir, check_images=False)
        _repair_missing_files(folder, seed, config, progress)
        _remove_work_dir(work_dir)
        return DatasetFolder.open(out_dir, check_images=True)
    _claim_folder(out_dir, work_dir, generator)

    width = max(6, len(str(n - 1)))
    stems = [f"phantom_{i:0{width}d}" for i in range(n)]
    todo = [i for i in range(n) if not (work_dir / "records" / f"{stems[i]}.json").is_file()]
    config_dict = config.to_dict()  # plain data: picklable for worker processes
    jobs = [(str(out_dir), i, stems[i], seed, config_dict) for i in todo]
    bar = tqdm(total=n, initial=n - len(todo), desc="phantoms", unit="img", disable=not progress)
    if workers == 1:
        for job in jobs:
            _render_and_write(*job)
            bar.update()
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers, initializer=phantom_worker_init) as pool:
            for _ in pool.map(_render_and_write, *zip(*jobs, strict=True), chunksize=8):
                bar.update()
    bar.close()

    records = [json.loads((work_dir / "records" / f"{s}.json").read_text()) for s in stems]
    labels_df = pd.DataFrame(
        [
            {
                "image": r["image"],
                "subject_id": r["metadata"]["subject_id"],
                "view": r["metadata"]["view"],
                **r["labels"],
                **{k: r["metadata"].get(k) for k in METADATA_COLUMNS},
            }
            for r in records
        ]
    )
    # A subject-level, label-stratified split, a pure function of the records and the seed.
    labels_df.insert(
        3,
        "split",
        subject_split(
            labels_df["subject_id"],
            SPLIT_FRACTIONS,
            seed,
            labels=labels_df[list(FINDINGS)].to_numpy(dtype=np.float64),
        ),
    )
    landmarks_df = pd.DataFrame(
        [(r["image"], k, x, y) for r in records for k, (x, y) in r["landmarks"].items()],
        columns=["image", "landmark", "x", "y"],
    )
    reports_df = pd.DataFrame(
        [(r["image"], r["report"]) for r in records], columns=["image", "report"]
    )
    with atomic_path(out_dir / "details.jsonl", suffix=".jsonl") as tmp:
        tmp.write_text("".join(json.dumps(r["details"]) + "\n" for r in records))
    info = {
        "name": name,
        "labels": list(FINDINGS),
        "metadata": list(METADATA_COLUMNS),
        "structures": list(MASK_NAMES) if config.with_masks else [],
        "landmarks": list(LANDMARK_NAMES),
        "image_root": ".",
        "generator": generator,
        "split": {"fractions": list(SPLIT_FRACTIONS), "seed": seed, "by": "subject, stratified"},
        "counts": {
            "images": n,
            "subjects": int(labels_df["subject_id"].nunique()),
            "views": {
                str(k): int(v) for k, v in labels_df["view"].value_counts().sort_index().items()
            },
            "positives": {name: int(labels_df[name].sum()) for name in FINDINGS},
        },
        "created_with": _stable_versions(),
    }
    folder = write_index(out_dir, labels_df, info, landmarks_df, reports_df)
    _remove_work_dir(work_dir)
    return folder


def phantom_worker_init(worker_id: int = 0) -> None:
    """Set up a process that renders phantoms (use as DataLoader `worker_init_fn`).

    Raises glibc's mmap threshold (C1's `tune_allocator_for_rendering`), which removes the page
    faults of the renderer's fresh arrays (~25% of render time); process-wide, so opt-in.
    """
    from raddino.data.phantom import tune_allocator_for_rendering

    tune_allocator_for_rendering()


def _repair_missing_files(
    folder: DatasetFolder, seed: int, config: PhantomConfig, progress: bool
) -> None:
    """Re-render the images of a finished folder whose PNG or an expected mask has gone missing."""
    from tqdm.auto import tqdm

    from raddino.data.phantom.config import structures_for_view

    damaged = []
    for i, view in enumerate(folder.table["view"]):
        expected = structures_for_view(view) if config.with_masks else ()
        if not folder.image_path(i).is_file() or not all(folder.has_mask(s, i) for s in expected):
            damaged.append(i)
    config_dict = config.to_dict()
    for i in tqdm(damaged, desc="repair", unit="img", disable=not progress or not damaged):
        stem = Path(folder.table["image"].iat[i]).stem
        _render_and_write(str(folder.root), i, stem, seed, config_dict, record=False)


def _render_and_write(
    out_dir: str,
    index: int,
    stem: str,
    seed: int,
    config_dict: dict[str, Any],
    record: bool = True,
) -> None:
    """Render phantom `index` and write its PNG, masks and (last, if `record`) its JSON record."""
    from raddino.data.phantom import render_phantom
    from raddino.data.phantom.reports import phantom_report

    root = Path(out_dir)
    config = PhantomConfig.from_dict(config_dict)
    sample = render_phantom(index, seed=seed, config=config)
    image = f"images/{stem}.png"
    write_png(root / image, quantize_image(sample.image, 16))
    for structure, mask_hw in sample.masks.items():
        write_png(root / "masks" / structure / f"{stem}.png", mask_hw.astype(np.uint8) * 255)
    if not record:
        return
    metadata = {k: v for k, v in sample.metadata.items() if not isinstance(v, dict)}
    extra = {k: v for k, v in sample.metadata.items() if isinstance(v, dict)}
    record_json = {
        "image": image,
        "labels": {k: int(v) for k, v in sample.labels.items()},
        "metadata": metadata,
        "landmarks": {k: [float(x), float(y)] for k, (x, y) in sample.landmarks.items()},
        "report": phantom_report(sample, seed=seed, index=index),
        "details": {"image": image, "findings": sample.findings, **extra},
    }
    record_path = root / ".work" / "records" / f"{stem}.json"
    with atomic_path(record_path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(record_json, default=_json_scalar))


def _claim_folder(out_dir: Path, work_dir: Path, generator: dict[str, Any]) -> None:
    """Create `out_dir/.work/plan.json`, or check an existing plan matches (resume)."""
    plan_path = work_dir / "plan.json"
    if plan_path.is_file():
        if json.loads(plan_path.read_text()) != json.loads(json.dumps(generator)):
            raise ValueError(
                f"--out {out_dir} holds an unfinished run with other settings ({plan_path}); "
                "rerun with the same settings or choose a new folder"
            )
        return
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"--out {out_dir} exists and is not empty; choose a new folder")
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PermissionError(f"--out {out_dir} is not writable ({err.strerror})") from err
    write_json_atomic(plan_path, generator)


def _remove_work_dir(work_dir: Path) -> None:
    import shutil

    if work_dir.exists():
        shutil.rmtree(work_dir)


def _stable_versions() -> dict[str, str]:
    return {k: v for k, v in versions().items() if k != "platform"}


def _json_scalar(value: Any) -> Any:
    """JSON fallback for numpy scalars/arrays and tuples inside finding details."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a phantom record")


class PhantomDataset(torch.utils.data.Dataset):
    """Phantoms 0..n-1 rendered on demand, quantised like the PNGs so pixels match the folder.

    Items are dicts: `image` (1, H, W) float32 in [0, 1] (after `transform`, if given), `labels`
    (len(FINDINGS),) float32 in FINDINGS order, `index` int. Pass a config with
    `with_masks=False` for pretraining: masks are not returned and cost render time. In a
    DataLoader pass `worker_init_fn=phantom_worker_init` (faster rendering in the workers).
    """

    def __init__(
        self,
        n: int,
        seed: int,
        config: PhantomConfig,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        quantize_bits: int | None = 16,
    ) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if not isinstance(config, PhantomConfig):
            raise ValueError(f"config must be a PhantomConfig, got {type(config).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        if quantize_bits not in (8, 16, None):
            raise ValueError(f"quantize_bits must be 8, 16 or None, got {quantize_bits!r}")
        self.n, self.seed, self.config = n, int(seed), config
        self.transform, self.quantize_bits = transform, quantize_bits

    def __len__(self) -> int:
        return self.n

    def render_image(self, index: int) -> np.ndarray:
        """The (H, W) float32 image of phantom `index` (any index >= 0, not bounded by n), quantised
        as the folder stores it; `raddino.ssl.data.PhantomSource` streams pretraining images so."""
        from raddino.data.phantom import render_phantom

        return self._quantised(render_phantom(index, seed=self.seed, config=self.config).image)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from raddino.data.phantom import render_phantom

        if not -self.n <= index < self.n:
            raise IndexError(f"phantom index {index} out of range for {self.n} images")
        index = index % self.n
        sample = render_phantom(index, seed=self.seed, config=self.config)
        image_1hw = torch.from_numpy(self._quantised(sample.image))[None]
        if self.transform is not None:
            image_1hw = self.transform(image_1hw)
        labels_l = torch.tensor([sample.labels[name] for name in FINDINGS], dtype=torch.float32)
        return {"image": image_1hw, "labels": labels_l, "index": index}

    def _quantised(self, image_hw: np.ndarray) -> np.ndarray:
        if self.quantize_bits is None:
            return np.ascontiguousarray(image_hw, dtype=np.float32)
        return dequantize_image(quantize_image(image_hw, self.quantize_bits), self.quantize_bits)


class PhantomStream(torch.utils.data.IterableDataset):
    """An endless stream of phantoms for pretraining, served from a pool refreshed a few per item.

    Rendering every crop's source image anew can starve the GPU; instead `pool_size` rendered images
    are kept and each yielded item replaces, on average, `refresh_per_item` of them with fresh
    phantoms (never-seen indices). Each DataLoader worker and each distributed rank (`rank`,
    `world_size`) renders a disjoint set of indices; the stream is deterministic per seed.
    """

    def __init__(
        self,
        seed: int,
        config: PhantomConfig,
        pool_size: int = 256,
        refresh_per_item: float = 0.25,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not isinstance(config, PhantomConfig):
            raise ValueError(f"config must be a PhantomConfig, got {type(config).__name__}")
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ValueError(f"pool_size must be an integer >= 1, got {pool_size!r}")
        if not 0.0 < refresh_per_item <= pool_size:
            raise ValueError(f"refresh_per_item must be in (0, pool_size], got {refresh_per_item}")
        if not 0 <= rank < world_size:
            raise ValueError(
                f"rank must be in [0, world_size), got rank {rank}, world {world_size}"
            )
        self.seed, self.config, self.pool_size = int(seed), config, pool_size
        self.refresh_per_item, self.transform = float(refresh_per_item), transform
        self.rank, self.world_size = rank, world_size
        self._render = PhantomDataset(1, seed, config)  # shares quantisation with the folder

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (0, 1) if info is None else (info.id, info.num_workers)
        stride = n_workers * self.world_size
        stream_id = self.rank * n_workers + worker
        rng = np.random.default_rng([self.seed, stream_id, 0xB001])
        indices = (stream_id + stride * k for k in range(2**62))  # this stream's own phantoms

        def fresh() -> tuple[int, np.ndarray, np.ndarray]:
            from raddino.data.phantom import render_phantom

            index = next(indices)
            sample = render_phantom(index, seed=self.seed, config=self.config)
            labels = np.array([sample.labels[n] for n in FINDINGS], dtype=np.float32)
            return index, self._render._quantised(sample.image), labels

        pool = [fresh() for _ in range(self.pool_size)]
        debt = 0.0
        while True:
            debt += self.refresh_per_item
            while debt >= 1.0:
                pool[int(rng.integers(self.pool_size))] = fresh()
                debt -= 1.0
            index, image_hw, labels_l = pool[int(rng.integers(self.pool_size))]
            image_1hw = torch.from_numpy(image_hw.copy())[None]  # a copy: the pool stays intact
            if self.transform is not None:
                image_1hw = self.transform(image_1hw)
            yield {"image": image_1hw, "labels": torch.tensor(labels_l), "index": index}
