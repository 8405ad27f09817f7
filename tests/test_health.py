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


def test_collapse_diagnostics_read_flat_sharp_and_disagreeing_targets():
    import math

    import torch

    from raddino.ssl.meta_arch import collapse_diagnostics

    g, b, k, c = 2, 8, 16, 4
    tokens = torch.randn(g, b, c, generator=torch.Generator().manual_seed(0))
    uniform = collapse_diagnostics(torch.full((g, b, k), 1.0 / k), tokens)
    assert math.isclose(float(uniform["teacher_entropy"]), 1.0, rel_tol=1e-6)
    assert math.isclose(float(uniform["target_crop_overlap"]), 1.0, rel_tol=1e-6)
    # sharp targets, image i on prototype i in both crops: sharp, balanced, agreeing
    one_hot = torch.eye(k)[:b].expand(g, b, k)
    agreeing = collapse_diagnostics(one_hot, tokens)
    assert float(agreeing["teacher_entropy"]) < 1e-6
    assert math.isclose(float(agreeing["batch_entropy"]), math.log(b) / math.log(k), rel_tol=1e-6)
    assert math.isclose(float(agreeing["target_crop_overlap"]), 1.0, rel_tol=1e-6)
    # equally sharp, but the second crop lands on another prototype: the crops share nothing
    disagreeing = torch.stack([torch.eye(k)[:b], torch.eye(k)[b : 2 * b]])
    assert float(collapse_diagnostics(disagreeing, tokens)["target_crop_overlap"]) < 1e-6
    assert "target_crop_overlap" not in collapse_diagnostics(one_hot[:1], tokens[:1])


def test_pretrain_command_prints_the_flat_targets_warning(tmp_path, monkeypatch, capsys):
    import argparse

    import raddino.ssl.train
    from raddino.ssl import pretrain_cli

    def fake_pretrain(config, run_dir, progress=True):  # a finished run whose targets ended flat
        run_dir.mkdir(parents=True)
        lines = (json.dumps(record) for record in steps([0.5] * 4 + [0.9] * 12))
        (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        final = run_dir / "teacher_backbone.safetensors"
        final.write_bytes(b"")
        return final

    monkeypatch.setattr(raddino.ssl.train, "pretrain", fake_pretrain)
    parser = argparse.ArgumentParser()
    pretrain_cli.add_arguments(parser)
    args = parser.parse_args(["--profile", "smoke", "--out", str(tmp_path / "run")])
    assert pretrain_cli.run(args) == 0
    assert "warning: the DINO teacher targets stayed nearly flat" in capsys.readouterr().out
