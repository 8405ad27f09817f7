"""Weight loaders: format round trips, strict key checks, no unpickling, offline hub error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import timm
import torch
from safetensors.torch import save_file

from raddino.models.backbone import build_backbone
from raddino.models.preprocessing import DINOV2_IMAGENET, RAD_DINO, Preprocessing
from raddino.models.weights import (
    convert_timm_state_dict,
    load_backbone,
    release_names,
    save_backbone,
)


def perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.1)
    return model.eval()


def official_layout(model) -> dict[str, torch.Tensor]:
    """Our state dict renamed to official DINOv2 keys (registers, SwiGLU w12/w3)."""
    out = {}
    for key, tensor in model.state_dict().items():
        key = "register_tokens" if key == "reg_token" else key
        if model.config["ffn"] == "swiglu":
            key = key.replace("mlp.fc1.", "mlp.w12.").replace("mlp.fc2.", "mlp.w3.")
        out[key] = tensor.clone()
    return out


def images(batch=2, height=70, width=98, seed=0) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def same_outputs(a, b, x=None, atol=1e-6) -> None:
    x = images() if x is None else x
    with torch.no_grad():
        out_a, out_b = a.forward_features(x), b.forward_features(x)
    for key in ("cls", "patch", "registers"):
        torch.testing.assert_close(out_a[key], out_b[key], atol=atol, rtol=0)


@pytest.fixture
def pico():
    torch.manual_seed(0)
    return perturbed(build_backbone("vit_pico", num_register_tokens=2))


# ------------------------------------------------------------------------ own checkpoints
def test_own_checkpoint_round_trip(tmp_path, pico):
    pico.preprocessing = Preprocessing(name="phantom", resize_shortest_edge=None, crop_size=None)
    pico.pos_embed_interpolation = "transformers"
    path = save_backbone(pico, tmp_path / "ckpt.safetensors")
    loaded = load_backbone(path)
    assert loaded.config == pico.config
    assert loaded.preprocessing == pico.preprocessing
    assert loaded.pos_embed_interpolation == "transformers" and not loaded.pos_embed_antialias
    assert not loaded.training
    same_outputs(pico, loaded, atol=0)
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temporary file


def test_own_checkpoint_fp16(tmp_path, pico):
    path = save_backbone(pico, tmp_path / "half.safetensors", dtype=torch.float16)
    assert (
        path.stat().st_size < 0.6 * save_backbone(pico, tmp_path / "f.safetensors").stat().st_size
    )
    loaded = load_backbone(path)
    assert loaded.cls_token.dtype == torch.float32
    same_outputs(pico, loaded, atol=5e-2)


def test_save_requires_safetensors_suffix(tmp_path, pico):
    with pytest.raises(ValueError, match="ckpt.pt: backbone checkpoints are .safetensors"):
        save_backbone(pico, tmp_path / "ckpt.pt")


# ------------------------------------------------------------------------ strictness
def test_missing_and_unexpected_keys_are_listed(tmp_path, pico):
    state = official_layout(pico)
    del state["blocks.1.ls2.gamma"], state["norm.bias"]
    state["blocks.0.attn.extra"] = torch.zeros(3)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(ValueError) as info:
        load_backbone(path)
    message = str(info.value)
    assert str(path) in message
    assert "missing keys (2): blocks.1.ls2.gamma, norm.bias" in message
    assert "unexpected keys (1): blocks.0.attn.extra" in message


def test_shape_mismatch_is_listed(tmp_path, pico):
    state = official_layout(pico)
    state["blocks.0.norm1.weight"] = torch.zeros(65)
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    with pytest.raises(ValueError, match=r"blocks.0.norm1.weight: file \(65,\) vs model \(64,\)"):
        load_backbone(path)


def test_own_checkpoint_is_strict_too(tmp_path, pico):
    path = save_backbone(pico, tmp_path / "c.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
        state = {k: handle.get_tensor(k) for k in handle.keys() if k != "mask_token"}
    save_file(state, str(path), metadata=metadata)
    with pytest.raises(ValueError, match="missing keys \\(1\\): mask_token"):
        load_backbone(path)


# ------------------------------------------------------------------------ official layouts
def test_official_pth_round_trip(tmp_path):
    model = perturbed(build_backbone("vit_pico", img_size=112))
    path = tmp_path / "dinov2_vitp14_pretrain.pth"
    torch.save(official_layout(model), path)
    loaded = load_backbone(path)
    assert loaded.preprocessing == DINOV2_IMAGENET
    assert loaded.pos_embed_interpolation == "dinov2"
    assert loaded.config["img_size"] == 112 and loaded.num_heads == 2
    same_outputs(model, loaded, atol=0)


def test_plain_state_dict_of_our_model_loads_in_dinov2_mode(tmp_path, pico):
    path = tmp_path / "state.pt"
    torch.save(pico.state_dict(), path)
    loaded = load_backbone(path)
    assert loaded.num_register_tokens == 2 and loaded.pos_embed_interpolation == "dinov2"
    same_outputs(pico, loaded, atol=0)


def test_backbone_compatible_safetensors(tmp_path):
    model = perturbed(build_backbone("vit_pico", ffn="swiglu"))
    path = tmp_path / "backbone_compatible.safetensors"
    save_file(official_layout(model), str(path))
    loaded = load_backbone(path)
    assert loaded.preprocessing == RAD_DINO  # the rad-dino repo's file
    assert loaded.pos_embed_interpolation == "dinov2" and loaded.config["ffn"] == "swiglu"
    same_outputs(model, loaded, atol=0)


def test_official_training_checkpoint_drops_heads_with_a_warning(tmp_path, pico):
    teacher = {f"backbone.{k}": v for k, v in official_layout(pico).items()}
    teacher["dino_head.last_layer.weight"] = torch.zeros(4, 4)
    path = tmp_path / "teacher_checkpoint.pth"
    torch.save({"teacher": teacher}, path)
    with pytest.warns(UserWarning, match="ignoring SSL head weights \\['dino_head'\\]"):
        loaded = load_backbone(path)
    # official register models resample as their hub configs say; compare at the native size
    assert (loaded.pos_embed_interpolation, loaded.pos_embed_antialias) == ("transformers", True)
    same_outputs(pico, loaded, x=images(2, 224, 224), atol=0)


class NotATensor:
    """A class the weights-only unpickler must refuse to construct."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_pickled_objects_are_refused(tmp_path, pico):
    state = official_layout(pico)
    path = tmp_path / "evil.pth"
    torch.save({"model": state, "extra": NotATensor()}, path)
    with pytest.raises(ValueError, match="refusing to unpickle"):
        load_backbone(path)


# ------------------------------------------------------------------------ timm
@pytest.mark.parametrize("timm_name", ["vit_small_patch14_dinov2", "vit_small_patch14_reg4_dinov2"])
def test_timm_state_dict_matches_timm_model(tmp_path, timm_name):
    torch.manual_seed(0)
    reference = perturbed(timm.create_model(timm_name, pretrained=False, img_size=56, depth=2))
    path = tmp_path / f"{timm_name}.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    loaded = load_backbone(path)
    registers = reference.num_reg_tokens
    assert loaded.num_register_tokens == registers and loaded.num_heads == 6
    assert torch.equal(loaded.mask_token, torch.zeros(1, 384))  # timm drops the mask token
    x = images(2, 56, 56)  # native size: timm's own resampling is not DINOv2's
    with torch.no_grad():
        want = reference.forward_features(x)
        got = loaded.forward_features(x)
    torch.testing.assert_close(got["cls"], want[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(got["registers"], want[:, 1 : 1 + registers], atol=1e-5, rtol=0)
    torch.testing.assert_close(
        got["patch"].flatten(1, 2), want[:, 1 + registers :], atol=1e-5, rtol=0
    )


def test_timm_reg_layout_gets_a_class_position_row():
    state = {"pos_embed": torch.ones(1, 16, 8), "cls_token": torch.ones(1, 1, 8)}
    converted = convert_timm_state_dict(state)
    assert converted["pos_embed"].shape == (1, 17, 8)
    assert torch.equal(converted["pos_embed"][:, 0], torch.zeros(1, 8))


# ------------------------------------------------------------------------ HF folder details
def write_hf_folder(folder) -> None:
    from transformers import Dinov2Config, Dinov2Model

    config = Dinov2Config(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=56, patch_size=14
    )
    Dinov2Model(config).save_pretrained(folder)


def test_hf_folder_preprocessing(tmp_path):
    rad_dino_like = tmp_path / "rad-dino"
    write_hf_folder(rad_dino_like)
    assert load_backbone(rad_dino_like).preprocessing == RAD_DINO  # no processor json: by name
    other = tmp_path / "some-dinov2"
    write_hf_folder(other)
    assert load_backbone(other).preprocessing == DINOV2_IMAGENET
    processor = {  # microsoft/rad-dino's preprocessor_config.json
        "crop_size": {"height": 518, "width": 518},
        "do_center_crop": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.5307, 0.5307, 0.5307],
        "image_processor_type": "BitImageProcessor",
        "image_std": [0.2583, 0.2583, 0.2583],
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "size": {"shortest_edge": 518},
    }
    (other / "preprocessor_config.json").write_text(json.dumps(processor))
    assert load_backbone(other).preprocessing == RAD_DINO
    processor["image_mean"] = [0.5, 0.5, 0.5]
    (other / "preprocessor_config.json").write_text(json.dumps(processor))
    custom = load_backbone(other).preprocessing
    assert custom.mean == (0.5, 0.5, 0.5) and custom.crop_size == 518
    processor["size"] = {"height": 10, "width": 12}
    (other / "preprocessor_config.json").write_text(json.dumps(processor))
    with pytest.raises(ValueError, match="preprocessor_config.json: 'size'"):
        load_backbone(other)


def test_hf_folder_errors(tmp_path):
    folder = tmp_path / "hf"
    write_hf_folder(folder)
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="need config.json"):
        load_backbone(folder)
    with pytest.raises(ValueError, match="pass the folder"):
        load_backbone(folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"model_type": "vit", "hidden_size": 8}))
    with pytest.raises(ValueError, match="model_type 'vit' is not dinov2"):
        load_backbone(folder)


# ------------------------------------------------------------------------ names and sources
def test_release_names_resolve_in_the_release_folder(tmp_path, monkeypatch, pico):
    from raddino.models import weights

    monkeypatch.setattr(weights, "RELEASE_DIR", tmp_path)
    save_backbone(pico, tmp_path / "phantom.safetensors", dtype=torch.float16)
    assert release_names() == ["phantom"]
    same_outputs(pico, load_backbone("raddino:phantom"), atol=5e-2)
    with pytest.raises(FileNotFoundError, match="available: phantom"):
        load_backbone("raddino:other")


def test_release_name_errors_list_available():
    with pytest.raises(FileNotFoundError, match="no release checkpoint 'nope'; available: "):
        load_backbone("raddino:nope")
    assert isinstance(release_names(), list)


def test_missing_path_and_unknown_suffix(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found; expected a Hugging Face folder"):
        load_backbone(tmp_path / "absent.safetensors")
    with pytest.raises(FileNotFoundError, match="'runs/absent.pth' not found"):
        load_backbone("runs/absent.pth")  # looks like owner/name, but is a missing file
    odd = tmp_path / "weights.npz"
    odd.write_bytes(b"0")
    with pytest.raises(ValueError, match="unknown weights file type '.npz'"):
        load_backbone(odd)


def test_offline_hub_id_gives_a_clear_error(tmp_path):
    """With HF_HUB_OFFLINE=1 and an empty cache, a hub id fails with advice, not a traceback."""
    script = textwrap.dedent(
        """
        from raddino.models.weights import load_backbone
        try:
            load_backbone("microsoft/rad-dino")
        except FileNotFoundError as err:
            print("ERROR:", err)
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "ERROR: could not fetch 'microsoft/rad-dino' from the Hugging Face Hub" in result.stdout
    assert "--local-dir" in result.stdout and "pass its path" in result.stdout
