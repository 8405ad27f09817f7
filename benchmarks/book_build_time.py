"""Wall time of a whole book build from scratch: execute every chapter under a profile + HTML.

Goals (issue): `smoke` <= 5 minutes and `cpu` <= 30 minutes on 2 CPU cores. The build runs in a
scratch copy of the book sources with an empty stage cache, so nothing is reused from earlier
runs (the npm vendor cache is reused when present: fetching it is not what is measured).

Usage: python benchmarks/book_build_time.py --profile smoke [--out runs/benchmarks/...json]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from raddino.book import copy_book_sources
from raddino.utils import versions, write_json_atomic

REPO = Path(__file__).resolve().parents[1]
GOAL_SECONDS = {"smoke": 5 * 60, "cpu": 30 * 60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--out", default=None, help="JSON (default runs/benchmarks/book_<p>.json)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch build folder")
    args = parser.parse_args()
    out = Path(args.out or REPO / "runs" / "benchmarks" / f"book_{args.profile}.json")
    scratch = Path(tempfile.mkdtemp(prefix="raddino-book-"))
    try:
        copy_book_sources(REPO, scratch)
        vendor = REPO / "book" / "_build" / "vendor"
        if vendor.is_dir():
            shutil.copytree(vendor, scratch / "book" / "_build" / "vendor")
        command = [sys.executable, "-m", "raddino.cli", "book", "--profile", args.profile]
        started = time.perf_counter()
        result = subprocess.run(command + ["--root", str(scratch)], cwd=scratch)
        seconds = time.perf_counter() - started
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    goal = GOAL_SECONDS.get(args.profile)
    report = {
        "benchmark": "book_build_time",
        "profile": args.profile,
        "returncode": result.returncode,
        "wall_seconds": round(seconds, 1),
        "goal_seconds": goal,
        "within_goal": None if goal is None else seconds <= goal,
        "scratch": str(scratch) if args.keep else None,
        "versions": versions(),
    }
    write_json_atomic(out, report)
    print(f"book ({args.profile}): {seconds:.0f} s (goal {goal} s), rc {result.returncode}")
    print(f"wrote {out}")
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
