"""Embed images with a frozen backbone: FILE.safetensors with `cls` (+ `patch_mean`, `patches`).

Rows stream into preallocated row files in a work folder beside the output (memory stays
constant in the number of images); a journal records finished batches, so rerunning the same
command after an interruption continues where it stopped. At the end FILE.safetensors and
FILE.json (image ids in row order, weights, preprocessing, model config, versions, skipped
images) are written atomically and the work folder is removed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # heavy or torch-importing modules load inside functions (fast `raddino --help`)
    from raddino.data.image_sources import ImageItem
    from raddino.embed_store import WorkFolder
    from raddino.models.preprocessing import Preprocessing

FORMAT = "raddino.embeddings/1"
RANDOM_PREFIX = "random:"


@dataclass(frozen=True)
class EmbedOptions:
    """Everything about an embedding run except the inputs, the weights and the output path."""

    batch_size: int = 32
    device: str = "cpu"
    size: int | None = None  # crop size override (multiple of the patch size)
    patch_mean: bool = False  # store the mean of the final-normed patch tokens (N, C)
    patches: bool = False  # store full patch grids (N, h, w, C) as float16
    skip_bad: bool = False  # record unreadable images in the JSON instead of stopping
    num_workers: int = 0
    seed: int = 0  # only used by random:<name> weights
    backend: str = "pil"  # preprocessing resize backend: "pil" or "torchvision"
    quantize_uint8: bool = True  # round to 8 bits before resizing, as the reference processors
    restart: bool = False  # discard an unfinished run made with other settings
    progress: bool = True  # a tqdm bar and an "up to date" notice (off in the book's chapters)

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.num_workers < 0:
            raise ValueError(f"--num-workers must be >= 0, got {self.num_workers}")
        if self.size is not None and self.size < 1:
            raise ValueError(f"--size must be a positive number of pixels, got {self.size}")
        if self.backend not in ("pil", "torchvision"):
            raise ValueError(f"--backend must be pil or torchvision, got {self.backend!r}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"--device must be cpu or cuda[:N], got {self.device!r}")


def default_num_workers() -> int:
    """Decoding workers: half the CPUs (the other half run the model), at most 8."""
    return min(8, (os.cpu_count() or 1) // 2)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", required=True, help="folder of images, CSV of paths, or a dataset folder"
    )
    parser.add_argument(
        "--weights",
        required=True,
        help="anything load_backbone accepts, or random:<name> (e.g. random:vit_pico, seeded by "
        "--seed: untrained, for smoke tests)",
    )
    parser.add_argument("--out", required=True, help="FILE.safetensors (FILE.json beside it)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--size", type=int, help="crop size override, a multiple of the patch size")
    parser.add_argument("--patch-mean", action="store_true", help="also store mean patch tokens")
    parser.add_argument(
        "--patches", action="store_true", help="also store patch grids (N, h, w, C) as float16"
    )
    parser.add_argument(
        "--skip-bad", action="store_true", help="skip unreadable images (reasons go to FILE.json)"
    )
    parser.add_argument(
        "--num-workers",
        type=int,
        default=default_num_workers(),
        help="image decoding processes (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for random:<name> weights")
    parser.add_argument(
        "--backend",
        choices=("pil", "torchvision"),
        default="pil",
        help="resize library: pil = transformers' BitImageProcessorPil (default), torchvision = "
        "transformers 5's BitImageProcessor",
    )
    parser.add_argument(
        "--float-resize",
        action="store_true",
        help="resize in float instead of rounding to 8 bits first (keeps 16-bit/DICOM detail)",
    )
    parser.add_argument(
        "--restart", action="store_true", help="discard an unfinished run with other settings"
    )


def run(args: argparse.Namespace) -> int:
    options = EmbedOptions(
        batch_size=args.batch_size,
        device=args.device,
        size=args.size,
        patch_mean=args.patch_mean,
        patches=args.patches,
        skip_bad=args.skip_bad,
        num_workers=args.num_workers,
        seed=args.seed,
        backend=args.backend,
        quantize_uint8=not args.float_resize,
        restart=args.restart,
    )
    try:
        record = embed_dataset(args.data, args.weights, args.out, options)
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    shapes = ", ".join(f"{k} {v['shape']}" for k, v in record["tensors"].items())
    print(f"wrote {args.out}: {shapes}; skipped {len(record['skipped'])}")
    return 0


# ------------------------------------------------------------------------------ library API


def embed_dataset(
    data: str | os.PathLike,
    weights: str,
    out: str | os.PathLike,
    options: EmbedOptions | None = None,
) -> dict[str, Any]:
    """List the images of `data`, load `weights` and embed; returns the JSON record written."""
    from raddino.data.image_sources import list_images

    options = options or EmbedOptions()
    options.validate()
    out = _check_out_path(out)
    items = list_images(data)
    model, weights_digest = load_embedding_model(weights, options.device, options.seed)
    return embed_items(items, model, out, options, weights=str(weights), digest=weights_digest)


def load_embedding_model(weights: str, device: str, seed: int = 0) -> tuple[Any, str]:
    """(model in eval mode on `device`, digest of its tensors) for a weights source."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine")
    if weights.startswith(RANDOM_PREFIX):
        from raddino.models.backbone import build_backbone

        # LayerScale 1.0, not DINOv2's training init 1e-5: with 1e-5 the residual branches are
        # nearly silent and an untrained ViT gives every image the same class token (measured:
        # feature spread 0.0 on phantoms), a baseline that would measure nothing.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_backbone(weights.removeprefix(RANDOM_PREFIX), layerscale_init=1.0)
        model = model.to(device)
    else:
        from raddino.models.weights import load_backbone

        model = load_backbone(weights, device=device)
    model.eval()
    return model, state_digest(model)


def state_digest(model: Any) -> str:
    """BLAKE2 digest of every tensor (name, dtype, shape, bytes): weights identity for resume."""
    import torch

    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
        digest.update(raw.numpy().tobytes())
    return digest.hexdigest()


def embed_items(
    items: Sequence[ImageItem],
    model: Any,
    out: str | os.PathLike,
    options: EmbedOptions,
    *,
    weights: str,
    digest: str,
) -> dict[str, Any]:
    """Embed `ImageItem`s with `model` into `out` (+ JSON), resuming unfinished work."""
    from raddino.embed_store import WorkFolder, write_safetensors_streaming
    from raddino.utils import versions, write_json_atomic

    out = _check_out_path(out)
    prep = resolve_preprocessing(model, options.size)
    grid = prep.crop_size // model.patch_size
    row_shapes = {"cls": ((model.embed_dim,), "float32")}
    if options.patch_mean:
        row_shapes["patch_mean"] = ((model.embed_dim,), "float32")
    if options.patches:
        row_shapes["patches"] = ((grid, grid, model.embed_dim), "float16")
    ids = [item.id for item in items]
    # Everything that decides the numbers; a rerun must match it to reuse finished rows.
    spec = {
        "format": FORMAT,
        "n_images": len(ids),
        "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        "weights": weights,
        "weights_digest": digest,
        "preprocessing": prep.to_dict(),
        "backend": options.backend,
        "quantize_uint8": options.quantize_uint8,
        "outputs": {name: [list(shape), dtype] for name, (shape, dtype) in row_shapes.items()},
        "device": options.device.split(":")[0],
    }
    spec = json.loads(json.dumps(spec))  # tuples -> lists: compare as stored
    json_path = out.with_suffix(".json")
    if not options.restart and out.is_file() and json_path.is_file():
        previous = _read_json_or_none(json_path)
        if previous is not None and previous.get("spec") == spec:
            if options.progress:
                print(f"{out} is up to date (same inputs, weights and settings)", file=sys.stderr)
            return previous

    work = WorkFolder.open(_work_folder(out), spec, row_shapes, restart=options.restart)
    started = time.perf_counter()
    computed = _embed_pending(items, model, prep, options, work)
    seconds = time.perf_counter() - started

    good_rows = work.good_rows()
    if len(good_rows) == 0:
        row, why = min(work.skipped.items())
        raise ValueError(f"none of the {len(ids)} images could be read (first: {ids[row]}: {why})")
    write_safetensors_streaming(out, work.files, good_rows, metadata={"format": FORMAT})
    record = {
        "format": FORMAT,
        "ids": [ids[row] for row in good_rows],
        "skipped": [{"id": ids[row], "reason": why} for row, why in sorted(work.skipped.items())],
        "tensors": {
            name: {"shape": [len(good_rows), *shape], "dtype": dtype}
            for name, (shape, dtype) in row_shapes.items()
        },
        "weights": weights,
        "weights_digest": digest,
        "preprocessing": prep.to_dict(),
        "preprocessing_backend": options.backend,
        "quantize_uint8": options.quantize_uint8,
        "model_config": getattr(model, "config", {}),
        "pos_embed_interpolation": getattr(model, "pos_embed_interpolation", None),
        "options": asdict(options),
        "timing": {
            "images_this_run": computed,
            "seconds_this_run": round(seconds, 3),
            "images_per_second": round(computed / seconds, 3) if seconds > 0 else None,
        },
        "versions": versions(),
        "spec": spec,
    }
    write_json_atomic(json_path, record)
    shutil.rmtree(work.folder)
    return record


def resolve_preprocessing(model: Any, size: int | None) -> Preprocessing:
    """The model's own preprocessing, at crop `size` if given; batching needs a fixed crop."""
    from raddino.models.preprocessing import with_crop_size

    prep = model.preprocessing
    if size is not None:
        if size % model.patch_size:
            raise ValueError(
                f"--size {size} is not a multiple of the patch size {model.patch_size}"
            )
        prep = with_crop_size(prep, size)
    if prep.crop_size is None:
        raise ValueError(f"preprocessing {prep.name!r} has no crop size; pass --size")
    if prep.crop_size % model.patch_size:
        raise ValueError(
            f"crop size {prep.crop_size} is not a multiple of the patch size {model.patch_size}"
        )
    return prep


def _embed_pending(
    items: Sequence[ImageItem],
    model: Any,
    prep: Preprocessing,
    options: EmbedOptions,
    work: WorkFolder,
) -> int:
    """Run the model over rows not yet in the journal; returns how many images it embedded."""
    from functools import partial

    import torch
    from torch.utils.data import DataLoader, Subset
    from tqdm.auto import tqdm

    from raddino.data.image_sources import ImageFileDataset, collate_indexed
    from raddino.data.io import ImageReadError
    from raddino.models.preprocessing import preprocess

    pending = work.pending_rows()
    if not pending:
        return 0
    transform = partial(
        preprocess, prep=prep, backend=options.backend, quantize_uint8=options.quantize_uint8
    )
    dataset = Subset(ImageFileDataset(items, transform), pending)
    loader = DataLoader(
        dataset,
        batch_size=options.batch_size,
        shuffle=False,
        num_workers=options.num_workers,
        collate_fn=collate_indexed,
        pin_memory=options.device.startswith("cuda"),
    )
    device = torch.device(options.device)
    computed = 0
    total, already = len(items), len(items) - len(pending)
    bar = tqdm(total=total, initial=already, desc="embed", unit="img", disable=not options.progress)
    with bar as progress:
        for rows, batch_bchw, failures in loader:
            if failures and not options.skip_bad:
                row, cause = next(iter(failures.items()))
                raise ImageReadError(
                    items[row].path, f"{cause} (pass --skip-bad to record it and go on)"
                )
            outputs = {}
            if rows:
                with torch.inference_mode():
                    features = model.forward_features(batch_bchw.to(device, non_blocking=True))
                patch_bhwc = features["patch"]
                outputs["cls"] = features["cls"].float().cpu().numpy()
                if options.patch_mean:
                    outputs["patch_mean"] = patch_bhwc.float().mean(dim=(1, 2)).cpu().numpy()
                if options.patches:
                    outputs["patches"] = patch_bhwc.half().cpu().numpy()
            work.record(rows, outputs, failures)
            computed += len(rows)
            progress.update(len(rows) + len(failures))
    return computed


def _check_out_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"--out {out}: must end in .safetensors")
    if out.is_dir():
        raise ValueError(f"--out {out}: is a folder")
    return out


def _work_folder(out: Path) -> Path:
    return out.with_name(f".{out.name}.work")


def _read_json_or_none(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
