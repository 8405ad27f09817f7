"""Read X-ray images (PNG/JPEG 8/16-bit, DICOM) as float32 grayscale in [0, 1], with clear errors.

Every failure (missing, unreadable, corrupt, truncated, unsupported) raises `ImageReadError`, which
names the file and the cause. DICOM files are parsed with only the pixel and display tags
(`_DICOM_PIXEL_TAGS`), so patient identifiers are never even loaded, let alone returned or logged.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

DICOM_SUFFIXES = (".dcm", ".dicom")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
IMAGE_SUFFIXES = PIL_SUFFIXES + DICOM_SUFFIXES

# The only DICOM attributes we parse: image pixel module, modality LUT, VOI LUT. No identifiers.
_DICOM_PIXEL_TAGS = (
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "PlanarConfiguration",
    "NumberOfFrames",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "RescaleIntercept",
    "RescaleSlope",
    "RescaleType",
    "ModalityLUTSequence",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
    "VOILUTSequence",
    "PixelData",
)

# ITU-R BT.601 luma weights, the ones PIL uses for RGB -> L.
_LUMA_RGB = np.array([0.299, 0.587, 0.114], dtype=np.float64)


class ImageReadError(ValueError):
    """An image could not be read; `path` and `cause` are kept apart so callers can log either."""

    def __init__(self, path: str | os.PathLike, cause: str):
        self.path = str(path)
        self.cause = cause
        super().__init__(f"cannot read image {self.path}: {cause}")


@dataclass(frozen=True)
class ImageInfo:
    """How an image was decoded: format, stored bit depth and the display transform applied."""

    format: str  # "png", "jpeg", "dicom", ...
    mode: str  # PIL mode, or DICOM PhotometricInterpretation
    bits_stored: int  # significant bits per sample of the stored pixels
    height: int
    width: int
    voi: str = "none"  # DICOM display transform: "window", "lut" or "none" (bit-depth scaling)
    window_center: float | None = None
    window_width: float | None = None
    inverted: bool = False  # MONOCHROME1 was inverted so that bright = dense

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as float32 (H, W) grayscale in [0, 1]; raises `ImageReadError`."""
    return read_image_with_info(path)[0]


def read_image_with_info(path: str | os.PathLike) -> tuple[np.ndarray, ImageInfo]:
    """Like `read_image`, plus an `ImageInfo` saying how the pixels were decoded."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "file not found")
    if not path.is_file():
        raise ImageReadError(path, "not a regular file")
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except OSError as err:
        raise ImageReadError(path, f"cannot open ({err.strerror or type(err).__name__})") from None
    if not head:
        raise ImageReadError(path, "file is empty")
    # DICOM Part 10 files say "DICM" after a 128-byte preamble; older ones only by their suffix.
    looks_like_pil = head.startswith((b"\x89PNG", b"\xff\xd8", b"II*\x00", b"MM\x00*", b"BM"))
    is_dicom = head[128:132] == b"DICM" or (
        path.suffix.lower() in DICOM_SUFFIXES and not looks_like_pil
    )
    image_hw, info = _read_dicom(path) if is_dicom else _read_with_pil(path)
    if not np.isfinite(image_hw).all():
        raise ImageReadError(path, "decoded pixels contain NaN or infinity")
    return np.ascontiguousarray(image_hw, dtype=np.float32), info


# ----------------------------------------------------------------------------------------------
# PNG / JPEG / TIFF / BMP via PIL


def _read_with_pil(path: Path) -> tuple[np.ndarray, ImageInfo]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            n_frames = getattr(img, "n_frames", 1)
            if n_frames > 1:
                raise ImageReadError(path, f"{n_frames} frames; one image per file is supported")
            img.load()  # decode now, so that truncated or corrupt data fails here, not later
            image_format = (img.format or path.suffix.lstrip(".")).lower()
            return _pil_to_gray01(path, img, image_format)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(path, "unrecognised image format (corrupt or not an image)") from None
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, zlib.error, ...
        raise ImageReadError(path, f"corrupt or truncated image data ({_describe(err)})") from None


def _pil_to_gray01(path: Path, img, image_format: str) -> tuple[np.ndarray, ImageInfo]:
    """Convert a decoded PIL image of any supported mode to float (H, W) in [0, 1]."""
    mode = img.mode
    bits = 8
    if mode == "1":
        gray = np.asarray(img, dtype=np.float32)
        bits = 1
    elif mode in ("L", "LA"):
        gray = np.asarray(img.getchannel("L"), dtype=np.float32) / 255.0
    elif mode.startswith("I;16"):
        gray = np.asarray(img).astype(np.float32) / 65535.0
        bits = 16
    elif mode == "I":  # 16-bit PNGs in some Pillow versions; must hold 16-bit values
        values = np.asarray(img)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ImageReadError(path, "32-bit integer pixels outside the 16-bit range 0..65535")
        gray = values.astype(np.float32) / 65535.0
        bits = 16
    elif mode == "F":
        gray = np.asarray(img, dtype=np.float32)
        if gray.size and (gray.min() < 0.0 or gray.max() > 1.0):
            raise ImageReadError(path, "floating-point pixels outside [0, 1]")
        bits = 32
    elif mode in ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
        rgb = np.asarray(img.convert("RGB"), dtype=np.float64)
        gray = (rgb @ _LUMA_RGB / 255.0).astype(np.float32)
    else:
        raise ImageReadError(path, f"unsupported PIL image mode {mode!r}")
    info = ImageInfo(image_format, mode, bits, int(gray.shape[0]), int(gray.shape[1]))
    return np.clip(gray, 0.0, 1.0), info


# ----------------------------------------------------------------------------------------------
# DICOM via pydicom


def _read_dicom(path: Path) -> tuple[np.ndarray, ImageInfo]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            # pydicom warnings may quote element values; we parse no identifiers, but stay quiet.
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(path, specific_tags=list(_DICOM_PIXEL_TAGS), force=True)
    except InvalidDicomError:
        raise ImageReadError(path, "not a valid DICOM file") from None
    except Exception as err:  # truncated headers raise EOFError, struct.error, ...
        raise ImageReadError(path, f"corrupt DICOM header ({_describe(err)})") from None
    if "PixelData" not in dataset:
        raise ImageReadError(path, "DICOM file has no pixel data")
    photometric = str(dataset.get("PhotometricInterpretation", "")).upper()
    n_frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if n_frames != 1:
        raise ImageReadError(path, f"DICOM has {n_frames} frames; one image per file is supported")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stored = dataset.pixel_array  # YBR colour spaces arrive converted to RGB
    except Exception as err:  # missing decoder, truncated pixel data, bad pixel module
        raise ImageReadError(path, f"cannot decode DICOM pixel data ({_describe(err)})") from None
    bits_stored = int(dataset.get("BitsStored", dataset.get("BitsAllocated", 16)))
    height, width = int(stored.shape[0]), int(stored.shape[1])
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        if stored.ndim != 2:
            raise ImageReadError(path, f"{photometric} pixel data has shape {stored.shape}")
        gray, voi, center, width_w = _dicom_monochrome_to_unit(path, stored, dataset)
        inverted = photometric == "MONOCHROME1"
        if inverted:  # MONOCHROME1: minimum value is white; flip so that bright = dense
            gray = 1.0 - gray
        info = ImageInfo(
            "dicom", photometric, bits_stored, height, width, voi, center, width_w, inverted
        )
        return gray.astype(np.float32), info
    if photometric in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT"):
        if stored.ndim != 3 or stored.shape[-1] != 3:
            raise ImageReadError(path, f"{photometric} pixel data has shape {stored.shape}")
        gray = stored.astype(np.float64) @ _LUMA_RGB / float(2**bits_stored - 1)
        info = ImageInfo("dicom", photometric, bits_stored, height, width)
        return np.clip(gray, 0.0, 1.0).astype(np.float32), info
    raise ImageReadError(path, f"unsupported DICOM PhotometricInterpretation {photometric!r}")


def _dicom_monochrome_to_unit(
    path: Path, stored_hw: np.ndarray, dataset
) -> tuple[np.ndarray, str, float | None, float | None]:
    """Modality LUT, then VOI LUT or window (else bit-depth scaling), mapped to [0, 1] float64."""
    from pydicom.pixels import apply_modality_lut, apply_voi

    try:
        values = apply_modality_lut(stored_hw, dataset).astype(np.float64)
    except Exception as err:
        raise ImageReadError(path, f"invalid DICOM modality LUT ({_describe(err)})") from None

    voi_sequence = dataset.get("VOILUTSequence")
    if voi_sequence and "LUTDescriptor" in voi_sequence[0] and "LUTData" in voi_sequence[0]:
        try:
            lut_bits = int(voi_sequence[0].LUTDescriptor[2])
            mapped = apply_voi(values.astype(np.int64), dataset, index=0)
        except Exception as err:
            raise ImageReadError(path, f"invalid DICOM VOI LUT ({_describe(err)})") from None
        return np.clip(mapped / float(2**lut_bits - 1), 0.0, 1.0), "lut", None, None

    if "WindowCenter" in dataset and "WindowWidth" in dataset:
        center = _first_value(dataset.WindowCenter)
        width = _first_value(dataset.WindowWidth)
        function = str(dataset.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        try:
            return window_to_unit(values, center, width, function), "window", center, width
        except ValueError as err:
            raise ImageReadError(path, str(err)) from None

    low, high = _modality_output_range(dataset)
    if high <= low:
        raise ImageReadError(path, f"degenerate pixel value range [{low}, {high}]")
    return np.clip((values - low) / (high - low), 0.0, 1.0), "none", None, None


def window_to_unit(
    values: np.ndarray, center: float, width: float, function: str = "LINEAR"
) -> np.ndarray:
    """DICOM VOI windowing (PS3.3 C.11.2.1.2/3) mapped straight to [0, 1] float64.

    Hand-written: pydicom's `apply_windowing` maps to the stored-bit range instead, which we would
    then have to undo; the formulas are a few lines of the standard.
    """
    values = np.asarray(values, dtype=np.float64)
    if function == "LINEAR":
        if width < 1:
            raise ValueError(f"Window Width {width} < 1 is invalid for LINEAR windowing")
        low_edge = center - 0.5 - (width - 1) / 2
        high_edge = center - 0.5 + (width - 1) / 2
        if width == 1:  # a step at the centre
            return (values > high_edge).astype(np.float64)
        unit = (values - (center - 0.5)) / (width - 1) + 0.5
        return np.where(values <= low_edge, 0.0, np.where(values > high_edge, 1.0, unit))
    if function == "LINEAR_EXACT":
        if width <= 0:
            raise ValueError(f"Window Width {width} <= 0 is invalid for LINEAR_EXACT windowing")
        return np.clip((values - center) / width + 0.5, 0.0, 1.0)
    if function == "SIGMOID":
        if width <= 0:
            raise ValueError(f"Window Width {width} <= 0 is invalid for SIGMOID windowing")
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    raise ValueError(f"unsupported VOI LUT Function {function!r}")


def _modality_output_range(dataset) -> tuple[float, float]:
    """Range of the modality-LUT output for every storable value (BitsStored, sign, rescale)."""
    bits_stored = int(dataset.get("BitsStored", dataset.get("BitsAllocated", 16)))
    if dataset.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(dataset.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    if int(dataset.get("PixelRepresentation", 0)) == 0:
        low, high = 0.0, float(2**bits_stored - 1)
    else:
        low, high = float(-(2 ** (bits_stored - 1))), float(2 ** (bits_stored - 1) - 1)
    if "RescaleSlope" in dataset and "RescaleIntercept" in dataset:
        slope, intercept = float(dataset.RescaleSlope), float(dataset.RescaleIntercept)
        low, high = sorted((low * slope + intercept, high * slope + intercept))
    return low, high


def _first_value(value) -> float:
    """Window Center/Width may be multi-valued (alternative views); use the first."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


def _describe(err: BaseException) -> str:
    """Short `Type: message` for an exception, on one line."""
    message = " ".join(str(err).split())
    if len(message) > 200:
        message = message[:200] + "..."
    return f"{type(err).__name__}: {message}" if message else type(err).__name__
