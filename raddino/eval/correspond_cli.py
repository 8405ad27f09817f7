"""Patch correspondence: transfer landmarks between images of different subjects by matching patch
embeddings; per-landmark error in pixels and hit rates to metrics.json (paper Fig. 3, measured).
"""

from __future__ import annotations

import argparse


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="dataset folder with landmarks.csv")
    parser.add_argument("--weights", required=True, help="encoder spec (raddino:<name>, ...)")
    parser.add_argument("--out", required=True, help="metrics JSON file to write")
    parser.add_argument("--pairs", type=int, default=200, help="random (query, target) pairs")
    parser.add_argument("--size", type=int, help="encoder input crop size (default: native)")
    parser.add_argument(
        "--radii", type=_float_list, default=[8.0, 16.0, 32.0], help="hit radii in pixels"
    )
    parser.add_argument("--seed", type=int, default=0, help="pair sampling seed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--cache", help="folder keeping the frozen patch features between runs (default: none)"
    )
    parser.add_argument("--figure", help="PNG like the paper's Fig. 3 for the first pair")


def run(args: argparse.Namespace) -> int:
    from raddino.eval.correspondence import run_correspondence
    from raddino.eval.report import write_metrics_json

    if not args.out.endswith(".json"):
        raise ValueError(f"--out {args.out}: metrics files end in .json")
    metrics, extras = run_correspondence(
        args.data,
        args.weights,
        n_pairs=args.pairs,
        size=args.size,
        radii=args.radii,
        seed=args.seed,
        device=args.device,
        cache_dir=args.cache,
    )
    run_config = {"data": args.data, "weights": args.weights, **metrics.pop("config")}
    write_metrics_json(args.out, "correspondence", metrics, run_config)
    if args.figure:
        _write_figure(args.figure, extras)
    overall = metrics["overall"]
    if overall["n"]:
        hits = ", ".join(f"<= {r} px: {v:.2f}" for r, v in overall["hit_rate"].items())
        print(
            f"{metrics['n_pairs']} pairs, {overall['n']} landmark transfers: mean error "
            f"{overall['mean_error_px']:.1f} px (same-position baseline "
            f"{overall['same_position_error_px']:.1f} px); hit rate {hits}"
        )
    print(f"wrote {args.out}")
    return 0


def _write_figure(path: str, extras: dict, max_landmarks: int = 4) -> None:
    import numpy as np

    from raddino.eval.correspondence import match_points
    from raddino.viz.overlays import correspondence_figure, save_png

    folder, grids, frames = extras["folder"], extras["grids_nhwc"], extras["frames"]
    for query, target in extras["pairs"]:
        names = sorted(set(folder.landmarks_of(query)) & set(folder.landmarks_of(target)))
        if names:
            break
    else:
        raise ValueError("no pair shares a landmark: nothing to draw")
    names = names[:max_landmarks]
    query_xy = np.asarray([folder.landmarks_of(query)[n] for n in names])
    true_xy = np.asarray([folder.landmarks_of(target)[n] for n in names])
    predicted, maps, _ = match_points(
        grids[query], grids[target], frames[query].to_model(query_xy), frames[query].out_hw
    )
    query_image, target_image = folder.read_image(query), folder.read_image(target)
    # The maps cover the model's crop: its footprint in the target image's pixels.
    (left, top), (right, bottom) = frames[target].to_image(
        np.asarray([[0.0, 0.0], [frames[target].out_hw[1], frames[target].out_hw[0]]])
    )
    figure = correspondence_figure(
        [query_image] * len(names),
        [target_image] * len(names),
        query_xy,
        maps.numpy(),
        frames[target].to_image(predicted),
        true_xy,
        labels=[n.replace("_", " ") for n in names],
        map_extents=[(left, right, bottom, top)] * len(names),
    )
    save_png(figure, path)
