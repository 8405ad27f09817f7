"""Segment structures with a frozen encoder and a trained head; Dice per structure to metrics.json.

Patch features are extracted once, then a linear / ViTDet / UPerNet head (or an end-to-end U-Net
upper bound) is trained on a subject-level 70/15/15 split, chosen by validation loss and scored
on the test split (paper Sec. 4.3, Table 6; Fig. 4 with --few-shot; Fig. A.5 with --figure).
"""

from __future__ import annotations

import argparse


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from err
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="dataset folder with masks")
    parser.add_argument(
        "--weights", required=True, help="encoder spec (raddino:<name>, random:<arch>, timm:...)"
    )
    parser.add_argument("--head", choices=("linear", "vitdet", "upernet", "unet"), default="linear")
    parser.add_argument("--out", required=True, help="metrics JSON file to write")
    parser.add_argument(
        "--structures", help="comma-separated masks to segment (default: the paper's, if present)"
    )
    parser.add_argument("--size", type=int, help="encoder input crop size (default: native)")
    parser.add_argument(
        "--mask-size", type=int, help="side of the square masks are scored on (default: --size)"
    )
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0, help="split and head initialisation seed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--cache", help="folder keeping the frozen patch features between runs (default: none)"
    )
    parser.add_argument(
        "--few-shot", type=_int_list, help="also train on these numbers of images, e.g. 1,2,4,8"
    )
    parser.add_argument("--unet-encoder", default="resnet18", help="smp encoder for --head unet")
    parser.add_argument("--figure", help="PNG of test-image overlays (green truth, red prediction)")


def run(args: argparse.Namespace) -> int:
    import importlib.metadata as md

    from raddino.eval.dice import format_mean_std
    from raddino.eval.report import write_metrics_json
    from raddino.eval.segment import run_segmentation
    from raddino.eval.segment_train import HeadTrainConfig

    if not args.out.endswith(".json"):
        raise ValueError(f"--out {args.out}: metrics files end in .json")
    structures = None
    if args.structures:
        structures = [s.strip() for s in args.structures.split(",") if s.strip()]
    config = HeadTrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
    )
    metrics, extras = run_segmentation(
        args.data,
        args.weights,
        args.head,
        structures=structures,
        size=args.size,
        mask_size=args.mask_size,
        config=config,
        few_shot_sizes=args.few_shot or (),
        split_seed=args.seed,
        unet_encoder=args.unet_encoder,
        cache_dir=args.cache,
    )
    run_config = {
        "data": args.data,
        "weights": args.weights,
        "head": args.head,
        **metrics.pop("config"),
    }
    write_metrics_json(
        args.out,
        "segmentation",
        metrics,
        run_config,
        packages={"segmentation_models_pytorch": md.version("segmentation_models_pytorch")},
    )
    if args.figure:
        _write_overlay(args.figure, extras, metrics["structures"])
    for name, stats in metrics["dice"].items():
        if stats["n"]:
            print(f"{name:28s} Dice {format_mean_std(stats)}  (n={stats['n']})")
    print(f"wrote {args.out}")
    return 0


def _write_overlay(path: str, extras: dict, structures: list[str], max_images: int = 4) -> None:
    from raddino.eval.dice import dice_per_image
    from raddino.viz.overlays import save_png, segmentation_overlay

    data, test_rows, predicted = extras["data"], extras["rows"]["test"], extras["predicted"]
    shown = list(range(min(max_images, len(test_rows))))
    rows = [int(test_rows[k]) for k in shown]
    dice_ns = dice_per_image(predicted[shown], data.masks_nshw[rows], data.defined_ns[rows])
    figure = segmentation_overlay(
        [data.images_n1hw[r, 0].float().numpy() for r in rows],
        [data.masks_nshw[r].numpy() for r in rows],
        [predicted[k].numpy() for k in shown],
        structures,
        dice_ns=dice_ns,
    )
    save_png(figure, path)
