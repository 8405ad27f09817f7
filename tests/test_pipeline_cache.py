"""Stage cache: computes once per config, atomic on failure, manifest records what decided it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raddino.pipeline import config_hash, is_done, read_manifest, stage, stage_dir


def _counting_compute(calls: list[Path], value: int = 7):
    def compute(out_dir: Path) -> dict:
        calls.append(out_dir)
        (out_dir / "result.txt").write_text(str(value))
        return {"value": value}

    return compute


def test_stage_computes_once_and_reuses(tmp_path):
    calls: list[Path] = []
    config = {"n": 4, "size": 112, "views": ["PA", "AP"]}
    first = stage("phantoms", config, _counting_compute(calls), root=tmp_path, quiet=True)
    second = stage("phantoms", config, _counting_compute(calls), root=tmp_path, quiet=True)
    assert first == second == stage_dir("phantoms", config, tmp_path)
    assert len(calls) == 1
    assert (first / "result.txt").read_text() == "7"
    manifest = read_manifest(first)
    assert manifest["config"] == config
    assert manifest["metrics"] == {"value": 7}
    assert manifest["stage"] == "phantoms"
    assert manifest["config_hash"] == first.name
    assert "torch" in manifest["versions"]
    assert manifest["timings"]["compute_seconds"] >= 0


def test_config_hash_ignores_key_order_but_not_values(tmp_path):
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": (1, 2), "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    assert config_hash({"a": 1}) != config_hash({"a": 1.5})
    assert config_hash({"p": Path("x/y")}) == config_hash({"p": "x/y"})
    calls: list[Path] = []
    stage("s", {"a": 1}, _counting_compute(calls), root=tmp_path, quiet=True)
    stage("s", {"a": 2}, _counting_compute(calls), root=tmp_path, quiet=True)
    assert len(calls) == 2
    assert len(list((tmp_path / "s").iterdir())) == 2


def test_failed_compute_leaves_no_result_and_retries(tmp_path):
    def failing(out_dir: Path) -> dict:
        (out_dir / "partial.bin").write_bytes(b"half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        stage("fit", {"k": 1}, failing, root=tmp_path, quiet=True)
    assert not is_done("fit", {"k": 1}, tmp_path)
    assert list((tmp_path / "fit").iterdir()) == []  # temp folder removed
    calls: list[Path] = []
    done = stage("fit", {"k": 1}, _counting_compute(calls), root=tmp_path, quiet=True)
    assert len(calls) == 1 and (done / "result.txt").is_file()
    assert not (done / "partial.bin").exists()


def test_force_recomputes_and_replaces(tmp_path):
    calls: list[Path] = []
    stage("s", {"a": 1}, _counting_compute(calls, 1), root=tmp_path, quiet=True)
    out = stage("s", {"a": 1}, _counting_compute(calls, 2), root=tmp_path, force=True, quiet=True)
    assert len(calls) == 2
    assert (out / "result.txt").read_text() == "2"
    assert json.loads((out / "manifest.json").read_text())["metrics"] == {"value": 2}


@pytest.mark.parametrize(
    "config, key",
    [
        ({"x": object()}, "config.x"),
        ({"nested": {"bad": float("nan")}}, "config.nested.bad"),
        ({"s": {1, 2}}, "config.s"),
        ({1: "a"}, "key 1"),
    ],
)
def test_bad_config_names_the_key(tmp_path, config, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        stage("s", config, _counting_compute([]), root=tmp_path, quiet=True)


def test_bad_metrics_and_names_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="compute must return a dict"):
        stage("s", {}, lambda d: 3, root=tmp_path, quiet=True)
    with pytest.raises(ValueError, match="metrics.arr"):
        stage("s", {}, lambda d: {"arr": object()}, root=tmp_path, quiet=True)
    assert not is_done("s", {}, tmp_path)
    with pytest.raises(ValueError, match="stage name"):
        stage("../escape", {}, lambda d: {}, root=tmp_path, quiet=True)
    with pytest.raises(FileNotFoundError, match="no manifest"):
        read_manifest(tmp_path)


def test_phantom_and_embedding_stages_are_cached(tmp_path):
    """The common stages chapters use: rendered / embedded once, then served from the cache."""
    from safetensors.numpy import load_file

    from raddino.data.dataset_folder import DatasetFolder
    from raddino.pipeline import embeddings, phantom_folder

    data = phantom_folder(4, 56, seed=0, views=("PA",), root=tmp_path, quiet=True)
    assert data.parent.parent == tmp_path / "phantoms"  # runs/phantoms/<hash>/data
    assert len(DatasetFolder.open(data)) == 4
    manifest = read_manifest(data.parent)
    assert manifest["metrics"] == {"images": 4, "subjects": 2}
    assert manifest["config"]["phantom"]["size"] == 56
    assert phantom_folder(4, 56, seed=0, views=("PA",), root=tmp_path, quiet=True) == data
    assert phantom_folder(4, 56, seed=1, views=("PA",), root=tmp_path, quiet=True) != data

    out = embeddings(data, "random:vit_pico", size=56, patches=True, root=tmp_path, quiet=True)
    patches_nhwc = load_file(out)["patches"]
    assert patches_nhwc.shape[:3] == (4, 4, 4)
    first_write = out.stat().st_mtime_ns
    again = embeddings(data, "random:vit_pico", size=56, patches=True, root=tmp_path, quiet=True)
    assert again == out and out.stat().st_mtime_ns == first_write
    with pytest.raises(ValueError, match="positive number of images"):
        phantom_folder(0, 56, seed=0, root=tmp_path, quiet=True)
