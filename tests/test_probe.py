"""Linear probes: separable features reach ~1, random labels ~prevalence, subject splits, errors,
and `raddino probe` end to end on a tiny phantom folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from raddino.cli import main
from raddino.eval.probe import ProbeConfig, assert_subjects_disjoint, probe_split, run_probes

NAMES = ["a", "b", "c"]


def synthetic(n=600, dim=16, seed=0, separable=True, prevalence=0.3):
    """Features, labels (N, 3), subject ids (two images per subject, same labels per subject)."""
    rng = np.random.default_rng(seed)
    n_subjects = n // 2
    labels_sl = (rng.random((n_subjects, 3)) < prevalence).astype(float)
    labels_nl = np.repeat(labels_sl, 2, axis=0)
    features = rng.standard_normal((n, dim)).astype(np.float32)
    if separable:
        features[:, :3] += 4.0 * (2 * labels_nl - 1)  # each label shifts its own feature
    subjects = np.repeat([f"s{i}" for i in range(n_subjects)], 2)
    return features, labels_nl, subjects


@pytest.mark.parametrize("method", ["sklearn", "torch"])
def test_separable_features_reach_one(method):
    features, labels, subjects = synthetic()
    config = ProbeConfig(method=method, seeds=2 if method == "sklearn" else 1, epochs=60, lr=2e-2)
    out = run_probes(features, labels, subjects, NAMES, config, progress=False)
    assert out["summary"]["macro"]["auprc"]["mean"] > 0.99
    for name in NAMES:
        assert out["summary"]["per_label"][name]["auroc"]["mean"] > 0.99
    assert len(out["runs"]) == config.seeds


def test_random_labels_give_prevalence():
    features, labels, subjects = synthetic(n=2000, separable=False, prevalence=0.2, seed=3)
    out = run_probes(features, labels, subjects, NAMES, ProbeConfig(seeds=3), progress=False)
    auprc = out["summary"]["macro"]["auprc"]["mean"]
    prevalence = np.mean([out["summary"]["per_label"][n]["prevalence"]["mean"] for n in NAMES])
    assert abs(auprc - prevalence) < 0.06, (auprc, prevalence)
    assert abs(out["summary"]["macro"]["auroc"]["mean"] - 0.5) < 0.06


def test_nan_labels_are_left_out_not_counted_as_negative():
    features, labels, subjects = synthetic(seed=1)
    noisy = labels.copy()
    # hide a third of label a; the hidden rows get features that would mislead if used as 0
    hidden = np.arange(len(noisy)) % 3 == 0
    noisy[hidden, 0] = np.nan
    out = run_probes(features, noisy, subjects, NAMES, ProbeConfig(seeds=1), progress=False)
    run = out["runs"][0]
    n_test_known = run["per_label"]["a"]["n"]
    assert n_test_known < run["n_images"]["test"]
    assert out["summary"]["per_label"]["a"]["auprc"]["mean"] > 0.99


def test_subject_splits_never_share_a_subject():
    rng = np.random.default_rng(0)
    subjects = rng.choice([f"s{i}" for i in range(40)], size=200)
    labels = (rng.random((200, 2)) < 0.3).astype(float)
    for seed in range(3):
        splits = probe_split(subjects, labels, (0.6, 0.2, 0.2), seed)
        for subject in np.unique(subjects):
            assert len(set(splits[subjects == subject])) == 1
        assert set(splits) == {"train", "val", "test"}
    leaked = np.array(["train", "test"])
    with pytest.raises(ValueError, match="several splits"):
        assert_subjects_disjoint(np.array(["x", "x"]), leaked)


def test_official_split_is_kept_and_fixed_across_seeds():
    features, labels, subjects = synthetic()
    official = np.where(np.arange(len(subjects)) < 400, "train", "test").astype(object)
    official[400:440] = "val"
    out = run_probes(
        features,
        labels,
        subjects,
        NAMES,
        ProbeConfig(seeds=3),
        official_splits_n=official,
        progress=False,
    )
    assert out["split"] == "official"
    for run in out["runs"]:
        assert run["n_images"] == {"train": 400, "val": 40, "test": 160}
        assert run["split_seed"] == 0
    official[1] = "test"  # subject s0 now straddles train and test
    with pytest.raises(ValueError, match="two existing splits"):
        run_probes(
            features,
            labels,
            subjects,
            NAMES,
            ProbeConfig(seeds=1),
            official_splits_n=official,
            progress=False,
        )


def test_runs_are_reproducible():
    features, labels, subjects = synthetic(separable=False)
    for method in ("sklearn", "torch"):
        config = ProbeConfig(method=method, seeds=2, epochs=3)
        first = run_probes(features, labels, subjects, NAMES, config, progress=False)
        second = run_probes(features, labels, subjects, NAMES, config, progress=False)
        assert first["summary"] == second["summary"]


def test_torch_early_stopping_and_its_requirements():
    features, labels, subjects = synthetic(separable=False)
    config = ProbeConfig(method="torch", seeds=1, epochs=50, lr=0.05, patience=2)
    run = run_probes(features, labels, subjects, NAMES, config, progress=False)["runs"][0]
    history = run["history"]
    assert history["epochs_run"] < 50  # random labels: the val loss stops improving early
    assert history["selected_epoch"] == int(np.argmin(history["val_loss"])) + 1
    no_val = np.where(np.arange(len(subjects)) < 400, "train", "test")
    with pytest.raises(ValueError, match="validation rows"):
        run_probes(
            features, labels, subjects, NAMES, config, official_splits_n=no_val, progress=False
        )


def test_input_errors_name_the_cause():
    features, labels, subjects = synthetic()
    config = ProbeConfig(seeds=1)
    with pytest.raises(ValueError, match=r"600 feature rows.*labels.csv"):
        run_probes(features, labels[:-1], subjects, NAMES, config, progress=False)
    with pytest.raises(ValueError, match="empty dataset"):
        run_probes(features[:0], labels[:0], subjects[:0], NAMES, config, progress=False)
    blank = labels.copy()
    blank[:, 1] = np.nan
    with pytest.raises(ValueError, match="label column 'b' is entirely blank"):
        run_probes(features, blank, subjects, NAMES, config, progress=False)
    with pytest.raises(ValueError, match="--method"):
        run_probes(features, labels, subjects, NAMES, ProbeConfig(method="svm"), progress=False)


def test_label_without_positives_is_skipped_and_recorded_or_an_error():
    features, labels, subjects = synthetic()
    labels[:, 2] = 0.0
    out = run_probes(features, labels, subjects, NAMES, ProbeConfig(seeds=2), progress=False)
    assert out["labels_not_probed"] == ["c"]
    assert "0 positives" in out["runs"][0]["not_probed"]["c"]
    assert "c" not in out["summary"]["per_label"]
    strict = ProbeConfig(seeds=1, on_missing_positives="error")
    with pytest.raises(ValueError, match="label 'c': 0 positives"):
        run_probes(features, labels, subjects, NAMES, strict, progress=False)


# ------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="session")
def phantom_folder(tmp_path_factory):
    from raddino.data.dataset_folder import write_phantom_folder
    from raddino.data.phantom.config import PhantomConfig

    root = tmp_path_factory.mktemp("probe_phantom") / "data"
    write_phantom_folder(root, 24, PhantomConfig(size=112), seed=0, progress=False)
    return root


def test_cli_probe_writes_metrics_json(phantom_folder, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    argv = [
        "probe",
        "--data",
        str(phantom_folder),
        "--weights",
        "pixels:8",
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--seeds",
        "3",
    ]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert record["evaluation"] == "probe"
    assert record["config"]["probe"]["seeds"] == 3
    assert record["config"]["weights"] == "pixels:8"
    assert record["config"]["n_images"] == 24
    assert len(record["metrics"]["runs"]) == 3
    macro = record["metrics"]["summary"]["macro"]["auprc"]
    assert 0.0 <= macro["mean"] <= 1.0 and macro["n"] == 3
    assert "macro" in capsys.readouterr().out
    # a second run reuses the cached features (same file named in the record)
    assert main(argv) == 0
    assert (
        json.loads(out.read_text())["config"]["features_file"] == record["config"]["features_file"]
    )


def test_cli_probe_errors_are_one_line(phantom_folder, tmp_path, capsys):
    base = ["probe", "--data", str(phantom_folder), "--out", str(tmp_path / "m.json")]
    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert main([*base, "--weights", "pixels:8", "--labels", "nope", *cache]) == 2
    assert "unknown label(s) ['nope']" in capsys.readouterr().err
    assert main([*base, "--weights", "pixels:8", "--token", "patch_mean", *cache]) == 2
    assert "patch_mean" in capsys.readouterr().err
    assert main([*base, "--weights", "pixels:8", "--strict", *cache]) == 2
    assert "positives" in capsys.readouterr().err
    assert main([*base, "--weights", str(tmp_path / "missing.safetensors")]) == 2
    assert "not found" in capsys.readouterr().err


def test_cli_probe_reads_raddino_embed_output(phantom_folder, tmp_path):
    from raddino.embed import EmbedOptions, embed_dataset

    embeddings = tmp_path / "emb.safetensors"
    embed_dataset(phantom_folder, "random:vit_pico", embeddings, EmbedOptions(size=28))
    out = tmp_path / "metrics.json"
    argv = ["probe", "--data", str(phantom_folder), "--features", str(embeddings)]
    assert (
        main([*argv, "--out", str(out), "--seeds", "2", "--method", "torch", "--epochs", "5"]) == 0
    )
    record = json.loads(out.read_text())
    assert record["config"]["features_file"] == str(embeddings)
    assert record["config"]["weights"] == "random:vit_pico"
    assert record["metrics"]["runs"][0]["history"]["epochs_run"] == 5
