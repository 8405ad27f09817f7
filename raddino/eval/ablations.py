"""What the ablation chapters (03 resolution, 04 initialisation, 05 data size, 13 masked image
modelling) measure: linear-probe AUPRC of several frozen encoders on the shared held-out probe
phantoms, per finding and per finding scale (large findings change many pixels; small or thin
ones change a few), and Dice of frozen segmentation heads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

# Paper Fig. 1 uses large findings of VinDr-CXR (cardiomegaly, lung opacity, ...); Fig. A.1 small
# or thin ones of CANDID-PTX (pneumothorax, chest tube). The phantom findings split the same way.
FINDING_SCALE: dict[str, tuple[str, ...]] = {
    "large": ("cardiomegaly", "aortic_enlargement", "pleural_effusion", "lung_opacity"),
    "small": ("nodule", "rib_fracture", "chest_tube", "pneumothorax"),
}


def cached_cls(spec: str, folder: Any, *, size: int | None, seed: int, runs_root: str, device: str):
    """(N, C) frozen class tokens of `spec` on `folder` through the feature cache; the pixel
    baseline keeps its own grid (`size` applies to the ViTs). Quiet: a chapter's saved output
    would keep a bar frozen at its first state."""
    from raddino.eval.features import extract

    return extract(
        spec,
        folder,
        size=None if spec.startswith("pixels") else size,
        which=["cls"],
        cache_dir=f"{runs_root}/features",
        device=device,
        seed=seed,
        progress=False,
        num_workers=_loader_workers(device),
    )["cls"]


def _loader_workers(device: str) -> int:
    """Image-decoding processes for feature extraction: none on CPU (phantom PNGs are small and
    workers would take the cores the model needs); up to 8 beside a GPU, where decoding real
    JPEGs and DICOMs in the main process would leave it waiting."""
    import os

    return 0 if device == "cpu" else min(8, max(0, (os.cpu_count() or 1) - 1))


def probe_encoders(
    encoders: Mapping[str, str],
    folder: Any,
    *,
    size: int | None,
    seeds: int,
    c: float = 0.1,
    seed: int = 0,
    runs_root: str = "runs",
    device: str = "cpu",
) -> pd.DataFrame:
    """`probe_frame` (encoder, finding, auprc_mean, ...) of frozen CLS features; `encoders` maps a
    display name to an encoder spec; `size` is the encoder input side (None: its own)."""
    from raddino.eval.probe import ProbeConfig, run_probes
    from raddino.eval.probe_tables import probe_frame

    config = ProbeConfig(method="sklearn", seeds=seeds, c=c, split_seed=seed)
    results = {}
    for name, spec in encoders.items():
        results[name] = run_probes(
            cached_cls(spec, folder, size=size, seed=seed, runs_root=runs_root, device=device),
            folder.labels_array(),
            folder.table["subject_id"].to_numpy(),
            folder.label_names,
            config,
            progress=False,
        )
    return probe_frame(results)


def segment_encoders(
    encoders: Mapping[str, str],
    folder: Any,
    structures: Sequence[str],
    config: Any,
    *,
    head: str = "linear",
    size: int,
    split_seed: int = 0,
    runs_root: str = "runs",
) -> dict[str, dict[str, Any]]:
    """`run_segmentation` of one frozen `head` per encoder on a dataset folder, all on the same
    subject split and masks at `size`: {name: {"dice", "dice_per_image" (n_test, S), "rows"}};
    patch grids come from the chapter-07 cache when there."""
    from raddino.eval.segment import run_segmentation

    results = {}
    for name, spec in encoders.items():
        metrics, extras = run_segmentation(
            str(folder.root),
            spec,
            head,
            structures=structures,
            size=size,
            mask_size=size,
            config=config,
            split_seed=split_seed,
            cache_dir=f"{runs_root}/patch_grids",
            progress=False,
        )
        results[name] = {"dice": metrics["dice"]} | {
            k: extras[k] for k in ("dice_per_image", "rows")
        }
    return results


def by_finding_scale(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean AUPRC (and mean chance) per encoder over the large and the small findings, plus the
    macro average; findings a split could not score are left out of their group's mean."""
    rows = []
    for encoder, group in frame.groupby("encoder", sort=False):
        per_finding = group.set_index("finding")
        for scale, findings in FINDING_SCALE.items():
            scored = per_finding.loc[per_finding.index.intersection(findings)]
            rows.append(
                {
                    "encoder": encoder,
                    "scale": scale,
                    "auprc": scored["auprc_mean"].mean(),
                    "chance": scored["chance"].mean(),
                    "findings": len(scored),
                }
            )
        rows.append(
            {
                "encoder": encoder,
                "scale": "macro",
                "auprc": per_finding.loc["macro", "auprc_mean"],
                "chance": float("nan"),
                "findings": int((group["finding"] != "macro").sum()),
            }
        )
    return pd.DataFrame(rows)


ACQUISITION_PROPERTIES: dict[str, str] = {  # column -> what a phantom's acquisition records
    "collimation borders": "any of the four bright borders drawn (half the phantoms)",
    "exposure": "photon count above the median (quantum noise level)",
    "display window": "upper window level above the median (how dark the image is shown)",
}


def acquisition_codes(folder: Any) -> dict[str, Any]:
    """Binary codes (N,) of ACQUISITION_PROPERTIES from a phantom folder's details.jsonl, which
    records each image's exact acquisition; an error naming the image where one is missing."""
    import numpy as np

    records = []
    for i in range(len(folder.table)):
        acquisition = folder.details_of(i).get("acquisition")
        if not acquisition:
            image = folder.table["image"].iat[i]
            raise ValueError(f"{folder.root}/details.jsonl: no acquisition record for {image}")
        records.append(acquisition)
    photons = np.array([a["photons"] for a in records], dtype=np.float64)
    window = np.array([a["window_high"] for a in records], dtype=np.float64)
    return {
        "collimation borders": np.array([max(a["collimation"]) > 0 for a in records], np.int64),
        "exposure": (photons > np.median(photons)).astype(np.int64),
        "display window": (window > np.median(window)).astype(np.int64),
    }


def global_property_table(
    encoders: Mapping[str, str],
    folder: Any,
    *,
    size: int,
    folds: int = 5,
    seed: int = 0,
    runs_root: str = "runs",
    device: str = "cpu",
    acquisition: bool = True,
) -> pd.DataFrame:
    """How much of a phantom's global, pixel-obvious properties frozen class tokens keep: view
    (PA vs AP), the metadata bins (sex, age, BMI) and, with `acquisition`, how the image was taken
    (ACQUISITION_PROPERTIES), as cross-validated accuracy (folds by subject) of a logistic
    regression; one row per encoder and a majority-class row. A diagnostic, not the paper's
    Table 7 protocol: the solver runs to convergence (max_iter 2000)."""
    import numpy as np

    from raddino.eval.metadata import MetadataConfig, cross_validate_variable
    from raddino.eval.tables import metadata_per_variable

    table = folder.table
    codes = {"view (PA/AP)": (table["view"].to_numpy() == "AP").astype(np.int64)}
    extra = acquisition_codes(folder) if acquisition else {}
    subjects = table["subject_id"].astype(str).to_numpy()
    config = MetadataConfig(variables=("sex", "age", "bmi"), folds=folds, seed=seed, max_iter=2000)
    names = {"sex": "sex", "age": "age bin", "bmi": "BMI bin"}
    rows, majority = {}, {}
    for name, spec in encoders.items():
        features = np.asarray(
            cached_cls(spec, folder, size=size, seed=seed, runs_root=runs_root, device=device),
            dtype=np.float32,
        )
        results = {
            k: cross_validate_variable(features, c, subjects, config) for k, c in codes.items()
        }
        for variable, result in metadata_per_variable(features, table, config).items():
            results[names[variable]] = result
        results.update(
            {k: cross_validate_variable(features, c, subjects, config) for k, c in extra.items()}
        )
        rows[name] = {k: r.get("accuracy", {}).get("mean", np.nan) for k, r in results.items()}
        majority = {
            k: r.get("majority_class_accuracy", {}).get("mean", np.nan) for k, r in results.items()
        }
    return pd.DataFrame.from_dict({**rows, "majority class": majority}, orient="index")


def crop_pair_retrieval(
    encoders: Mapping[str, str],
    folder: Any,
    crops: Mapping[str, Any],
    settings: Mapping[str, Mapping[str, Any]],
    *,
    n: int = 200,
    seed: int = 0,
    device: str = "cpu",
) -> pd.DataFrame:
    """Can the pretraining task be solved on this data? For each augmentation setting (overrides
    of the `crops` config section), the top-1 rate at which an image's second global crop is the
    nearest (centred cosine) to its first among `n` images. `pixels:<g>` is the crop averaged to
    g x g pixels. Chance is 1 / n."""
    import torch
    import torch.nn.functional as F

    from raddino.embed import load_embedding_model
    from raddino.ssl.crops import MultiCropAugmentation
    from raddino.ssl.train import make_normalizer

    n = min(n, len(folder))
    images = [torch.from_numpy(folder.read_image(i)).float()[None] for i in range(n)]
    models = {
        name: load_embedding_model(spec, device, seed)[0].eval()
        for name, spec in encoders.items()
        if not spec.startswith("pixels")
    }

    def top1(first_nc: torch.Tensor, second_nc: torch.Tensor) -> float:
        first = F.normalize(first_nc - first_nc.mean(0), dim=-1)
        second = F.normalize(second_nc - second_nc.mean(0), dim=-1)
        return float(((first @ second.T).argmax(1) == torch.arange(n)).float().mean())

    rows = {}
    for setting, overrides in settings.items():
        # globals are drawn before locals, so dropping the unused locals keeps the same globals
        augment = MultiCropAugmentation.from_config({**crops, **overrides, "local_crops_number": 0})
        pairs = [augment(image, torch.Generator().manual_seed(seed * 100_003 + i))["global"]
                 for i, image in enumerate(images)]  # fmt: skip
        first = torch.stack([p[0] for p in pairs])  # (n, 1, H, W)
        second = torch.stack([p[1] for p in pairs])
        row = {}
        for name, spec in encoders.items():
            if spec.startswith("pixels"):
                grid = int(spec.partition(":")[2] or 16)
                pooled = [F.adaptive_avg_pool2d(c, grid).flatten(1) for c in (first, second)]
                row[name] = top1(*pooled)
                continue
            model, normalize = models[name], make_normalizer(models[name], device)
            with torch.no_grad():
                row[name] = top1(*(model(normalize(c.to(device))) for c in (first, second)))
        rows[setting] = row
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame["chance"] = 1.0 / n
    return frame
