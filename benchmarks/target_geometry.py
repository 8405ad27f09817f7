"""Teacher-target geometry over a run's checkpoints (`raddino.ssl.target_geometry`): how flat the
DINO targets are, whether an image's two crops share them, and how alike the crops' class tokens
are, from the start weights (fresh heads) to the end. Chapter 12 reads the JSON.

    python benchmarks/target_geometry.py --run RUN --checkpoint start \
        --checkpoint RUN/checkpoints/step_00000799 ... --out raddino/release/sweeps/NAME.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import mean

import torch

from raddino.ssl.checkpoint import load_checkpoint, run_config
from raddino.ssl.target_geometry import meta_from_checkpoint, target_geometry, training_batches
from raddino.utils import versions, write_json_atomic


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="folder with the run's config.yaml")
    parser.add_argument(
        "--checkpoint", action="append", required=True, help="'start' or a checkpoint folder"
    )
    parser.add_argument("--batches", type=int, default=4, help="training batches (steps 0..N-1)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = run_config(args.run)
    temp = float(config["teacher"]["teacher_temp"])
    rows, batches = [], None
    for which in args.checkpoint:
        folder = None if which == "start" else Path(which)
        step = 0 if folder is None else int(load_checkpoint(folder)[1]["step"]) + 1
        meta = meta_from_checkpoint(config, folder)
        if batches is None:  # the same batches for every checkpoint (same data, same normaliser)
            batches = training_batches(config, meta, range(args.batches))
        per_batch = [target_geometry(meta, batch, temp) for batch in batches]
        averaged = {key: mean(b[key] for b in per_batch) for key in per_batch[0]}
        rows.append({"steps_done": step, **averaged})  # means of per-batch statistics
        print(json.dumps({k: round(v, 3) for k, v in rows[-1].items()}))
    report = {
        "run_config": config,
        "teacher_temp": temp,
        "batches": args.batches,
        "images_per_batch": config["train"]["batch_size_per_device"],
        "versions": versions(),
        "rows": rows,
    }
    write_json_atomic(args.out, report)
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
