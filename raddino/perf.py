"""Performance accounting for the benchmarks: analytic ViT FLOPs and the machine's matmul peak.

Ratios are what we report (achieved GFLOP/s over a float32 matmul peak measured in the same run),
so numbers from different machines can be compared honestly.
"""

from __future__ import annotations

import time

import torch


def vit_forward_flops(
    dim: int, depth: int, image: int | tuple[int, int], patch: int = 14, mlp_ratio: float = 4.0
) -> int:
    """Matmul FLOPs (2 per multiply-add) of one image through a ViT with a class token.

    Patch embedding + per block: qkv (N x C x 3C), q k^T and attn v (2 x N x N x C), proj
    (N x C x C), MLP (2 x N x C x rC). Norms, softmax, GELU and adds (O(N C)) are not counted.
    """
    height, width = (image, image) if isinstance(image, int) else image
    n_patches = (height // patch) * (width // patch)
    tokens = n_patches + 1
    hidden = int(dim * mlp_ratio)
    patch_embed = 2 * n_patches * (3 * patch * patch) * dim
    qkv = 2 * tokens * dim * 3 * dim
    attention = 2 * (2 * tokens * tokens * dim)
    proj = 2 * tokens * dim * dim
    mlp = 2 * (2 * tokens * dim * hidden)
    return patch_embed + depth * (qkv + attention + proj + mlp)


def mlp_head_flops(in_dim: int, hidden: int, bottleneck: int, prototypes: int, layers: int) -> int:
    """FLOPs of one token through a DINO head (MLP + weight-normalised prototype layer)."""
    dims = [in_dim] + [hidden] * (layers - 1) + [bottleneck]
    mlp = sum(2 * a * b for a, b in zip(dims[:-1], dims[1:], strict=True))
    return mlp + 2 * bottleneck * prototypes


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels (CUDA) so that wall-clock timings mean something."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype, repeats: int = 5) -> dict:
    """Best-of-`repeats` GFLOP/s of torch.mm on large square matrices (the achievable peak)."""
    size = 2048 if device.type == "cpu" else 8192
    generator = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device, dtype)
    b = torch.randn(size, size, generator=generator).to(device, dtype)
    torch.mm(a, b)  # warm-up
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return {"gflops": 2 * size**3 / best / 1e9, "size": size, "dtype": str(dtype)}
