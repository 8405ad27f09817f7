"""Dataset adapters on the real label files torchxrayvision ships (skipped if absent), on small
generated files in the documented formats where it ships none, and the RLE decoder."""

from __future__ import annotations

import importlib.util
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raddino.data.adapters import ADAPTERS, AdapterOptions
from raddino.data.adapters.mimic import CHEXPERT_FINDINGS
from raddino.data.rle import decode_relative_rle, encode_relative_rle, is_empty_rle


def _txv_data_dir() -> Path | None:
    spec = importlib.util.find_spec("torchxrayvision")  # locate only; importing pulls in torch
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _real_file(name: str) -> Path:
    data = _txv_data_dir()
    if data is None:
        pytest.skip("torchxrayvision is not installed (test-only dependency with real label files)")
    if not (data / name).is_file():
        pytest.skip(f"torchxrayvision does not ship data/{name}")
    return data / name


# Real files are read whole in the slow suite and as their first rows in the fast one.
ROWS = [pytest.param(20000, id="first-rows"), pytest.param(None, id="all", marks=pytest.mark.slow)]


def _subset(raw: pd.DataFrame, path: Path) -> Path:
    """Write the rows of `raw` that a test uses as a plain CSV, the layout of the real dataset."""
    raw.to_csv(path, index=False)
    return path


def _root_with(tmp_path: Path, links: dict[str, Path]) -> Path:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    for name, target in links.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(target)
    return root


def _check_common(table: pd.DataFrame, labels: list[str]) -> None:
    assert {"image", "subject_id", "view", *labels} <= set(table.columns)
    assert table["image"].is_unique
    assert set(table["view"]) <= {"PA", "AP", "LATERAL", ""}
    for name in labels:
        assert set(table[name].dropna().unique()) <= {0, 1}


# ---------------------------------------------------------------------------------------------
# RLE


def test_relative_rle_matches_a_hand_decoded_example():
    # 3 rows x 2 columns, column-major pixels 0..5; "1 2 2 1": skip 1, two on, skip 2, one on.
    mask_hw = decode_relative_rle("1 2 2 1", height=3, width=2)
    expected = np.array([[False, False], [True, False], [True, True]])
    assert (mask_hw == expected).all()
    assert encode_relative_rle(expected) == "1 2 2 1"


def test_relative_rle_round_trips_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask_hw = rng.random((17, 23)) < rng.uniform(0.05, 0.9)
        assert (decode_relative_rle(encode_relative_rle(mask_hw), 17, 23) == mask_hw).all()
    assert encode_relative_rle(np.zeros((4, 4), dtype=bool)) == "-1"
    assert not decode_relative_rle("-1", 4, 4).any()
    assert is_empty_rle(" -1") and is_empty_rle(float("nan")) and not is_empty_rle("3 4")


@pytest.mark.parametrize(
    ("text", "message"),
    [("1 2 3", "pairs"), ("1 x", "non-integer"), ("0 0", "lengths > 0"), ("5 2", "runs past")],
)
def test_relative_rle_errors(text, message):
    with pytest.raises(ValueError, match=message):
        decode_relative_rle(text, 2, 3)


def test_siim_real_rle_fits_1024_and_round_trips():
    path = _real_file("siim-pneumothorax-train-rle.csv.gz")
    table = pd.read_csv(path, dtype=str)
    table.columns = [c.strip() for c in table.columns]
    rles = table["EncodedPixels"].str.strip()
    rles = rles[rles != "-1"]
    # Independent check that every run ends inside a 1024x1024 image: total of all numbers.
    totals = rles.map(lambda t: sum(int(v) for v in t.split()))
    assert totals.max() <= 1024 * 1024
    for text in rles.sample(40, random_state=0):
        mask_hw = decode_relative_rle(text, 1024, 1024)
        assert mask_hw.sum() == sum(int(v) for v in text.split()[1::2])
        assert encode_relative_rle(mask_hw) == text


# ---------------------------------------------------------------------------------------------
# Real label files


@pytest.mark.parametrize("nrows", ROWS)
def test_chexpert_real_train_csv(tmp_path, nrows):
    raw = pd.read_csv(_real_file("chexpert_train.csv.gz"), nrows=nrows)
    root = _root_with(tmp_path, {"train.csv": _subset(raw, tmp_path / "train.csv")})
    parsed = ADAPTERS["chexpert"](root, AdapterOptions())
    table = parsed.table
    _check_common(table, parsed.labels)
    odd = (raw["Frontal/Lateral"] == "Frontal") & ~raw["AP/PA"].isin(["AP", "PA"])
    kept = raw[~odd].reset_index(drop=True)
    assert len(table) == len(kept) and sum(parsed.excluded.values()) == int(odd.sum())
    assert table["subject_id"].nunique() == kept["Path"].str.split("/").str[2].nunique()
    assert (table["view"] == "LATERAL").sum() == (kept["Frontal/Lateral"] == "Lateral").sum()
    assert (table["view"] == "PA").sum() == (kept["AP/PA"] == "PA").sum()
    assert set(table["split"]) == {"train"}
    for name in ("Pleural Effusion", "Cardiomegaly", "No Finding"):
        assert (table[name] == 1).sum() == (kept[name] == 1).sum()
        assert (table[name] == 0).sum() == (kept[name] == 0).sum()
        assert table[name].isna().sum() == (kept[name].isna() | (kept[name] == -1)).sum()
    assert (table["sex"] == "F").sum() == (kept["Sex"] == "Female").sum()
    positive = ADAPTERS["chexpert"](root, AdapterOptions(uncertain="positive")).table
    for name in ("Edema", "Atelectasis"):
        assert (positive[name] == 1).sum() == kept[name].isin([1, -1]).sum()


def test_vindr_kaggle_real_train_csv_any_and_majority_votes(tmp_path):
    raw_path = _real_file("vinbigdata-train.csv.gz")
    raw = pd.read_csv(raw_path)
    root = _root_with(tmp_path, {"train.csv.gz": raw_path})
    any_vote = ADAPTERS["vindr-cxr"](root, AdapterOptions(reader_vote="any"))
    majority = ADAPTERS["vindr-cxr"](root, AdapterOptions(reader_vote="majority"))
    assert "Tuberculosis" not in any_vote.labels and len(any_vote.labels) == 5
    assert any("Tuberculosis" in note for note in any_vote.notes)
    _check_common(any_vote.table, any_vote.labels)
    assert len(any_vote.table) == raw["image_id"].nunique() == 15000
    stems = any_vote.table["image"].str.removeprefix("train/").str.removesuffix(".dicom")
    assert (any_vote.table["subject_id"] == stems).all()
    readers = raw.groupby("image_id")["rad_id"].nunique()
    for name in any_vote.labels:
        readers_with = raw[raw["class_name"] == name].groupby("image_id")["rad_id"].nunique()
        assert (any_vote.table[name] == 1).sum() == len(readers_with)
        assert (majority.table[name] == 1).sum() == (
            readers_with * 2 > readers[readers_with.index]
        ).sum()
        assert (majority.table[name] == 1).sum() < (any_vote.table[name] == 1).sum()


def test_siim_real_train_rle(tmp_path):
    raw_path = _real_file("siim-pneumothorax-train-rle.csv.gz")
    raw = pd.read_csv(raw_path, dtype=str)
    raw.columns = [c.strip() for c in raw.columns]
    root = _root_with(tmp_path, {"train-rle.csv.gz": raw_path})
    parsed = ADAPTERS["siim-acr"](root, AdapterOptions())
    _check_common(parsed.table, parsed.labels)
    positive_ids = raw.loc[raw["EncodedPixels"].str.strip() != "-1", "ImageId"].unique()
    assert len(parsed.table) == raw["ImageId"].nunique()
    assert parsed.table["Pneumothorax"].sum() == len(positive_ids)
    masks = parsed.masks["pneumothorax"]
    assert len(masks) == len(positive_ids)
    components = raw[raw["EncodedPixels"].str.strip() != "-1"].groupby("ImageId").size()
    assert sum(len(v) for v in masks.values()) == components.sum()


@pytest.mark.parametrize("nrows", ROWS)
def test_padchest_real_csv(tmp_path, nrows):
    name = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"
    raw = pd.read_csv(_real_file(name + ".gz"), low_memory=False, dtype=str, nrows=nrows)
    root = _root_with(tmp_path, {name: _subset(raw, tmp_path / name)})
    parsed = ADAPTERS["padchest"](root, AdapterOptions())
    table = parsed.table
    _check_common(table, parsed.labels)
    kept = raw[raw["Projection"].isin(["PA", "L", "AP", "AP_horizontal"])].reset_index(drop=True)
    assert len(table) == len(kept)
    assert sum(parsed.excluded.values()) == len(raw) - len(kept)
    assert (table["view"] == "LATERAL").sum() == (kept["Projection"] == "L").sum()
    assert table["subject_id"].nunique() == kept["PatientID"].nunique()
    lateral = table["view"] == "LATERAL"
    for finding in parsed.labels:
        # Independent count: the quoted term inside the Labels list text.
        pattern = rf"'\s*{re.escape(finding)}\s*'"  # terms may carry spaces: "' pleural effusion'"
        has_term = kept["Labels"].fillna("").str.contains(pattern)
        assert (table[finding] == 1).sum() == has_term.sum()
        assert (table.loc[lateral, finding] == 1).sum() == has_term[lateral.to_numpy()].sum()
    assert table[parsed.labels[0]].isna().sum() == kept["Labels"].isna().sum()
    assert table["image"].iat[0] == f"{kept['ImageDir'].iat[0]}/{kept['ImageID'].iat[0]}"


@pytest.mark.parametrize("nrows", ROWS)
def test_nih_real_data_entry_with_official_lists(tmp_path, nrows):
    raw = pd.read_csv(_real_file("Data_Entry_2017_v2020.csv.gz"), nrows=nrows)
    name = "Data_Entry_2017_v2020.csv"
    root = _root_with(tmp_path, {name: _subset(raw, tmp_path / name)})
    parsed = ADAPTERS["nih-cxr14"](root, AdapterOptions())
    table = parsed.table
    _check_common(table, parsed.labels)
    assert len(table) == len(raw)
    assert table["subject_id"].nunique() == raw["Patient ID"].nunique()
    assert "split" not in table  # no official lists in this root
    for finding in ("Effusion", "Pleural_Thickening", "No Finding", "Hernia"):
        pattern = rf"(?:^|\|){re.escape(finding)}(?:$|\|)"
        assert table[finding].sum() == raw["Finding Labels"].str.contains(pattern).sum()
    assert (table["view"] == "AP").sum() == (raw["View Position"] == "AP").sum()
    # Official lists from the real file's names: patients with id divisible by 5 -> test.
    is_test = raw["Patient ID"] % 5 == 0
    (root / "train_val_list.txt").write_text("\n".join(raw["Image Index"][~is_test]) + "\n")
    (root / "test_list.txt").write_text("\n".join(raw["Image Index"][is_test]) + "\n")
    with_lists = ADAPTERS["nih-cxr14"](root, AdapterOptions()).table
    assert (with_lists["split"] == "test").sum() == is_test.sum()
    assert (with_lists["split"] == "train").sum() == (~is_test).sum()


def test_rsna_real_stage_2_labels(tmp_path):
    raw_zip = _real_file("kaggle_stage_2_train_labels.csv.zip")
    root = tmp_path / "root"
    root.mkdir()
    with zipfile.ZipFile(raw_zip) as archive:
        archive.extractall(root)
    raw = pd.read_csv(root / "stage_2_train_labels.csv")
    parsed = ADAPTERS["rsna-pneumonia"](root, AdapterOptions())
    _check_common(parsed.table, parsed.labels)
    assert len(parsed.table) == raw["patientId"].nunique() == 26684  # paper App. B.2: 26,684
    assert parsed.table["Pneumonia"].sum() == raw.groupby("patientId")["Target"].max().sum()
    assert parsed.table["image"].iat[0].startswith("stage_2_train_images/")
    assert parsed.default_fractions == (0.6, 0.2, 0.2)


# ---------------------------------------------------------------------------------------------
# Generated files in the documented formats (no real copy ships with torchxrayvision)


def _write_mimic(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "subject_id": ["10000032", "10000032", "10000033"],
            "study_id": ["50000001", "50000002", "50000003"],
            **{name: [np.nan, 0.0, 1.0] for name in CHEXPERT_FINDINGS},
        }
    ).assign(Edema=[1.0, -1.0, np.nan]).to_csv(root / "mimic-cxr-2.0.0-chexpert.csv", index=False)
    pd.DataFrame(
        {
            "dicom_id": ["d1", "d2", "d3", "d4", "d5"],
            "subject_id": ["10000032", "10000032", "10000032", "10000033", "10000033"],
            "study_id": ["50000001", "50000001", "50000002", "50000003", "50000003"],
            "ViewPosition": ["PA", "LATERAL", "AP", "LL", "AP AXIAL"],
        }
    ).to_csv(root / "mimic-cxr-2.0.0-metadata.csv", index=False)
    pd.DataFrame(
        {
            "dicom_id": ["d1", "d2", "d3", "d4", "d5"],
            "study_id": ["50000001"] * 2 + ["50000002"] + ["50000003"] * 2,
            "subject_id": ["10000032"] * 3 + ["10000033"] * 2,
            "split": ["train", "train", "validate", "test", "test"],
        }
    ).to_csv(root / "mimic-cxr-2.0.0-split.csv", index=False)


def test_mimic_generated_files(tmp_path):
    root = tmp_path / "mimic"
    _write_mimic(root)
    parsed = ADAPTERS["mimic-cxr"](root, AdapterOptions())
    table = parsed.table.set_index(parsed.table["image"].str.split("/").str[-1])
    assert list(table.index) == ["d1.jpg", "d2.jpg", "d3.jpg", "d4.jpg"]  # AP AXIAL left out
    assert dict(parsed.excluded) == {"ViewPosition 'AP AXIAL' is not PA/AP/lateral": 1}
    assert table.loc["d1.jpg", "image"] == "files/p10/p10000032/s50000001/d1.jpg"
    assert list(table["view"]) == ["PA", "LATERAL", "AP", "LATERAL"]
    assert list(table["split"]) == ["train", "train", "val", "test"]
    assert table.loc["d3.jpg", "Cardiomegaly"] == 0 and np.isnan(
        table.loc["d1.jpg", "Cardiomegaly"]
    )
    assert table.loc["d1.jpg", "Edema"] == 1 and np.isnan(table.loc["d3.jpg", "Edema"])  # -1
    negative = ADAPTERS["mimic-cxr"](root, AdapterOptions(uncertain="negative")).table
    assert negative.loc[negative["image"].str.endswith("d3.jpg"), "Edema"].item() == 0


def test_mimic_image_without_official_split_is_an_error(tmp_path):
    root = tmp_path / "mimic"
    _write_mimic(root)
    split = pd.read_csv(root / "mimic-cxr-2.0.0-split.csv")
    split[split["dicom_id"] != "d3"].to_csv(root / "mimic-cxr-2.0.0-split.csv", index=False)
    with pytest.raises(ValueError, match="no split for 1 image.*'d3'"):
        ADAPTERS["mimic-cxr"](root, AdapterOptions())


def test_vindr_physionet_layout_votes_and_consensus_test(tmp_path):
    from raddino.data.adapters.vindr import VINDR_FINDINGS

    annotations = tmp_path / "vindr" / "annotations"
    annotations.mkdir(parents=True)
    reads = pd.DataFrame(
        {
            "image_id": ["a", "a", "a", "b", "b", "b"],
            "rad_id": ["R1", "R2", "R3", "R1", "R4", "R5"],
            **{name: [0] * 6 for name in VINDR_FINDINGS},
        }
    )
    reads["Tuberculosis"] = [1, 1, 0, 1, 0, 0]  # a: 2 of 3 readers, b: 1 of 3
    reads.to_csv(annotations / "image_labels_train.csv", index=False)
    test = pd.DataFrame({"image_id": ["c"], **{name: [1] for name in VINDR_FINDINGS}})
    test.to_csv(annotations / "image_labels_test.csv", index=False)
    root = tmp_path / "vindr"
    (root / "train").mkdir()
    (root / "train" / "b.png").write_bytes(b"")  # a converted copy is found by its stem
    any_vote = ADAPTERS["vindr-cxr"](root, AdapterOptions(reader_vote="any")).table
    majority = ADAPTERS["vindr-cxr"](root, AdapterOptions(reader_vote="majority")).table
    assert list(any_vote["Tuberculosis"]) == [1, 1, 1]
    assert list(majority["Tuberculosis"]) == [1, 0, 1]
    assert list(any_vote["split"]) == ["train", "train", "test"]
    assert list(any_vote["image"]) == ["train/a.dicom", "train/b.png", "test/c.dicom"]


def test_chexpert_paths_that_start_with_the_folder_name_use_its_parent_as_image_root(tmp_path):
    root = tmp_path / "CheXpert-v1.0-small"
    root.mkdir()
    columns = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_FINDINGS]
    for name, folder in (("train.csv", "train"), ("valid.csv", "valid")):
        path = f"CheXpert-v1.0-small/{folder}/patient00007/study1/view1_frontal.jpg"
        row = [path, "Male", 40, "Frontal", "PA", *([1.0] * len(CHEXPERT_FINDINGS))]
        pd.DataFrame([row], columns=columns).to_csv(root / name, index=False)
    parsed = ADAPTERS["chexpert"](root, AdapterOptions())
    assert parsed.image_root == tmp_path
    assert list(parsed.table["split"]) == ["train", "val"]
    assert list(parsed.table["sex"]) == ["M", "M"]


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        ("mimic-cxr", "mimic-cxr-2.0.0-chexpert.csv"),
        ("chexpert", "train.csv"),
        ("vindr-cxr", "image_labels_train.csv"),
        ("candid-ptx", "Pneumothorax_reports.csv"),
        ("rsna-pneumonia", "stage_2_train_labels.csv"),
        ("siim-acr", "train-rle.csv"),
        ("padchest", "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"),
        ("nih-cxr14", "Data_Entry_2017.csv"),
    ],
)
def test_missing_label_file_error_names_the_expected_file(tmp_path, dataset, expected):
    with pytest.raises(FileNotFoundError, match=re.escape(expected)):
        ADAPTERS[dataset](tmp_path, AdapterOptions())


def test_label_file_without_required_columns_names_them(tmp_path):
    (tmp_path / "train-rle.csv").write_text("ImageId,Mask\n1.2.3,-1\n")
    with pytest.raises(ValueError, match=r"train-rle.csv: missing column\(s\) \['EncodedPixels'\]"):
        ADAPTERS["siim-acr"](tmp_path, AdapterOptions())


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="--uncertain"):
        AdapterOptions(uncertain="maybe")
    with pytest.raises(ValueError, match="--reader-vote"):
        AdapterOptions(reader_vote="all")
