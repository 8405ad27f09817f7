"""Run health from metrics: the collapse rule the trainer stops on, the flat-targets warning."""

import json

import pytest

from raddino.ssl.health import collapsed, flat_targets_warning, read_metrics


def steps(entropies, batch_entropy=0.99):
    return [
        {"step": i, "teacher_entropy": e, "batch_entropy": batch_entropy}
        for i, e in enumerate(entropies)
    ]


def test_collapse_rule_catches_both_modes_and_nothing_else():
    assert collapsed({"teacher_entropy": 0.99, "batch_entropy": 0.99})  # uniform targets
    assert collapsed({"teacher_entropy": 0.01, "batch_entropy": 0.01})  # one prototype
    assert not collapsed({"teacher_entropy": 0.85, "batch_entropy": 0.99})  # flat, not collapsed


def test_flat_targets_warn_on_the_end_of_the_run_only():
    # the phantom release's shape: sharp early, flat (0.86) for the last three quarters
    message = flat_targets_warning(steps([0.5] * 25 + [0.86] * 75))
    assert message is not None and "0.86" in message and "last 25 of 100" in message
    # flat early, sharp at the end: healthy
    assert flat_targets_warning(steps([0.9] * 75 + [0.4] * 25)) is None
    # a threshold of the caller's
    assert flat_targets_warning(steps([0.86] * 100), threshold=0.9) is None
    # too short to judge
    assert flat_targets_warning(steps([0.95] * 7)) is None


def test_read_metrics_names_the_bad_line(tmp_path):
    good = json.dumps(steps([0.5])[0])
    (tmp_path / "metrics.jsonl").write_text(f"{good}\n\n{{cut off\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl:3: not a JSON record"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text(f"{good}\n{good}\n")
    assert len(read_metrics(tmp_path)) == 2
