"""Subject-level splits and k-folds: leakage, shares, stratification, official splits, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raddino.data.splits import (
    check_label_positives,
    read_labels_table,
    subject_kfold,
    subject_split,
)


def _subjects(n_subjects: int, rng: np.random.Generator) -> np.ndarray:
    """Subject id per row, 1-6 images per subject, rows shuffled."""
    counts = rng.integers(1, 7, size=n_subjects)
    ids = np.repeat([f"s{i:04d}" for i in range(n_subjects)], counts)
    return ids[rng.permutation(len(ids))]


def _assert_no_subject_in_two(subjects: np.ndarray, assigned: np.ndarray) -> None:
    per_subject = pd.Series(assigned).groupby(subjects).nunique()
    assert (per_subject == 1).all(), per_subject[per_subject > 1].index[:3].tolist()


def test_no_subject_in_two_splits_and_shares_close_to_fractions():
    subjects = _subjects(600, np.random.default_rng(0))
    assigned = subject_split(subjects, (0.7, 0.15, 0.15), seed=3)
    _assert_no_subject_in_two(subjects, assigned)
    shares = pd.Series(assigned).value_counts(normalize=True)
    assert set(shares.index) == {"train", "val", "test"}
    assert shares["train"] == pytest.approx(0.7, abs=0.01)
    assert shares["val"] == pytest.approx(0.15, abs=0.01)
    assert shares["test"] == pytest.approx(0.15, abs=0.01)


def test_split_is_deterministic_per_seed():
    subjects = _subjects(200, np.random.default_rng(1))
    first = subject_split(subjects, seed=5)
    assert (first == subject_split(subjects, seed=5)).all()
    assert (first != subject_split(subjects, seed=6)).any()


def test_stratified_split_spreads_a_rare_label_by_its_share():
    rng = np.random.default_rng(2)
    subjects = _subjects(1000, rng)
    positive_subjects = set(rng.choice(np.unique(subjects), size=40, replace=False))
    rare = np.array([float(s in positive_subjects) for s in subjects])
    common = (rng.random(len(subjects)) < 0.4).astype(float)
    labels = np.stack([rare, common], axis=1)
    labels[rng.random(len(subjects)) < 0.1, 1] = np.nan  # unknowns are not positives
    assigned = subject_split(subjects, (0.6, 0.2, 0.2), seed=0, labels=labels)
    _assert_no_subject_in_two(subjects, assigned)
    positives_per_split = {
        split: len({s for s in subjects[assigned == split] if s in positive_subjects})
        for split in ("train", "val", "test")
    }
    # 40 positive subjects at 60/20/20 -> 24/8/8; the greedy step may be one subject off.
    assert abs(positives_per_split["train"] - 24) <= 1
    assert abs(positives_per_split["val"] - 8) <= 1
    assert abs(positives_per_split["test"] - 8) <= 1
    shares = pd.Series(assigned).value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.6, abs=0.02)


def test_existing_official_split_is_kept_and_followed_by_the_subjects_other_images():
    subjects = np.array(["a", "a", "b", "b", "c", "d", "e", "f", "g", "h"])
    existing = np.array(["test", "", "", "val", "", "", "", "", "", ""])
    assigned = subject_split(subjects, (0.5, 0.25, 0.25), seed=0, existing=existing)
    assert assigned[0] == assigned[1] == "test"
    assert assigned[2] == assigned[3] == "val"
    _assert_no_subject_in_two(subjects, assigned)


def test_fully_official_split_is_returned_unchanged():
    subjects = np.array(["a", "b", "c", "d"])
    existing = np.array(["train", "test", "train", "test"])
    assert list(subject_split(subjects, existing=existing)) == list(existing)


def test_zero_fraction_split_gets_no_images():
    subjects = _subjects(100, np.random.default_rng(3))
    assigned = subject_split(subjects, (0.8, 0.0, 0.2), seed=0)
    assert "val" not in set(assigned)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"subject_ids": []}, "empty"),
        ({"subject_ids": ["a", ""]}, "blank in row 1"),
        ({"subject_ids": ["a", None]}, "row 1"),
        ({"subject_ids": ["a", "b"], "fractions": (0.5, 0.5, 0.5)}, "sum to 1"),
        ({"subject_ids": ["a", "b"], "fractions": (0.5, 0.5)}, "one value per split"),
        ({"subject_ids": ["a", "b"], "labels": np.zeros((3, 1))}, "3 rows"),
        ({"subject_ids": ["a", "a"], "existing": ["train", "test"]}, "two existing splits"),
        ({"subject_ids": ["a", "b"], "existing": ["train", "validate"]}, "'validate'"),
    ],
)
def test_subject_split_bad_input_names_the_cause(kwargs, message):
    with pytest.raises(ValueError, match=message):
        subject_split(**kwargs)


def test_kfold_keeps_subjects_together_and_balances_strata():
    rng = np.random.default_rng(4)
    subjects = _subjects(300, rng)
    # One stratum per subject (like sex): a subject's images share it.
    stratum_of = {s: int(rng.random() < 0.3) for s in np.unique(subjects)}
    strata = np.array([stratum_of[s] for s in subjects])
    folds = subject_kfold(subjects, k=5, seed=0, strata=strata)
    _assert_no_subject_in_two(subjects, folds)
    assert set(folds) == set(range(5))
    overall = strata.mean()
    for fold in range(5):
        assert strata[folds == fold].mean() == pytest.approx(overall, abs=0.06)
    plain = subject_kfold(subjects, k=5, seed=0)
    _assert_no_subject_in_two(subjects, plain)
    sizes = np.bincount(plain)
    assert sizes.min() >= 0.8 * sizes.max()


def test_kfold_bad_input():
    with pytest.raises(ValueError, match="k must be"):
        subject_kfold(["a", "b", "c"], k=1)
    with pytest.raises(ValueError, match="at least 5 subjects"):
        subject_kfold(["a", "b", "c"], k=5)
    with pytest.raises(ValueError, match="missing values"):
        subject_kfold(["a", "b", "c", "d"], k=2, strata=[0, 1, np.nan, 0])


def test_check_label_positives_warns_or_raises_naming_label_and_split():
    table = pd.DataFrame(
        {"split": ["train", "train", "test"], "PTX": [1, 0, 0], "Tube": [1, np.nan, 1]}
    )
    with pytest.warns(UserWarning, match="'PTX' has no positive image in split 'test'"):
        messages = check_label_positives(table, ["PTX", "Tube"], source="x.csv")
    assert len(messages) == 1
    with pytest.raises(ValueError, match="x.csv: label 'PTX'"):
        check_label_positives(table, ["PTX"], source="x.csv", on_missing="error")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['Other'\]"):
        check_label_positives(table, ["Other"])


def test_read_labels_table_errors_name_file_column_and_row(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("image,subject_id,PTX\na.png,s1,1\nb.png,s2,\n")
    table = read_labels_table(path, ["PTX"])
    assert table["PTX"].isna().tolist() == [False, True]
    with pytest.raises(ValueError, match=r"labels.csv: column 'PTX' is blank \(NaN\) in row 1"):
        read_labels_table(path, ["PTX"], allow_missing_labels=False)
    with pytest.raises(ValueError, match=r"labels.csv: missing column\(s\) \['Tube'\]"):
        read_labels_table(path, ["Tube"])
    path.write_text("image,subject_id,PTX\na.png,s1,2\n")
    with pytest.raises(ValueError, match="column 'PTX' row 0 has '2'; must be 0/1"):
        read_labels_table(path, ["PTX"])
    path.write_text("image,subject_id,PTX\n")
    with pytest.raises(ValueError, match="empty dataset"):
        read_labels_table(path, ["PTX"])
    path.write_text("image,subject_id\na.png,\n")
    with pytest.raises(ValueError, match="'subject_id' is blank in row 0"):
        read_labels_table(path)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_labels_table(tmp_path / "nope.csv")
