"""`raddino index` end to end on small generated datasets: placeholder images (DICOMs carrying
fake PHI), decoded masks, views from headers, subject-level splits, errors and resuming."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from raddino.cli import main
from raddino.data.dataset_folder import DatasetFolder
from raddino.data.rle import encode_relative_rle

FAKE_PHI = ("Doe^Johnathan", "PHI-ID-8675309", "19010203", "Secret General Hospital")


def _write_dicom(path: Path, height: int, width: int, view: str | None, seed: int) -> None:
    """A small 8-bit DICOM with identifying tags that the index must never read or copy."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.InstitutionName = FAKE_PHI
    ds.Modality = "CR"
    if view is not None:
        ds.ViewPosition = view
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = height, width
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width), dtype=np.uint8)
    ds.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _index(*args: str) -> int:
    return main(["index", "--quiet", *args])


def _assert_no_phi(out: Path) -> None:
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for value in FAKE_PHI:
                assert value.encode() not in data, f"{value!r} leaked into {path}"


def _make_rsna(root: Path, n: int = 30) -> pd.DataFrame:
    rows = []
    for i in range(n):
        pid = f"p{i:03d}"
        target = int(i % 3 == 0)
        rows += [{"patientId": pid, "x": 1.0 if target else None, "Target": target}] * (1 + target)
        view = {0: "PA", 1: "AP", 2: "LL"}[i % 3] if i != n - 1 else None
        _write_dicom(root / "stage_2_train_images" / f"{pid}.dcm", 12, 10, view, seed=i)
    labels = pd.DataFrame(rows)
    labels.to_csv(root / "stage_2_train_labels.csv", index=False)
    return labels


@pytest.mark.filterwarnings("ignore:.*has no positive image:UserWarning")
def test_rsna_index_end_to_end_no_phi_no_copies(tmp_path):
    root = tmp_path / "rsna"
    labels = _make_rsna(root)
    out = tmp_path / "out"
    args = ("--dataset", "rsna-pneumonia", "--root", str(root), "--out", str(out))
    assert _index(*args) == 0
    folder = DatasetFolder.open(out)
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "labels.csv"]
    assert folder.image_root == root.resolve()
    assert folder.info["image_root"] == "../rsna"  # relative to the folder, as the format says
    assert len(folder) == 29  # the last DICOM has no ViewPosition
    excluded = folder.info["index"]["excluded_rows"]
    assert list(excluded.values()) == [1] and "(absent)" in next(iter(excluded))
    table = folder.table.set_index(folder.table["subject_id"])
    expected = labels.groupby("patientId")["Target"].max()
    assert (table["Pneumonia"] == expected[table.index]).all()
    assert table.loc["p000", "view"] == "PA" and table.loc["p001", "view"] == "AP"
    assert table.loc["p002", "view"] == "LATERAL"
    counts = table["split"].value_counts()
    assert counts.to_dict() == {"train": 17, "val": 6, "test": 6}  # 60/20/20 of 29 images
    assert folder.read_image(0).shape == (12, 10)
    _assert_no_phi(out)
    args = ("--dataset", "rsna-pneumonia", "--root", str(root), "--out", str(out))
    assert _index(*args, "--default-view", "ap") == 0
    assert len(DatasetFolder.open(out)) == 30


@pytest.mark.filterwarnings("ignore:.*has no positive image:UserWarning")
def test_siim_masks_decoded_into_out_folder_and_resumed(tmp_path):
    root = tmp_path / "siim"
    rng = np.random.default_rng(0)
    height, width = 40, 24  # not square: a swapped size or orientation would show
    masks = {}
    rows = []
    for i in range(4):
        uid = f"1.2.276.0.{i}.{i + 7}"
        path = root / "dicom-images-train" / f"1.{i}" / f"2.{i}" / f"{uid}.dcm"
        _write_dicom(path, height, width, "PA", seed=i)
        if i == 0:
            rows.append((uid, "-1"))
            continue
        components = [rng.random((height, width)) < 0.2 for _ in range(1 + (i == 3))]
        masks[uid] = np.logical_or.reduce(components)
        rows += [(uid, " " + encode_relative_rle(c)) for c in components]
    (root / "train-rle.csv").write_text(
        "ImageId, EncodedPixels\n" + "".join(f"{u},{r}\n" for u, r in rows)
    )
    out = tmp_path / "out"
    args = ("--dataset", "siim-acr", "--root", str(root), "--out", str(out))
    assert _index(*args) == 0
    folder = DatasetFolder.open(out)
    assert folder.structures == ["pneumothorax"]
    for i in range(len(folder)):
        uid = folder.table["subject_id"].iat[i]
        mask_path = folder.mask_path("pneumothorax", i)
        assert folder.table["Pneumothorax"].iat[i] == int(uid in masks)
        expected_hw = masks.get(uid, np.zeros((height, width), dtype=bool))  # "-1": all zero
        assert (np.asarray(Image.open(mask_path)) == np.where(expected_hw, 255, 0)).all()
    written = {p: p.stat().st_mtime_ns for p in (out / "masks").rglob("*.png")}
    assert len(written) == 4
    assert _index(*args) == 0  # rerun resumes: finished masks are kept as they are
    assert {p: p.stat().st_mtime_ns for p in (out / "masks").rglob("*.png")} == written
    _assert_no_phi(out)


@pytest.mark.filterwarnings("ignore:.*has no positive image:UserWarning")
def test_candid_labels_masks_and_study_level_subjects(tmp_path):
    root = tmp_path / "candid"
    height, width = 16, 20
    uids = [f"9.8.7.{i}" for i in range(6)]
    for i, uid in enumerate(uids):
        _write_dicom(root / "dataset" / f"{uid}.dcm", height, width, "AP", seed=i)
    ptx = np.zeros((height, width), dtype=bool)
    ptx[2:5, 3:9] = True
    tube = np.zeros((height, width), dtype=bool)
    tube[:, 10] = True
    rib = np.zeros((height, width), dtype=bool)
    rib[7, 1:4] = True
    pd.DataFrame(
        {
            "SOPInstanceUID": uids,
            "StudyInstanceUID": ["s1", "s1", "s2", "s3", "s4", "s5"],  # images 0, 1: one study
            "EncodedPixels": [encode_relative_rle(ptx), "-1", "-1", "-1", "-1", "-1"],
            "Report": ["Right pneumothorax. Dr " + FAKE_PHI[0]] + ["Normal."] * 5,
        }
    ).to_csv(root / "Pneumothorax_reports.csv", index=False)
    pd.DataFrame(
        {
            "anon_SOPUID": [uids[1], "not.in.reports"],
            "annotation_ref": ["a", "b"],
            "mask_rle": [encode_relative_rle(tube), encode_relative_rle(tube)],
        }
    ).to_csv(root / "chest_tube.csv", index=False)
    pd.DataFrame(
        {"anon_SOPUID": [uids[2]], "annotation_ref": ["c"], "mask_rle": [encode_relative_rle(rib)]}
    ).to_csv(root / "acute_rib_fracture.csv", index=False)
    out = tmp_path / "out"
    assert _index("--dataset", "candid-ptx", "--root", str(root), "--out", str(out)) == 0
    folder = DatasetFolder.open(out)
    table = folder.table
    assert list(table["Pneumothorax"]) == [1, 0, 0, 0, 0, 0]
    assert list(table["Chest Tube"]) == [0, 1, 0, 0, 0, 0]
    assert list(table["Rib Fracture"]) == [0, 0, 1, 0, 0, 0]
    assert table["split"].iat[0] == table["split"].iat[1]  # same study, same split
    assert set(table["view"]) == {"AP"}
    expected = {("pneumothorax", 0): ptx, ("chest_tube", 1): tube, ("rib_fracture", 2): rib}
    for (structure, i), mask_hw in expected.items():
        assert (np.asarray(Image.open(folder.mask_path(structure, i))) == 255).tolist() == (
            mask_hw.tolist()
        )
    for structure in ("pneumothorax", "chest_tube", "rib_fracture"):  # negatives: all-zero masks
        for i in range(len(folder)):
            if (structure, i) not in expected:
                assert not np.asarray(Image.open(folder.mask_path(structure, i))).any()
    assert sum(1 for _ in (out / "masks").rglob("*.png")) == 18
    assert folder.info["index"]["excluded_rows"] == {
        "chest_tube.csv: rows for images not in Pneumothorax_reports.csv": 1
    }
    _assert_no_phi(out)


@pytest.mark.filterwarnings("ignore:.*has no positive image:UserWarning")
def test_padchest_lateral_only_with_png_placeholders(tmp_path):
    root = tmp_path / "padchest"
    (root / "0").mkdir(parents=True)
    rows = []
    for i in range(12):
        image_id = f"img{i}.png"
        Image.fromarray(np.full((8, 8), i, dtype=np.uint8)).save(root / "0" / image_id)
        rows.append(
            {
                "ImageID": image_id,
                "ImageDir": 0,
                "PatientID": f"pat{i // 2}",
                "Projection": "L" if i % 2 else "PA",
                "Labels": "['pleural effusion']" if i % 4 == 1 else "['normal']",
                "PatientSex_DICOM": "F",
                "PatientBirth": 1950.0,
                "StudyDate_DICOM": 20150101,
            }
        )
    pd.DataFrame(rows).to_csv(root / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv")
    out = tmp_path / "out"
    args = ["--dataset", "padchest", "--root", str(root), "--out", str(out), "--views", "lateral"]
    with pytest.warns(UserWarning, match="'costophrenic angle blunting' has no positive image"):
        assert _index(*args, "--fractions", "0.5,0.25,0.25", "--seed", "3") == 0
    folder = DatasetFolder.open(out)
    assert len(folder) == 6 and set(folder.table["view"]) == {"LATERAL"}
    assert folder.table["pleural effusion"].sum() == 3
    assert (folder.table["age"] == 65).all() and (folder.table["sex"] == "F").all()
    assert folder.info["index"]["excluded_rows"] == {"view PA not requested (--views)": 6}
    assert folder.info["metadata"] == ["sex", "age"]
    warned = folder.info["index"]["label_warnings"]
    assert any(
        "'costophrenic angle blunting' has no positive image in split 'train'" in w for w in warned
    )


@pytest.mark.filterwarnings("ignore:.*has no positive image:UserWarning")
def test_missing_images_error_or_counted(tmp_path, capsys):
    root = tmp_path / "rsna"
    _make_rsna(root, n=9)
    (root / "stage_2_train_images" / "p004.dcm").unlink()
    out = tmp_path / "out"
    args = ("--dataset", "rsna-pneumonia", "--root", str(root), "--out", str(out))
    assert _index(*args, "--default-view", "pa") == 2  # before any label check: no warning
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "1 of 9 images not found" in err and "p004.dcm" in err
    assert not out.exists()
    assert _index(*args, "--default-view", "pa", "--allow-missing-images") == 0
    info = json.loads((out / "dataset.json").read_text())
    assert info["index"]["excluded_rows"] == {"image file not found": 1}
    assert sum(c["images"] for c in info["index"]["counts"].values()) == 8


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--dataset", "openi"), "--dataset: unknown 'openi'"),
        (("--dataset", "rsna-pneumonia", "--views", "oblique"), "--views: unknown view"),
        (("--dataset", "rsna-pneumonia", "--fractions", "0.5,0.5"), "--fractions"),
        (("--dataset", "rsna-pneumonia", "--uncertain", "maybe"), "--uncertain"),
        (("--dataset", "rsna-pneumonia", "--seed", "x"), "--seed"),
        (
            (
                "--dataset",
                "siim-acr",
            ),
            "train-rle.csv",
        ),
    ],
)
def test_bad_arguments_give_one_line_errors(tmp_path, capsys, extra, message):
    root = tmp_path / "empty"
    root.mkdir()
    assert _index("--root", str(root), "--out", str(tmp_path / "out"), *extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_missing_root_is_named(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert _index("--dataset", "nih-cxr14", "--root", str(missing), "--out", str(tmp_path)) == 2
    assert str(missing) in capsys.readouterr().err


def test_index_is_listed_in_cli_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "index" in capsys.readouterr().out


def test_dicom_header_reader_returns_only_view_and_size(tmp_path):
    from raddino.data.datasets import image_size, read_dicom_index_tags

    path = tmp_path / "x.dcm"
    _write_dicom(path, 7, 5, "PA", seed=0)
    tags = read_dicom_index_tags(path)
    assert tags == {"ViewPosition": "PA", "Rows": 7, "Columns": 5}
    assert image_size(path) == (7, 5)
    Image.fromarray(np.zeros((3, 9), dtype=np.uint8)).save(tmp_path / "y.png")
    assert image_size(tmp_path / "y.png") == (3, 9)
    (tmp_path / "z.dcm").write_bytes(b"not a dicom")
    with pytest.raises(ValueError, match="z.dcm"):
        image_size(tmp_path / "z.dcm")
