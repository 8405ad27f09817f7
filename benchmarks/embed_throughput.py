"""Embedding throughput: our backbone vs transformers' Dinov2Model (SDPA), identical weights.

For ViT-B/14 at 518 px and ViT-S/14 at 224 px: images/s of both models in the same process with
the same threads under `torch.inference_mode()` (warm-up, then timed runs interleaved so that
load from other processes hits both alike), their ratio, and achieved GFLOP/s (analytic matmul
FLOPs of the forward) as a fraction of a float32 matmul peak measured in the same run.

Project bars at ViT-B/14 518 px: >= 1.2x transformers and >= 85 % of the matmul peak.

Usage: python benchmarks/embed_throughput.py [--out runs/benchmarks/embed_throughput.json]
       [--configs b518,s224] [--iters 5] [--threads N] [--compile] [--device cuda --bf16]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from raddino.perf import matmul_peak_gflops, synchronize, vit_forward_flops
from raddino.utils import versions, write_json_atomic

BAR_RATIO = 1.2
BAR_PEAK_FRACTION = 0.85

# name -> (hidden size, depth, heads, input px, position grid px, default batch)
CONFIGS = {
    "b518": (768, 12, 12, 518, 518, 1),
    "s224": (384, 12, 6, 224, 224, 8),
}


def build_pair(dim: int, depth: int, heads: int, grid_px: int, device: torch.device, folder: Path):
    """A random transformers Dinov2Model (SDPA), saved; ours loaded from that folder."""
    from transformers import Dinov2Config, Dinov2Model

    from raddino.models.weights import load_backbone

    config = Dinov2Config(
        hidden_size=dim,
        num_hidden_layers=depth,
        num_attention_heads=heads,
        mlp_ratio=4,
        patch_size=14,
        image_size=grid_px,
        layerscale_value=1.0,
    )
    torch.manual_seed(0)
    reference = Dinov2Model(config)
    reference.save_pretrained(folder)
    reference = Dinov2Model.from_pretrained(folder, attn_implementation="sdpa")
    ours = load_backbone(folder, device=device)
    return ours, reference.to(device).eval()


def time_forward(forward, x: torch.Tensor, device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one forward.

    CPU time is the contention-robust companion on a shared machine: it does not count time
    spent descheduled (it does count OpenMP spin-waits, so it is not a clean FLOP clock either).
    """
    synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    forward(x)
    synchronize(device)
    return time.perf_counter() - start, time.process_time() - cpu_start


def benchmark_config(
    name: str, args: argparse.Namespace, device: torch.device, peak: float, peak_dtype
) -> dict:
    """Time both models on one config; images/s, GFLOP/s and fractions of the matmul peak."""
    dim, depth, heads, image, grid_px, default_batch = CONFIGS[name]
    batch = args.batch_size or default_batch
    with tempfile.TemporaryDirectory() as folder:
        ours, reference = build_pair(dim, depth, heads, grid_px, device, Path(folder))
    generator = torch.Generator(device="cpu").manual_seed(1)
    x = torch.randn(batch, 3, image, image, generator=generator).to(device)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()
    )
    ours_forward = ours.forward_features
    if args.compile:  # inductor with frozen weights: packed GEMMs, fused bias/GELU/norm epilogues
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        ours_forward = torch.compile(ours.forward_features)

    def run_ours(x_bchw):
        return ours_forward(x_bchw)["cls"]

    def run_reference(x_bchw):
        return reference(pixel_values=x_bchw).pooler_output

    times = {"ours": [], "transformers": []}
    cpu_times = {"ours": [], "transformers": []}
    nearby_peaks = []  # a matmul peak measured next to each timed pair: same load as the models
    runners = {"ours": run_ours, "transformers": run_reference}
    with torch.inference_mode(), autocast:
        diff = (run_ours(x).float() - run_reference(x).float()).abs().max().item()
        for runner in runners.values():
            for _ in range(args.warmup):
                time_forward(runner, x, device)
        for iteration in range(args.iters):  # alternate who goes first: fair under load
            nearby_peaks.append(matmul_peak_gflops(device, peak_dtype, repeats=2)["gflops"])
            order = ("ours", "transformers") if iteration % 2 == 0 else ("transformers", "ours")
            for label in order:
                wall, cpu = time_forward(runners[label], x, device)
                times[label].append(wall)
                cpu_times[label].append(cpu)

    flops = vit_forward_flops(dim, depth, image)
    result = {
        "hidden": dim,
        "depth": depth,
        "heads": heads,
        "image_px": image,
        "batch": batch,
        "gflop_per_image": flops / 1e9,
        "max_abs_diff_cls": diff,
        "transformers_attn_implementation": reference.config._attn_implementation,
    }
    result["nearby_peak_gflops"] = [round(p, 1) for p in nearby_peaks]
    for label, seconds in times.items():
        best, median = min(seconds), statistics.median(seconds)
        per_run_fraction = [
            flops * batch / t / 1e9 / p for t, p in zip(seconds, nearby_peaks, strict=True)
        ]
        result[label] = {
            "seconds": [round(s, 4) for s in seconds],
            "images_per_s_best": batch / best,
            "images_per_s_median": batch / median,
            "gflops_best": flops * batch / best / 1e9,
            "fraction_of_matmul_peak": flops * batch / best / 1e9 / peak,
            "fraction_of_nearby_peak_median": statistics.median(per_run_fraction),
            "cpu_seconds": [round(c, 4) for c in cpu_times[label]],
        }
    result["ratio_best"] = (
        result["ours"]["images_per_s_best"] / (result["transformers"]["images_per_s_best"])
    )
    result["ratio_median"] = (
        result["ours"]["images_per_s_median"] / (result["transformers"]["images_per_s_median"])
    )
    result["ratio_cpu_time_median"] = statistics.median(cpu_times["transformers"]) / (
        statistics.median(cpu_times["ours"])
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/benchmarks/embed_throughput.json")
    parser.add_argument("--configs", default="b518,s224", help=f"comma list of {list(CONFIGS)}")
    parser.add_argument("--iters", type=int, default=5, help="timed runs per model")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch-size", type=int, help="override each config's default batch")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (GPU machines)")
    parser.add_argument("--compile", action="store_true", help="torch.compile our forward")
    args = parser.parse_args()
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown configs {unknown}; choose from {list(CONFIGS)}")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    peak_dtype = torch.bfloat16 if args.bf16 else torch.float32

    load_before = os.getloadavg()
    peak_before = matmul_peak_gflops(device, peak_dtype)
    print(f"matmul peak ({peak_before['dtype']}): {peak_before['gflops']:.1f} GFLOP/s")
    results = {}
    for name in names:
        results[name] = benchmark_config(name, args, device, peak_before["gflops"], peak_dtype)
    peak_after = matmul_peak_gflops(device, peak_dtype)
    peak = max(peak_before["gflops"], peak_after["gflops"])
    for result in results.values():  # fractions against the best peak seen in the run
        peak = max(peak, *result["nearby_peak_gflops"])
    for name, result in results.items():
        for label in ("ours", "transformers"):
            result[label]["fraction_of_matmul_peak"] = result[label]["gflops_best"] / peak
        ours, theirs = result["ours"], result["transformers"]
        print(
            f"{name}: ours {ours['images_per_s_best']:.3f} img/s "
            f"({ours['gflops_best']:.1f} GFLOP/s, {ours['fraction_of_matmul_peak']:.0%} of peak), "
            f"transformers {theirs['images_per_s_best']:.3f} img/s "
            f"({theirs['fraction_of_matmul_peak']:.0%}); ratio best {result['ratio_best']:.3f}, "
            f"median {result['ratio_median']:.3f}, by CPU time "
            f"{result['ratio_cpu_time_median']:.3f}; vs nearby peak (median) "
            f"ours {ours['fraction_of_nearby_peak_median']:.0%}, "
            f"transformers {theirs['fraction_of_nearby_peak_median']:.0%}; "
            f"max |cls diff| {result['max_abs_diff_cls']:.2e}"
        )
    record = {
        "benchmark": "embed_throughput",
        "device": str(device),
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "bf16": args.bf16,
        "compile": args.compile,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "matmul_peak": {"before": peak_before, "after": peak_after, "gflops_best_in_run": peak},
        "results": results,
        "bars": {"ratio_vs_transformers": BAR_RATIO, "fraction_of_matmul_peak": BAR_PEAK_FRACTION},
        "versions": versions(),
    }
    if "b518" in results:
        b518 = results["b518"]
        # Met only if every estimate agrees: under load a lucky best-of can fake a ratio.
        ratio = min(b518["ratio_best"], b518["ratio_median"], b518["ratio_cpu_time_median"])
        record["bars_met_b518"] = {
            "ratio": ratio >= BAR_RATIO,
            "fraction_of_matmul_peak": b518["ours"]["fraction_of_matmul_peak"] >= BAR_PEAK_FRACTION,
        }
        print(f"bars at ViT-B/14 518 px (ratio counted as {ratio:.3f}): {record['bars_met_b518']}")
    if max(load_before[0], record["load_average_after"][0]) > args.threads:
        print(
            f"note: load average {load_before[0]:.1f} -> {record['load_average_after'][0]:.1f} "
            f"exceeds {args.threads} threads: other processes share the CPU, wall-clock numbers "
            "are noisy (compare the CPU-time ratio, and rerun when the machine is quiet)"
        )
    write_json_atomic(args.out, record)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
