"""Every encoder kind on random weights: shapes, and "cls"/"patch" equal to what each library's
own forward gives (timm, transformers, open_clip, our backbone); spec and size errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_models import tiny_dinov2_folder

from raddino.models.encoders import Encoder, get_encoder
from raddino.models.preprocessing import preprocess_batch, with_crop_size


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.random((90, 120)).astype(np.float32), rng.random((130, 100)).astype(np.float32)]


@pytest.fixture(scope="module")
def hf_clip_folder(tmp_path_factory):
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    folder = tmp_path_factory.mktemp("hf_clip")
    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=56,
        patch_size=14,
    )
    CLIPVisionModel(config).save_pretrained(folder)
    size = {"shortest_edge": 56}
    CLIPImageProcessor(size=size, crop_size={"height": 56, "width": 56}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def hf_dinov2_folder(tmp_path_factory):
    return tiny_dinov2_folder(tmp_path_factory.mktemp("hf_dinov2"))


@pytest.fixture(scope="module")
def open_clip_config(tmp_path_factory):
    config = {
        "embed_dim": 16,
        "vision_cfg": {
            "image_size": 56,
            "layers": 2,
            "width": 32,
            "head_width": 16,
            "patch_size": 14,
        },
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
    }
    path = tmp_path_factory.mktemp("open_clip") / "tiny-test-clip.json"
    path.write_text(json.dumps(config))
    return path


def check_shapes(encoder: Encoder, x_bchw: torch.Tensor, out: dict, grid: int) -> None:
    assert out["cls"].shape == (len(x_bchw), encoder.embed_dim)
    assert out["patch"].shape == (len(x_bchw), grid, grid, encoder.embed_dim)
    assert (
        encoder.grid_size() == (grid, grid) or x_bchw.shape[-1] != encoder.preprocessing.crop_size
    )


def test_our_backbone_matches_its_forward(images):
    encoder = get_encoder("random:vit_pico")
    assert encoder.kind == "raddino" and encoder.token == "cls" and encoder.patch_size == 14
    x = encoder.prepare(images, size=56)
    out = encoder.features(x)
    with torch.no_grad():
        reference = encoder.model.forward_features(x)
    torch.testing.assert_close(out["cls"], reference["cls"])
    torch.testing.assert_close(out["patch"], reference["patch"])
    check_shapes(encoder, x, out, 4)
    last_two = encoder.intermediate(x, 2)
    assert len(last_two) == 2 and last_two[0].shape == (2, 4, 4, 64)
    torch.testing.assert_close(last_two[-1], out["patch"])  # last block, final-normed
    chosen = encoder.intermediate(x, [0, -1])
    torch.testing.assert_close(chosen[1], out["patch"])
    # the same weights from a seed, and other weights from another
    same = get_encoder("random:vit_pico@0").features(x)["cls"]
    torch.testing.assert_close(same, out["cls"])
    assert not torch.allclose(get_encoder("random:vit_pico@1").features(x)["cls"], out["cls"])


def test_prepare_equals_preprocess_batch_with_crop_size(images):
    encoder = get_encoder("random:vit_pico")
    expected = preprocess_batch(images, with_crop_size(encoder.preprocessing, 70))
    torch.testing.assert_close(encoder.prepare(images, size=70), expected)
    features_from_images = encoder.features(images)  # (H, W) arrays: native preprocessing
    assert features_from_images["patch"].shape == (2, 37, 37, 64)


def test_pixel_baseline(images):
    encoder = get_encoder("pixels:8")
    assert encoder.patch_size is None and encoder.embed_dim == 64
    x = encoder.prepare(images)
    assert x.shape == (2, 1, 8, 8)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0  # raw intensities, not normalised
    out = encoder.features(x)
    torch.testing.assert_close(out["cls"], x.flatten(1))
    assert out["patch"].shape == (2, 8, 8, 1)
    assert encoder.grid_size() == (8, 8)
    assert [g.shape for g in encoder.intermediate(x, 3)] == [(2, 8, 8, 1)] * 3
    assert get_encoder("pixels").embed_dim == 32 * 32
    # a constant image stays constant after downsampling
    flat = encoder.features([np.full((50, 50), 0.4, dtype=np.float32)])["cls"]
    torch.testing.assert_close(flat, torch.full((1, 64), round(0.4 * 255) / 255))


@pytest.mark.parametrize(
    ("model_name", "token", "crop", "grid"),
    [("test_vit", "cls", 160, 10), ("test_resnet", "pooled", 160, 5)],
)
def test_timm_matches_timm_forward(images, model_name, token, crop, grid, tmp_path):
    encoder = get_encoder(f"timm:{model_name}")
    assert encoder.token == token
    x = encoder.prepare(images)
    assert x.shape == (2, 3, crop, crop)
    out = encoder.features(x)
    with torch.no_grad():
        pooled = encoder.model(x)  # timm with num_classes=0: the pooled pre-logits feature
    torch.testing.assert_close(out["cls"], pooled)
    check_shapes(encoder, x, out, grid)
    maps = encoder.intermediate(x, 2)
    assert len(maps) == 2 and maps[-1].shape[1:3] == (grid, grid)
    # weights from a file give back the same model
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in encoder.model.state_dict().items()}, str(path))
    reloaded = get_encoder(f"timm:{model_name}@{path}")
    torch.testing.assert_close(reloaded.features(x)["cls"], out["cls"])


def test_timm_bad_weights_and_names(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "bad.safetensors"
    save_file({"not_a_key": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="does not fit"):
        get_encoder(f"timm:test_vit@{path}")
    with pytest.raises(FileNotFoundError):
        get_encoder(f"timm:test_vit@{tmp_path / 'missing.pth'}")
    with pytest.raises(ValueError, match="no_such_model"):
        get_encoder("timm:no_such_model")


def test_hf_clip_vision_matches_pooler(images, hf_clip_folder):
    from transformers import CLIPVisionModel

    encoder = get_encoder(f"hf:{hf_clip_folder}")
    assert encoder.kind == "hf" and encoder.embed_dim == 32 and encoder.patch_size == 14
    assert encoder.preprocessing.crop_size == 56
    x = encoder.prepare(images)
    out = encoder.features(x)
    reference = CLIPVisionModel.from_pretrained(hf_clip_folder).eval()
    with torch.no_grad():
        expected = reference(pixel_values=x)
    torch.testing.assert_close(out["cls"], expected.pooler_output)
    torch.testing.assert_close(out["patch"].reshape(2, 16, 32), expected.last_hidden_state[:, 1:])
    check_shapes(encoder, x, out, 4)
    bigger = encoder.features(encoder.prepare(images, size=84))  # position embeddings resampled
    assert bigger["patch"].shape == (2, 6, 6, 32)
    assert len(encoder.intermediate(x, [0, 1])) == 2


def test_hf_dinov2_matches_pooler(images, hf_dinov2_folder):
    from transformers import Dinov2Model

    with pytest.warns(UserWarning, match="preprocessor_config.json"):
        encoder = get_encoder(f"hf:{hf_dinov2_folder}")
    x = encoder.prepare(images)
    out = encoder.features(x)
    reference = Dinov2Model.from_pretrained(hf_dinov2_folder).eval()
    with torch.no_grad():
        expected = reference(pixel_values=x, output_hidden_states=True)
    torch.testing.assert_close(out["cls"], expected.pooler_output)  # layernorm(CLS)
    grids = encoder.intermediate(x, 3)
    torch.testing.assert_close(grids[-1], out["patch"])
    normed_first = reference.layernorm(expected.hidden_states[1])[:, 1:]
    torch.testing.assert_close(grids[0].reshape(2, 16, 32), normed_first)
    with pytest.raises(FileNotFoundError, match="config.json"):
        get_encoder(f"hf:{hf_dinov2_folder / 'nothing'}")


def test_open_clip_matches_encode_image(images, open_clip_config):
    encoder = get_encoder(f"open_clip:{open_clip_config}")
    assert encoder.kind == "open_clip" and encoder.embed_dim == 32
    x = encoder.prepare(images)
    out = encoder.features(x)
    with torch.no_grad():
        embedding = encoder.model(x)  # the tower's projected image embedding
    torch.testing.assert_close(out["cls"] @ encoder.model.proj, embedding)
    check_shapes(encoder, x, out, 4)
    assert [g.shape for g in encoder.intermediate(x, 2)] == [(2, 4, 4, 32)] * 2
    with pytest.raises(ValueError, match="56 px inputs only"):
        encoder.prepare(images, size=84)
    with pytest.raises(FileNotFoundError):
        get_encoder(f"open_clip:{open_clip_config}@{open_clip_config.parent / 'no.pt'}")


def test_spec_errors(tmp_path):
    with pytest.raises(ValueError, match="not a valid size"):
        get_encoder("pixels:0")
    with pytest.raises(ValueError, match="unknown backbone config"):
        get_encoder("random:vit_nope")
    with pytest.raises(FileNotFoundError):
        get_encoder(str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match="empty"):
        get_encoder(" ")
    encoder = get_encoder("random:vit_pico")
    with pytest.raises(ValueError, match="not a multiple"):
        encoder.prepare([np.zeros((30, 30), np.float32)], size=50)
    with pytest.raises(ValueError, match="pixels:16"):
        get_encoder("pixels:8").prepare([np.zeros((30, 30), np.float32)], size=16)


def test_release_or_saved_checkpoint_loads_as_encoder(tmp_path, images):
    from raddino.models.backbone import build_backbone
    from raddino.models.weights import save_backbone

    torch.manual_seed(0)
    backbone = build_backbone("vit_pico")
    path = save_backbone(backbone, tmp_path / "pico.safetensors")
    encoder = get_encoder(str(path))
    x = encoder.prepare(images, size=28)
    with torch.no_grad():
        torch.testing.assert_close(encoder.features(x)["cls"], backbone.eval()(x))


def test_hf_two_tower_clip_uses_its_vision_side(images, tmp_path):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "vocab_size": 64,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 28,
            "patch_size": 14,
        },
        projection_dim=8,
    )
    model = CLIPModel(config).eval()
    model.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="preprocessor_config.json"):
        encoder = get_encoder(f"hf:{tmp_path}")
    x = encoder.prepare(images)
    with torch.no_grad():
        expected = model.vision_model(pixel_values=x).pooler_output
    torch.testing.assert_close(encoder.features(x)["cls"], expected)
    assert encoder.features(x)["patch"].shape == (2, 2, 2, 32)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            get_encoder("pixels:8", device="cuda")
