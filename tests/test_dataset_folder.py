"""Dataset folder reader/writer: round trips, validation errors that name the file and cause."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from raddino.data.dataset_folder import (
    DatasetFolder,
    dequantize_image,
    quantize_image,
    write_index,
    write_png,
)
from raddino.data.metadata_bins import bin_labels, bin_metadata, encode_sex


def _make_folder(root, n=4, size=(20, 16), with_extras=True):
    """A tiny hand-made dataset: 16-bit images, two labels (one unknown), masks, landmarks."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        image = rng.random(size, dtype=np.float32)
        write_png(root / "images" / f"img{i}.png", quantize_image(image, 16))
        mask = np.zeros(size, dtype=np.uint8)
        mask[2 : 5 + i, 3:9] = 255
        write_png(root / "masks" / "heart" / f"img{i}.png", mask)
        rows.append(
            {
                "image": f"images/img{i}.png",
                "subject_id": f"s{i // 2}",
                "view": "PA" if i % 2 else "AP",
                "effusion": i % 2,
                "nodule": np.nan if i == 1 else 0,
                "sex": "MF"[i % 2],
                "age": 30.5 + i,
            }
        )
    labels_df = pd.DataFrame(rows)
    landmarks_df = pd.DataFrame(
        [(f"images/img{i}.png", "carina", 1.5 + i, 2.0) for i in range(n)],
        columns=["image", "landmark", "x", "y"],
    )
    reports_df = pd.DataFrame(
        [(f"images/img{i}.png", f"Report {i}.") for i in range(n)], columns=["image", "report"]
    )
    info = {
        "name": "tiny",
        "labels": ["effusion", "nodule"],
        "structures": ["heart"],
        "landmarks": ["carina"],
    }
    if not with_extras:
        landmarks_df = reports_df = None
    return write_index(root, labels_df, info, landmarks_df, reports_df)


def test_write_index_round_trip(tmp_path):
    folder = _make_folder(tmp_path)
    assert len(folder) == 4
    assert folder.label_names == ["effusion", "nodule"]
    assert folder.info["format_version"] == 1 and folder.info["image_root"] == "."
    assert folder.info["metadata"] == ["sex", "age"]
    labels = folder.labels_array()
    assert labels.shape == (4, 2) and labels.dtype == np.float32
    assert np.isnan(labels[1, 1]) and np.isnan(labels).sum() == 1
    np.testing.assert_array_equal(labels[:, 0], [0, 1, 0, 1])
    # Blank stays blank, 0/1 are written as integers (never "1.0").
    text = (tmp_path / "labels.csv").read_text().splitlines()
    assert text[0].split(",")[:5] == ["image", "subject_id", "view", "effusion", "nodule"]
    assert text[2].split(",")[3:5] == ["1", ""]
    assert folder.landmarks_of(2) == {"carina": (3.5, 2.0)}
    assert folder.report_of(3) == "Report 3."
    assert folder.table["age"].tolist() == [30.5, 31.5, 32.5, 33.5]
    mask = folder.read_mask("heart", 1)
    assert mask.dtype == bool and mask.shape == (20, 16) and mask.sum() == 4 * 6


def test_read_image_is_bitwise_dequantised_png(tmp_path):
    folder = _make_folder(tmp_path)
    rng = np.random.default_rng(0)
    first = rng.random((20, 16), dtype=np.float32)
    expected = dequantize_image(quantize_image(first, 16), 16)
    image = folder.read_image(0)
    assert image.dtype == np.float32 and image.shape == (20, 16)
    np.testing.assert_array_equal(image, expected)
    assert np.abs(image - first).max() <= 0.5 / 65535 + 1e-7


def test_quantize_round_trip_is_exact_on_codes():
    codes = np.arange(0, 65536, dtype=np.uint16).reshape(256, 256)
    np.testing.assert_array_equal(quantize_image(dequantize_image(codes, 16), 16), codes)
    codes8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(quantize_image(dequantize_image(codes8, 8), 8), codes8)
    with pytest.raises(ValueError, match="bits"):
        quantize_image(np.zeros((2, 2)), 12)


def test_optional_files_absent_give_empty_tables(tmp_path):
    folder = _make_folder(tmp_path, with_extras=False)
    assert list(folder.landmarks.columns) == ["image", "landmark", "x", "y"]
    assert folder.landmarks.empty and folder.reports.empty
    assert folder.report_of(0) is None and folder.landmarks_of(0) == {}
    with pytest.raises(ValueError, match="has no 'split' column"):
        folder.split_indices("train")


def _rewrite_labels(root, edit):
    table = pd.read_csv(root / "labels.csv", dtype=str, keep_default_na=False)
    edit(table)
    table.to_csv(root / "labels.csv", index=False)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.pop("view"), r"labels.csv: missing column.*view"),
        (lambda t: t.pop("nodule"), r"missing column.*nodule"),
        (lambda t: t.__setitem__("effusion", ["0", "2", "1", "0"]), r"'effusion' row 1 has '2'"),
        (lambda t: t.__setitem__("nodule", ["yes", "", "1", "0"]), r"'nodule' row 0 has 'yes'"),
        (lambda t: t.__setitem__("view", ["PA", "PA", "OBLIQUE", "PA"]), r"'view' row 2"),
        (lambda t: t.__setitem__("sex", ["M", "X", "F", ""]), r"'sex' row 1 has 'X'"),
        (lambda t: t.__setitem__("age", ["1", "old", "", "2"]), r"'age' row 1 has 'old'"),
        (lambda t: t.__setitem__("subject_id", ["a", "", "b", "c"]), r"'subject_id' is blank"),
        (lambda t: t.__setitem__("image", ["images/img0.png"] * 4), r"listed twice"),
        (lambda t: t.__setitem__("split", ["train", "val", "dev", ""]), r"'split' row 2"),
    ],
)
def test_bad_labels_csv_is_named(tmp_path, edit, message):
    _make_folder(tmp_path)
    _rewrite_labels(tmp_path, edit)
    with pytest.raises(ValueError, match=message):
        DatasetFolder.open(tmp_path)


def test_blank_labels_and_accepted_float_spellings(tmp_path):
    _make_folder(tmp_path)
    _rewrite_labels(tmp_path, lambda t: t.__setitem__("effusion", ["1.0", " 0 ", "", "1"]))
    folder = DatasetFolder.open(tmp_path)
    np.testing.assert_array_equal(folder.labels_array(["effusion"])[:, 0], [1, 0, np.nan, 1])
    with pytest.raises(ValueError, match="unknown label"):
        folder.labels_array(["cardiomegaly"])


def test_bad_dataset_json_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        DatasetFolder.open(tmp_path / "nowhere")
    _make_folder(tmp_path)
    info_path = tmp_path / "dataset.json"
    info = json.loads(info_path.read_text())
    info_path.write_text("{not json")
    with pytest.raises(ValueError, match=r"dataset.json: not valid JSON"):
        DatasetFolder.open(tmp_path)
    info_path.write_text(json.dumps({**info, "format_version": 99}))
    with pytest.raises(ValueError, match="format_version"):
        DatasetFolder.open(tmp_path)
    info_path.write_text(json.dumps({**info, "labels": "effusion"}))
    with pytest.raises(ValueError, match="'labels' must be a list of strings"):
        DatasetFolder.open(tmp_path)
    info_path.unlink()
    with pytest.raises(FileNotFoundError, match="dataset.json not found"):
        DatasetFolder.open(tmp_path)


def test_missing_image_checked_now_or_lazily(tmp_path):
    folder = _make_folder(tmp_path)
    folder.image_path(2).unlink()
    with pytest.raises(FileNotFoundError, match=r"row 2: image not found.*img2.png"):
        DatasetFolder.open(tmp_path)
    lazy = DatasetFolder.open(tmp_path, check_images=False)
    with pytest.raises(ValueError, match=r"img2.png.*file not found"):
        lazy.read_image(2)


def test_mask_errors(tmp_path):
    folder = _make_folder(tmp_path)
    with pytest.raises(ValueError, match="unknown structure 'liver'"):
        folder.read_mask("liver", 0)
    write_png(folder.mask_path("heart", 0), np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError, match="differs from image size"):
        folder.read_mask("heart", 0)
    write_png(folder.mask_path("heart", 1), np.full((20, 16), 7, dtype=np.uint8))
    with pytest.raises(ValueError, match="must be 0 or 255"):
        folder.read_mask("heart", 1)
    folder.mask_path("heart", 2).unlink()
    assert not folder.has_mask("heart", 2) and folder.has_mask("heart", 3)
    with pytest.raises(FileNotFoundError, match="no 'heart' mask"):
        folder.read_mask("heart", 2)


def test_bad_landmarks_and_reports(tmp_path):
    _make_folder(tmp_path)
    (tmp_path / "landmarks.csv").write_text("image,landmark,x,y\nimages/img0.png,apex,1,2\n")
    with pytest.raises(ValueError, match="landmark 'apex' not listed"):
        DatasetFolder.open(tmp_path)
    (tmp_path / "landmarks.csv").write_text("image,landmark,x,y\nimages/zzz.png,carina,1,2\n")
    with pytest.raises(ValueError, match=r"landmarks.csv: image 'images/zzz.png' is not in"):
        DatasetFolder.open(tmp_path)
    (tmp_path / "landmarks.csv").write_text(
        "image,landmark,x,y\nimages/img0.png,carina,1,2\nimages/img0.png,carina,3,4\n"
    )
    with pytest.raises(ValueError, match="landmark 'carina' of 'images/img0.png' given twice"):
        DatasetFolder.open(tmp_path)
    (tmp_path / "landmarks.csv").unlink()
    (tmp_path / "reports.csv").write_text("image,report\nimages/img1.png,a\nimages/img1.png,b\n")
    with pytest.raises(ValueError, match="'images/img1.png' has two reports"):
        DatasetFolder.open(tmp_path)
    (tmp_path / "reports.csv").write_text("image,text\nimages/img0.png,hi\n")
    with pytest.raises(ValueError, match="reports.csv: columns must be"):
        DatasetFolder.open(tmp_path)


def test_image_root_points_at_images_in_place(tmp_path):
    _make_folder(tmp_path / "original")
    labels_df = pd.read_csv(tmp_path / "original" / "labels.csv", keep_default_na=False)
    info = {"name": "indexed", "labels": ["effusion"], "image_root": "../original"}
    folder = write_index(tmp_path / "index", labels_df.drop(columns=["nodule"]), info)
    assert folder.image_path(0) == (tmp_path / "original" / "images" / "img0.png").resolve()
    assert folder.read_image(3).shape == (20, 16)
    with pytest.raises(ValueError, match="lacks column"):
        write_index(tmp_path / "bad", labels_df.drop(columns=["view"]), info)
    half = labels_df.drop(columns=["nodule"]).assign(effusion=[0, 0.5, 1, ""])
    with pytest.raises(ValueError, match="'effusion' row 1 has 0.5"):
        write_index(tmp_path / "bad", half, info)
    blank_ok = write_index(tmp_path / "ok", half.assign(effusion=[0, "", 1, None]), info)
    np.testing.assert_array_equal(blank_ok.labels_array()[:, 0], [0, np.nan, 1, np.nan])


def test_metadata_bins_follow_paper_edges():
    codes = bin_metadata("age", [5, 19.9, 20, 39.99, 40, 60, 79, 80, 95, np.nan])
    np.testing.assert_array_equal(codes, [0, 0, 1, 1, 2, 3, 3, 4, 4, -1])
    assert bin_labels("bmi") == ("<18.5", "18.5-25", "25-30", "30-35", ">35")
    np.testing.assert_array_equal(bin_metadata("bmi", [18.4, 18.5, 34.9, 35.0]), [0, 1, 3, 4])
    np.testing.assert_array_equal(bin_metadata("weight_kg", [49, 50, 95.1]), [0, 1, 4])
    np.testing.assert_array_equal(encode_sex(["M", "f", "", None]), [1, 0, -1, -1])
    with pytest.raises(ValueError, match="unknown metadata variable 'height'"):
        bin_metadata("height", [1.0])


def test_read_mask_checks_the_size_of_a_dicom_image(tmp_path):
    """Mask size is compared with a DICOM image's Rows/Columns (PIL cannot open DICOM)."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(tmp_path / "a.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 6, 8, 16, 12, 11
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = np.zeros((6, 8), np.uint16).tobytes()
    (tmp_path / "images").mkdir()
    ds.save_as(tmp_path / "images" / "a.dcm", enforce_file_format=True)
    labels = pd.DataFrame({"image": ["images/a.dcm"], "subject_id": ["s1"], "view": ["PA"]})
    write_index(tmp_path, labels, {"name": "t", "labels": [], "structures": ["heart"]})
    write_png(tmp_path / "masks" / "heart" / "a.png", np.full((6, 8), 255, np.uint8))
    folder = DatasetFolder.open(tmp_path)
    assert folder.read_mask("heart", 0).all()
    write_png(tmp_path / "masks" / "heart" / "a.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="mask size"):
        folder.read_mask("heart", 0)
