"""Patient metadata for MIMIC-CXR images from MIMIC-IV, as the paper's Table 7 links them (App.
C.3): sex and age at the study from `hosp/patients`, height, weight and BMI from `hosp/omr` (the
outpatient measurements) nearest to the study date.

MIMIC-CXR's dates are shifted per patient consistently with MIMIC-IV's, so a study's year and a
patient's `anchor_year` are on one time line. The paper does not say how far a measurement may
lie from the study; we take the nearest within `OMR_WINDOW_DAYS` (the mean where one day has
several) and leave the value blank beyond it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from raddino.data.adapters.common import find_label_file, read_csv_checked

PATIENTS_FILE = "patients.csv"
OMR_FILE = "omr.csv"
OMR_WINDOW_DAYS = 365
# OMR result_name -> (our metadata column, factor to our unit). Names without a unit ("Weight",
# "BMI") are left out: their unit is not stated.
OMR_RESULTS: dict[str, tuple[str, float]] = {
    "Height (Inches)": ("height_cm", 2.54),
    "Weight (Lbs)": ("weight_kg", 0.45359237),
    "BMI (kg/m2)": ("bmi", 1.0),
}
MIMIC_IV_COLUMNS = ("sex", "age", "height_cm", "weight_kg", "bmi")


def _hosp_file(root: Path, name: str) -> Path:
    """`root/hosp/NAME(.gz)` as PhysioNet lays MIMIC-IV out, or `root/NAME(.gz)`."""
    hosp = root / "hosp"
    return find_label_file(hosp if hosp.is_dir() else root, name)


def mimic_iv_metadata(root: str | Path, studies: pd.DataFrame) -> pd.DataFrame:
    """`studies` (subject_id, study_date: datetime64) with MIMIC_IV_COLUMNS added; a subject
    MIMIC-IV lacks, or a measurement beyond the window, stays blank (NaN)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"MIMIC-IV folder not found: {root}")
    patients_path = _hosp_file(root, PATIENTS_FILE)
    patients = read_csv_checked(
        patients_path,
        ["subject_id", "gender", "anchor_age", "anchor_year"],
        dtype={"subject_id": str},
    )
    if patients["subject_id"].duplicated().any():
        repeated = patients["subject_id"][patients["subject_id"].duplicated()].iloc[0]
        raise ValueError(f"{patients_path}: subject_id {repeated!r} repeats")
    gender = patients["gender"].astype(str).str.strip().str.upper()
    bad = ~gender.isin(["M", "F"])
    if bad.any():
        raise ValueError(
            f"{patients_path}: gender {patients['gender'][bad].iloc[0]!r}; expected M/F"
        )
    out = studies.merge(
        patients.assign(sex=gender)[["subject_id", "sex", "anchor_age", "anchor_year"]],
        on="subject_id",
        how="left",
        validate="m:1",
    )
    anchor_age = pd.to_numeric(out["anchor_age"], errors="coerce")
    anchor_year = pd.to_numeric(out["anchor_year"], errors="coerce")
    out["age"] = anchor_age + (out["study_date"].dt.year - anchor_year)
    out = out.drop(columns=["anchor_age", "anchor_year"])
    measures = _omr_measures(_hosp_file(root, OMR_FILE))
    for column, _ in OMR_RESULTS.values():
        out[column] = _nearest_measure(out, measures[measures["column"] == column])
    return out


def _omr_measures(path: Path) -> pd.DataFrame:
    """Long frame (subject_id, chartdate, column, value) of the OMR rows we use, in our units."""
    omr = read_csv_checked(
        path, ["subject_id", "chartdate", "result_name", "result_value"], dtype={"subject_id": str}
    )
    omr = omr[omr["result_name"].isin(list(OMR_RESULTS))].copy()
    omr["chartdate"] = pd.to_datetime(omr["chartdate"], errors="coerce")
    if omr["chartdate"].isna().any():
        raise ValueError(f"{path}: a chartdate is not a date (expected YYYY-MM-DD)")
    factor = omr["result_name"].map({k: f for k, (_, f) in OMR_RESULTS.items()})
    omr["column"] = omr["result_name"].map({k: c for k, (c, _) in OMR_RESULTS.items()})
    omr["value"] = pd.to_numeric(omr["result_value"], errors="coerce") * factor
    omr = omr.dropna(subset=["value"])  # free text such as "unable to weigh" has no number
    per_day = omr.groupby(["subject_id", "chartdate", "column"], as_index=False)["value"].mean()
    return per_day


def _nearest_measure(studies: pd.DataFrame, measures: pd.DataFrame) -> np.ndarray:
    """Per study row: the measure nearest its study_date within the window, else NaN."""
    left = studies[["subject_id", "study_date"]].reset_index(names="row")
    left = left.dropna(subset=["study_date"]).sort_values("study_date")
    right = measures.sort_values("chartdate")[["subject_id", "chartdate", "value"]]
    joined = pd.merge_asof(
        left,
        right,
        left_on="study_date",
        right_on="chartdate",
        by="subject_id",
        direction="nearest",
        tolerance=pd.Timedelta(days=OMR_WINDOW_DAYS),
    )
    values = np.full(len(studies), np.nan)
    values[joined["row"].to_numpy()] = joined["value"].to_numpy(dtype=np.float64)
    return values
