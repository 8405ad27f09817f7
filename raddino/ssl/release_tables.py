"""Tables of the release chapter (02): how each release was made and probed, and the recipe
sweeps and A/B runs held to the same bar. Read from manifests and sweep reports; nothing runs."""

from __future__ import annotations

import json
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


def _overrides_text(overrides: dict) -> str:
    """A variant's config overrides as one cell."""
    return "; ".join(f"{k}={v}" for k, v in overrides.items()) or "(as is)"


def _headline(metrics: dict) -> dict:
    """The bar's scalar metrics (per-finding AUPRC stays in the manifest)."""
    return {k: v for k, v in metrics.items() if not isinstance(v, dict)}


SHIFT_COLUMN = "class token after a 4-px shift"


def _stability(entry: dict) -> dict:
    """How alike a class token stays when the image moves by a quarter patch (4 px at 224;
    `raddino.eval.stability`), where the report measured it."""
    stability = entry.get("class_token_shift_stability")
    return {SHIFT_COLUMN: stability["shift_4px"]} if stability else {}


def _with_ranges(metrics: dict) -> dict:
    """The bar's scalars (mean over probe sets) and each bar metric's range between sets."""
    ranges = metrics.get("between_set_range", {})
    return {**_headline(metrics), **{f"{k} range between sets": v for k, v in ranges.items()}}


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


def sweep_table(path: str | os.PathLike, properties: tuple[str, ...] = ("collimation borders",)):
    """One row per encoder of a `benchmarks/gpu_session.py --variant` sweep (its sweep.json):
    the baselines it probed first, then each variant with its overrides and training time, and
    the class-token read-outs named in `properties` where the sweep measured them."""
    import pandas as pd

    report = json.loads(Path(path).read_text())

    def scalars(metrics: dict) -> dict:
        readouts = metrics.get("class_token_properties", {})
        columns = {f"class token: {p}": readouts[p] for p in properties if p in readouts}
        return {**_headline(metrics), **columns, **_stability(metrics)}

    rows = {}
    for spec, metrics in report.items():
        if isinstance(metrics, dict) and "macro_auprc" in metrics:
            rows[spec] = {**scalars(metrics), "overrides": "(baseline)"}
    for name, variant in report.get("variants", {}).items():
        overrides = _overrides_text(variant["overrides"])
        if "failed" in variant:  # collapsed or diverged: no encoder to probe
            rows[f"variant {name}"] = {"overrides": overrides, "failed": variant["failed"]}
            continue
        rows[f"variant {name}"] = {
            **scalars(variant["frozen_probes"]),
            "overrides": overrides,
            "final teacher entropy": variant["last_step"]["teacher_entropy"],
        }
    if "majority_class" in report:
        majority = report["majority_class"]
        rows["majority class"] = {
            f"class token: {p}": majority[p] for p in properties if p in majority
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def recipe_ab_table(
    path: str | os.PathLike, properties: tuple[str, ...] = ("collimation borders",)
):
    """One row per encoder of a `benchmarks/cpu_recipe_ab.py` report: its starting encoder, then
    each variant, with the bar's scalars, the chosen class-token read-outs and training time."""
    import pandas as pd

    report = json.loads(Path(path).read_text())
    entries = {f"start {report['start']['spec']}": report["start"]}
    entries |= {f"variant {name}": v for name, v in report.get("variants", {}).items()}
    rows = {}
    for label, entry in entries.items():
        if "failed" in entry:  # stopped by the collapse check or a NaN: no encoder to probe
            rows[label] = {
                "overrides": _overrides_text(entry["overrides"]),
                "failed": entry["failed"],
            }
            continue
        row = _headline(entry["bar"])
        for name in properties:
            if name not in entry["class_token_properties"]:
                raise KeyError(f"{path}: {label} has no class-token read-out {name!r}")
            row[f"class token: {name}"] = entry["class_token_properties"][name]
        row |= _stability(entry)
        if "overrides" in entry:
            row["overrides"] = _overrides_text(entry["overrides"])
            row["train s"] = entry["wall_s"]
        rows[label] = row
    majority = report["majority_class"]
    rows["majority class"] = {f"class token: {name}": majority[name] for name in properties}
    return pd.DataFrame.from_dict(rows, orient="index")


GEOMETRY_COLUMNS = {
    "effective_prototypes": "prototypes per target",
    "top_logit": "best prototype cosine",
    "crop_overlap": "target overlap: two crops",
    "other_image_overlap": "target overlap: other image",
    "cls_cos_crops": "class-token cosine: two crops",
    "cls_cos_other_image": "class-token cosine: other image",
}


def target_geometry_table(path: str | os.PathLike):
    """One row per checkpoint of a `benchmarks/target_geometry.py` report (steps done as index):
    how flat the teacher's targets are and how much an image's two crops share."""
    import pandas as pd

    report = json.loads(Path(path).read_text())
    rows = {}
    for row in report["rows"]:
        missing = set(GEOMETRY_COLUMNS) - set(row)
        if missing:
            raise KeyError(f"{path}: row {row.get('steps_done')} lacks {sorted(missing)}")
        rows[row["steps_done"]] = {label: row[key] for key, label in GEOMETRY_COLUMNS.items()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "steps done"
    return table


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
            **_headline(entry["bar"]),
            SHIFT_COLUMN: entry["shift_stability"]["shift_4px"],
        }
        for steps, entry in sorted(curve["steps"].items(), key=lambda item: int(item[0]))
    }
    rows["random init"] = _headline(curve["random"])
    rows |= {spec: _headline(bar) for spec, bar in curve.get("baselines", {}).items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def pooled_probe_table(path: str | os.PathLike, finding: str | None = None):
    """Macro AUPRC (or one finding's AUPRC) of each encoder (rows) probed on each feature of a
    `benchmarks/pooled_probe.py` report, per probe set (columns: feature, set)."""
    import pandas as pd

    report = json.loads(Path(path).read_text())
    rows = {}
    for spec, sets in report["encoders"].items():
        row = {}
        for feature in next(iter(sets.values())):
            for seed, features in sets.items():
                where = f"{path}: {spec} on set {seed}"
                row[(feature, f"set {seed}")] = _auprc(features[feature], finding, where)
        rows[spec] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["feature", "probe set"])
    return table


def _verdict_row(this: dict, baseline: dict) -> dict:
    """`compare_on_sets` as one table row: (metric, "set k") differences and (metric, "clearly
    beats")."""
    from raddino.ssl.bar import compare_on_sets

    row = {}
    for metric, result in compare_on_sets(this, baseline).items():
        for seed, difference in result["difference_per_set"].items():
            row[(metric, f"set {seed}")] = difference
        row[(metric, "clearly beats")] = result["clearly_beats"]
    return row


def _auprc(result: dict, finding: str | None, where: str) -> float:
    """Macro AUPRC of a probe result, or one finding's; a KeyError names `where` if it lacks it."""
    if finding is None:
        return result["macro_auprc"]
    if finding not in result["finding_auprc"]:
        raise KeyError(f"{where} has no AUPRC for {finding!r}")
    return result["finding_auprc"][finding]


def recipe_verdict_table(
    path: str | os.PathLike,
    against: str = "random:vit_tiny",
    release: str = "phantom",
    release_dir: str | os.PathLike | None = None,
):
    """Each encoder of a `benchmarks/cpu_recipe_ab.py` report minus a baseline that a release
    manifest measured on the same probe sets (`raddino.ssl.bar.compare_on_sets`): per metric,
    the difference on each set and whether the encoder clearly beats the baseline."""
    import pandas as pd

    report = json.loads(Path(path).read_text())
    probes = read_release_manifest(release, release_dir)["frozen_probes"]
    if report["evaluation"] != probes["evaluation"]:
        raise ValueError(f"{path}: probed under another bar than {release}.json; re-probe one")
    if against not in probes["baselines"]:
        raise KeyError(
            f"{release}.json has no baseline {against!r}; has {list(probes['baselines'])}"
        )
    baseline = probes["baselines"][against]
    entries = {f"start {report['start']['spec']}": report["start"]}
    entries |= {f"variant {name}": v for name, v in report.get("variants", {}).items()}
    rows = {}
    for label, entry in entries.items():
        # a stopped run (collapse check, NaN) keeps its row, with no numbers and why
        rows[label] = (
            {("failed", ""): entry["failed"]}
            if "failed" in entry
            else _verdict_row(entry["bar"], baseline)
        )
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=[f"minus {against}", ""])
    return table


def recipe_pair_table(pairs: dict[str, tuple[tuple[str, str], tuple[str, str]]]):
    """One row per named pair of `cpu_recipe_ab.py` variants, each given as (report path, variant
    name): the first minus the second on each probe set, and whether the first clearly beats it.
    Pairs may span reports; both must have been probed under the same bar."""
    import pandas as pd

    def variant(path: str, name: str) -> tuple[dict, dict]:
        report = json.loads(Path(path).read_text())
        if name not in report.get("variants", {}):
            raise KeyError(f"{path}: no variant {name!r}; has {list(report.get('variants', {}))}")
        return report["evaluation"], report["variants"][name]["bar"]

    rows = {}
    for label, (first, second) in pairs.items():
        (eval_a, bar_a), (eval_b, bar_b) = variant(*first), variant(*second)
        if eval_a != eval_b:
            raise ValueError(f"{label}: {first[0]} and {second[0]} were probed under other bars")
        rows[label] = _verdict_row(bar_a, bar_b)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["first minus second", ""])
    return table


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
                    auprc = _auprc(result, finding, f"{path}: {spec} on set {seed}")
                    rows.append((spec, f"set {seed}", int(block), pooling, auprc))
    return pd.DataFrame(rows, columns=["encoder", "probe set", "block", "pooling", "auprc"])


def recipe_scoreboard(
    paths: list[str | os.PathLike],
    against: str = "random:vit_tiny",
    release_dir: str | os.PathLike | None = None,
):
    """Every variant of several `cpu_recipe_ab.py` reports in one `recipe_verdict_table` (rows:
    report stem / variant), with their shared starting encoder once at the top. A variant that an
    earlier report already holds with the same overrides (the same run) is listed once."""
    import pandas as pd

    tables, seen = {}, {}
    for path in paths:
        verdicts = recipe_verdict_table(path, against=against, release_dir=release_dir)
        start = [label for label in verdicts.index if label.startswith("start ")]
        tables.setdefault("start", verdicts.loc[start])
        repeated = []
        for name, variant in json.loads(Path(path).read_text()).get("variants", {}).items():
            if seen.get(name) == variant["overrides"]:
                repeated.append(f"variant {name}")
            seen.setdefault(name, variant["overrides"])
        tables[Path(path).stem] = verdicts.drop(index=start + repeated)
    board = pd.concat(tables, names=["report", "encoder"])
    return board.rename(index=lambda label: label.removeprefix("variant "), level=1)


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
