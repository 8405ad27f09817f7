"""Execute the book's chapters under a profile (papermill) and build the offline HTML book.

Chapters whose inputs (source, parameters, raddino modules they import) did not change since
their last successful run are skipped; stage results are shared through the `runs/` cache.
"""

from __future__ import annotations

import argparse
import sys
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        default="cpu",
        help="profiles/<name>.yml (smoke, cpu, gpu-paper) or a path to a YAML profile",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="CHAPTER",
        help="run only this chapter (name or number prefix, e.g. 01) and its prerequisites; "
        "repeatable",
    )
    parser.add_argument("--no-build", action="store_true", help="execute only, build no HTML")
    parser.add_argument("--build-only", action="store_true", help="build the HTML, execute none")
    parser.add_argument("--force", action="store_true", help="re-execute even up-to-date chapters")
    parser.add_argument(
        "--root", help="book root (default: the nearest folder with notebooks/ and profiles/)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no per-cell progress bars")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PARAMETER=VALUE",
        help="set a chapter parameter over the profile's (YAML value, e.g. "
        "probe_datasets='[/data/raddino/vindr-cxr]'); repeatable",
    )


def run(args: argparse.Namespace) -> int:
    from raddino.book import ChapterFailed, find_root, run_book
    from raddino.book_html import build_html
    from raddino.book_profiles import parse_assignments

    if args.no_build and args.build_only:
        raise ValueError("--no-build and --build-only exclude each other")
    overrides = parse_assignments(args.set)
    if overrides and args.build_only:
        raise ValueError("--set changes what chapters execute; --build-only executes none")
    root = find_root() if args.root is None else args.root
    started = time.perf_counter()
    if not args.build_only:
        try:
            run_book(
                args.profile,
                root,
                args.only,
                force=args.force,
                progress=not args.no_progress,
                overrides=overrides,
            )
        except ChapterFailed as err:
            print(f"raddino book: {err}", file=sys.stderr)
            return 1
    executed_s = time.perf_counter() - started
    if not args.no_build:
        try:
            build_html(root)
        except RuntimeError as err:
            print(f"raddino book: {err}", file=sys.stderr)
            return 1
    total_s = time.perf_counter() - started
    print(f"raddino book: executed in {executed_s:.0f} s, total {total_s:.0f} s")
    return 0
