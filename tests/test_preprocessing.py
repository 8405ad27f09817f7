"""Preprocessing parity with transformers' BitImageProcessor configured as microsoft/rad-dino."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from raddino.models.preprocessing import (
    DINOV2_IMAGENET,
    RAD_DINO,
    Preprocessing,
    preprocess,
    preprocess_batch,
    resized_shape,
    with_crop_size,
)

transformers = pytest.importorskip("transformers")

# Each output pixel is a normalised 8-bit value: the references and we compute
# (u8 * 1/255 - mean) / std in float32 in a different order, so outputs agree to float32 rounding.
TOLERANCE = 1e-5


def processor_kwargs(prep: Preprocessing) -> dict:
    """BitImageProcessor settings of a recipe; RAD_DINO gives rad-dino's preprocessor_config."""
    return {
        "do_resize": True,
        "size": {"shortest_edge": prep.resize_shortest_edge},
        "resample": 3,  # PIL bicubic
        "do_center_crop": True,
        "crop_size": {"height": prep.crop_size, "width": prep.crop_size},
        "do_rescale": True,
        "rescale_factor": 0.00392156862745098,
        "do_normalize": True,
        "image_mean": list(prep.mean),
        "image_std": list(prep.std),
        "do_convert_rgb": True,
    }


def reference(prep: Preprocessing, image_u8_hw: np.ndarray, backend: str) -> torch.Tensor:
    """transformers' output on the same 8-bit grayscale PIL image, (3, S, S)."""
    if backend == "pil":
        from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil as cls
    else:
        from transformers import BitImageProcessor as cls
    processor = cls(**processor_kwargs(prep))
    out = processor(images=Image.fromarray(image_u8_hw), return_tensors="pt")
    return out["pixel_values"][0]


def random_xray(height: int, width: int, seed: int) -> np.ndarray:
    """Smooth-plus-noise uint8 image, so that resampling filters see both edges and gradients."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    smooth = 127 + 100 * np.sin(yy / 17.0) * np.cos(xx / 23.0)
    return np.clip(smooth + rng.normal(0, 25, (height, width)), 0, 255).astype(np.uint8)


SHAPES = [(600, 700), (300, 410), (518, 777), (801, 533), (521, 521)]


@pytest.mark.parametrize("backend", ["pil", "torchvision"])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{h}x{w}" for h, w in SHAPES])
def test_rad_dino_equals_bit_image_processor(shape, backend):
    image_u8 = random_xray(*shape, seed=shape[0])
    expected = reference(RAD_DINO, image_u8, backend)
    ours = preprocess(image_u8.astype(np.float32) / 255.0, RAD_DINO, backend=backend)
    assert ours.shape == expected.shape == (3, 518, 518) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, expected, rtol=0, atol=TOLERANCE)
    # uint8 input takes the same path
    torch.testing.assert_close(preprocess(image_u8, RAD_DINO, backend=backend), ours)


@pytest.mark.parametrize("backend", ["pil", "torchvision"])
def test_imagenet_recipe_per_channel_stats(backend):
    """Different mean/std per channel after gray -> RGB, and resize 256 / crop 224."""
    image_u8 = random_xray(300, 347, seed=7)
    expected = reference(DINOV2_IMAGENET, image_u8, backend)
    ours = preprocess(image_u8, DINOV2_IMAGENET, backend=backend)
    assert ours.shape == (3, 224, 224)
    torch.testing.assert_close(ours, expected, rtol=0, atol=TOLERANCE)
    assert not torch.equal(ours[0], ours[2])


def test_backends_differ_only_by_rounding():
    """PIL (fixed point) and torchvision (float) bicubic differ by at most one 8-bit level."""
    image_u8 = random_xray(640, 700, seed=3)
    pil = preprocess(image_u8, RAD_DINO, backend="pil")
    tv = preprocess(image_u8, RAD_DINO, backend="torchvision")
    one_level = 1 / 255 / RAD_DINO.std[0]
    assert (pil - tv).abs().max() <= one_level + 1e-5


@pytest.mark.parametrize("backend", ["pil", "torchvision"])
def test_float_path_keeps_precision(backend):
    """Without 8-bit quantisation the output differs from the reference only by its rounding.

    The 8-bit references round (and clip) after each of the two separable resize passes, so the
    gap is up to ~1 level on unsaturated content; saturated noisy content also differs by clipping.
    """
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:600, 0:650]
    smooth = 127 + 80 * np.sin(yy / 17.0) * np.cos(xx / 23.0) + rng.normal(0, 4, (600, 650))
    image_u8 = np.clip(smooth, 0, 255).astype(np.uint8)
    expected = reference(RAD_DINO, image_u8, backend)
    ours = preprocess(image_u8 / 255.0, RAD_DINO, backend=backend, quantize_uint8=False)
    gap_levels = (ours - expected).abs() * 255 * RAD_DINO.std[0]
    assert gap_levels.max() <= 1.5 and gap_levels.mean() <= 0.5
    assert gap_levels.max() > 0.1  # and it is really the unrounded path
    # 16-bit detail that 8 bits would erase survives
    fine = np.full((600, 650), 0.5, dtype=np.float32)
    fine[:, ::2] += 1.0 / 1024
    out = preprocess(fine, RAD_DINO, backend=backend, quantize_uint8=False)
    assert out.std() > 0
    # the 8-bit path makes the image one value (compared exactly: a float std of a constant
    # tensor can be 1e-9 instead of 0, depending on the reduction order and thread count)
    assert preprocess(fine, RAD_DINO, backend=backend).unique().numel() == 1


def test_torchvision_float_path_equals_processor_on_float_input():
    """transformers 5's BitImageProcessor resizes float arrays without rounding; so do we.

    We also clip the bicubic overshoot to 0..255 (as any 8-bit path does); the reference does not.
    """
    from transformers import BitImageProcessor

    image = random_xray(560, 600, seed=11).astype(np.float32) / 255.0
    image[10:20, 10:20] += 0.5 / 1024
    processor = BitImageProcessor(**processor_kwargs(RAD_DINO))
    image_hwc = np.repeat(image[:, :, None] * 255.0, 3, axis=2)
    expected = processor(images=image_hwc, return_tensors="pt")["pixel_values"][0]
    ours = preprocess(image, RAD_DINO, backend="torchvision", quantize_uint8=False)
    mean, std = RAD_DINO.mean[0], RAD_DINO.std[0]
    clipped = expected.clamp((0.0 - mean) / std, (1.0 - mean) / std)
    assert not torch.equal(clipped, expected)  # the noise makes the kernel overshoot somewhere
    torch.testing.assert_close(ours, clipped, rtol=0, atol=1e-4)


def test_gray_output_and_no_resize_no_crop():
    prep = Preprocessing(
        "gray", None, None, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), rgb=False
    )
    image = np.random.default_rng(0).random((20, 30), dtype=np.float32)
    out = preprocess(image, prep)
    assert out.shape == (1, 20, 30)
    expected = (np.rint(image * 255) / 255 - 0.5) / 0.25
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-5)


def test_small_image_is_upscaled_then_cropped_and_crop_pads_when_needed():
    prep = Preprocessing("crop-only", None, 64)
    image_u8 = random_xray(40, 50, seed=1)
    out = preprocess(image_u8, prep)
    assert out.shape == (3, 64, 64)
    black = (0.0 - prep.mean[0]) / prep.std[0]
    assert torch.allclose(out[0, :12, :], torch.tensor(black))  # pad 24 rows: 12 above (ceil)
    assert not torch.allclose(out[0, 12, 7:57], torch.tensor(black))


def test_resized_shape_floors_long_side():
    assert resized_shape(600, 700, 518) == (518, int(518 * 700 / 600))
    assert resized_shape(801, 533, 518) == (int(518 * 801 / 533), 518)
    assert resized_shape(518, 518, 518) == (518, 518)


def test_with_crop_size_keeps_ratio():
    assert with_crop_size(RAD_DINO, 224).resize_shortest_edge == 224
    assert with_crop_size(DINOV2_IMAGENET, 448).resize_shortest_edge == 512
    assert with_crop_size(RAD_DINO, 224).mean == RAD_DINO.mean
    with pytest.raises(ValueError, match="size"):
        with_crop_size(RAD_DINO, 0)


def test_batch_stacks_and_rejects_mixed_sizes():
    images = [random_xray(100 + 10 * i, 120, seed=i) for i in range(3)]
    small = with_crop_size(RAD_DINO, 56)
    batch = preprocess_batch(images, small)
    assert batch.shape == (3, 3, 56, 56)
    torch.testing.assert_close(batch[1], preprocess(images[1], small))
    no_crop = Preprocessing("no-crop", 56, None)
    with pytest.raises(ValueError, match="differ in shape"):
        preprocess_batch(images, no_crop)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((3, 4, 4), np.float32), "grayscale"),
        (np.full((4, 4), 1.5, np.float32), r"\[0, 1\]"),
        (np.full((4, 4), np.nan, np.float32), "NaN"),
        (np.zeros((4, 4), np.int32), "dtype"),
    ],
)
def test_bad_images_raise_clear_errors(image, message):
    with pytest.raises(ValueError, match=message):
        preprocess(image, RAD_DINO)


def test_bad_backend_and_resample():
    image = np.zeros((30, 30), np.float32)
    with pytest.raises(ValueError, match="backend"):
        preprocess(image, RAD_DINO, backend="cv2")
    with pytest.raises(ValueError, match="resample"):
        preprocess(image, Preprocessing("x", 20, 20, resample="lanczos"), backend="torchvision")
