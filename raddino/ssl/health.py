"""Health of a pretraining run, read from its per-step metrics: collapse stops a run, nearly flat
DINO targets only warn.

Entropies are fractions of ln K (K prototypes), as `meta_arch.collapse_diagnostics` logs them.
Flat targets are not collapse: Sinkhorn-Knopp keeps the batch balanced, the run goes on, but the
class-token loss then asks little of the backbone. Both shipped releases trained that way (teacher
entropy 0.74-0.87 of ln K at the end) and their class tokens came out hashing where the patch grid
cuts the image (chapter 12), so a run that ends so flat is worth a look before it is released.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path

UNIFORM_TARGETS = 0.98  # teacher entropy above this: every target is (nearly) uniform
ONE_PROTOTYPE = 0.05  # batch-mean entropy below this: every image lands on one prototype
FLAT_TARGETS = 0.7  # teacher entropy above this over the run's last quarter: a warning


def collapsed(record: dict) -> bool:
    """Whether one step's teacher targets are collapsed (uniform, or all on one prototype)."""
    return record["teacher_entropy"] > UNIFORM_TARGETS or record["batch_entropy"] < ONE_PROTOTYPE


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The per-step records of `RUN/metrics.jsonl`; a bad line is an error naming it."""
    path = Path(run_dir) / "metrics.jsonl"
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: not a JSON record ({err})") from err
    return records


def flat_targets_warning(
    records: Sequence[dict], threshold: float = FLAT_TARGETS, tail: float = 0.25
) -> str | None:
    """A sentence when the median teacher entropy over the last `tail` of the steps is above
    `threshold` (of ln K), else None; runs too short to judge (< 8 steps) give None."""
    entropies = [r["teacher_entropy"] for r in records if "teacher_entropy" in r]
    if len(entropies) < 8:
        return None
    last = entropies[-max(1, round(len(entropies) * tail)) :]
    median = statistics.median(last)
    if median <= threshold:
        return None
    return (
        f"the DINO teacher targets stayed nearly flat: median teacher entropy {median:.2f} of "
        f"ln K over the last {len(last)} of {len(entropies)} steps (> {threshold}); the "
        "class-token loss carried little signal, so check the class token (e.g. "
        "`raddino.eval.stability.shift_stability`) before using this encoder"
    )
