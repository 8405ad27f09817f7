"""Metadata prediction (Table 7): informative features -> high accuracy, random -> majority floor,
folds by subject (no leakage), missing values excluded, errors, `raddino metadata` end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from raddino.cli import main
from raddino.eval.metadata import MetadataConfig, format_table, metadata_targets, run_metadata


def metadata_table(n_subjects=60, images_per_subject=2, seed=0):
    rng = np.random.default_rng(seed)
    subjects = np.repeat([f"p{i}" for i in range(n_subjects)], images_per_subject)
    per_subject = pd.DataFrame(
        {
            "sex": rng.choice(["F", "M"], n_subjects),
            "age": rng.uniform(10, 95, n_subjects),
            "weight_kg": rng.uniform(40, 120, n_subjects),
            "bmi": rng.uniform(15, 40, n_subjects),
        }
    )
    table = per_subject.loc[np.repeat(np.arange(n_subjects), images_per_subject)].reset_index(
        drop=True
    )
    table.insert(0, "subject_id", subjects)
    return table


def test_informative_features_predict_sex_and_bins():
    table = metadata_table()
    rng = np.random.default_rng(1)
    sex = (table["sex"] == "M").to_numpy(float)
    age_code, _ = metadata_targets(table, "age")
    features = np.column_stack(
        [sex * 3, np.eye(5)[age_code] * 3, rng.standard_normal((len(table), 6))]
    )
    config = MetadataConfig(variables=("sex", "age"))
    out = run_metadata(features, table, config)["variables"]
    assert out["sex"]["accuracy"]["mean"] == pytest.approx(1.0)
    assert out["age"]["accuracy"]["mean"] > 0.95
    assert out["age"]["classes"] == ["<20", "20-40", "40-60", "60-80", ">80"]
    assert sum(out["age"]["class_counts"].values()) == len(table)
    assert len(out["sex"]["fold_accuracy"]) == 5


def test_random_features_stay_near_the_majority_floor():
    table = metadata_table(n_subjects=150)
    features = np.random.default_rng(2).standard_normal((len(table), 8))
    out = run_metadata(features, table, MetadataConfig(variables=("sex",)))["variables"]["sex"]
    assert abs(out["accuracy"]["mean"] - 0.5) < 0.12
    assert out["majority_class_accuracy"]["mean"] > 0.4


def test_folds_are_by_subject_so_memorising_subjects_does_not_help():
    # One-hot subject features can only predict a per-subject random label by memorising
    # subjects; with folds by subject every test subject is unseen, so accuracy stays at chance.
    table = metadata_table(n_subjects=80, images_per_subject=3, seed=4)
    codes = pd.factorize(table["subject_id"])[0]
    features = np.eye(codes.max() + 1)[codes] * 5
    out = run_metadata(features, table, MetadataConfig(variables=("sex",)))["variables"]["sex"]
    assert out["accuracy"]["mean"] < 0.7
    assert out["n_subjects"] == 80


def test_missing_values_are_excluded_and_counted():
    table = metadata_table()
    table.loc[:9, "bmi"] = np.nan
    table.loc[10:13, "sex"] = ""
    features = np.random.default_rng(0).standard_normal((len(table), 4))
    out = run_metadata(features, table, MetadataConfig(variables=("sex", "bmi")))["variables"]
    assert out["bmi"]["n_unknown"] == 10 and out["bmi"]["n_images"] == len(table) - 10
    assert out["sex"]["n_unknown"] == 4
    text = format_table({"variables": out})
    assert "bmi" in text and "majority class" in text


def test_errors_name_the_column_and_cause():
    table = metadata_table()
    features = np.zeros((len(table), 3))
    with pytest.raises(ValueError, match="119 feature rows but 120"):
        run_metadata(features[:-1], table, MetadataConfig())
    with pytest.raises(ValueError, match="no 'bmi' column"):
        run_metadata(features, table.drop(columns=["bmi"]), MetadataConfig(variables=("bmi",)))
    blank = table.assign(age=np.nan)
    with pytest.raises(ValueError, match="'age' has no usable values"):
        run_metadata(features, blank, MetadataConfig(variables=("age",)))
    single = table.assign(sex="F")
    with pytest.raises(ValueError, match="'sex' has a single class"):
        run_metadata(features, single, MetadataConfig(variables=("sex",)))
    with pytest.raises(ValueError, match="--variables"):
        run_metadata(features, table, MetadataConfig(variables=("height",)))
    few = table.iloc[:6].assign(sex=["F", "F", "M", "M", "F", "F"])  # three subjects
    with pytest.raises(ValueError, match="3 subjects, fewer than --folds 5"):
        run_metadata(features[:6], few, MetadataConfig(variables=("sex",)))


@pytest.fixture(scope="session")
def phantom_folder(tmp_path_factory):
    from raddino.data.dataset_folder import write_phantom_folder
    from raddino.data.phantom.config import PhantomConfig

    root = tmp_path_factory.mktemp("metadata_phantom") / "data"
    write_phantom_folder(root, 24, PhantomConfig(size=112), seed=0, progress=False)
    return root


def test_cli_metadata_writes_metrics_json(phantom_folder, tmp_path, capsys):
    out = tmp_path / "metadata.json"
    argv = [
        "metadata",
        "--data",
        str(phantom_folder),
        "--weights",
        "pixels:8",
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--folds",
        "3",
        "--variables",
        "sex,bmi",
    ]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert record["evaluation"] == "metadata"
    assert record["config"]["metadata"]["folds"] == 3
    assert set(record["metrics"]["variables"]) == {"sex", "bmi"}
    accuracy = record["metrics"]["variables"]["sex"]["accuracy"]
    assert 0.0 <= accuracy["mean"] <= 1.0 and accuracy["n"] == 3
    assert "sex" in capsys.readouterr().out
    assert main([*argv[:-2], "--variables", "shoe_size"]) == 2
    assert "--variables" in capsys.readouterr().err
