"""Image reading: PNG/JPEG 8/16-bit, DICOM display transforms, clear errors, no PHI leaks."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from raddino.data.io import ImageReadError, read_image, read_image_with_info, window_to_unit

FAKE_PHI = {
    "PatientName": "Doe^Janeprivate",
    "PatientID": "PID-9876543",
    "PatientBirthDate": "19451231",
    "InstitutionName": "St Fakename Hospital",
    "AccessionNumber": "ACC55501",
    "ReferringPhysicianName": "Who^Doctorx",
}


def _rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def write_dicom(path, stored_hw: np.ndarray, photometric: str = "MONOCHROME2", **attrs):
    """A minimal Secondary Capture DICOM with fake PHI in the header."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    for key, value in FAKE_PHI.items():
        setattr(ds, key, value)
    ds.Modality = "DX"
    ds.Rows, ds.Columns = stored_hw.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    signed = stored_hw.dtype.kind == "i"
    ds.BitsAllocated = 16
    ds.BitsStored = attrs.pop("BitsStored", 16)
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.PixelData = stored_hw.astype(np.int16 if signed else np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


# ----------------------------------------------------------------------------------------------
# PNG / JPEG


def test_png_8bit_exact(tmp_path):
    values = _rng().integers(0, 256, (23, 31), dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "a.png")
    image, info = read_image_with_info(tmp_path / "a.png")
    assert image.dtype == np.float32 and image.shape == (23, 31)
    np.testing.assert_array_equal(image, values.astype(np.float32) / 255.0)
    assert (info.format, info.mode, info.bits_stored) == ("png", "L", 8)


def test_png_16bit_scaled_by_65535_not_255(tmp_path):
    values = _rng().integers(0, 65536, (17, 13), dtype=np.uint16)
    values[0, 0], values[0, 1] = 65535, 40000
    Image.fromarray(values).save(tmp_path / "b.png")
    image, info = read_image_with_info(tmp_path / "b.png")
    np.testing.assert_allclose(image, values / 65535.0, rtol=0, atol=1e-7)
    assert image[0, 0] == 1.0 and abs(image[0, 1] - 40000 / 65535) < 1e-7
    assert info.bits_stored == 16 and info.mode.startswith("I")


def test_32bit_integer_mode_I_must_hold_16bit_values(tmp_path):
    """Mode "I" (how some Pillow versions load 16-bit PNGs) scales by 65535; wider values fail."""
    values = _rng().integers(0, 65536, (9, 11)).astype(np.int32)
    Image.fromarray(values, mode="I").save(tmp_path / "i.tif")
    np.testing.assert_allclose(read_image(tmp_path / "i.tif"), values / 65535.0, atol=1e-7)
    values[0, 0] = 70000
    Image.fromarray(values, mode="I").save(tmp_path / "wide.tif")
    with pytest.raises(ImageReadError, match="outside the 16-bit range"):
        read_image(tmp_path / "wide.tif")


def test_jpeg_8bit_gray_and_rgb(tmp_path):
    values = _rng().integers(0, 256, (32, 40), dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "g.jpg", quality=95)
    decoded = np.asarray(Image.open(tmp_path / "g.jpg"), dtype=np.float32) / 255.0
    image, info = read_image_with_info(tmp_path / "g.jpg")
    np.testing.assert_array_equal(image, decoded)
    assert info.format == "jpeg"

    # Gray stored as RGB (common for exported X-rays): luma of equal channels is the gray value.
    Image.fromarray(np.stack([values] * 3, axis=-1)).save(tmp_path / "rgb.png")
    np.testing.assert_allclose(read_image(tmp_path / "rgb.png"), values / 255.0, atol=1e-6)


def test_rgb_to_gray_uses_bt601_luma(tmp_path):
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 0)
    rgb[1, 0] = (0, 0, 255)
    rgb[1, 1] = (10, 200, 30)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    expected = np.array([[0.299, 0.587], [0.114, (0.299 * 10 + 0.587 * 200 + 0.114 * 30) / 255]])
    np.testing.assert_allclose(read_image(tmp_path / "c.png"), expected, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "make", "cause"),
    [
        ("missing.png", None, "file not found"),
        ("empty.png", lambda p: p.write_bytes(b""), "empty"),
        ("noise.png", lambda p: p.write_bytes(bytes(range(256)) * 4), "unrecognised image format"),
        ("folder.png", lambda p: p.mkdir(), "not a regular file"),
    ],
)
def test_unreadable_files_name_file_and_cause(tmp_path, name, make, cause):
    path = tmp_path / name
    if make is not None:
        make(path)
    with pytest.raises(ImageReadError) as excinfo:
        read_image(path)
    assert str(path) in str(excinfo.value) and cause in str(excinfo.value)
    assert excinfo.value.path == str(path) and cause in excinfo.value.cause
    assert isinstance(excinfo.value, ValueError)  # the CLI prints ValueErrors as one-line errors


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_images_raise(tmp_path, suffix):
    values = _rng().integers(0, 256, (64, 64), dtype=np.uint8)
    full = tmp_path / f"full{suffix}"
    Image.fromarray(values).save(full)
    data = full.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="corrupt or truncated") as excinfo:
        read_image(cut)
    assert str(cut) in str(excinfo.value)


# ----------------------------------------------------------------------------------------------
# DICOM


def test_dicom_monochrome2_12bit_scaled_by_bits_stored(tmp_path):
    stored = _rng().integers(0, 4096, (20, 24), dtype=np.uint16)
    stored[0, 0] = 4095
    path = write_dicom(tmp_path / "m2.dcm", stored, BitsStored=12)
    image, info = read_image_with_info(path)
    np.testing.assert_allclose(image, stored / 4095.0, atol=1e-7)
    assert image[0, 0] == 1.0
    assert (info.format, info.mode, info.bits_stored, info.voi) == (
        "dicom",
        "MONOCHROME2",
        12,
        "none",
    )
    assert not info.inverted


def test_dicom_monochrome1_is_inverted(tmp_path):
    stored = _rng().integers(0, 4096, (20, 24), dtype=np.uint16)
    m1 = read_image(write_dicom(tmp_path / "m1.dcm", stored, "MONOCHROME1", BitsStored=12))
    m2 = read_image(write_dicom(tmp_path / "m2.dcm", stored, "MONOCHROME2", BitsStored=12))
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-7)
    assert read_image_with_info(tmp_path / "m1.dcm")[1].inverted


def test_dicom_without_extension_detected_by_magic(tmp_path):
    stored = _rng().integers(0, 65536, (8, 8), dtype=np.uint16)
    path = write_dicom(tmp_path / "IM0001", stored)
    np.testing.assert_allclose(read_image(path), stored / 65535.0, atol=1e-7)


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
@pytest.mark.parametrize("rescale", [False, True])
def test_dicom_window_matches_pydicom(tmp_path, function, rescale):
    """Our [0, 1] windowing equals pydicom's apply_windowing divided by its output range."""
    from pydicom.pixels import apply_modality_lut, apply_windowing

    stored = _rng().integers(0, 4096, (30, 30), dtype=np.uint16)
    attrs = {"BitsStored": 12, "WindowCenter": 1500.0, "WindowWidth": 1200.0}
    attrs["VOILUTFunction"] = function
    if rescale:
        attrs.update(RescaleSlope=0.5, RescaleIntercept=-100.0)
    path = write_dicom(tmp_path / "w.dcm", stored, **attrs)
    image, info = read_image_with_info(path)
    assert (info.voi, info.window_center, info.window_width) == ("window", 1500.0, 1200.0)

    ds = pydicom.dcmread(path)
    reference = apply_windowing(apply_modality_lut(ds.pixel_array, ds), ds)
    y_min, y_max = 0.0, 4095.0
    if rescale:
        y_min, y_max = y_min * 0.5 - 100.0, y_max * 0.5 - 100.0
    np.testing.assert_allclose(image, (reference - y_min) / (y_max - y_min), atol=1e-6)
    assert 0.0 < image.mean() < 1.0  # the window is inside the data range


def test_dicom_signed_with_rescale_no_window(tmp_path):
    stored = _rng().integers(-2048, 2048, (10, 12)).astype(np.int16)
    path = write_dicom(
        tmp_path / "s.dcm", stored, BitsStored=12, RescaleSlope=2.0, RescaleIntercept=5.0
    )
    expected = (stored.astype(np.float64) * 2 + 5 - (-2048 * 2 + 5)) / (4095 * 2)
    np.testing.assert_allclose(read_image(path), expected, atol=1e-6)


def test_window_width_one_is_a_step():
    values = np.array([9.0, 9.5, 10.0, 11.0])
    np.testing.assert_array_equal(window_to_unit(values, 10.0, 1.0), [0, 0, 1, 1])
    with pytest.raises(ValueError, match="Window Width"):
        window_to_unit(values, 10.0, 0.5)


def test_dicom_phi_never_returned_or_in_errors(tmp_path):
    stored = _rng().integers(0, 4096, (16, 16), dtype=np.uint16)
    path = write_dicom(
        tmp_path / "phi.dcm", stored, BitsStored=12, WindowCenter=2000, WindowWidth=3000
    )
    image, info = read_image_with_info(path)
    returned = json.dumps(info.to_dict()) + repr(info) + repr(image.dtype)

    # Truncated pixel data, and a header cut inside the PHI: errors must not quote the header.
    data = path.read_bytes()
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(data[:-100])
    header_cut = tmp_path / "header_cut.dcm"
    header_cut.write_bytes(data[: data.index(b"Doe^Jane") + 4])
    messages = []
    for bad in (truncated, header_cut):
        with pytest.raises(ImageReadError) as excinfo:
            read_image(bad)
        assert str(bad) in str(excinfo.value)
        messages.append(str(excinfo.value))
    for secret in FAKE_PHI.values():
        assert secret not in returned
        assert all(secret not in message for message in messages)
    assert any("pixel data" in message for message in messages)


def test_png_with_dicom_suffix_is_read_as_png(tmp_path):
    values = _rng().integers(0, 256, (5, 6), dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "x.dcm", format="PNG")
    np.testing.assert_array_equal(read_image(tmp_path / "x.dcm"), values / np.float32(255))


def test_dicom_without_pixel_data(tmp_path):
    stored = np.zeros((4, 4), dtype=np.uint16)
    path = write_dicom(tmp_path / "nopix.dcm", stored)
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(ImageReadError, match="no pixel data"):
        read_image(path)
