"""`raddino phantom`: argument errors, the written folder, resume-after-kill gives same bytes."""

from __future__ import annotations

import json

import numpy as np
import pytest

import raddino.data.phantom.dataset as phantom_dataset
from raddino.cli import main
from raddino.data.dataset_folder import DatasetFolder
from raddino.data.phantom import FINDINGS, PhantomConfig, render_phantom

CONFIG = PhantomConfig(size=48, views=("PA", "LATERAL"))


def _files(root):
    """Every file under `root` as relative path -> bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--n", "0"], "--n must be >= 1"),
        (["--n", "ten"], "--n must be an integer, got 'ten'"),
        (["--n", "3", "--size", "22.5"], "--size must be an integer, got '22.5'"),
        (["--n", "3", "--size", "16"], "--size must be >= 32"),
        (["--n", "3", "--prevalence", "pneumonia=0.2"], "unknown finding 'pneumonia'"),
        (["--n", "3", "--prevalence", "nodule=1.5"], "--prevalence nodule must be in [0, 1]"),
        (["--n", "3", "--prevalence", "nodule"], "expected FINDING=P"),
        (["--n", "3", "--views", "pa,oblique"], "--views: unknown view(s) ['OBLIQUE']"),
        (["--n", "3", "--workers", "0"], "--workers must be >= 1"),
        (["--n", "3", "--seed", "-4"], "--seed must be >= 0"),
    ],
)
def test_bad_arguments_give_one_line_error(tmp_path, capsys, extra, message):
    code = main(["phantom", "--out", str(tmp_path / "ds"), "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "ds").exists()


def test_unwritable_out_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code = main(["phantom", "--out", str(blocker / "ds"), "--n", "2", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "--out" in err and "not writable" in err, err


def test_cli_writes_a_valid_folder(tmp_path, capsys):
    out = tmp_path / "ds"
    argv = ["phantom", "--out", str(out), "--n", "5", "--size", "48", "--seed", "7"]
    code = main([*argv, "--views", "pa,lateral", "--prevalence", "nodule=1", "--quiet"])
    assert code == 0, capsys.readouterr().err
    folder = DatasetFolder.open(out)
    assert len(folder) == 5 and folder.label_names == list(FINDINGS)
    assert folder.info["generator"]["seed"] == 7
    assert folder.info["generator"]["config"]["prevalence"]["nodule"] == 1
    assert set(folder.table["view"]) <= {"PA", "LATERAL"}
    assert folder.labels_array(["nodule"]).sum() == 5
    counts = folder.info["counts"]
    assert counts["images"] == 5 and counts["positives"]["nodule"] == 5
    assert sum(counts["views"].values()) == 5 and counts["subjects"] == 3
    assert not (out / ".work").exists()
    splits = folder.table.groupby("subject_id")["split"].nunique()
    assert set(folder.table["split"]) <= {"train", "val", "test"} and (splits == 1).all()
    parts = [folder.split_indices(name) for name in ("train", "val", "test")]
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(5))
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        folder.split_indices("dev")
    for i in range(5):
        sample = render_phantom(
            i, seed=7, config=PhantomConfig.from_dict(folder.info["generator"]["config"])
        )
        assert folder.table["subject_id"].iat[i] == sample.metadata["subject_id"]
        assert folder.read_image(i).shape == (48, 48)
        for structure, mask in sample.masks.items():
            np.testing.assert_array_equal(folder.read_mask(structure, i), mask)
        assert set(folder.landmarks_of(i)) == set(sample.landmarks)
        assert "nodul" in folder.report_of(i).lower()
    details = [json.loads(line) for line in (out / "details.jsonl").read_text().splitlines()]
    assert [d["image"] for d in details] == folder.table["image"].tolist()
    assert folder.details_of(2)["findings"]["nodule"]["size_mm"] > 0
    (out / "details.jsonl").write_text("{broken\n")
    with pytest.raises(ValueError, match="details.jsonl line 1: not valid JSON"):
        DatasetFolder.open(out).details_of(0)
    (out / "details.jsonl").write_text("".join(json.dumps(d) + "\n" for d in details))
    # The same command again is a no-op; other settings on the same folder are refused.
    before = _files(out)
    assert main([*argv, "--views", "pa,lateral", "--prevalence", "nodule=1", "--quiet"]) == 0
    assert _files(out) == before
    assert main([*argv, "--quiet"]) == 2
    assert "already holds a different dataset" in capsys.readouterr().err


def test_no_masks_writes_no_mask_folder(tmp_path):
    folder = phantom_dataset.write_phantom_folder(
        tmp_path / "ds", 3, PhantomConfig(size=40, with_masks=False), seed=1, progress=False
    )
    assert folder.structures == [] and not (tmp_path / "ds" / "masks").exists()


def test_killed_run_resumes_to_identical_folder(tmp_path, monkeypatch):
    n = 9
    reference = tmp_path / "reference"
    phantom_dataset.write_phantom_folder(reference, n, CONFIG, seed=3, progress=False)

    real_render_and_write = phantom_dataset._render_and_write
    calls = []

    def dies_on_sixth(*job, **options):
        calls.append(job[1])
        if len(calls) == 6:
            raise KeyboardInterrupt  # as if the process were killed mid-run
        real_render_and_write(*job, **options)

    resumed = tmp_path / "resumed"
    monkeypatch.setattr(phantom_dataset, "_render_and_write", dies_on_sixth)
    with pytest.raises(KeyboardInterrupt):
        phantom_dataset.write_phantom_folder(resumed, n, CONFIG, seed=3, progress=False)
    assert not (resumed / "dataset.json").exists() and (resumed / ".work" / "plan.json").exists()
    # A half-written image from the killed process must be overwritten, not trusted.
    (resumed / "images" / "phantom_000005.png").write_bytes(b"partial")
    with pytest.raises(ValueError, match="unfinished run with other settings"):
        phantom_dataset.write_phantom_folder(resumed, n, CONFIG, seed=4, progress=False)

    calls.clear()
    phantom_dataset.write_phantom_folder(resumed, n, CONFIG, seed=3, progress=False)
    assert calls == [5, 6, 7, 8]  # only what was missing
    assert _files(resumed) == _files(reference)

    # A finished folder that lost files gets exactly those back on a rerun.
    (resumed / "images" / "phantom_000002.png").unlink()
    next((resumed / "masks").rglob("phantom_000007.png")).unlink()
    calls.clear()
    phantom_dataset.write_phantom_folder(resumed, n, CONFIG, seed=3, progress=False)
    assert calls == [2, 7]
    assert _files(resumed) == _files(reference)


def test_parallel_workers_write_the_same_folder(tmp_path):
    serial = tmp_path / "serial"
    parallel = tmp_path / "parallel"
    phantom_dataset.write_phantom_folder(serial, 6, CONFIG, seed=5, progress=False)
    phantom_dataset.write_phantom_folder(parallel, 6, CONFIG, seed=5, progress=False, workers=2)
    assert _files(parallel) == _files(serial)


def test_refuses_a_foreign_non_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="exists and is not empty"):
        phantom_dataset.write_phantom_folder(tmp_path, 2, CONFIG, seed=0, progress=False)


def test_contact_sheet_command(tmp_path, capsys):
    out = tmp_path / "sheet.png"
    assert main(["phantom-sheet", "--out", str(out), "--size", "96", "--dpi", "40"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads(out.with_suffix(".json").read_text())
    views = [panel["view"] for panel in summary["panels"]]
    assert views == ["PA", "PA", "AP", "AP", "LATERAL", "LATERAL"]
    assert [p["findings"] for p in summary["panels"][::2]] == [[], [], []]
    assert all("cardiomegaly" in p["findings"] for p in summary["panels"][1::2][::2])
    assert main(["phantom-sheet", "--out", str(tmp_path / "sheet.jpg")]) == 2
    assert "--out must name a .png file" in capsys.readouterr().err
