"""Feature cache: rows equal a direct forward pass, a hit does not recompute, the key follows
weights / resolution / dataset, `raddino embed` outputs load, bad inputs are clear errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from raddino.data.dataset_folder import DatasetFolder
from raddino.eval.features import (
    FeatureSet,
    extract,
    load_features,
    open_dataset,
    read_safetensors_memmap,
)
from raddino.models.encoders import get_encoder


@pytest.fixture(scope="session")
def phantom_folder(tmp_path_factory):
    from raddino.data.dataset_folder import write_phantom_folder
    from raddino.data.phantom.config import PhantomConfig

    root = tmp_path_factory.mktemp("features_phantom") / "data"
    write_phantom_folder(root, 24, PhantomConfig(size=112), seed=0, progress=False)
    return root


class CountingEncoder:
    """Wraps an Encoder's forward_features to count the images it embeds."""

    def __init__(self, encoder):
        self.encoder, self.images = encoder, 0
        original = encoder.forward_features

        def counted(x_bchw):
            self.images += len(x_bchw)
            return original(x_bchw)

        encoder.forward_features = counted


def test_rows_equal_a_direct_forward_pass(phantom_folder, tmp_path):
    encoder = get_encoder("random:vit_pico")
    features = extract(encoder, phantom_folder, size=56, cache_dir=tmp_path, batch_size=10)
    folder = open_dataset(phantom_folder)
    assert features.ids == folder.table["image"].tolist()
    rows = [0, 13, 23]
    images = [folder.read_image(i) for i in rows]
    direct = encoder.features(encoder.prepare(images, size=56))
    np.testing.assert_allclose(features["cls"][rows], direct["cls"].numpy(), atol=1e-5)
    patch_mean = direct["patch"].mean(dim=(1, 2)).numpy()
    np.testing.assert_allclose(features["patch_mean"][rows], patch_mean, atol=1e-5)
    np.testing.assert_array_equal(features.labels(), folder.labels_array())
    assert list(features.subjects) == folder.table["subject_id"].tolist()
    assert isinstance(features["cls"], np.memmap)


def test_cache_hit_does_not_recompute(phantom_folder, tmp_path):
    counter = CountingEncoder(get_encoder("random:vit_pico"))
    first = extract(counter.encoder, phantom_folder, size=28, cache_dir=tmp_path)
    assert counter.images == 24
    second = extract(counter.encoder, phantom_folder, size=28, cache_dir=tmp_path)
    assert counter.images == 24  # nothing embedded the second time
    assert second.path == first.path
    np.testing.assert_array_equal(second["cls"], first["cls"])


def test_cache_key_follows_weights_resolution_and_dataset(phantom_folder, tmp_path):
    cache = tmp_path / "cache"
    base = extract("random:vit_pico@0", phantom_folder, size=28, cache_dir=cache).path
    assert extract("random:vit_pico@0", phantom_folder, size=28, cache_dir=cache).path == base
    other_weights = extract("random:vit_pico@1", phantom_folder, size=28, cache_dir=cache)
    other_size = extract("random:vit_pico@0", phantom_folder, size=42, cache_dir=cache)
    copy = tmp_path / "copy"
    shutil.copytree(phantom_folder, copy)
    labels_csv = copy / "labels.csv"
    lines = labels_csv.read_text().splitlines()
    labels_csv.write_text("\n".join([lines[0], *lines[2:], lines[1]]) + "\n")  # rows reordered
    other_data = extract("random:vit_pico@0", copy, size=28, cache_dir=cache)
    paths = {base, other_weights.path, other_size.path, other_data.path}
    assert len(paths) == 4
    # the reordered dataset's rows follow its own labels.csv
    assert other_data.ids[-1] == open_dataset(phantom_folder).table["image"].iat[0]


def test_pixel_baseline_features(phantom_folder, tmp_path):
    features = extract("pixels:8", phantom_folder, cache_dir=tmp_path)
    assert sorted(features.arrays) == ["cls"]
    assert features["cls"].shape == (24, 64)
    encoder = get_encoder("pixels:8")
    image = open_dataset(phantom_folder).read_image(5)
    np.testing.assert_allclose(
        features["cls"][5], encoder.prepare([image]).flatten().numpy(), atol=1e-6
    )
    with pytest.raises(ValueError, match="no tokens to pool"):
        extract("pixels:8", phantom_folder, which=("patch_mean",), cache_dir=tmp_path)
    with pytest.raises(ValueError, match="which="):
        extract("pixels:8", phantom_folder, which=("patches",), cache_dir=tmp_path)


def test_load_features_from_raddino_embed(phantom_folder, tmp_path):
    from raddino.embed import EmbedOptions, embed_dataset

    out = tmp_path / "emb.safetensors"
    embed_dataset(phantom_folder, "random:vit_pico", out, EmbedOptions(size=28, patch_mean=True))
    features = load_features(out, phantom_folder)
    assert features["cls"].shape == (24, 64) and features["patch_mean"].shape == (24, 64)
    np.testing.assert_array_equal(features.labels(), open_dataset(phantom_folder).labels_array())
    other = tmp_path / "other"
    shutil.copytree(phantom_folder, other)
    text = (other / "labels.csv").read_text().replace("phantom_000003.png", "renamed.png")
    (other / "labels.csv").write_text(text)
    with pytest.raises(ValueError, match="phantom_000003.png.*not in"):
        load_features(out, DatasetFolder.open(other, check_images=False))
    with pytest.raises(FileNotFoundError):
        load_features(tmp_path / "missing.safetensors", phantom_folder)


def test_memmap_reader_matches_safetensors(tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    tensors = {
        "a": rng.standard_normal((5, 3)).astype(np.float32),
        "b": rng.standard_normal((5, 2, 2)).astype(np.float16),
    }
    path = tmp_path / "t.safetensors"
    save_file(tensors, str(path))
    mapped = read_safetensors_memmap(path)
    for name, array in load_file(str(path)).items():
        np.testing.assert_array_equal(mapped[name], array)
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(ValueError, match="does not fit the file"):
        read_safetensors_memmap(path)


def test_bad_inputs_are_clear_errors(phantom_folder, tmp_path):
    folder = open_dataset(phantom_folder)
    ids = folder.table["image"].tolist()
    with pytest.raises(ValueError, match="24 feature rows but 23 label rows"):
        FeatureSet({"cls": np.zeros((24, 4))}, ids, folder.table.iloc[:23], folder.label_names)
    with pytest.raises(ValueError, match="'cls' has shape"):
        FeatureSet({"cls": np.zeros((23, 4))}, ids, folder.table, folder.label_names)
    empty = tmp_path / "empty"
    shutil.copytree(phantom_folder, empty)
    header = (empty / "labels.csv").read_text().splitlines()[0]
    (empty / "labels.csv").write_text(header + "\n")
    (empty / "landmarks.csv").unlink(missing_ok=True)
    (empty / "reports.csv").unlink(missing_ok=True)
    with pytest.raises(ValueError, match="empty dataset"):
        extract("pixels:8", empty, cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError):
        extract("pixels:8", tmp_path / "nowhere", cache_dir=tmp_path)


def test_extraction_is_deterministic_across_batch_sizes(phantom_folder, tmp_path):
    torch.manual_seed(123)  # must not matter: random:<arch> weights are seeded by the spec
    a = extract("random:vit_pico", phantom_folder, size=28, cache_dir=tmp_path / "a", batch_size=5)
    b = extract("random:vit_pico", phantom_folder, size=28, cache_dir=tmp_path / "b", batch_size=24)
    np.testing.assert_allclose(a["cls"], b["cls"], atol=1e-5)


def test_interrupted_extraction_resumes_without_redoing_rows(phantom_folder, tmp_path):
    encoder = get_encoder("random:vit_pico")
    original = encoder.forward_features
    calls = {"images": 0, "fail_after": 2}

    def flaky(x_bchw):
        if calls["fail_after"] == 0:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C during the third batch
        calls["fail_after"] -= 1
        calls["images"] += len(x_bchw)
        return original(x_bchw)

    encoder.forward_features = flaky
    with pytest.raises(KeyboardInterrupt):
        extract(encoder, phantom_folder, size=28, cache_dir=tmp_path, batch_size=5)
    assert calls["images"] == 10
    calls["fail_after"] = 100
    resumed = extract(encoder, phantom_folder, size=28, cache_dir=tmp_path, batch_size=5)
    assert calls["images"] == 24  # only the 14 missing images were embedded on resume
    fresh = extract(
        get_encoder("random:vit_pico"), phantom_folder, size=28, cache_dir=tmp_path / "f"
    )
    np.testing.assert_allclose(resumed["cls"], fresh["cls"], atol=1e-5)


def test_timm_encoder_goes_through_the_same_cache(phantom_folder, tmp_path):
    features = extract("timm:test_vit", phantom_folder, cache_dir=tmp_path)
    assert features["cls"].shape == (24, 64) and features["patch_mean"].shape == (24, 64)
    assert features.path.name.startswith("timm-")
    assert features.record["weights"] == "timm:test_vit"
