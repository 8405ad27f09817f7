"""Segmentation heads on frozen features: shapes, training improves the loss, the backbone stays
frozen and runs once, subject-level splits, few-shot curve, CLI and bad-input errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from raddino.cli import main
from raddino.data.dataset_folder import DatasetFolder, write_phantom_folder
from raddino.data.phantom.config import PhantomConfig
from raddino.eval import segment
from raddino.eval.patch_grids import extract_patch_grids, load_patch_encoder
from raddino.eval.segment import (
    few_shot_curve,
    fit_and_score,
    load_segmentation_set,
    run_segmentation,
    split_rows,
)
from raddino.eval.segment_heads import HEAD_KINDS, build_head
from raddino.eval.segment_train import HeadTrainConfig, mean_loss, train_head

STRUCTURES = ["left_lung", "right_lung", "heart", "ribs", "chest_tube"]
WEIGHTS = "random:vit_pico"  # depth 2: the 4-level pyramid repeats block 0


@pytest.fixture(scope="session")
def seg_folder(tmp_path_factory) -> DatasetFolder:
    root = tmp_path_factory.mktemp("segment") / "phantom"
    return write_phantom_folder(root, 24, PhantomConfig(size=112), seed=0, progress=False)


@pytest.fixture(scope="session")
def seg_inputs(seg_folder):
    """Masks at 56 px, frozen features of 4 layers at 112 px, and the images (U-Net)."""
    encoder = load_patch_encoder(WEIGHTS)
    data = load_segmentation_set(
        seg_folder, STRUCTURES, encoder.preprocessing_at(112), 56, progress=False
    )
    grids = extract_patch_grids(
        encoder, seg_folder.read_image, len(seg_folder), layers=4, size=112, progress=False
    )
    return data, grids


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_head_output_shapes(kind):
    torch.manual_seed(0)
    head = build_head(kind, 16, 3, channels=8)
    if kind == "unet":
        out = head(torch.randn(2, 1, 50, 50))  # padded to 64 inside, cropped back
        assert out.shape == (2, 3, 50, 50)
        return
    features = torch.randn(2, 4, 16, 9, 9)  # odd grid: the x1/2 level rounds up
    out = head(features)
    expected_hw = (9, 9) if kind == "linear" else (36, 36)  # pyramid heads predict at x4
    assert out.shape == (2, 3, *expected_hw)


def test_unknown_head_is_refused():
    with pytest.raises(ValueError, match="unknown head 'fpn'"):
        build_head("fpn", 16, 3)


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_each_head_trains_and_improves_the_loss(kind, seg_inputs):
    data, grids = seg_inputs
    inputs = data.images_n1hw if kind == "unet" else (grids[:, -1:] if kind == "linear" else grids)
    rows = np.arange(4 if kind == "unet" else 8)  # the U-Net is the costly one on a CPU
    config = HeadTrainConfig(epochs=4 if kind != "unet" else 3, batch_size=4, lr=2e-3)
    torch.manual_seed(0)
    head = build_head(kind, grids.shape[2], len(STRUCTURES), channels=16)
    before = mean_loss(head, inputs, data.masks_nshw, data.defined_ns, rows, config)
    history = train_head(
        head, inputs, data.masks_nshw, data.defined_ns, rows, [], config, progress=False
    )
    after = mean_loss(head, inputs, data.masks_nshw, data.defined_ns, rows, config)
    assert len(history["train_loss"]) == config.epochs
    assert history["train_loss"][-1] < history["train_loss"][0]
    if kind != "unet":  # the U-Net's BatchNorm running statistics need more than 3 steps
        assert after < before


def test_best_validation_epoch_is_kept(seg_inputs):
    data, grids = seg_inputs
    config = HeadTrainConfig(epochs=5, batch_size=4, lr=5e-3)
    head = build_head("linear", grids.shape[2], len(STRUCTURES))
    history = train_head(
        head,
        grids[:, -1:],
        data.masks_nshw,
        data.defined_ns,
        range(12),
        range(12, 16),
        config,
        progress=False,
    )
    best = int(np.argmin(history["val_loss"]))
    assert history["best_epoch"] == best
    final = mean_loss(head, grids[:, -1:], data.masks_nshw, data.defined_ns, range(12, 16), config)
    assert final == pytest.approx(history["val_loss"][best], rel=1e-5)


def test_masks_follow_the_model_frame(seg_folder, seg_inputs):
    data, _ = seg_inputs
    assert data.masks_nshw.shape == (24, len(STRUCTURES), 56, 56)
    assert data.images_n1hw.shape == (24, 1, 56, 56)
    # lungs are defined on every frontal phantom and cover a sizeable area
    assert data.defined_ns[:, 0].all()
    lung_fraction = data.masks_nshw[:, 0].float().mean().item()
    original = np.mean([seg_folder.read_mask("left_lung", i).mean() for i in range(24)])
    assert lung_fraction == pytest.approx(original, abs=0.02)


def test_split_is_by_subject(seg_folder):
    rows = split_rows(seg_folder, seed=1)
    subjects = seg_folder.table["subject_id"].to_numpy()
    seen = [set(subjects[r]) for r in rows.values()]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    assert sum(len(r) for r in rows.values()) == len(seg_folder)
    assert len(rows["train"]) > len(rows["val"]) > 0 and len(rows["test"]) > 0


def test_backbone_runs_once_and_stays_frozen(seg_folder, monkeypatch):
    encoder = load_patch_encoder(WEIGHTS)
    state_before = {k: v.clone() for k, v in encoder.state_dict().items()}
    calls = {"prepare": 0}
    original_prepare = encoder.prepare

    def counting_prepare(images, size=None):
        calls["prepare"] += 1
        return original_prepare(images, size)

    monkeypatch.setattr(encoder, "prepare", counting_prepare)
    monkeypatch.setattr(
        "raddino.eval.patch_grids.load_patch_encoder", lambda spec, device="cpu": encoder
    )
    metrics, _ = run_segmentation(
        str(seg_folder.root),
        WEIGHTS,
        "linear",
        structures=STRUCTURES,
        size=112,
        config=HeadTrainConfig(epochs=3, batch_size=4),
        progress=False,
    )
    assert calls["prepare"] == 2  # 24 images in batches of 16, whatever the number of epochs
    for name, value in encoder.state_dict().items():
        assert torch.equal(value, state_before[name]), name
    assert all(p.grad is None for p in encoder.parameters())
    assert set(STRUCTURES) <= set(metrics["dice"])


def test_fit_and_score_reports_dice_per_structure(seg_folder, seg_inputs):
    data, grids = seg_inputs
    rows = split_rows(seg_folder)
    result = fit_and_score(
        "vitdet",
        grids,
        data,
        rows,
        HeadTrainConfig(epochs=2, batch_size=4),
        channels=16,
        progress=False,
    )
    n_test = len(rows["test"])
    assert result["dice_per_image"].shape == (n_test, len(STRUCTURES))
    assert result["predicted"].shape == (n_test, len(STRUCTURES), 56, 56)
    for name in STRUCTURES:
        stats = result["dice"][name]
        assert stats["n"] == n_test and 0.0 <= stats["mean"] <= 1.0
    assert "lungs" in result["dice"]


def test_few_shot_curve(seg_folder, seg_inputs):
    data, grids = seg_inputs
    rows = split_rows(seg_folder)
    config = HeadTrainConfig(epochs=1, batch_size=4)
    curve = few_shot_curve("linear", grids[:, -1:], data, rows, [1, 4], config)
    assert [point["n_train"] for point in curve] == [1, 4]
    assert all("left_lung" in point["dice"] for point in curve)
    with pytest.raises(ValueError, match="few-shot size 999"):
        few_shot_curve("linear", grids[:, -1:], data, rows, [999], config)


def test_segment_encoders_scores_each_encoder_on_one_split(seg_folder, tmp_path):
    from raddino.eval.ablations import segment_encoders

    rows = split_rows(seg_folder)
    config = HeadTrainConfig(epochs=2, batch_size=4)
    encoders = {"a": WEIGHTS, "b": "random:vit_tiny", "a again": WEIGHTS}
    results = segment_encoders(
        encoders, seg_folder, STRUCTURES, config, size=112, runs_root=str(tmp_path)
    )
    assert list(results) == list(encoders)
    for result in results.values():
        np.testing.assert_array_equal(result["rows"]["test"], rows["test"])
    assert len(list((tmp_path / "patch_grids").glob("*.json"))) == 2  # one entry per encoder
    # the same encoder and head seed on the same split: the same test Dice, image by image
    np.testing.assert_array_equal(
        results["a"]["dice_per_image"], results["a again"]["dice_per_image"]
    )
    assert not np.array_equal(results["a"]["dice_per_image"], results["b"]["dice_per_image"])
    # and what fit_and_score gives on the same inputs, at the encoder's own input side
    encoder = load_patch_encoder(WEIGHTS)
    data = load_segmentation_set(
        seg_folder, STRUCTURES, encoder.preprocessing_at(112), 112, progress=False
    )
    grids = extract_patch_grids(
        encoder, seg_folder.read_image, len(seg_folder), layers=1, size=112, progress=False
    )
    direct = fit_and_score("linear", grids, data, rows, config, progress=False)
    np.testing.assert_allclose(results["a"]["dice_per_image"], direct["dice_per_image"])


def test_cli_writes_metrics_and_figure(seg_folder, tmp_path):
    out, figure = tmp_path / "seg.json", tmp_path / "seg.png"
    code = main(
        [
            "segment",
            "--data", str(seg_folder.root),
            "--weights", WEIGHTS,
            "--head", "linear",
            "--size", "112",
            "--epochs", "1",
            "--structures", "left_lung,right_lung",
            "--out", str(out),
            "--figure", str(figure),
        ]
    )  # fmt: skip
    assert code == 0
    record = json.loads(out.read_text())
    assert record["evaluation"] == "segmentation"
    assert set(record["metrics"]["dice"]) == {"left_lung", "right_lung", "lungs"}
    assert record["config"]["head"] == "linear" and record["config"]["epochs"] == 1
    with Image.open(figure) as image:
        assert image.format == "PNG" and image.size[0] > 100


def test_cli_bad_structure_is_a_one_line_error(seg_folder, tmp_path, capsys):
    code = main(
        [
            "segment",
            "--data", str(seg_folder.root),
            "--weights", WEIGHTS,
            "--structures", "spleen",
            "--out", str(tmp_path / "m.json"),
        ]
    )  # fmt: skip
    assert code == 2
    assert "spleen" in capsys.readouterr().err


def test_mask_of_wrong_size_is_named(seg_folder, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(seg_folder.root, copy)
    folder = DatasetFolder.open(copy)
    bad_path = folder.mask_path("heart", 3)
    Image.fromarray(np.zeros((50, 60), dtype=np.uint8)).save(bad_path)
    with pytest.raises(ValueError, match=f"{bad_path.name}.*differs from image size"):
        load_segmentation_set(folder, ["heart"], load_patch_encoder(WEIGHTS).preprocessing, 56)


def test_empty_test_split_is_refused(seg_inputs):
    data, grids = seg_inputs
    rows = {"train": np.arange(4), "val": np.arange(4, 6), "test": np.arange(0)}
    with pytest.raises(ValueError, match="test split is empty"):
        segment.fit_and_score("linear", grids, data, rows, HeadTrainConfig(epochs=1))


def test_bad_train_config_is_named():
    with pytest.raises(ValueError, match="epochs"):
        HeadTrainConfig(epochs=0).validate()
    with pytest.raises(ValueError, match="lr"):
        HeadTrainConfig(lr=0).validate()


def test_feature_cache_skips_the_encoder_on_rerun(seg_folder, tmp_path, monkeypatch):
    from raddino.eval.patch_grids import cached_patch_grids

    encoder = load_patch_encoder(WEIGHTS)
    first = cached_patch_grids(encoder, seg_folder, tmp_path, layers=4, size=112, progress=False)
    assert len(list(tmp_path.glob("patch-grids-*.safetensors"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("the encoder ran although the features were cached")

    monkeypatch.setattr(encoder, "prepare", fail)
    again = cached_patch_grids(encoder, seg_folder, tmp_path, layers=4, size=112, progress=False)
    assert torch.equal(first, again) and again.shape == (24, 4, 64, 8, 8)
    with pytest.raises(AssertionError, match="the encoder ran"):  # other settings: a new entry
        cached_patch_grids(encoder, seg_folder, tmp_path, layers=1, size=112, progress=False)


@pytest.mark.parametrize(
    "in_hw, out_hw", [((8, 8), (112, 112)), ((5, 7), (40, 21)), ((16, 9), (8, 9))]
)
def test_bilinear_resize_matches_interpolate_values_and_gradients(in_hw, out_hw):
    from raddino.eval.segment_train import bilinear_resize

    torch.manual_seed(0)
    logits = torch.randn(3, 4, *in_hw, requires_grad=True)
    weights = torch.randn(3, 4, *out_hw)  # a loss that weighs every output pixel differently
    reference = torch.nn.functional.interpolate(
        logits, size=out_hw, mode="bilinear", align_corners=False
    )
    (grad_reference,) = torch.autograd.grad((reference * weights).sum(), logits)
    resized = bilinear_resize(logits, out_hw)
    (grad,) = torch.autograd.grad((resized * weights).sum(), logits)
    assert resized.shape == reference.shape
    torch.testing.assert_close(resized, reference, rtol=0, atol=1e-5)
    # each input pixel's gradient sums ~200 weighted outputs: compare relative to its size
    torch.testing.assert_close(grad, grad_reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_bce_with_logits_matches_torch_and_float64(scale):
    """Our elementwise BCE (torch's CPU log_sigmoid is slow) against torch's, in float32 and in
    float64, including logits where exp(-|x|) underflows or 1 + exp(-|x|) rounds to 1."""
    from raddino.eval.segment_train import binary_cross_entropy_with_logits

    torch.manual_seed(0)
    logits = torch.randn(4, 3, 16, 16) * scale
    logits[0, 0, 0, :8] = torch.tensor([-200.0, -100.0, -17.0, -1e-8, 0.0, 1e-8, 17.0, 200.0])
    truth = (torch.rand_like(logits) > 0.6).float()
    truth[1, 1] = 0.3  # soft targets follow the same formula
    logits.requires_grad_(True)
    ours = binary_cross_entropy_with_logits(logits, truth)
    torchs = torch.nn.functional.binary_cross_entropy_with_logits(logits, truth, reduction="none")
    exact = torch.nn.functional.binary_cross_entropy_with_logits(
        logits.double(), truth.double(), reduction="none"
    )
    torch.testing.assert_close(ours, torchs, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours.double(), exact, rtol=1e-6, atol=1e-6)
    weights = torch.randn_like(logits)
    (grad,) = torch.autograd.grad((ours * weights).sum(), logits)
    (grad_torch,) = torch.autograd.grad((torchs * weights).sum(), logits)
    torch.testing.assert_close(grad, grad_torch, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="differ"):
        binary_cross_entropy_with_logits(logits, truth[:, :2])


def _weighted_loss_reference(logits, truth, defined):
    """BCE + pooled soft Dice over defined (image, structure) pairs, every term weighted."""
    from raddino.eval.segment_train import binary_cross_entropy_with_logits

    weight = defined.float()
    bce = binary_cross_entropy_with_logits(logits, truth.float()).mean((2, 3))
    loss = (bce * weight).sum() / weight.sum()
    probs = torch.sigmoid(logits) * weight[:, :, None, None]
    target = truth.float() * weight[:, :, None, None]
    dice = (2 * (probs * target).sum((0, 2, 3)) + 1) / (
        probs.sum((0, 2, 3)) + target.sum((0, 2, 3)) + 1
    )
    return loss + (1 - dice).mean()


@pytest.mark.parametrize("undefined", [None, (1, 2)])
def test_segmentation_loss_matches_the_weighted_formula(undefined):
    """With every pair defined the loss skips the weights (times 1.0): the same value and
    gradient as the weighted formula, bit for bit; an undefined pair gets no gradient."""
    from raddino.eval.segment_train import segmentation_loss

    torch.manual_seed(0)
    logits = torch.randn(4, 3, 10, 10, requires_grad=True)
    truth = torch.rand(4, 3, 10, 10) > 0.6
    defined = torch.ones(4, 3, dtype=torch.bool)
    if undefined is not None:
        defined[undefined] = False
    loss = segmentation_loss(logits, truth, defined)
    reference = _weighted_loss_reference(logits, truth, defined)
    (grad,) = torch.autograd.grad(loss, logits)
    (grad_reference,) = torch.autograd.grad(reference, logits)
    assert torch.equal(loss, reference) and torch.equal(grad, grad_reference)
    if undefined is not None:
        assert grad[undefined].abs().max() == 0 and grad[0, 2].abs().max() > 0
