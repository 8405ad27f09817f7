"""Pretraining config: profiles load, overrides are typed, bad keys and values are named."""

from __future__ import annotations

import pytest

from raddino.ssl import config as cfg


@pytest.mark.parametrize(
    "profile", ["smoke", "cpu", "ablation", "phantom-release", "general-release"]
)
def test_profiles_load_and_validate(profile):
    config = cfg.load_config(profile)
    assert config["model"]["arch"].startswith("vit_")
    assert config["crops"]["horizontal_flip"] is False


def test_gpu_paper_needs_an_existing_data_path(tmp_path):
    with pytest.raises(ValueError, match="data.path"):
        cfg.load_config("gpu-paper")
    config = cfg.load_config("gpu-paper", {"data.path": str(tmp_path)})
    assert config["train"]["batch_size_per_device"] == 40
    assert config["crops"]["global_crops_size"] == 518


def test_set_overrides_are_coerced_to_the_default_type():
    overrides = cfg.parse_set_arguments(
        [
            "train.epochs=3",
            "optim.base_lr=1e-3",
            "ibot.enabled=false",
            "crops.local_crops_side=[0.1, 0.3]",
        ]
    )
    config = cfg.load_config("smoke", overrides)
    assert config["train"]["epochs"] == 3
    assert config["optim"]["base_lr"] == pytest.approx(1e-3)
    assert config["ibot"]["enabled"] is False
    assert config["crops"]["local_crops_side"] == [0.1, 0.3]


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("train.epoch=3", "unknown config key 'train.epoch'"),
        ("train.epochs=three", "'train.epochs': expected an integer"),
        ("ibot.mask_sample_probability=1.5", "'ibot.mask_sample_probability'=1.5 is outside"),
        ("train.centering=softmax", "'train.centering'='softmax': choose one of"),
        ("crops.global_crops_side=[0.9, 0.5]", "need 0 < min <= max <= 1"),
        ("optim.base_lr=nan", "must be finite"),
        ("ibot.enabled=maybe", "'ibot.enabled': expected true/false"),
    ],
)
def test_bad_values_name_the_key(pair, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        cfg.load_config("smoke", cfg.parse_set_arguments([pair]))


def test_malformed_set_and_unknown_profile():
    with pytest.raises(ValueError, match="key=value"):
        cfg.parse_set_arguments(["train.epochs"])
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        cfg.load_config("fast")


def test_parse_variant_reads_names_and_overrides():
    from raddino.ssl.config import parse_variant

    assert parse_variant("as_is:") == ("as_is", {})
    name, overrides = parse_variant("wide: crops.global_crops_side=[0.9, 1.0]; train.epochs=8")
    assert name == "wide"
    assert overrides == {"crops.global_crops_side": "[0.9, 1.0]", "train.epochs": "8"}
    for bad in ("no_colon", ":train.epochs=8", "x:train.epochs"):
        with pytest.raises(ValueError, match="--variant"):
            parse_variant(bad)
