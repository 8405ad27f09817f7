"""Training speed of a linear segmentation head on CPU: our loss path against torch's stock ops.

Chapter 07 trains ~24 linear heads of 100 epochs and the release bar's lung Dice trains more, each
scoring every epoch at full mask resolution. Two hand-written pieces of `raddino.eval.segment_train`
exist only for speed: `bilinear_resize` (two matrix products instead of upsample_bilinear2d) and
`binary_cross_entropy_with_logits` (log instead of torch's unvectorised CPU log_sigmoid). This
times `train_head` with both, with each one swapped back to torch's op, and with both swapped
back, interleaved in one process on the same synthetic data (a chapter-07-sized set: 160 grids
of 8 x 8 x 192 -> 12 masks of 112 x 112), and checks that every variant learns the same head.

Usage: python benchmarks/segment_head_speed.py [--epochs 10] [--repeats 5] [--threads 2]
       [--out runs/benchmarks/segment_head_speed.json]
"""

from __future__ import annotations

import argparse
import statistics
import time


def synthetic_set(n: int, dim: int, grid: int, structures: int, size: int):
    """(inputs (N, 1, C, g, g) float16, masks (N, S, H, W) bool): masks are thresholded,
    upsampled linear read-outs of the grids, so a linear head can learn them."""
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(n, 1, dim, grid, grid, generator=generator)
    teacher = torch.randn(structures, dim, generator=generator) / dim**0.5
    logits = torch.einsum("sc,nchw->nshw", teacher, inputs[:, 0])
    logits = F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
    return inputs.half(), logits > 0.3


def main() -> None:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from raddino.eval import segment_train
    from raddino.eval.segment_heads import build_head
    from raddino.utils import versions, write_json_atomic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/benchmarks/segment_head_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    inputs, masks = synthetic_set(160, 192, 8, 12, 112)
    defined = torch.ones(masks.shape[:2], dtype=torch.bool)
    rows = np.random.default_rng(0).permutation(len(inputs))
    train_rows, val_rows = rows[:112], rows[112:136]
    config = segment_train.HeadTrainConfig(epochs=args.epochs, seed=0)
    ours = {
        "resize": segment_train.bilinear_resize,
        "bce": segment_train.binary_cross_entropy_with_logits,
    }
    stock = {
        "resize": lambda x, hw: F.interpolate(x, size=hw, mode="bilinear", align_corners=False),
        "bce": lambda x, t: F.binary_cross_entropy_with_logits(x, t.to(x.dtype), reduction="none"),
    }
    variants = {
        "ours": ours,
        "stock bce": {**ours, "bce": stock["bce"]},
        "stock resize": {**ours, "resize": stock["resize"]},
        "stock both": stock,
    }
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    final_val: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, ops in variants.items():
            segment_train.bilinear_resize = ops["resize"]
            segment_train.binary_cross_entropy_with_logits = ops["bce"]
            torch.manual_seed(0)
            head = build_head("linear", 192, masks.shape[1])
            started = time.perf_counter()
            history = segment_train.train_head(
                head, inputs, masks, defined, train_rows, val_rows, config, progress=False
            )
            seconds[name].append(time.perf_counter() - started)
            final_val[name] = history["val_loss"][-1]
    segment_train.bilinear_resize, segment_train.binary_cross_entropy_with_logits = ours.values()

    medians = {name: statistics.median(s) for name, s in seconds.items()}
    result = {
        "benchmark": "segment_head_speed",
        "epochs": args.epochs,
        "threads": args.threads,
        "repeats": args.repeats,
        "median_seconds": {k: round(v, 3) for k, v in medians.items()},
        "min_seconds": {k: round(min(s), 3) for k, s in seconds.items()},
        "speedup_over_stock_both": round(medians["stock both"] / medians["ours"], 2),
        "final_val_loss": final_val,
        "max_val_loss_gap": max(abs(v - final_val["ours"]) for v in final_val.values()),
        "versions": versions(),
    }
    for name, median in medians.items():
        print(f"{name:>13}: {median:.2f} s median of {args.repeats} ({args.epochs} epochs)")
    print(f"ours is {result['speedup_over_stock_both']}x stock; "
          f"final validation losses differ by <= {result['max_val_loss_gap']:.1e}")  # fmt: skip
    write_json_atomic(args.out, result)


if __name__ == "__main__":
    main()
