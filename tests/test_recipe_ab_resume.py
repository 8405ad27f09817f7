"""benchmarks/cpu_recipe_ab.py resumes its report: a rerun with more variants measures only the
new ones, a changed setting starts afresh, and a reused name with other overrides is an error."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "cpu_recipe_ab.py"


@pytest.fixture(scope="module")
def resumed_report():
    spec = importlib.util.spec_from_file_location("cpu_recipe_ab", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.resumed_report


def _fresh() -> dict:
    return {
        "profile": "ablation",
        "common_overrides": {"train.epochs": "10"},
        "versions": {"raddino": "new"},
        "evaluation": {"probe_n": 600, "sets": (0, 1)},  # as asdict(ReleaseEval) gives it
        "variants": {},
    }


def test_a_rerun_keeps_what_was_measured_with_the_same_settings(tmp_path, resumed_report):
    path = tmp_path / "ab.json"
    assert resumed_report(path, _fresh(), {"a": {}}) == _fresh()  # nothing yet
    old = {**_fresh(), "versions": {"raddino": "old"}, "start": {"spec": "raddino:phantom"}}
    old["variants"] = {"a": {"overrides": {"x": "1"}, "bar": {"macro_auprc": 0.2}}}
    path.write_text(json.dumps(old))

    kept = resumed_report(path, _fresh(), {"a": {"x": "1"}, "b": {"y": "2"}})
    assert kept["variants"] == old["variants"] and kept["start"] == old["start"]
    assert kept["versions"] == {"raddino": "new"}

    other = {**_fresh(), "common_overrides": {"train.epochs": "20"}}
    assert resumed_report(path, other, {"a": {"x": "1"}}) == other  # other settings: afresh
    with pytest.raises(SystemExit, match="variant 'a' was measured with overrides"):
        resumed_report(path, _fresh(), {"a": {"x": "2"}})
