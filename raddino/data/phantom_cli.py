"""Write a dataset folder of procedurally generated chest X-ray phantoms (rerun to resume).

Example: raddino phantom --out data/phantom --n 2000 --size 224 --seed 0 --views pa,ap
"""

from __future__ import annotations

import argparse
import math


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Values are parsed in `run` (not by argparse types) so that every bad value is a one-line
    # error naming its argument.
    parser.add_argument("--out", required=True, help="dataset folder to write (new or unfinished)")
    parser.add_argument("--n", required=True, help="number of images")
    parser.add_argument("--size", default="224", help="image side in pixels (default 224)")
    parser.add_argument("--seed", default="0", help="random seed (default 0)")
    parser.add_argument(
        "--views", default="pa", help="comma-separated views among pa,ap,lateral (default pa)"
    )
    parser.add_argument(
        "--prevalence",
        nargs="+",
        default=[],
        metavar="FINDING=P",
        help="override a finding's prevalence, e.g. --prevalence nodule=0.3 pneumothorax=0.1",
    )
    parser.add_argument(
        "--images-per-subject", default="2", help="consecutive images sharing a subject (default 2)"
    )
    parser.add_argument("--no-masks", action="store_true", help="skip segmentation masks")
    parser.add_argument("--workers", default="1", help="processes rendering in parallel")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from raddino.data.phantom import FINDINGS, VIEWS, PhantomConfig
    from raddino.data.phantom.dataset import phantom_worker_init, write_phantom_folder

    n = _parse_int(args.n, "--n", minimum=1)
    size = _parse_int(args.size, "--size", minimum=32)
    seed = _parse_int(args.seed, "--seed", minimum=0)
    workers = _parse_int(args.workers, "--workers", minimum=1)
    images_per_subject = _parse_int(args.images_per_subject, "--images-per-subject", minimum=1)
    views = tuple(v.strip().upper() for v in args.views.split(",") if v.strip())
    unknown_views = [v for v in views if v not in VIEWS]
    if not views or unknown_views:
        raise ValueError(
            f"--views: unknown view(s) {unknown_views or [args.views]}; "
            f"choose among {','.join(v.lower() for v in VIEWS)}"
        )
    prevalence = {}
    for item in args.prevalence:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--prevalence: expected FINDING=P, got {item!r}")
        if name not in FINDINGS:
            raise ValueError(
                f"--prevalence: unknown finding {name!r}; known: {', '.join(FINDINGS)}"
            )
        prevalence[name] = _parse_probability(value, f"--prevalence {name}")
    try:
        config = PhantomConfig(
            size=size,
            views=tuple(dict.fromkeys(views)),
            prevalence=prevalence,
            with_masks=not args.no_masks,
            images_per_subject=images_per_subject,
        )
    except ValueError as err:
        raise ValueError(f"invalid phantom settings: {err}") from None
    phantom_worker_init()  # this process is ours: tune the allocator for rendering
    folder = write_phantom_folder(
        args.out, n, config, seed, progress=not args.quiet, workers=workers
    )
    print(f"wrote {len(folder)} phantoms ({size} px, views {','.join(config.views)}) to {args.out}")
    return 0


def _parse_int(text: str, argument: str, minimum: int) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ValueError(f"{argument} must be an integer, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"{argument} must be >= {minimum}, got {value}")
    return value


def _parse_probability(text: str, argument: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{argument} must be a number in [0, 1], got {text!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{argument} must be in [0, 1], got {text!r}")
    return value
