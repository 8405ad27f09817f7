"""Teacher-target geometry of a checkpoint: flat and agreeing targets are told apart."""

import pytest
import torch

from raddino.ssl import checkpoint as ckpt
from raddino.ssl.checkpoint import run_config
from raddino.ssl.target_geometry import meta_from_checkpoint, target_geometry, training_batches


@pytest.fixture
def smoke_run(finished_smoke_run):
    return finished_smoke_run


def test_fresh_heads_give_sharp_targets_and_identical_prototypes_flat_ones(smoke_run):
    config = run_config(smoke_run)
    meta = meta_from_checkpoint(config)
    (batch,) = training_batches(config, meta)
    k = config["dino"]["head_n_prototypes"]
    fresh = target_geometry(meta, batch, teacher_temp=0.01)
    assert fresh["n_prototypes"] == k and 1.0 <= fresh["effective_prototypes"] < k / 2
    for key in ("crop_overlap", "other_image_overlap", "crop_argmax_agreement"):
        assert 0.0 <= fresh[key] <= 1.0 + 1e-6
    # every prototype the same direction: every logit ties, the target is uniform over all K
    # prototypes and the crops agree trivially
    last = meta.teacher["dino_head"].last_layer.parametrizations.weight.original1
    with torch.no_grad():
        last.copy_(last[:1].expand_as(last))
    flat = target_geometry(meta, batch, teacher_temp=0.01)
    assert flat["effective_prototypes"] == pytest.approx(k, rel=1e-4)
    assert flat["crop_overlap"] == pytest.approx(1.0, abs=1e-5)
    assert flat["prototype_cos"] == pytest.approx(1.0, abs=1e-5)
    # the backbone is untouched, so its class-token cosines are the same numbers
    assert flat["cls_cos_crops"] == pytest.approx(fresh["cls_cos_crops"], abs=1e-6)


def test_a_checkpoint_loads_its_teacher_and_bad_folders_are_named(smoke_run, tmp_path):
    config = run_config(smoke_run)
    folder = ckpt.latest_checkpoint(smoke_run)
    meta = meta_from_checkpoint(config, folder)
    tensors, _ = ckpt.load_checkpoint(folder)
    saved = tensors["meta.teacher.dino_head.mlp.0.weight"]
    assert torch.equal(meta.teacher["dino_head"].mlp[0].weight, saved)
    assert not torch.equal(meta_from_checkpoint(config).teacher["dino_head"].mlp[0].weight, saved)
    with pytest.raises(FileNotFoundError, match="no resolved config.yaml"):
        run_config(tmp_path)
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        meta_from_checkpoint(config, tmp_path)


def test_the_benchmark_report_reads_back_as_the_chapter_table(smoke_run, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from raddino.ssl.recipe_tables import GEOMETRY_COLUMNS, target_geometry_table

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "geometry.json"
    folder = ckpt.latest_checkpoint(smoke_run)
    command = [sys.executable, str(repo / "benchmarks" / "target_geometry.py"), "--run"]
    command += [str(smoke_run), "--checkpoint", "start", "--checkpoint", str(folder)]
    command += ["--threads", "1", "--batches", "2", "--out", str(out)]
    subprocess.run(command, check=True, cwd=repo, capture_output=True)
    table = target_geometry_table(out)
    assert list(table.index) == [0, 3] and list(table.columns) == list(GEOMETRY_COLUMNS.values())
    config = run_config(smoke_run)
    meta = meta_from_checkpoint(config, folder)
    temp = config["teacher"]["teacher_temp"]
    direct = [target_geometry(meta, b, temp) for b in training_batches(config, meta, range(2))]
    mean_overlap = (direct[0]["crop_overlap"] + direct[1]["crop_overlap"]) / 2
    assert table.loc[3, "target overlap: two crops"] == pytest.approx(mean_overlap)
