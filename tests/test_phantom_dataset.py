"""PhantomDataset: bitwise the same pixels and labels as the written folder, seeded, batchable."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
import torch

from raddino.data.dataset_folder import write_phantom_folder
from raddino.data.phantom import FINDINGS, PhantomConfig
from raddino.data.phantom.dataset import PhantomDataset, PhantomStream, phantom_worker_init

CONFIG = PhantomConfig(size=56, views=("PA", "AP", "LATERAL"), with_masks=False)


def test_items_match_the_folder_bitwise(tmp_path):
    folder = write_phantom_folder(tmp_path / "ds", 6, CONFIG, seed=11, progress=False)
    dataset = PhantomDataset(6, seed=11, config=CONFIG)
    labels = folder.labels_array()
    for i in range(6):
        item = dataset[i]
        assert item["index"] == i
        assert item["image"].shape == (1, 56, 56) and item["image"].dtype == torch.float32
        np.testing.assert_array_equal(item["image"][0].numpy(), folder.read_image(i))
        np.testing.assert_array_equal(item["labels"].numpy(), labels[i])
        np.testing.assert_array_equal(dataset.render_image(i), folder.read_image(i))
    # render_image serves any index (the pretraining stream goes past n).
    beyond = PhantomDataset(100, seed=11, config=CONFIG)[50]["image"][0].numpy()
    np.testing.assert_array_equal(dataset.render_image(50), beyond)


def test_masks_do_not_change_the_image(tmp_path):
    with_masks = PhantomDataset(3, seed=2, config=PhantomConfig(size=48, with_masks=True))
    without = PhantomDataset(3, seed=2, config=PhantomConfig(size=48, with_masks=False))
    for i in range(3):
        assert torch.equal(with_masks[i]["image"], without[i]["image"])


def test_seeded_and_varied():
    a = PhantomDataset(4, seed=0, config=CONFIG)
    b = PhantomDataset(4, seed=0, config=CONFIG)
    c = PhantomDataset(4, seed=1, config=CONFIG)
    assert torch.equal(a[2]["image"], b[2]["image"])
    assert not torch.equal(a[2]["image"], c[2]["image"])
    assert not torch.equal(a[1]["image"], a[2]["image"])


def test_quantisation_options_and_transform():
    raw = PhantomDataset(2, seed=0, config=CONFIG, quantize_bits=None)[1]["image"]
    q16 = PhantomDataset(2, seed=0, config=CONFIG)[1]["image"]
    q8 = PhantomDataset(2, seed=0, config=CONFIG, quantize_bits=8)[1]["image"]
    assert 0 < (raw - q16).abs().max() <= 0.5 / 65535 + 1e-7
    assert (raw - q8).abs().max() <= 0.5 / 255 + 1e-7
    assert len(torch.unique(q8)) <= 256
    flipped = PhantomDataset(2, seed=0, config=CONFIG, transform=lambda x: x.flip(-1))[1]
    assert torch.equal(flipped["image"], q16.flip(-1))


def test_dataloader_batches():
    dataset = PhantomDataset(5, seed=3, config=CONFIG)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert batch["image"].shape == (4, 1, 56, 56)
    assert batch["labels"].shape == (4, len(FINDINGS))
    assert batch["index"].tolist() == [0, 1, 2, 3]
    assert torch.equal(dataset[-1]["image"], dataset[4]["image"])


def test_bad_arguments():
    with pytest.raises(ValueError, match="n must be a positive integer"):
        PhantomDataset(0, seed=0, config=CONFIG)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        PhantomDataset(2, seed=-1, config=CONFIG)
    with pytest.raises(ValueError, match="quantize_bits"):
        PhantomDataset(2, seed=0, config=CONFIG, quantize_bits=12)
    with pytest.raises(ValueError, match="config must be a PhantomConfig"):
        PhantomDataset(2, seed=0, config={"size": 64})
    with pytest.raises(IndexError, match="out of range"):
        PhantomDataset(2, seed=0, config=CONFIG)[2]


def _take(stream, count):
    return list(itertools.islice(iter(stream), count))


def test_stream_serves_pooled_phantoms_deterministically():
    config = PhantomConfig(size=40, with_masks=False)
    stream = PhantomStream(seed=4, config=config, pool_size=6, refresh_per_item=0.5)
    items = _take(stream, 40)
    again = _take(PhantomStream(seed=4, config=config, pool_size=6, refresh_per_item=0.5), 40)
    assert [i["index"] for i in items] == [i["index"] for i in again]
    reference = PhantomDataset(100, seed=4, config=config)
    for item in items[:8]:
        assert torch.equal(item["image"], reference[item["index"]]["image"])
        assert torch.equal(item["labels"], reference[item["index"]]["labels"])
    # 6 initial renders + 0.5 per item: 26 distinct phantoms made, most of them served.
    seen = {i["index"] for i in items}
    assert 20 <= max(seen) <= 6 + 40 // 2 - 1 and len(seen) >= 15


def test_stream_ranks_render_disjoint_phantoms():
    config = PhantomConfig(size=40, with_masks=False)
    ranks = [
        {i["index"] for i in _take(PhantomStream(0, config, 4, 1.0, rank=r, world_size=2), 12)}
        for r in (0, 1)
    ]
    assert ranks[0] and ranks[1] and not ranks[0] & ranks[1]
    assert all(i % 2 == 0 for i in ranks[0]) and all(i % 2 == 1 for i in ranks[1])
    with pytest.raises(ValueError, match="rank must be in"):
        PhantomStream(0, config, rank=2, world_size=2)
    with pytest.raises(ValueError, match="refresh_per_item"):
        PhantomStream(0, config, pool_size=4, refresh_per_item=0.0)


def test_pickles_and_runs_in_dataloader_workers():
    dataset = PhantomDataset(4, seed=6, config=CONFIG)
    clone = pickle.loads(pickle.dumps(dataset))  # spawn-started workers pickle the dataset
    assert torch.equal(clone[3]["image"], dataset[3]["image"])
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=2,
        num_workers=2,
        worker_init_fn=phantom_worker_init,
        multiprocessing_context="fork",
    )
    images = torch.cat([batch["image"] for batch in loader])
    assert torch.equal(images, torch.stack([dataset[i]["image"] for i in range(4)]))


def test_stream_workers_render_disjoint_phantoms():
    config = PhantomConfig(size=40, with_masks=False)
    stream = PhantomStream(seed=1, config=config, pool_size=3, refresh_per_item=1.0)
    loader = torch.utils.data.DataLoader(
        stream, batch_size=None, num_workers=2, multiprocessing_context="fork"
    )
    items = list(itertools.islice(iter(loader), 16))
    by_worker = [{int(item["index"]) for item in items[w::2]} for w in (0, 1)]
    assert not by_worker[0] & by_worker[1]
    assert {i % 2 for i in by_worker[0]} == {0} and {i % 2 for i in by_worker[1]} == {1}


@pytest.mark.slow
def test_large_findings_and_sex_are_learnable_from_raw_pixels():
    """Calibration guard (benchmarks/phantom_calibration.py in small): raw 16x16 pixels + logistic
    regression beat chance clearly on cardiomegaly, effusion and sex, with a subject-level split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, average_precision_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from raddino.data.metadata_bins import encode_sex
    from raddino.data.phantom import render_phantom

    config = PhantomConfig(size=128, views=("PA", "AP"), with_masks=False, images_per_subject=2)
    samples = [render_phantom(i, seed=21, config=config) for i in range(800)]
    x = np.stack([s.image.reshape(16, 8, 16, 8).mean(axis=(1, 3)).ravel() for s in samples])
    train, test = (
        np.arange(600),
        np.arange(600, 800),
    )  # consecutive indices share subjects: 600 | 600
    targets = {
        n: np.array([s.labels[n] for s in samples]) for n in ("cardiomegaly", "pleural_effusion")
    }
    for name, y in targets.items():
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        scores = model.fit(x[train], y[train]).predict_proba(x[test])[:, 1]
        assert average_precision_score(y[test], scores) > 2 * y[test].mean(), name
    sex = encode_sex([s.metadata["sex"] for s in samples])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    accuracy = accuracy_score(sex[test], model.fit(x[train], sex[train]).predict(x[test]))
    majority = max(np.mean(sex[test]), 1 - np.mean(sex[test]))
    assert accuracy > majority + 0.1
