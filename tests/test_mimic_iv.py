"""MIMIC-CXR patient metadata from MIMIC-IV (Table 7's data): sex, age at the study, and height,
weight and BMI from the outpatient measurements nearest the study, on files the tests write."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from raddino.cli import main
from raddino.data.adapters import ADAPTERS, AdapterOptions
from raddino.data.adapters.mimic import CHEXPERT_FINDINGS
from raddino.data.adapters.mimic_iv import mimic_iv_metadata
from raddino.data.dataset_folder import DatasetFolder


def _write_mimic_iv(root: Path, *, gz: bool = True) -> None:
    """hosp/patients and hosp/omr as PhysioNet lays them out (gzipped, like the download)."""
    hosp = root / "hosp"
    hosp.mkdir(parents=True, exist_ok=True)
    patients = pd.DataFrame(
        {
            "subject_id": ["10000032", "10000033"],
            "gender": ["F", "M"],
            "anchor_age": [52, 70],
            "anchor_year": [2180, 2150],
            "anchor_year_group": ["2014 - 2016", "2008 - 2010"],
            "dod": ["", ""],
        }
    )
    omr = pd.DataFrame(
        [
            ("10000032", "2180-05-01", 1, "Weight (Lbs)", "150"),  # 5 days before study 1
            ("10000032", "2180-05-20", 1, "Weight (Lbs)", "160"),  # 14 days after
            ("10000032", "2180-05-01", 1, "Height (Inches)", "65"),
            ("10000032", "2180-05-01", 2, "BMI (kg/m2)", "24.0"),
            ("10000032", "2180-05-01", 3, "BMI (kg/m2)", "26.0"),  # same day: the mean
            ("10000032", "2180-05-06", 1, "Weight", "999"),  # no unit: left out
            ("10000032", "2180-05-06", 1, "Blood Pressure", "120/80"),
            ("10000033", "2150-01-01", 1, "Weight (Lbs)", "unable to weigh"),  # no number
            ("10000033", "2140-01-01", 1, "Weight (Lbs)", "200"),  # years before: too far
        ],
        columns=["subject_id", "chartdate", "seq_num", "result_name", "result_value"],
    )
    for name, frame in (("patients.csv", patients), ("omr.csv", omr)):
        if gz:
            with gzip.open(hosp / f"{name}.gz", "wt") as handle:
                frame.to_csv(handle, index=False)
        else:
            frame.to_csv(hosp / name, index=False)


def test_metadata_joins_patients_and_the_nearest_measurement(tmp_path):
    _write_mimic_iv(tmp_path / "mimic-iv")
    studies = pd.DataFrame(
        {
            "subject_id": ["10000032", "10000032", "10000033", "10000099"],
            "study_date": pd.to_datetime(["2180-05-06", "2182-01-01", "2151-06-01", "2150-01-01"]),
        }
    )
    out = mimic_iv_metadata(tmp_path / "mimic-iv", studies)
    assert list(out["sex"].fillna("")) == ["F", "F", "M", ""]  # subject 99 is not in MIMIC-IV
    np.testing.assert_allclose(out["age"], [52, 54, 71, np.nan])  # anchor_age + years since
    assert out["weight_kg"][0] == pytest.approx(150 * 0.45359237)  # 5 days beats 14 days
    assert np.isnan(out["weight_kg"][1])  # the nearest weight is 1.6 years away
    assert np.isnan(out["weight_kg"][2])  # "unable to weigh" and one 11 years before
    assert out["height_cm"][0] == pytest.approx(65 * 2.54)
    assert out["bmi"][0] == pytest.approx(25.0)
    assert list(out["subject_id"]) == list(studies["subject_id"])  # rows keep their order


def test_plain_csvs_at_the_root_work_and_bad_values_name_the_file(tmp_path):
    root = tmp_path / "iv"
    _write_mimic_iv(root, gz=False)
    for name in ("patients.csv", "omr.csv"):
        (root / "hosp" / name).rename(root / name)
    (root / "hosp").rmdir()
    studies = pd.DataFrame(
        {"subject_id": ["10000033"], "study_date": pd.to_datetime(["2150-06-01"])}
    )
    assert mimic_iv_metadata(root, studies)["age"][0] == 70
    patients = pd.read_csv(root / "patients.csv", dtype=str)
    patients.loc[0, "gender"] = "X"
    patients.to_csv(root / "patients.csv", index=False)
    with pytest.raises(ValueError, match=r"patients\.csv: gender 'X'; expected M/F"):
        mimic_iv_metadata(root, studies)
    with pytest.raises(FileNotFoundError, match="MIMIC-IV folder not found"):
        mimic_iv_metadata(tmp_path / "nowhere", studies)


def _write_mimic_cxr(root: Path) -> None:
    """Two subjects, three studies, four images (3 frontal), with StudyDate and JPEG files."""
    root.mkdir(parents=True)
    images = pd.DataFrame(
        {
            "dicom_id": ["d1", "d2", "d3", "d4"],
            "subject_id": ["10000032", "10000032", "10000032", "10000033"],
            "study_id": ["50000001", "50000001", "50000002", "50000003"],
            "ViewPosition": ["PA", "LATERAL", "AP", "AP"],
            "StudyDate": [21800506, 21800506, 21820101, 21510601],
        }
    )
    images.to_csv(root / "mimic-cxr-2.0.0-metadata.csv", index=False)
    studies = images.drop_duplicates("study_id")[["subject_id", "study_id"]]
    studies.assign(**{name: 0.0 for name in CHEXPERT_FINDINGS}).assign(
        **{"No Finding": [1.0, 0.0, 1.0]}
    ).to_csv(root / "mimic-cxr-2.0.0-chexpert.csv", index=False)
    images[["dicom_id", "study_id", "subject_id"]].assign(split="train").to_csv(
        root / "mimic-cxr-2.0.0-split.csv", index=False
    )
    for row in images.itertuples():
        path = (
            root
            / f"files/p{row.subject_id[:2]}/p{row.subject_id}/s{row.study_id}/{row.dicom_id}.jpg"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((16, 16), 100, np.uint8)).save(path)


@pytest.mark.filterwarnings("ignore:.*has no positive image:UserWarning")
def test_index_mimic_cxr_with_mimic_iv_writes_the_metadata_columns(tmp_path):
    _write_mimic_cxr(tmp_path / "mimic-cxr")
    _write_mimic_iv(tmp_path / "mimic-iv")
    out = tmp_path / "folder"
    args = ["index", "--quiet", "--dataset", "mimic-cxr", "--root", str(tmp_path / "mimic-cxr")]
    assert main([*args, "--mimic-iv", str(tmp_path / "mimic-iv"), "--out", str(out)]) == 0
    folder = DatasetFolder.open(out)
    assert folder.info["metadata"] == ["sex", "age", "height_cm", "weight_kg", "bmi"]
    assert folder.info["index"]["mimic_iv"] == str(tmp_path / "mimic-iv")
    table = folder.table.set_index(folder.table["image"].str[-6:])
    assert list(table["sex"]) == ["F", "F", "F", "M"]
    np.testing.assert_allclose(table["age"], [52, 52, 54, 71])
    assert table.loc["d1.jpg", "weight_kg"] == pytest.approx(68.04, abs=0.01)
    assert np.isnan(table.loc["d3.jpg", "weight_kg"])  # blank in labels.csv, read as NaN
    # without MIMIC-IV the same files index without metadata (StudyDate is then not needed)
    plain = ADAPTERS["mimic-cxr"](tmp_path / "mimic-cxr", AdapterOptions())
    assert "sex" not in plain.table and "age" not in plain.table


def test_mimic_iv_flag_is_only_for_mimic_cxr_and_needs_study_dates(tmp_path, capsys):
    _write_mimic_cxr(tmp_path / "mimic-cxr")
    _write_mimic_iv(tmp_path / "mimic-iv")
    args = ["index", "--dataset", "chexpert", "--root", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main([*args, "--mimic-iv", str(tmp_path / "mimic-iv")]) == 2
    assert "--mimic-iv: only for --dataset mimic-cxr, not 'chexpert'" in capsys.readouterr().err
    metadata = tmp_path / "mimic-cxr" / "mimic-cxr-2.0.0-metadata.csv"
    frame = pd.read_csv(metadata)
    frame.loc[2, "StudyDate"] = 2182
    frame.to_csv(metadata, index=False)
    options = AdapterOptions(mimic_iv=str(tmp_path / "mimic-iv"))
    with pytest.raises(ValueError, match="metadata.csv: StudyDate '2182' is not a YYYYMMDD date"):
        ADAPTERS["mimic-cxr"](tmp_path / "mimic-cxr", options)
    frame.drop(columns=["StudyDate"]).to_csv(metadata, index=False)
    with pytest.raises(ValueError, match="StudyDate"):
        ADAPTERS["mimic-cxr"](tmp_path / "mimic-cxr", options)
