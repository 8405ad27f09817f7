"""`raddino embed`: rows equal a direct forward pass, inputs, resume, bad images, CLI, streaming."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.numpy import load_file, save_file

import raddino.embed as embed_module
from raddino import embed_store
from raddino.cli import main
from raddino.data.io import ImageReadError, read_image
from raddino.embed import EmbedOptions, embed_dataset, load_embedding_model
from raddino.models.preprocessing import preprocess, with_crop_size

WEIGHTS = "random:vit_pico"
SIZE = 56  # 4 x 4 patches of 14 px: fast on CPU


class Interrupted(Exception):
    """Stands in for a crash or Ctrl-C in the middle of a run."""


class CountingModel:
    """Wraps a backbone: counts images forwarded and can fail after some batches."""

    def __init__(self, model, fail_after_batches: int | None = None):
        self.model = model
        self.fail_after_batches = fail_after_batches
        self.batches = 0
        self.images = 0

    def forward_features(self, x_bchw):
        if self.fail_after_batches is not None and self.batches >= self.fail_after_batches:
            raise Interrupted(f"after {self.batches} batches")
        self.batches += 1
        self.images += x_bchw.shape[0]
        return self.model.forward_features(x_bchw)

    def __getattr__(self, name):
        return getattr(self.model, name)


@pytest.fixture(scope="module")
def pico():
    model, digest = load_embedding_model(WEIGHTS, "cpu", seed=0)
    return model, digest


@pytest.fixture
def counting(monkeypatch, pico):
    """Install a CountingModel as what `embed_dataset` loads; returns a setter for failures."""
    holder = {}

    def install(fail_after_batches=None):
        holder["model"] = CountingModel(pico[0], fail_after_batches)
        monkeypatch.setattr(
            embed_module, "load_embedding_model", lambda *args, **kw: (holder["model"], pico[1])
        )
        return holder["model"]

    return install


@pytest.fixture
def image_folder(tmp_path):
    """8-bit PNG, 16-bit PNG, JPEG, in a nested folder with a non-image file."""
    rng = np.random.default_rng(42)
    root = tmp_path / "images"
    (root / "b").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (60 + 3 * i, 70), dtype=np.uint8)).save(
            root / f"a{i}.png"
        )
    Image.fromarray(rng.integers(0, 65536, (80, 64), dtype=np.uint16)).save(root / "b" / "w16.png")
    Image.fromarray(rng.integers(0, 256, (64, 90), dtype=np.uint8)).save(root / "b" / "j.jpg")
    Image.fromarray(rng.integers(0, 256, (50, 50, 3), dtype=np.uint8)).save(root / "c.jpeg")
    (root / "notes.txt").write_text("not an image")
    return root


EXPECTED_IDS = ["a0.png", "a1.png", "a2.png", "a3.png", "b/j.jpg", "b/w16.png", "c.jpeg"]


def direct_forward(model, paths):
    """Reference rows: read, preprocess and forward the images one batch at a time, by hand."""
    prep = with_crop_size(model.preprocessing, SIZE)
    batch = torch.stack([preprocess(read_image(path), prep) for path in paths])
    with torch.inference_mode():
        features = model.forward_features(batch)
    return features["cls"].numpy(), features["patch"].numpy()


def options(**overrides) -> EmbedOptions:
    return EmbedOptions(**{"size": SIZE, "batch_size": 3, "num_workers": 0, **overrides})


def test_rows_equal_direct_forward(tmp_path, image_folder, pico):
    out = tmp_path / "emb.safetensors"
    record = embed_dataset(image_folder, WEIGHTS, out, options(patch_mean=True, patches=True))
    assert record["ids"] == EXPECTED_IDS
    saved_json = json.loads(out.with_suffix(".json").read_text())
    assert saved_json["ids"] == EXPECTED_IDS and saved_json["skipped"] == []
    tensors = load_file(out)
    cls, patch = direct_forward(pico[0], [image_folder / i for i in EXPECTED_IDS])
    assert tensors["cls"].shape == (7, 64) and tensors["cls"].dtype == np.float32
    np.testing.assert_allclose(tensors["cls"], cls, rtol=0, atol=1e-5)
    np.testing.assert_allclose(tensors["patch_mean"], patch.mean(axis=(1, 2)), rtol=0, atol=1e-5)
    assert tensors["patches"].shape == (7, 4, 4, 64) and tensors["patches"].dtype == np.float16
    # float16 storage: equal up to half-precision rounding
    np.testing.assert_allclose(tensors["patches"].astype(np.float32), patch, rtol=1e-3, atol=1e-3)
    assert not (tmp_path / ".emb.safetensors.work").exists()  # work folder removed at the end
    assert saved_json["preprocessing"]["crop_size"] == SIZE
    assert saved_json["model_config"]["name"] == "vit_pico"
    assert saved_json["weights"] == WEIGHTS and "torch" in saved_json["versions"]


def test_csv_input_keeps_its_order(tmp_path, image_folder, pico):
    lines = ["path,label", "b/w16.png,1", f"{image_folder / 'a2.png'},0", "a0.png,1"]
    (image_folder / "list.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "csv.safetensors"
    record = embed_dataset(image_folder / "list.csv", WEIGHTS, out, options())
    assert record["ids"] == ["b/w16.png", str(image_folder / "a2.png"), "a0.png"]
    cls, _ = direct_forward(pico[0], [image_folder / p for p in ("b/w16.png", "a2.png", "a0.png")])
    np.testing.assert_allclose(load_file(out)["cls"], cls, rtol=0, atol=1e-5)


def test_dataset_folder_input(tmp_path, image_folder, pico):
    (image_folder / "labels.csv").write_text("image,subject_id,view\nb/j.jpg,s1,PA\na3.png,s2,AP\n")
    (image_folder / "dataset.json").write_text(json.dumps({"format_version": 1}))
    out = tmp_path / "ds.safetensors"
    record = embed_dataset(image_folder, WEIGHTS, out, options())
    assert record["ids"] == ["b/j.jpg", "a3.png"]
    cls, _ = direct_forward(pico[0], [image_folder / "b/j.jpg", image_folder / "a3.png"])
    np.testing.assert_allclose(load_file(out)["cls"], cls, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [
        ("file\nx.png\n", "needs a column named image or path"),
        ("image\nx.png\n\n,\n", "empty 'image' cell"),
        ("image\na0.png\na0.png\n", "repeats line 2"),
    ],
)
def test_bad_csv_errors(tmp_path, image_folder, csv_text, message):
    (tmp_path / "l.csv").write_text(csv_text)
    with pytest.raises(ValueError, match=message):
        embed_dataset(tmp_path / "l.csv", WEIGHTS, tmp_path / "o.safetensors", options())


def test_resume_after_interruption(tmp_path, image_folder, counting):
    reference_out = tmp_path / "ref.safetensors"
    counting()
    embed_dataset(image_folder, WEIGHTS, reference_out, options(patches=True))

    out = tmp_path / "emb.safetensors"
    first = counting(fail_after_batches=2)
    with pytest.raises(Interrupted):
        embed_dataset(image_folder, WEIGHTS, out, options(patches=True))
    assert first.images == 6 and not out.exists()
    assert (tmp_path / ".emb.safetensors.work" / "journal.jsonl").is_file()

    second = counting()
    record = embed_dataset(image_folder, WEIGHTS, out, options(patches=True))
    assert second.images == 1  # only the unfinished row was computed again
    assert record["ids"] == EXPECTED_IDS and record["timing"]["images_this_run"] == 1
    resumed, reference = load_file(out), load_file(reference_out)
    for name in ("cls", "patches"):
        np.testing.assert_array_equal(resumed[name], reference[name])

    third = counting()
    again = embed_dataset(image_folder, WEIGHTS, out, options(patches=True))
    assert third.images == 0 and again["ids"] == EXPECTED_IDS  # up to date: nothing recomputed


def test_torn_journal_line_is_redone(tmp_path, image_folder, counting):
    out = tmp_path / "emb.safetensors"
    counting(fail_after_batches=1)
    with pytest.raises(Interrupted):
        embed_dataset(image_folder, WEIGHTS, out, options())
    with (tmp_path / ".emb.safetensors.work" / "journal.jsonl").open("a") as journal:
        journal.write('{"rows": [3, 4')  # a write cut short by the crash
    model = counting()
    embed_dataset(image_folder, WEIGHTS, out, options())
    assert model.images == 4


def test_changed_settings_do_not_mix(tmp_path, image_folder, counting):
    out = tmp_path / "emb.safetensors"
    counting(fail_after_batches=1)
    with pytest.raises(Interrupted):
        embed_dataset(image_folder, WEIGHTS, out, options())
    counting()
    with pytest.raises(ValueError, match=r"other settings \(differs in: outputs\).*--restart"):
        embed_dataset(image_folder, WEIGHTS, out, options(patch_mean=True))
    model = counting()
    record = embed_dataset(image_folder, WEIGHTS, out, options(patch_mean=True, restart=True))
    assert model.images == 7 and set(record["tensors"]) == {"cls", "patch_mean"}


def test_skip_bad_records_reason_and_default_stops(tmp_path, image_folder, pico):
    (image_folder / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    truncated = (image_folder / "a1.png").read_bytes()
    (image_folder / "cut.png").write_bytes(truncated[: len(truncated) // 2])

    with pytest.raises(ImageReadError, match=r"broken\.png.*--skip-bad") as excinfo:
        embed_dataset(image_folder, WEIGHTS, tmp_path / "stop.safetensors", options())
    assert str(image_folder / "b" / "broken.png") in str(excinfo.value)

    out = tmp_path / "skip.safetensors"
    record = embed_dataset(image_folder, WEIGHTS, out, options(skip_bad=True))
    assert [s["id"] for s in record["skipped"]] == ["b/broken.png", "cut.png"]
    assert all(s["reason"] for s in record["skipped"])
    assert "truncated" in record["skipped"][1]["reason"]
    assert record["ids"] == EXPECTED_IDS
    cls, _ = direct_forward(pico[0], [image_folder / i for i in EXPECTED_IDS])
    np.testing.assert_allclose(load_file(out)["cls"], cls, rtol=0, atol=1e-5)


def test_all_images_bad_is_an_error(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.png").write_bytes(b"nope")
    with pytest.raises(ValueError, match=r"none of the 1 images could be read \(first: x\.png"):
        embed_dataset(tmp_path / "in", WEIGHTS, tmp_path / "o.safetensors", options(skip_bad=True))


def test_dicom_phi_stays_out_of_outputs(tmp_path):
    from test_io import FAKE_PHI, write_dicom

    root = tmp_path / "dicoms"
    root.mkdir()
    rng = np.random.default_rng(0)
    write_dicom(root / "x1.dcm", rng.integers(0, 4096, (64, 64), dtype=np.uint16), BitsStored=12)
    write_dicom(root / "x2.dcm", rng.integers(0, 4096, (64, 64), dtype=np.uint16), "MONOCHROME1")
    (root / "x3.dcm").write_bytes((root / "x1.dcm").read_bytes()[:-300])  # truncated pixels
    out = tmp_path / "d.safetensors"
    record = embed_dataset(root, WEIGHTS, out, options(skip_bad=True))
    assert record["ids"] == ["x1.dcm", "x2.dcm"] and record["skipped"][0]["id"] == "x3.dcm"
    written = out.with_suffix(".json").read_text() + out.read_bytes().decode("latin-1")
    for secret in FAKE_PHI.values():
        assert secret not in written


def test_cli_with_workers(tmp_path, image_folder, pico, capsys):
    out = tmp_path / "cli.safetensors"
    argv = ["embed", "--data", str(image_folder), "--weights", WEIGHTS, "--out", str(out)]
    argv += ["--size", str(SIZE), "--batch-size", "4", "--num-workers", "2", "--patch-mean"]
    assert main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    cls, _ = direct_forward(pico[0], [image_folder / i for i in EXPECTED_IDS])
    np.testing.assert_allclose(load_file(out)["cls"], cls, rtol=0, atol=1e-5)
    assert json.loads(out.with_suffix(".json").read_text())["options"]["num_workers"] == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--size", "50"], "not a multiple of the patch size 14"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--weights", "random:vit_nonexistent"], "vit_nonexistent"),
    ],
)
def test_cli_bad_arguments_one_line_errors(tmp_path, image_folder, capsys, extra, message):
    argv = ["embed", "--data", str(image_folder), "--weights", WEIGHTS]
    argv += ["--out", str(tmp_path / "o.safetensors"), "--num-workers", "0", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("raddino embed: error:")


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the message on CPU-only machines")
def test_cli_cuda_unavailable(tmp_path, image_folder, capsys):
    argv = ["embed", "--data", str(image_folder), "--weights", WEIGHTS, "--device", "cuda"]
    assert main([*argv, "--out", str(tmp_path / "o.safetensors")]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_cli_missing_data_and_bad_out(tmp_path, capsys):
    assert main(["embed", "--data", str(tmp_path / "nope"), "--weights", WEIGHTS, "--out",
                 str(tmp_path / "o.safetensors")]) == 2  # fmt: skip
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["embed", "--data", str(tmp_path), "--weights", WEIGHTS, "--out",
                 str(tmp_path / "o.npy")]) == 2  # fmt: skip
    assert "must end in .safetensors" in capsys.readouterr().err


def test_streaming_safetensors_equals_library_writer(tmp_path, monkeypatch):
    monkeypatch.setattr(embed_store, "_CHUNK_BYTES", 100)  # many chunks
    rng = np.random.default_rng(3)
    cls = rng.standard_normal((11, 5)).astype(np.float32)
    grid = rng.standard_normal((11, 2, 3, 4)).astype(np.float16)
    rows = np.array([0, 2, 3, 7, 10])
    ours = tmp_path / "ours.safetensors"
    sources = {"cls": embed_store.ArrayRows(cls), "grid": embed_store.ArrayRows(grid)}
    embed_store.write_safetensors_streaming(ours, sources, rows, {"k": "v"})
    theirs = tmp_path / "theirs.safetensors"
    save_file({"cls": cls[rows], "grid": grid[rows]}, str(theirs), metadata={"k": "v"})
    loaded = load_file(ours)
    np.testing.assert_array_equal(loaded["cls"], cls[rows])
    np.testing.assert_array_equal(loaded["grid"], grid[rows])
    assert ours.stat().st_size == theirs.stat().st_size

    from safetensors import safe_open

    with safe_open(str(ours), "np") as handle:
        assert handle.metadata() == {"k": "v"}


def test_row_file_is_a_valid_npy_written_by_row_runs(tmp_path):
    path = tmp_path / "rows.npy"
    row_file = embed_store.RowFile.create(path, 6, (2, 3), "float16")
    values = np.arange(4 * 6, dtype=np.float16).reshape(4, 2, 3)
    row_file.write([0, 1, 4, 5], values)  # two runs of consecutive rows
    expected = np.zeros((6, 2, 3), np.float16)
    expected[[0, 1, 4, 5]] = values
    np.testing.assert_array_equal(np.load(path), expected)
    reopened = embed_store.RowFile(path)
    assert (reopened.n_rows, reopened.row_shape) == (6, (2, 3))
    np.testing.assert_array_equal(reopened.read(1, 5), expected[1:5])
    with pytest.raises(ValueError, match="rows of shape"):
        row_file.write([2], np.zeros((1, 3, 2), np.float16))


def test_benchmark_flop_formula_matches_torch_flop_counter(pico):
    """raddino.perf's analytic ViT FLOPs (used by the benchmarks) equal PyTorch's counter."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from raddino.perf import vit_forward_flops

    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        pico[0].forward_features(x)
    assert fc.get_total_flops() == 2 * vit_forward_flops(64, 2, SIZE)


def test_float_resize_and_torchvision_backend_reach_the_rows(tmp_path, pico):
    """--float-resize / --backend change the preprocessing the rows were made with, as recorded."""
    rng = np.random.default_rng(9)
    root = tmp_path / "in"
    root.mkdir()
    Image.fromarray(rng.integers(0, 65536, (70, 60), dtype=np.uint16)).save(root / "x.png")
    prep = with_crop_size(pico[0].preprocessing, SIZE)
    image = read_image(root / "x.png")
    for name, backend, quantize in [
        ("a", "pil", True),
        ("b", "pil", False),
        ("c", "torchvision", False),
    ]:
        out = tmp_path / f"{name}.safetensors"
        opts = options(backend=backend, quantize_uint8=quantize)
        record = embed_dataset(root, WEIGHTS, out, opts)
        assert (record["preprocessing_backend"], record["quantize_uint8"]) == (backend, quantize)
        x = preprocess(image, prep, backend=backend, quantize_uint8=quantize)[None]
        with torch.inference_mode():
            expected = pico[0].forward_features(x)["cls"].numpy()
        np.testing.assert_allclose(load_file(out)["cls"], expected, rtol=0, atol=1e-5)
    a, b = (
        load_file(tmp_path / "a.safetensors")["cls"],
        load_file(tmp_path / "b.safetensors")["cls"],
    )
    assert not np.array_equal(a, b)
