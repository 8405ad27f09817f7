"""Supervised reference for the release bar: a ViT-tiny trained *with* the finding labels.

The self-supervised releases read findings from their class token little better than random
init. Is that the recipe, or is a phantom finding hard to get into a ViT-tiny class token at this
budget at all? This fine-tunes the same backbone end to end with the labels (BCE through a linear
head on the class token, on phantoms disjoint from the probe set), then freezes it and holds it
to exactly the release bar (`raddino.ssl.release.frozen_probe_metrics`), beside a random init.
It is a reference, not a ceiling: it shows what labels buy at the same small budget, and the
training loss beside the base-rate loss says whether the network learnt anything from pixels.

    python benchmarks/supervised_reference.py   # about 12 minutes on 2 cores
    (measured: benchmarks/results/cpu_supervised_reference.json: loss still at the base rate)
    python benchmarks/supervised_reference.py --n 12000 --epochs 4 \
        --out benchmarks/results/cpu_supervised_reference_long.json   # about 50 minutes
    (macro AUPRC 0.389, above raw pixels: labels do get findings into the class token)
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from raddino.data.phantom import FINDINGS
from raddino.data.phantom.config import PhantomConfig
from raddino.data.phantom.dataset import PhantomDataset, phantom_worker_init
from raddino.models.weights import load_backbone, save_backbone
from raddino.ssl.release import ReleaseEval, frozen_probe_metrics
from raddino.ssl.train import make_normalizer
from raddino.utils import versions, write_json_atomic


def base_rate_bce(config: PhantomConfig) -> float:
    """Mean BCE over findings of always predicting each finding's prevalence: the loss of a model
    that learnt nothing from the pixels."""
    rates = torch.tensor([config.prevalence[name] for name in FINDINGS])
    return float(F.binary_cross_entropy(rates, rates))


def train_supervised(args: argparse.Namespace, config: PhantomConfig) -> tuple[Path, list[float]]:
    """Fine-tune `args.init` end to end on labelled phantoms; the saved backbone, step losses."""
    torch.manual_seed(args.seed)
    backbone = load_backbone(args.init).train()
    head = torch.nn.Linear(backbone.embed_dim, len(FINDINGS))
    normalize = make_normalizer(backbone)
    # seed 7: phantoms disjoint from pretraining (0) and from the probe / segmentation sets (2, 3)
    data = PhantomDataset(args.n, seed=7, config=config)
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=args.batch,
        shuffle=True,
        num_workers=args.workers,
        worker_init_fn=phantom_worker_init,
        drop_last=True,
        generator=torch.Generator().manual_seed(args.seed),
        persistent_workers=args.workers > 0,
    )
    params = [*backbone.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.05)
    total = args.epochs * len(loader)
    warmup = max(1, round(args.warmup_frac * total))

    def lr_factor(step: int) -> float:  # linear warm-up, then cosine to zero
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(step - warmup, total) / max(total - warmup, 1)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    losses = []
    progress = tqdm(total=total, desc="supervised", unit="step")
    for _ in range(args.epochs):
        for batch in loader:
            logits_bl = head(backbone(normalize(batch["image"])))
            loss = F.binary_cross_entropy_with_logits(logits_bl, batch["labels"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            progress.set_postfix(loss=f"{loss.item():.3f}")
            progress.update()
    progress.close()
    path = save_backbone(backbone.eval(), Path(args.runs) / "supervised_reference.safetensors")
    return path, losses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", default="raddino:general", help="anything load_backbone takes")
    parser.add_argument("--n", type=int, default=4000, help="labelled training phantoms")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup-frac", type=float, default=0.1, help="of the steps")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", default="runs", help="runs root (probe folders, caches)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/supervised_reference.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = PhantomConfig(size=args.size, views=("PA", "AP"), with_masks=False)
    tic = time.perf_counter()
    weights, losses = train_supervised(args, config)
    train_s = time.perf_counter() - tic
    tenth = max(1, len(losses) // 10)
    evaluation = ReleaseEval()
    report = {
        "recipe": {k: v for k, v in vars(args).items() if k not in ("out", "runs")},
        "versions": versions(),
        "train_s": round(train_s, 1),
        "base_rate_bce": round(base_rate_bce(config), 4),
        "train_loss_per_tenth": [
            round(sum(losses[i : i + tenth]) / len(losses[i : i + tenth]), 4)
            for i in range(0, len(losses), tenth)
        ],
        "evaluation": asdict(evaluation),
        "supervised": frozen_probe_metrics(str(weights), evaluation, args.runs),
        "random:vit_tiny": frozen_probe_metrics("random:vit_tiny", evaluation, args.runs),
    }
    write_json_atomic(args.out, report)
    for spec in ("supervised", "random:vit_tiny"):
        headline = {k: v for k, v in report[spec].items() if not isinstance(v, dict)}
        print(spec, json.dumps(headline))
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
