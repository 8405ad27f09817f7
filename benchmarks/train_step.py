"""Pretraining step throughput: images/s and achieved fraction of the float32 matmul peak.

One full step (teacher forward, student forward + backward, gradient clipping, AdamW, EMA update)
on a pre-built batch, so data generation is not timed. FLOPs are counted analytically (student
x3 for forward + backward, teacher x1; backbones and heads) and compared with a torch.mm peak
measured in the same run.

    python benchmarks/train_step.py --out runs/bench/train_step.json
    python benchmarks/train_step.py --case vitb224 --device cuda --bf16   # on a GPU
    python benchmarks/train_step.py --case cpu --profile runs/bench/profile.txt  # where time goes
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from raddino.perf import matmul_peak_gflops, mlp_head_flops, synchronize, vit_forward_flops
from raddino.ssl import parallel
from raddino.ssl.config import load_config
from raddino.ssl.data import BatchMaker, PhantomSource
from raddino.ssl.distributed import enable_fast_cuda_kernels
from raddino.ssl.meta_arch import DinoV2MetaArch
from raddino.ssl.train import build_backbone_for, build_optimizer, make_normalizer

# DINOv2's default heads: 65536 prototypes, hidden 2048, bottleneck 256 (DINO and iBOT)
PAPER_HEADS = {
    f"{loss}.head_{key}": value
    for loss in ("dino", "ibot")
    for key, value in (("n_prototypes", 65536), ("hidden_dim", 2048), ("bottleneck_dim", 256))
}

CASES = {
    # the `cpu` profile as is
    "cpu": ("cpu", {}),
    # a ViT-B/14 step at 224 px: paper-sized heads, small batch for a CPU
    "vitb224": (
        "cpu",
        {
            "model.arch": "vit_base",
            "train.batch_size_per_device": 8,
            "crops.global_crops_size": 224,
            "crops.local_crops_size": 98,
            "crops.local_crops_number": 4,
            **PAPER_HEADS,
        },
    ),
    # gpu-paper-shaped: ViT-B/14 at 518, 40 images per device
    "gpu-paper": (
        "cpu",
        {
            "model.arch": "vit_base",
            "train.batch_size_per_device": 40,
            "crops.global_crops_size": 518,
            "crops.local_crops_size": 196,
            "crops.local_crops_number": 8,
            **PAPER_HEADS,
            "data.phantom_size": 518,
        },
    ),
}


def step_flops(config: dict, backbone, batch) -> int:
    """Analytic matmul FLOPs of one training step on `batch`."""
    dim, depth = backbone.embed_dim, backbone.depth
    mlp_ratio = backbone.blocks[0].mlp.fc2.in_features / dim
    g_size, l_size = batch.global_crops.shape[-1], config["crops"]["local_crops_size"]
    n_global, n_local = batch.global_crops.shape[0], batch.n_local * batch.batch_size
    dino = config["dino"]
    head = mlp_head_flops(
        dim,
        dino["head_hidden_dim"],
        dino["head_bottleneck_dim"],
        dino["head_n_prototypes"],
        dino["head_nlayers"],
    )
    masked = 0 if batch.masks is None else int(batch.masks.n_masked_patches)
    student = n_global * vit_forward_flops(dim, depth, g_size, mlp_ratio=mlp_ratio)
    student += n_local * vit_forward_flops(dim, depth, l_size, mlp_ratio=mlp_ratio)
    student += (n_global + n_local + masked) * head
    teacher = n_global * vit_forward_flops(dim, depth, g_size, mlp_ratio=mlp_ratio)
    teacher += (n_global + masked) * head
    return 3 * student + teacher


def profile_table(one_step, device: torch.device, path: Path, rows: int = 30) -> None:
    """Where one step's time goes: torch.profiler's operator table, sorted by device time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        one_step()
        synchronize(device)
    sort_by = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(prof.key_averages().table(sort_by=sort_by, row_limit=rows))
    print(f"profile written {path}")


def bench_case(
    name: str,
    steps: int,
    device: torch.device,
    bf16: bool,
    compile_blocks: bool = False,
    profile_to: Path | None = None,
) -> dict:
    profile, overrides = CASES[name]
    config = load_config(profile, overrides)
    torch.manual_seed(0)
    backbone = build_backbone_for(config)
    meta = DinoV2MetaArch(backbone, config).to(device)
    if compile_blocks:
        parallel.compile_modules(meta)
    optimizer = build_optimizer(meta, config)
    for group in optimizer.param_groups:
        group["lr"], group["weight_decay"] = 1e-4, 0.04
    source = PhantomSource(0, config["data"]["phantom_size"], config["data"]["phantom_views"])
    maker = BatchMaker(config, source, 0, 1, make_normalizer(backbone))
    maker.patch_size = backbone.patch_size
    batch = maker(0)
    batch.global_crops, batch.local_crops = (
        batch.global_crops.to(device),
        batch.local_crops.to(device),
    )
    if batch.masks is not None:
        for field in ("masks_bn", "mask_indices_m", "masks_weight_m"):
            setattr(batch.masks, field, getattr(batch.masks, field).to(device))
    params = [p for p in meta.student.parameters() if p.requires_grad]

    def one_step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            losses = meta(batch, teacher_temp=0.04)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(params, 3.0)
        optimizer.step()
        meta.update_teacher(0.996)

    one_step()  # warm-up (and compilation)
    one_step()
    synchronize(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        one_step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    if profile_to is not None:
        profile_table(one_step, device, profile_to.with_name(f"{profile_to.stem}_{name}.txt"))
    best = min(times)
    flops = step_flops(config, backbone, batch)
    return {
        "case": name,
        "compiled": compile_blocks,
        "arch": config["model"]["arch"],
        "batch": batch.batch_size,
        "global_size": batch.global_crops.shape[-1],
        "local_crops": batch.n_local,
        "step_s_best": best,
        "step_s_median": sorted(times)[len(times) // 2],
        "images_per_s": batch.batch_size / best,
        "gflop_per_step": flops / 1e9,
        "achieved_gflops": flops / best / 1e9,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--case", action="append", choices=sorted(CASES), help="default: cpu, vitb224"
    )
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    parser.add_argument("--compile", action="store_true", help="torch.compile each block")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--profile", type=Path, help="write each case's operator table (.txt)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/train_step.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        enable_fast_cuda_kernels()  # as the trainer does
    peak = matmul_peak_gflops(device, torch.bfloat16 if args.bf16 else torch.float32)
    results = []
    for name in args.case or ["cpu", "vitb224"]:
        result = bench_case(name, args.steps, device, args.bf16, args.compile, args.profile)
        result["fraction_of_matmul_peak"] = result["achieved_gflops"] / peak["gflops"]
        results.append(result)
        print(json.dumps(result))
    from raddino.models import backbone as backbone_module

    attention = (
        "xformers" if backbone_module._xformers_attention and device.type == "cuda" else "sdpa"
    )
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "attention": attention,  # xformers when installed and on CUDA, else PyTorch SDPA
        "threads": torch.get_num_threads(),
        "matmul_peak": peak,
    }
    report["cases"] = results
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"matmul peak {peak['gflops']:.1f} GFLOP/s; written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
