"""Book runner: profiles validated at the edge, chapters executed in order and skipped when their
inputs are unchanged, failures named by chapter and cell; offline check; static explorer data."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from raddino import book
from raddino.book import (
    ChapterFailed,
    chapter_inputs_digest,
    chapter_parameters,
    declared_parameters,
    discover_chapters,
    load_profile,
    plan_chapter,
    raddino_modules_used,
    run_book,
    select_chapters,
)
from raddino.book_html import check_toc_outputs, offline_violations
from raddino.book_profiles import parse_assignments

REPO = Path(__file__).resolve().parents[1]

HEADER = "# ---\n# jupyter:\n#   jupytext:\n#     text_representation:\n#       extension: .py\n"
HEADER += "#       format_name: percent\n# ---\n"


def _notebook(body: str) -> str:
    return HEADER + textwrap.dedent(body)


def _write_root(tmp_path: Path, chapters: dict[str, str], profile: str) -> Path:
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "profiles").mkdir()
    for name, text in chapters.items():
        (tmp_path / "notebooks" / f"{name}.py").write_text(_notebook(text))
    (tmp_path / "profiles" / "p.yml").write_text(textwrap.dedent(profile))
    return tmp_path


GOOD_A = """
# %% [markdown]
# # Chapter A

# %% tags=["parameters"]
size = 3
label = "x"

# %%
from pathlib import Path
Path("a_ran.txt").write_text(str(size) + label)
print("size", size)
"""

GOOD_B = """
# %% tags=["parameters"]
size = 1

# %%
print(size * 2)
"""

FAILING = """
# %% tags=["parameters"]
divisor = 0

# %%
x = 1

# %%
y = 1 / divisor
"""

PROFILE = """
description: test
threads: 1
parameters:
  size: 5
  unused_elsewhere: true
chapters:
  01_a:
    label: "y"
"""


# ------------------------------------------------------------------------------ profiles


def test_repository_profiles_fit_every_chapter():
    """Each shipped profile validates against every chapter's parameters cell."""
    chapters = discover_chapters(REPO)
    assert [c.name for c in chapters][:2] == ["00_how_to_read", "01_phantom_world"]
    for name in ("smoke", "cpu", "gpu-paper"):
        profile = load_profile(name, REPO)
        assert profile.threads and profile.cell_timeout_s
        for chapter in chapters:
            plan = plan_chapter(chapter, profile)
            assert plan.parameters.get("profile_name") == name
            declared = declared_parameters(book.read_chapter(chapter), chapter.name)
            assert set(plan.parameters) <= set(declared)
    smoke = load_profile("smoke", REPO).parameters
    cpu = load_profile("cpu", REPO).parameters
    assert smoke["n_images"] < cpu["n_images"] and smoke["image_size"] < cpu["image_size"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("paramters: {}\n", "unknown key"),
        ("parameters: [1, 2]\n", "'parameters' must be a mapping"),
        ("threads: 0\n", "'threads' must be a positive integer"),
        ("chapters: {a: 3}\n", "'chapters' must map"),
        ("parameters: {a: [\n", "not valid YAML"),
    ],
)
def test_bad_profiles_name_the_key(tmp_path, text, message):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "bad.yml").write_text(text)
    with pytest.raises(ValueError, match=message):
        load_profile("bad", tmp_path)


def test_missing_profile_lists_available(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"available: \['cpu', 'gpu-paper', 'smoke'\]"):
        load_profile("nope", REPO)


def test_parameters_are_checked_against_the_notebook(tmp_path):
    root = _write_root(tmp_path, {"01_a": GOOD_A}, PROFILE)
    profile = load_profile("p", root)
    declared = {"size": 3, "label": "x", "ratio": 0.5, "flag": False, "anything": None}
    assert chapter_parameters(profile, "01_a", declared) == {"size": 5, "label": "y"}
    assert chapter_parameters(profile, "02_b", {"size": 1}) == {"size": 5}
    with pytest.raises(ValueError, match=r"chapters\.01_a sets \['label'\].*does not declare"):
        chapter_parameters(profile, "01_a", {"size": 1})
    bad_type = book.Profile("p", Path("p.yml"), parameters={"size": "big"})
    with pytest.raises(ValueError, match="parameter 'size' for chapter c is str 'big'"):
        chapter_parameters(bad_type, "c", {"size": 3})
    int_for_float = book.Profile("p", Path("p.yml"), parameters={"ratio": 1, "flag": True})
    assert chapter_parameters(int_for_float, "c", declared) == {"ratio": 1, "flag": True}
    float_for_int = book.Profile("p", Path("p.yml"), parameters={"size": 2.5})
    with pytest.raises(ValueError, match="is float 2.5"):
        chapter_parameters(float_for_int, "c", declared)
    bool_for_int = book.Profile("p", Path("p.yml"), parameters={"size": True})
    with pytest.raises(ValueError, match="is bool True"):
        chapter_parameters(bool_for_int, "c", declared)


def test_parameters_cell_is_required(tmp_path):
    root = _write_root(tmp_path, {"01_a": "# %%\nx = 1\n"}, PROFILE)
    chapter = discover_chapters(root)[0]
    with pytest.raises(ValueError, match="exactly one cell tagged 'parameters'.*found 0"):
        plan_chapter(chapter, load_profile("p", root))


# ------------------------------------------------------------------------------ order, digest


def test_order_follows_dependencies_then_names(tmp_path, monkeypatch):
    root = _write_root(
        tmp_path, {"01_a": GOOD_A, "02_b": GOOD_B, "03_c": GOOD_B, "04_d": GOOD_B}, PROFILE
    )
    monkeypatch.setattr(book, "CHAPTER_DEPENDENCIES", {"01_a": ("03_c",), "04_d": ("02_b",)})
    chapters = discover_chapters(root)
    assert [c.name for c in chapters] == ["02_b", "03_c", "01_a", "04_d"]
    assert [c.name for c in select_chapters(chapters, ["01"])] == ["03_c", "01_a"]
    assert [c.name for c in select_chapters(chapters, ["04_d"])] == ["02_b", "04_d"]
    with pytest.raises(ValueError, match="expected one chapter"):
        select_chapters(chapters, ["9"])
    monkeypatch.setattr(book, "CHAPTER_DEPENDENCIES", {"01_a": ("02_b",), "02_b": ("01_a",)})
    with pytest.raises(ValueError, match="cycle"):
        discover_chapters(root)


def test_library_files_follow_imports_transitively():
    files = {
        p.as_posix().split("raddino/", 1)[1]
        for p in raddino_modules_used(
            ["import numpy\n%matplotlib inline\nfrom raddino.pipeline import stage\n"]
        )
    }
    assert "pipeline.py" in files and "__init__.py" in files
    # pipeline imports raddino.utils lazily inside a function, and the phantom writer likewise
    assert "utils.py" in files
    assert "data/phantom/dataset.py" in files
    assert "book.py" not in files and "ssl/train.py" not in files
    paper = {p.name for p in raddino_modules_used(["from raddino.paper import paper_table"])}
    assert {"tables.py", "results.yaml"} <= paper


def test_digest_changes_with_each_input(tmp_path):
    library = [Path(book.__file__)]
    base = chapter_inputs_digest("x = 1", {"a": 1}, library)
    assert base == chapter_inputs_digest("x = 1", {"a": 1}, library)
    assert base != chapter_inputs_digest("x = 2", {"a": 1}, library)
    assert base != chapter_inputs_digest("x = 1", {"a": 2}, library)
    more = library + [Path(book.__file__).with_name("utils.py")]
    assert base != chapter_inputs_digest("x = 1", {"a": 1}, more)


# ------------------------------------------------------------------------------ execution


def test_run_book_executes_skips_and_reports_failures(tmp_path):
    root = _write_root(tmp_path, {"01_a": GOOD_A, "02_b": GOOD_B}, PROFILE)
    logs: list[str] = []
    summary = run_book("p", root, progress=False, log=logs.append)
    assert summary == {
        "01_a": {"status": "executed", "seconds": summary["01_a"]["seconds"]},
        "02_b": {"status": "executed", "seconds": summary["02_b"]["seconds"]},
    }
    assert (root / "a_ran.txt").read_text() == "5y"  # ran in the root with injected values
    output = json.loads((root / "book" / "01_a.ipynb").read_text())
    record = output["metadata"]["raddino_book"]
    assert record["status"] == "ok" and record["parameters"] == {"size": 5, "label": "y"}
    printed = "".join(
        "".join(o.get("text", "")) for c in output["cells"] for o in c.get("outputs", [])
    )
    assert "size 5" in printed

    assert run_book("p", root, progress=False, log=logs.append) == {
        "01_a": {"status": "skipped"},
        "02_b": {"status": "skipped"},
    }
    (root / "notebooks" / "02_b.py").write_text(_notebook(GOOD_B.replace("* 2", "* 3")))
    again = run_book("p", root, progress=False, log=logs.append)
    assert again["01_a"] == {"status": "skipped"} and again["02_b"]["status"] == "executed"

    (root / "notebooks" / "02_b.py").write_text(_notebook(FAILING))
    good_a = (root / "book" / "01_a.ipynb").read_text()
    previous_b = (root / "book" / "02_b.ipynb").read_text()
    with pytest.raises(ChapterFailed) as failure:
        run_book("p", root, progress=False, log=logs.append)
    message = str(failure.value)
    assert "chapter 02_b failed in cell 3" in message
    assert "ZeroDivisionError" in message and "line 16" in message  # the line of `y = 1 / divisor`
    assert (root / "book" / "01_a.ipynb").read_text() == good_a  # others kept
    assert (root / "book" / "02_b.ipynb").read_text() == previous_b  # last good output kept
    assert (root / "runs" / "book" / "failed" / "02_b.ipynb").is_file()
    assert not list((root / "book").glob(".*tmp*"))


def test_set_overrides_the_profile_for_every_chapter_that_declares_it(tmp_path, capsys):
    """`raddino book --set size=7 --set label=z`: over the globals and the per-chapter values;
    the chapters re-execute because their parameters changed; an unknown name is an error."""
    root = _write_root(tmp_path, {"01_a": GOOD_A, "02_b": GOOD_B}, PROFILE)
    run_book("p", root, progress=False, log=lambda _: None)
    overrides = parse_assignments(["size=7", "label=z"])
    assert overrides == {"size": 7, "label": "z"}
    summary = run_book("p", root, progress=False, log=lambda _: None, overrides=overrides)
    assert summary["01_a"]["status"] == summary["02_b"]["status"] == "executed"
    assert (root / "a_ran.txt").read_text() == "7z"  # beat chapters.01_a.label: "y"
    record = json.loads((root / "book" / "02_b.ipynb").read_text())["metadata"]["raddino_book"]
    assert record["parameters"] == {"size": 7}
    with pytest.raises(ValueError, match=r"--set \['sise'\]: no chapter declares"):
        run_book("p", root, progress=False, overrides={"sise": 7})
    with pytest.raises(ValueError, match="is str 'many', but the notebook's default is int"):
        run_book("p", root, progress=False, overrides={"size": "many"})
    assert parse_assignments(["paths=[/a, /b]", "empty="]) == {"paths": ["/a", "/b"], "empty": ""}
    for bad in ("size", "=3", "a b=1"):
        with pytest.raises(ValueError, match="expected PARAMETER=VALUE"):
            parse_assignments([bad])
    from raddino.cli import main

    assert main(["book", "--root", str(root), "--profile", "p", "--set", "size"]) == 2
    assert "--set 'size': expected PARAMETER=VALUE" in capsys.readouterr().err
    assert main(["book", "--root", str(root), "--build-only", "--set", "size=1"]) == 2
    assert "--build-only executes none" in capsys.readouterr().err


def test_unknown_chapter_in_profile_is_an_error(tmp_path):
    root = _write_root(tmp_path, {"02_b": GOOD_B}, PROFILE)
    with pytest.raises(ValueError, match=r"unknown chapter\(s\) \['01_a'\]"):
        run_book("p", root, progress=False, log=lambda _: None)


# ------------------------------------------------------------------------------ HTML checks


def test_offline_violations_finds_remote_resources(tmp_path):
    (tmp_path / "_static").mkdir()
    (tmp_path / "ok.html").write_text(
        '<script src="_static/a.js"></script><a href="https://example.org">link</a>'
        '<link rel="stylesheet" href="_static/x.css"><img src="data:image/png;base64,AA">'
    )
    assert offline_violations(tmp_path) == []
    (tmp_path / "bad.html").write_text(
        '<script defer src="https://cdn.example/x.js"></script>'
        "<link href='//fonts.example/css' rel=stylesheet>"
        "<style>@import url(https://fonts.example/a.css);</style>"
    )
    (tmp_path / "_static" / "t.css").write_text(
        "body { background: url('http://x.example/b.png') }"
    )
    found = offline_violations(tmp_path)
    assert any("bad.html: https://cdn.example/x.js" in v for v in found)
    assert any("bad.html: //fonts.example/css" in v for v in found)
    assert any("https://fonts.example/a.css" in v for v in found)
    assert any("t.css: http://x.example/b.png" in v for v in found)


def test_toc_pages_must_exist(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nparts:\n  - caption: c\n    chapters:\n"
        "      - file: 00_x\n      - file: 01_y\n"
    )
    (tmp_path / "book" / "intro.md").write_text("# hi\n")
    (tmp_path / "book" / "00_x.ipynb").write_text("{}")
    assert check_toc_outputs(tmp_path) == ["01_y"]


# ------------------------------------------------------------------------------ static explorer


def test_quantized_features_keep_cosines():
    from raddino.viz.explorer_static import quantize_patch_features

    rng = np.random.default_rng(0)
    features = rng.normal(size=(3, 4, 4, 64)).astype(np.float32) * 5 + 1
    quantized = quantize_patch_features(features).astype(np.float64).reshape(-1, 64)
    exact = features.reshape(-1, 64).astype(np.float64)

    def cos(x):
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)
        return unit @ unit.T

    assert np.abs(cos(quantized) - cos(exact)).max() < 0.02
    assert quantize_patch_features(features).dtype == np.int8


def test_static_explorer_html_embeds_data_and_validates():
    from raddino.viz.explorer_static import static_explorer_html

    rng = np.random.default_rng(1)
    images = [rng.random((28, 28)) for _ in range(2)]
    features = rng.normal(size=(2, 2, 2, 8))
    page = static_explorer_html(images, features, ["a", "b</script>c"])
    assert page == static_explorer_html(images, features, ["a", "b</script>c"])  # same id
    assert page.count("</script>") == 1  # a name cannot end the script early
    assert "data-raddino-explorer" in page and "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page
    assert '"grid":[2,2]' in page and '"dims":8' in page
    with pytest.raises(ValueError, match="must match"):
        static_explorer_html(images, features, ["a"])
    with pytest.raises(ValueError, match=r"\(B, h, w, C\)"):
        static_explorer_html(images, features[0], ["a", "b"])
    with pytest.raises(ValueError, match="NaN"):
        static_explorer_html(images, features * np.nan, ["a", "b"])
    smaller = static_explorer_html(images, rng.normal(size=(2, 2, 2, 32)), ["a", "b"], dims=4)
    assert '"dims":4' in smaller


def test_sphinx_hook_drops_thebe_and_duplicate_inline_scripts():
    from types import SimpleNamespace as Script

    from raddino.book_sphinx import drop_thebe_and_duplicate_scripts

    toggle = Script(filename=None, attributes={"body": "var togglebuttonSelector = '.toggle';"})
    scripts = [
        Script(filename="_static/doctools.js", attributes={}),
        Script(filename=None, attributes={"body": 'const THEBE_JS_URL = "https://unpkg.com/x"'}),
        Script(filename="_static/sphinx-thebe.js", attributes={"async": "async"}),
        toggle,
        Script(filename=None, attributes={"body": "var togglebuttonSelector = '.toggle';"}),
        Script(filename="_static/vendor/requirejs/require.js", attributes={}),
    ]
    context = {"script_files": scripts}
    drop_thebe_and_duplicate_scripts(None, "page", "page.html", context, None)
    assert context["script_files"] is scripts  # edited in place, as Sphinx renders this list
    assert [s.filename for s in scripts] == [
        "_static/doctools.js",
        None,
        "_static/vendor/requirejs/require.js",
    ]
    assert scripts[1] is toggle
