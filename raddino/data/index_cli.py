"""Index a real chest X-ray dataset in place as a raddino dataset folder (images are not copied).

Example: raddino index --dataset vindr-cxr --root /data/vindr-cxr/1.0.0 --out data/vindr
Datasets: mimic-cxr, chexpert, vindr-cxr, candid-ptx, rsna-pneumonia, siim-acr, padchest,
nih-cxr14. Only masks decoded from RLE (CANDID-PTX, SIIM-ACR) are written into --out.
"""

from __future__ import annotations

import argparse

# Kept here (not imported from raddino.data.datasets) so that `raddino --help` stays light.
DATASET_CHOICES = (
    "mimic-cxr",
    "chexpert",
    "vindr-cxr",
    "candid-ptx",
    "rsna-pneumonia",
    "siim-acr",
    "padchest",
    "nih-cxr14",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Values are checked in `run` so each bad value is a one-line error naming its argument.
    parser.add_argument("--dataset", required=True, help=f"one of {', '.join(DATASET_CHOICES)}")
    parser.add_argument("--root", required=True, help="folder of the original dataset")
    parser.add_argument("--out", required=True, help="dataset folder to write (index + masks)")
    parser.add_argument(
        "--uncertain",
        default="unknown",
        help="CheXpert/MIMIC uncertain (-1) labels: unknown (blank, default), negative, positive",
    )
    parser.add_argument(
        "--reader-vote",
        default="any",
        help="VinDr-CXR training labels: 'any' reader (default) or a strict 'majority'",
    )
    parser.add_argument(
        "--mimic-iv",
        default="",
        help="MIMIC-CXR: a MIMIC-IV folder (hosp/patients, hosp/omr) for sex, age, height, "
        "weight and BMI (the paper's Table 7)",
    )
    parser.add_argument(
        "--views", default="", help="keep only these views, e.g. 'lateral' or 'pa,ap'"
    )
    parser.add_argument(
        "--default-view", default="", help="view for images whose DICOM header names none"
    )
    parser.add_argument(
        "--fractions",
        default="",
        help="train,val,test shares for subjects without an official split "
        "(default: the paper's, e.g. 0.6,0.2,0.2 for CANDID-PTX and RSNA)",
    )
    parser.add_argument("--seed", default="0", help="seed of the subject split (default 0)")
    parser.add_argument(
        "--allow-missing-images",
        action="store_true",
        help="index only the images present (the others are counted in dataset.json)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from raddino.data.adapters import AdapterOptions
    from raddino.data.datasets import index_dataset

    if args.dataset not in DATASET_CHOICES:
        raise ValueError(f"--dataset: unknown {args.dataset!r}; choose among {DATASET_CHOICES}")
    try:
        options = AdapterOptions(
            uncertain=args.uncertain,
            reader_vote=args.reader_vote,
            mimic_iv=args.mimic_iv.strip() or None,
        )
    except ValueError as err:
        raise ValueError(str(err)) from None
    views = [_view(v, "--views") for v in args.views.split(",") if v.strip()] or None
    default_view = _view(args.default_view, "--default-view") if args.default_view else None
    fractions = _fractions(args.fractions) if args.fractions.strip() else None
    try:
        seed = int(args.seed)
    except ValueError:
        raise ValueError(f"--seed must be an integer, got {args.seed!r}") from None
    folder = index_dataset(
        args.dataset,
        args.root,
        args.out,
        options=options,
        views=views,
        default_view=default_view,
        allow_missing_images=args.allow_missing_images,
        fractions=fractions,
        seed=seed,
        progress=not args.quiet,
    )
    index = folder.info["index"]
    print(f"indexed {len(folder)} images of {args.dataset} into {args.out}")
    for split, counts in index["counts"].items():
        positives = ", ".join(f"{k} {v}" for k, v in counts["positives"].items())
        print(f"  {split}: {counts['images']} images, {counts['subjects']} subjects; {positives}")
    for reason, count in index["excluded_rows"].items():
        print(f"  left out {count}: {reason}")
    return 0


def _view(text: str, argument: str) -> str:
    view = text.strip().upper()
    if view not in ("PA", "AP", "LATERAL"):
        raise ValueError(f"{argument}: unknown view {text!r}; choose among pa, ap, lateral")
    return view


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(
            f"--fractions must be three numbers like 0.7,0.15,0.15, got {text!r}"
        ) from None
    if len(values) != 3 or min(values) < 0 or abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(f"--fractions must be three shares >= 0 summing to 1, got {text!r}")
    return values  # type: ignore[return-value]
