"""Tables of the release chapter (02): how each release was made, probed and chosen, read from
its manifest and the reports it cites; nothing runs. The recipe study's tables (sweeps, CPU A/Bs,
pooled probes: chapter 12) are in `raddino.ssl.recipe_tables`."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from raddino.ssl.release import read_release_manifest


def release_table(names: list[str], release_dir: str | os.PathLike | None = None):
    """How each release was made: profile, init, data, steps, images, wall time, hardware."""
    import pandas as pd

    rows = []
    for name in names:
        m = read_release_manifest(name, release_dir)
        hardware = m["hardware"]
        device = hardware.get("cuda_device") or f"{hardware['cpu_count']} CPU cores"
        rows.append(
            {
                "release": f"raddino:{name}",
                "profile": m["profile"],
                "init": m["config"]["model"]["init"],
                "data": m["config"]["data"]["source"],
                "arch": m["config"]["model"]["arch"],
                "crops (global/local px)": "{}/{}".format(
                    m["config"]["crops"]["global_crops_size"],
                    m["config"]["crops"]["local_crops_size"],
                ),
                "steps": m["steps"],
                "images seen": m["images_seen"],
                "train minutes": round(m["train_wall_s"] / 60, 1),
                "hardware": device,
                "fp16 MB": m["size_mb"],
                "sha256": m["sha256"][:12],
            }
        )
    return pd.DataFrame(rows).set_index("release")


_DATA_NAMES = {"phantom": "chest X-ray phantoms", "deadleaves": "dead-leaves scenes"}


def release_overview(names: list[str], release_dir: str | os.PathLike | None = None):
    """The releases in the columns of the paper's Table 1: model type, architecture, training
    data, parameters (counted in the shipped file), distinct training images, texts, resolution."""
    import pandas as pd
    from safetensors import safe_open

    from raddino.models.weights import RELEASE_DIR

    rows = []
    for name in names:
        m = read_release_manifest(name, release_dir)
        with safe_open(str(Path(release_dir or RELEASE_DIR) / m["weights"]), "pt") as f:
            params = sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())
        data, model = m["config"]["data"], m["config"]["model"]
        start = model["init"]
        rows.append(
            {
                "release": f"raddino:{name}",
                "Model type": "Image only",
                "Arch.": model["arch"],
                "Training dataset": _DATA_NAMES.get(data["source"], data["source"])
                + (f" (continual from {start})" if start != "random" else ""),
                "# Params.": params,
                "# Images": data["max_images"],  # distinct images; a run sees each many times
                "# Text": 0,
                "Image resolution": m["config"]["crops"]["global_crops_size"],
            }
        )
    return pd.DataFrame(rows).set_index("release")


def headline_metrics(metrics: dict) -> dict:
    """The bar's scalar metrics (per-finding AUPRC stays in the manifest)."""
    return {k: v for k, v in metrics.items() if not isinstance(v, dict)}


SHIFT_COLUMN = "class token after a 4-px shift"


def _with_ranges(metrics: dict) -> dict:
    """The bar's scalars (mean over probe sets) and each bar metric's range between sets."""
    ranges = metrics.get("between_set_range", {})
    return {
        **headline_metrics(metrics),
        **{f"{k} range between sets": v for k, v in ranges.items()},
    }


def release_probe_table(names: list[str], release_dir: str | os.PathLike | None = None):
    """The frozen-probe bar of each release beside its baselines (one row per encoder; means
    over the probe sets, with each metric's range between sets)."""
    import pandas as pd

    rows: dict[str, dict] = {}
    for name in names:
        probes = read_release_manifest(name, release_dir)["frozen_probes"]
        rows[f"raddino:{name}"] = _with_ranges(probes["this"])
        for spec, metrics in probes["baselines"].items():
            rows.setdefault(spec, _with_ranges(metrics))  # a baseline probed twice is the same
    return pd.DataFrame.from_dict(rows, orient="index")


def release_verdict_table(names: list[str], release_dir: str | os.PathLike | None = None):
    """The bar's verdict: each release minus each baseline, per metric and probe set (same
    phantoms), and whether the release clearly beats it on every set (`raddino.ssl.bar`)."""
    import pandas as pd

    from raddino.ssl.bar import CLEAR_MARGIN, compare_on_sets

    rows = {}
    for name in names:
        probes = read_release_manifest(name, release_dir)["frozen_probes"]
        for spec, metrics in probes["baselines"].items():
            for metric, result in compare_on_sets(probes["this"], metrics).items():
                diffs = result["difference_per_set"]
                row = {f"difference on set {s}": d for s, d in diffs.items()}
                row[f"clearly beats (>= {CLEAR_MARGIN} on every set)"] = result["clearly_beats"]
                rows[(f"raddino:{name}", spec, metric)] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.names = ["release", "against", "metric"]
    return table


def release_finding_table(names: list[str], release_dir: str | os.PathLike | None = None):
    """AUPRC per finding (rows) of each release and its baselines (columns), with prevalence,
    from the manifests: where an encoder's macro number comes from."""
    import pandas as pd

    releases: dict[str, dict] = {}
    baselines: dict[str, dict] = {}
    for name in names:
        probes = read_release_manifest(name, release_dir)["frozen_probes"]
        if "finding_auprc" in probes["this"]:
            releases[f"raddino:{name}"] = probes["this"]["finding_auprc"]
        for spec, metrics in probes["baselines"].items():
            if "finding_auprc" in metrics and spec not in releases:
                baselines.setdefault(spec, metrics["finding_auprc"])
    return pd.DataFrame({**releases, **{k: v for k, v in baselines.items() if k not in releases}})


def checkpoint_curve_table(path: str | os.PathLike, seed: int = 0):
    """The bar along one run (`benchmarks/checkpoint_curve.py`) on the probe phantoms of one
    evaluation seed: a row per steps done, then random init and any `--baseline` encoders."""
    import pandas as pd

    report = json.loads(Path(path).read_text())
    if str(seed) not in report["curves"]:
        raise KeyError(f"{path}: no curve for evaluation seed {seed}; has {list(report['curves'])}")
    curve = report["curves"][str(seed)]
    rows = {
        f"after {int(steps):,} steps": {
            **headline_metrics(entry["bar"]),
            SHIFT_COLUMN: entry["shift_stability"]["shift_4px"],
        }
        for steps, entry in sorted(curve["steps"].items(), key=lambda item: int(item[0]))
    }
    rows["random init"] = headline_metrics(curve["random"])
    rows |= {spec: headline_metrics(bar) for spec, bar in curve.get("baselines", {}).items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def verdict_row(this: dict, baseline: dict) -> dict:
    """`compare_on_sets` as one table row: (metric, "set k") differences and (metric, "clearly
    beats")."""
    from raddino.ssl.bar import compare_on_sets

    row = {}
    for metric, result in compare_on_sets(this, baseline).items():
        for seed, difference in result["difference_per_set"].items():
            row[(metric, f"set {seed}")] = difference
        row[(metric, "clearly beats")] = result["clearly_beats"]
    return row


def auprc_of(result: dict, finding: str | None, where: str) -> float:
    """Macro AUPRC of a probe result, or one finding's; a KeyError names `where` if it lacks it."""
    if finding is None:
        return result["macro_auprc"]
    if finding not in result["finding_auprc"]:
        raise KeyError(f"{where} has no AUPRC for {finding!r}")
    return result["finding_auprc"][finding]


def layer_probe_frame(path: str | os.PathLike, finding: str | None = None):
    """A `benchmarks/layer_probe.py` report in long form: one row per (encoder, probe set, block,
    pooling) with its macro AUPRC over findings, or one finding's AUPRC."""
    import pandas as pd

    report = json.loads(Path(path).read_text())
    rows = []
    for spec, sets in report["encoders"].items():
        for seed, blocks in sets.items():
            for block, poolings in blocks.items():
                for pooling, result in poolings.items():
                    auprc = auprc_of(result, finding, f"{path}: {spec} on set {seed}")
                    rows.append((spec, f"set {seed}", int(block), pooling, auprc))
    return pd.DataFrame(rows, columns=["encoder", "probe set", "block", "pooling", "auprc"])


def finding_sets_table(path: str | os.PathLike):
    """A `benchmarks/finding_sets.py` report: each encoder's class-token macro AUPRC on every
    probe set and its difference from random init (mean of its draws), with the mean difference
    and on how many sets it is ahead; the baseline's row gives its draws' mean and spread."""
    import numpy as np
    import pandas as pd

    report = json.loads(Path(path).read_text())
    baseline = report["baseline"]
    draws = {s: np.asarray(v, dtype=float) for s, v in baseline["macro_auprc"].items()}
    label = f"{baseline['spec']} (mean of {baseline['draws']} draws)"
    rows = {label: {("macro AUPRC", f"set {s}"): v.mean() for s, v in draws.items()}}
    rows[label] |= {("draw spread (sd)", f"set {s}"): v.std(ddof=1) for s, v in draws.items()}
    for name, entry in report["encoders"].items():
        row = {("macro AUPRC", f"set {s}"): v for s, v in entry["macro_auprc"].items()}
        row |= {("minus random init", f"set {s}"): v for s, v in entry["minus_baseline"].items()}
        row[("minus random init", "mean")] = entry["mean_difference"]
        row[("minus random init", "sets ahead")] = entry["sets_ahead"]
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    order = ["macro AUPRC", "minus random init", "draw spread (sd)"]
    return table[[c for group in order for c in table.columns if c[0] == group]]


def chosen_checkpoint_table(name: str, release_dir: str | os.PathLike | None = None):
    """The validation curve a release's checkpoint was chosen on (`raddino release --checkpoint
    --choice`): the bar's metrics per step on the validation set, each step's worst margin over
    the baselines, and which step was taken."""
    import pandas as pd

    manifest = read_release_manifest(name, release_dir)
    if "released_checkpoint" not in manifest or not manifest["released_checkpoint"]["choice"]:
        raise KeyError(f"{name}.json: not a chosen checkpoint (no released_checkpoint.choice)")
    choice = manifest["released_checkpoint"]["choice"]
    rows = {
        int(step): {**bar, "worst margin": choice["worst_margin"][step], "chosen": False}
        for step, bar in choice["validation_curve"].items()
    }
    rows[choice["step"]]["chosen"] = True
    table = pd.DataFrame.from_dict(rows, orient="index").sort_index()
    table.index.name = f"steps done (validation set {choice['seed']})"
    return table
