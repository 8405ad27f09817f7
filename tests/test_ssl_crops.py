"""RAD-DINO multi-crop: sizes, crop-side ranges, seeding, blur probability p (not 1 - p), flips."""

from __future__ import annotations

import pytest
import torch

from raddino.ssl.config import load_config
from raddino.ssl.crops import (
    MultiCropAugmentation,
    PhotometricJitter,
    RandomBorders,
    photometric,
    proportional_local_size,
    random_square_crop,
)

NO_PHOTOMETRIC = PhotometricJitter(jitter_p=0.0, blur_p=0.0)


def _ramp(height: int = 120, width: int = 160) -> torch.Tensor:
    """(1, H, W) image whose value is the column position in [0, 1]: crops reveal their extent."""
    return torch.linspace(0, 1, width).expand(1, height, width).clone()


def test_crop_shapes_range_and_proportional_local_size():
    augment = MultiCropAugmentation(global_crops_size=56, n_local_crops=3)
    assert augment.local_crops_size == proportional_local_size(56) == 28
    assert proportional_local_size(518) == 196 and proportional_local_size(224) == 84
    image = torch.rand(1, 90, 70, generator=torch.Generator().manual_seed(0))
    crops = augment(image, torch.Generator().manual_seed(1))
    assert [c.shape for c in crops["global"]] == [torch.Size([1, 56, 56])] * 2
    assert [c.shape for c in crops["local"]] == [torch.Size([1, 28, 28])] * 3
    for crop in crops["global"] + crops["local"]:
        assert crop.dtype == torch.float32 and 0.0 <= float(crop.min()) <= float(crop.max()) <= 1.0


def test_same_generator_seed_gives_same_crops_and_other_seeds_differ():
    augment = MultiCropAugmentation(global_crops_size=42, n_local_crops=2)
    image = torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(0))
    first = augment(image, torch.Generator().manual_seed(5))
    again = augment(image, torch.Generator().manual_seed(5))
    other = augment(image, torch.Generator().manual_seed(6))
    for key in ("global", "local"):
        for a, b in zip(first[key], again[key], strict=True):
            assert torch.equal(a, b)
    assert not torch.equal(first["global"][0], other["global"][0])


@pytest.mark.parametrize("side, expected", [((0.5, 1.0), (0.5, 1.0)), ((0.2, 0.5), (0.2, 0.5))])
def test_crop_side_is_a_uniform_fraction_of_the_shorter_side(side, expected):
    gen = torch.Generator().manual_seed(2)
    image = _ramp()  # columns 0..159 -> values 0..1; shorter side is 120
    fractions = []
    for _ in range(300):
        crop = random_square_crop(image, side, 32, gen)
        span_columns = float(crop.max() - crop.min()) * 159  # columns covered (resampled)
        fractions.append((span_columns + 1) / 120)
    fractions = torch.tensor(fractions)
    low, high = expected
    assert float(fractions.min()) > low - 0.04 and float(fractions.max()) < high + 0.04
    assert abs(float(fractions.mean()) - (low + high) / 2) < 0.03  # uniform: mean mid-range


def test_blur_is_applied_with_probability_p_not_one_minus_p():
    checker = ((torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2).float()[None]
    gen = torch.Generator().manual_seed(3)
    jitter = PhotometricJitter(jitter_p=0.0, blur_p=0.1, blur_sigma_at_224=(7.0, 7.0))
    blurred = [float(photometric(checker, jitter, gen).std()) < 0.4 for _ in range(1000)]
    rate = sum(blurred) / len(blurred)
    assert 0.07 < rate < 0.13  # official GaussianBlur(p=0.1) would blur ~90% of the time


def test_intensity_jitter_changes_values_and_keeps_range():
    image = torch.rand(1, 24, 24, generator=torch.Generator().manual_seed(4))
    gen = torch.Generator().manual_seed(5)
    jitter = PhotometricJitter(jitter_p=1.0, blur_p=0.0)
    outs = [photometric(image, jitter, gen) for _ in range(20)]
    assert all(not torch.equal(out, image) for out in outs)
    assert all(0.0 <= float(out.min()) and float(out.max()) <= 1.0 for out in outs)


def test_no_horizontal_flip_by_default_and_flips_half_the_time_when_enabled():
    image = _ramp(64, 64)
    views = dict(global1_jitter=NO_PHOTOMETRIC, global2_jitter=NO_PHOTOMETRIC)
    plain = MultiCropAugmentation(32, 16, n_local_crops=0, **views)
    flipping = MultiCropAugmentation(32, 16, n_local_crops=0, horizontal_flip=True, **views)
    gen = torch.Generator().manual_seed(6)

    def increasing(crop):
        return bool(crop[0, 0, -1] > crop[0, 0, 0])

    assert all(increasing(c) for _ in range(50) for c in plain(image, gen)["global"])
    flips = [not increasing(c) for _ in range(100) for c in flipping(image, gen)["global"]]
    assert 0.35 < sum(flips) / len(flips) < 0.65


def test_teacher_view_is_blurred_less_than_the_second_global_view():
    augment = MultiCropAugmentation()
    assert augment.global1_jitter.blur_p < augment.global2_jitter.blur_p
    assert (
        augment.global1_jitter.blur_sigma_at_224[1] <= augment.global2_jitter.blur_sigma_at_224[1]
    )
    assert not augment.horizontal_flip


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="global_crops_side"):
        MultiCropAugmentation(global_crops_side=(0.8, 0.5))
    with pytest.raises(ValueError, match=r"\(1, H, W\)"):
        MultiCropAugmentation(56)(torch.rand(3, 32, 32), torch.Generator())
    with pytest.raises(ValueError, match=r"\(1, H, W\)"):
        MultiCropAugmentation(56)(torch.zeros(1, 32, 32, dtype=torch.uint8), torch.Generator())


def test_photometric_strength_scales_the_jitter_ranges():
    jitter = PhotometricJitter(blur_p=0.0)
    assert jitter.scaled(1.0) == jitter  # the default recipe is untouched, bit for bit
    image = torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    assert all(torch.equal(photometric(image, jitter.scaled(0.0), gen), image) for _ in range(5))
    assert not all(
        torch.equal(photometric(image, jitter.scaled(0.5), gen), image) for _ in range(5)
    )
    half = jitter.scaled(0.5)
    assert (half.brightness, half.contrast) == (0.2, 0.2) and abs(half.gamma - 1.5**0.5) < 1e-12


def test_random_borders_draw_bands_on_the_edges_and_nothing_when_off():
    image = torch.full((1, 40, 40), 0.3)
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    assert RandomBorders(p=0.0)(image, gen) is image
    assert torch.equal(gen.get_state(), state)  # p 0 draws nothing: old recipes keep their crops
    banded = RandomBorders(p=1.0, edge_p=1.0, width=(0.1, 0.1), level=(0.9, 0.95))(image, gen)
    assert torch.equal(image, torch.full((1, 40, 40), 0.3))  # the input is not touched
    for edge in (banded[..., :4, :], banded[..., -4:, :], banded[..., :, :4], banded[..., :, -4:]):
        assert ((edge >= 0.9) & (edge <= 0.95)).all()
    assert torch.equal(banded[..., 4:-4, 4:-4], image[..., 4:-4, 4:-4])
    some = [RandomBorders(p=1.0)(image, gen) for _ in range(50)]  # edges drawn at edge_p 0.6
    edges_drawn = [bool((crop[..., 0, 20] > 0.5).item()) for crop in some]
    assert 15 < sum(edges_drawn) < 45


def test_random_borders_p_in_the_recipe():
    image = torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(0))
    plain = MultiCropAugmentation(56, n_local_crops=2)(image, torch.Generator().manual_seed(3))
    off = MultiCropAugmentation(56, n_local_crops=2, random_borders_p=0.0)(
        image, torch.Generator().manual_seed(3)
    )
    assert all(torch.equal(a, b) for a, b in zip(plain["global"], off["global"], strict=True))
    on = MultiCropAugmentation(56, n_local_crops=2, random_borders_p=1.0)(
        image, torch.Generator().manual_seed(3)
    )
    assert not all(torch.equal(a, b) for a, b in zip(plain["global"], on["global"], strict=True))
    with pytest.raises(ValueError, match="random_borders_p"):
        MultiCropAugmentation(56, random_borders_p=1.5)
    crops = {**load_config("smoke")["crops"], "random_borders_p": 0.5}
    assert MultiCropAugmentation.from_config(crops).random_borders.p == 0.5
    with pytest.raises(ValueError, match="crops.random_borders_p"):
        load_config("smoke", {"crops.random_borders_p": "2"})
