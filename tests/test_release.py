"""Release packaging: fp16 weights, a manifest that says how it was made and how it probes."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from raddino.ssl.config import load_config
from raddino.ssl.release import ReleaseEval, package_release, sha256_of, training_record
from raddino.ssl.train import pretrain

TINY_EVAL = ReleaseEval(
    probe_n=48,
    probe_size=56,
    probe_seeds=2,
    metadata_folds=3,
    segmentation_n=40,
    segmentation_size=56,
    segmentation_epochs=2,
)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("release") / "run"
    config = load_config("smoke", {"train.epochs": 1, "train.epoch_length": 3})
    pretrain(config, run_dir, progress=False)
    return run_dir


def test_package_writes_fp16_weights_and_an_honest_manifest(finished_run, tmp_path):
    from raddino.models.weights import load_backbone

    runs_root = str(tmp_path / "runs")
    manifest_path = package_release(
        finished_run,
        "tiny",
        profile="smoke",
        out_dir=tmp_path / "release",
        compare=("pixels:8",),
        evaluation=TINY_EVAL,
        runs_root=runs_root,
    )
    manifest = json.loads(manifest_path.read_text())
    weights = tmp_path / "release" / "tiny.safetensors"
    assert manifest["sha256"] == sha256_of(weights)
    assert manifest["steps"] == 3 and manifest["images_seen"] == 3 * 4
    assert manifest["config"]["model"]["arch"] == "vit_pico"
    assert manifest["hardware"]["world_size"] == 1 and manifest["train_wall_s"] > 0
    with safe_open(str(weights), "pt") as handle:
        assert {handle.get_tensor(k).dtype for k in handle.keys()} == {torch.float16}
    # the released file loads through load_backbone and matches the run's teacher in fp16
    released = load_backbone(weights)
    teacher = load_backbone(finished_run / "teacher_backbone.safetensors")
    x = torch.randn(1, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(released(x), teacher(x), atol=5e-2)
    probes = manifest["frozen_probes"]
    assert set(probes["baselines"]) == {"random:vit_pico", "pixels:8"}
    for metrics in [probes["this"], *probes["baselines"].values()]:
        assert 0.0 < metrics["macro_auprc"] <= 1.0
        assert 0.0 < metrics["sex_accuracy"] <= 1.0
        assert 0.0 <= metrics["lung_dice"] <= 1.0
    # random init and pixels are different encoders: their numbers must not coincide
    assert probes["baselines"]["random:vit_pico"] != probes["baselines"]["pixels:8"]
    assert (tmp_path / "release" / "tiny.metrics.jsonl").read_text() == (
        finished_run / "metrics.jsonl"
    ).read_text()


def test_unfinished_or_truncated_runs_are_refused(finished_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="has not finished"):
        package_release(tmp_path, "x", profile="smoke", out_dir=tmp_path / "out")
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("config.yaml", "metrics.jsonl"):
        (copy / name).write_text((finished_run / name).read_text())
    lines = (copy / "metrics.jsonl").read_text().splitlines()
    (copy / "metrics.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ValueError, match="2 steps logged, the config runs 3"):
        training_record(copy)


def test_checkpoint_backbones_are_the_run_s_teacher_and_student(finished_run):
    from raddino.models.weights import load_backbone
    from raddino.ssl.checkpoint import latest_checkpoint
    from raddino.ssl.release import backbone_from_checkpoint

    last = latest_checkpoint(finished_run)  # written at the final step
    teacher = backbone_from_checkpoint(last, "teacher")
    student = backbone_from_checkpoint(last, "student")
    final = load_backbone(finished_run / "teacher_backbone.safetensors")
    for name, tensor in final.state_dict().items():
        assert torch.equal(teacher.state_dict()[name], tensor), name
    assert any(
        not torch.equal(student.state_dict()[n], t) for n, t in final.state_dict().items()
    ), "student and EMA teacher should differ after training"
    with pytest.raises(ValueError, match="'teacher' or 'student'"):
        backbone_from_checkpoint(last, "both")
