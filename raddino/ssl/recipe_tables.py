"""Tables of the recipe study (chapter 12): GPU sweeps, CPU recipe A/Bs, target geometry and
pooled probes, each held to the release bar. Read from the reports; nothing runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

from raddino.ssl.release import read_release_manifest
from raddino.ssl.release_tables import SHIFT_COLUMN, auprc_of, headline_metrics, verdict_row


def _overrides_text(overrides: dict) -> str:
    """A variant's config overrides as one cell."""
    return "; ".join(f"{k}={v}" for k, v in overrides.items()) or "(as is)"


def _stability(entry: dict) -> dict:
    """How alike a class token stays when the image moves by a quarter patch (4 px at 224;
    `raddino.eval.stability`), where the report measured it."""
    stability = entry.get("class_token_shift_stability")
    return {SHIFT_COLUMN: stability["shift_4px"]} if stability else {}


def sweep_table(path: str | os.PathLike, properties: tuple[str, ...] = ("collimation borders",)):
    """One row per encoder of a `benchmarks/gpu_session.py --variant` sweep (its sweep.json):
    the baselines it probed first, then each variant with its overrides and training time, and
    the class-token read-outs named in `properties` where the sweep measured them."""
    import pandas as pd

    report = json.loads(Path(path).read_text())

    def scalars(metrics: dict) -> dict:
        readouts = metrics.get("class_token_properties", {})
        columns = {f"class token: {p}": readouts[p] for p in properties if p in readouts}
        return {**headline_metrics(metrics), **columns, **_stability(metrics)}

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
        row = headline_metrics(entry["bar"])
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


def pooled_probe_table(
    path: str | os.PathLike, finding: str | None = None, labels: dict[str, str] | None = None
):
    """Macro AUPRC (or one finding's AUPRC) of each encoder (rows) probed on each feature of a
    `benchmarks/pooled_probe.py` report, per probe set (columns: feature, set). `labels` renames
    rows (e.g. a spec whose weights have since been replaced: "raddino:phantom" -> "v1")."""
    import pandas as pd

    report = json.loads(Path(path).read_text())
    rows = {}
    for spec, sets in report["encoders"].items():
        row = {}
        for feature in next(iter(sets.values())):
            for seed, features in sets.items():
                where = f"{path}: {spec} on set {seed}"
                row[(feature, f"set {seed}")] = auprc_of(features[feature], finding, where)
        rows[(labels or {}).get(spec, spec)] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["feature", "probe set"])
    return table


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
            else verdict_row(entry["bar"], baseline)
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
        rows[label] = verdict_row(bar_a, bar_b)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["first minus second", ""])
    return table


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
