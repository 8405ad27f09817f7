"""Phantom rendering speed on ONE core: images/s at 224 and 518 px, with and without masks.

Bars (issue): >= 200 images/s at 224 px and >= 20 images/s at 518 px, masks off (pretraining).
Reports both wall-clock and process-CPU rates: on a shared machine the CPU-time rate is the fair
single-core number. Also times the in-memory `PhantomDataset` item and the folder writer.

Usage: python benchmarks/phantom_speed.py [--out runs/benchmarks/phantom_speed.json]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy/torch are imported

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from raddino.data.phantom import PhantomConfig, render_phantom  # noqa: E402
from raddino.data.phantom.dataset import (  # noqa: E402
    PhantomDataset,
    phantom_worker_init,
    write_phantom_folder,
)
from raddino.utils import versions, write_json_atomic  # noqa: E402

BARS = {224: 200.0, 518: 20.0}


def _rate(fn, count: int) -> dict[str, float]:
    """Call fn(i) for i in range(count) after a short warm-up; images/s by wall and CPU time."""
    for i in range(min(3, count)):
        fn(10_000 + i)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(count):
        fn(i)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "images": count,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "images_per_s_wall": round(count / wall, 1),
        "images_per_s_cpu": round(count / max(cpu, 1e-9), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/benchmarks/phantom_speed.json")
    parser.add_argument("--n224", type=int, default=300, help="images timed at 224 px")
    parser.add_argument("--n518", type=int, default=60, help="images timed at 518 px")
    parser.add_argument("--views", default="PA,AP,LATERAL")
    parser.add_argument(
        "--no-tune-allocator", action="store_true", help="skip phantom_worker_init (glibc mallopt)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.no_tune_allocator:
        phantom_worker_init()
    views = tuple(v.strip().upper() for v in args.views.split(","))

    results = []
    for size, count in ((224, args.n224), (518, args.n518)):
        for with_masks in (False, True):
            config = PhantomConfig(size=size, views=views, with_masks=with_masks)
            row = {"what": "render_phantom", "size": size, "with_masks": with_masks}
            row |= _rate(lambda i, c=config: render_phantom(i, seed=0, config=c), count)
            if not with_masks:
                row["bar_images_per_s"] = BARS[size]
                row["meets_bar_cpu"] = row["images_per_s_cpu"] >= BARS[size]
            results.append(row)
            print(row, flush=True)
        dataset = PhantomDataset(
            10_000 + 3, seed=0, config=PhantomConfig(size=size, views=views, with_masks=False)
        )
        row = {"what": "PhantomDataset.__getitem__", "size": size, "with_masks": False}
        row |= _rate(dataset.__getitem__, count)
        results.append(row)
        print(row, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        config = PhantomConfig(size=224, views=views, with_masks=True)
        count = max(20, args.n224 // 3)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        write_phantom_folder(Path(tmp) / "ds", count, config, seed=0, progress=False)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        row = {
            "what": "write_phantom_folder (PNG + masks + CSVs)",
            "size": 224,
            "with_masks": True,
            "images": count,
            "images_per_s_wall": round(count / wall, 1),
            "images_per_s_cpu": round(count / cpu, 1),
        }
        results.append(row)
        print(row, flush=True)

    report = {
        "benchmark": "phantom_speed",
        "threads": 1,
        "allocator_tuned": not args.no_tune_allocator,
        "views": list(views),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "results": results,
        "versions": versions(),
    }
    write_json_atomic(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
