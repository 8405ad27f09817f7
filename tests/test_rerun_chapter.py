"""The GPU re-execution chapter (notebooks/11_rerun_on_gpu.py): every command it shows parses with
its program's real parser and means what it says, the papermill command injects exactly what the
book runner injects, and the gpu-paper profile validates and covers every chapter."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from raddino.book import (
    copy_book_sources,
    declared_parameters,
    discover_chapters,
    load_profile,
    plan_chapter,
    read_chapter,
)
from raddino.book_profiles import chapter_parameters
from raddino.data.adapters import ADAPTERS
from raddino.data.index_cli import DATASET_CHOICES
from raddino.rerun import (
    REAL_DATA_PARAMETERS,
    RerunSetup,
    ShownCommand,
    all_commands,
    book_commands,
    check_command,
    index_commands,
    pretrain_commands,
    pretrain_plan,
    real_data_table,
    supported_datasets,
)

REPO = Path(__file__).resolve().parents[1]
CHAPTER = "11_rerun_on_gpu"


@pytest.fixture(scope="module")
def setup() -> RerunSetup:
    roots = {"vindr-cxr": "/mnt/vindr/1.0.0"}
    return RerunSetup(dataset_roots=roots, nodes=3, gpus_per_node=4, rdzv_endpoint="h1:29500")


@pytest.fixture(scope="module")
def commands(setup) -> list[ShownCommand]:
    return all_commands(setup, "06", REPO)


def _replace(command: ShownCommand, old: str, new: str) -> ShownCommand:
    assert old in command.argv, (old, command.argv)
    argv = tuple(new if word == old else word for word in command.argv)
    return dataclasses.replace(command, argv=argv)


def test_every_command_parses_and_means_what_it_says(setup, commands):
    parsed = {c: check_command(c) for c in commands}
    assert {c.argv[0] for c in commands} == {"hf", "raddino", "torchrun", "papermill", "jupytext"}
    downloads = [p for c, p in parsed.items() if c.step == "weights"]
    assert [(p["repo_id"], p["local_dir"]) for p in downloads] == [
        ("microsoft/rad-dino", setup.rad_dino_dir),
        ("facebook/dinov2-base", setup.dinov2_dir),
    ]
    index = {p["dataset"]: p for c, p in parsed.items() if c.step == "index"}
    assert index["vindr-cxr"]["root"] == "/mnt/vindr/1.0.0"  # configured root
    assert index["mimic-cxr"]["root"] == "/data/mimic-cxr"  # placeholder for the others
    assert all(p["out"] == f"/data/raddino/{name}" for name, p in index.items())
    for command, result in parsed.items():
        if command.step == "pretrain":
            launcher, script = result["torchrun"], result["raddino"]
            assert launcher["nproc_per_node"] == "4" and launcher["module"]
            assert script["profile"] == "gpu-paper" and str(script["out"]).startswith("runs/")
            assert script["overrides"] == ["data.path=/data/raddino/mimic-cxr"]
            if launcher["standalone"]:
                assert launcher["nnodes"] == "1:1"
            else:
                assert launcher["nnodes"] == "3" and launcher["rdzv_endpoint"] == "h1:29500"
                assert launcher["rdzv_backend"] == "c10d"
    inits = [p["raddino"]["init"] for c, p in parsed.items() if c.step == "pretrain"]
    assert inits.count(setup.rad_dino_dir) == 1 and inits.count(setup.dinov2_dir) == 3
    assert sum(p["raddino"]["resume"] for c, p in parsed.items() if c.step == "pretrain") == 1
    books = [p for c, p in parsed.items() if c.step == "book" and c.argv[0] == "raddino"]
    assert [(p["profile"], p["only"]) for p in books] == [
        ("gpu-paper", None),
        ("gpu-paper", ["06_linear_probes"]),
    ]


def test_shell_text_round_trips_to_the_argv(commands):
    for command in commands:
        text = command.shell(width=60)
        for line in text.split(" \\\n"):  # a long line is one option and its value(s)
            assert len(line) <= 60 or not any(w.startswith("-") for w in shlex.split(line)[1:])
        words = shlex.split(text.replace("\\\n", " "))
        assert words == [f"{k}={v}" for k, v in command.env] + list(command.argv)


@pytest.mark.parametrize(
    "program, old, new, message",
    [
        ("raddino", "--dataset", "--datset", "unknown option '--datset'"),
        ("raddino", "--dataset", "--data", "unknown option '--data'"),  # argparse: abbreviation
        ("raddino", "index", "indexx", "unknown raddino subcommand"),
        ("torchrun", "--nproc-per-node", "--nproc-per-nod", "unknown option"),  # abbreviation
        ("torchrun", "--profile", "--profil", "unknown option '--profil'"),  # raddino's side
        ("torchrun", "gpu-paper", "no-such-profile", "invalid choice"),
        ("torchrun", "raddino.cli", "raddino.other", "expected raddino.cli"),
        ("hf", "--local-dir", "--local-directory", "No such option"),
        ("hf", "download", "dl", "unknown hf command"),
        ("papermill", "--cwd", "--cwdir", "No such option"),
        ("jupytext", "--to", "--too", "unrecognized arguments"),
    ],
)
def test_a_stale_flag_is_an_error_naming_the_command(commands, program, old, new, message):
    command = next(c for c in commands if c.argv[0] == program and old in c.argv)
    with pytest.raises(ValueError, match=message) as caught:
        check_command(_replace(command, old, new))
    assert str(caught.value).startswith(f"`{program}")


def test_papermill_needs_a_notebook_and_torchrun_needs_a_module(commands):
    papermill = next(c for c in commands if c.argv[0] == "papermill")
    with pytest.raises(ValueError, match="reads .ipynb"):
        check_command(_replace(papermill, papermill.argv[1], "notebooks/06_linear_probes.py"))
    torchrun = next(c for c in commands if c.argv[0] == "torchrun")
    without_module = dataclasses.replace(
        torchrun, argv=tuple(w for w in torchrun.argv if w != "-m")
    )
    with pytest.raises(ValueError, match="expected `-m raddino.cli`"):
        check_command(without_module)
    with pytest.raises(ValueError, match="no parser known for program 'bash'"):
        check_command(ShownCommand("x", "x", ("bash", "-c", "true")))


def test_index_commands_cover_the_adapter_registry(commands):
    indexed = [c.argv[c.argv.index("--dataset") + 1] for c in commands if c.step == "index"]
    assert indexed == list(ADAPTERS) == list(DATASET_CHOICES)
    assert not any("--mimic-iv" in c.argv for c in commands)  # not configured: not asked for
    with_iv = index_commands(RerunSetup(mimic_iv_dir="/data/mimiciv/2.2"))
    for command in with_iv:
        wanted = ("--mimic-iv", "/data/mimiciv/2.2") if "mimic-cxr" in command.argv else ()
        assert command.argv[len(command.argv) - len(wanted) :] == wanted
        check_command(command)  # the CLI's own parser accepts it
    rows = supported_datasets()
    assert [r["dataset"] for r in rows] == list(ADAPTERS)
    for row in rows:  # each description is the adapter module's own first docstring line
        module = sys.modules[ADAPTERS[row["dataset"]].__module__]
        assert row["what the adapter reads"] == module.__doc__.strip().splitlines()[0]


@pytest.mark.parametrize("profile_name", ["gpu-paper", "smoke"])
def test_papermill_injects_what_the_runner_injects(setup, profile_name, monkeypatch):
    profile = load_profile(profile_name, REPO)
    # Inside a chapter run by the runner the thread variables are already set: still shown.
    monkeypatch.setenv("OMP_NUM_THREADS", str(profile.threads))
    shown = dataclasses.replace(setup, book_profile=profile_name)
    environment = dict(os.environ)
    for chapter in discover_chapters(REPO):
        papermill = book_commands(shown, chapter.name, REPO)[-1]
        parsed = check_command(papermill)
        declared = declared_parameters(read_chapter(chapter), chapter.name)
        expected = chapter_parameters(profile, chapter.name, declared)
        assert parsed["injected"] == expected, chapter.name
        assert parsed["output_path"] == f"book/{chapter.name}.ipynb"
        assert parsed["execution_timeout"] == profile.cell_timeout_s
        assert dict(papermill.env)["OMP_NUM_THREADS"] == str(profile.threads)
        if chapter.name == "06_linear_probes":  # once through the runner's own planner (slower)
            assert parsed["injected"] == plan_chapter(chapter, profile).parameters
    assert dict(os.environ) == environment  # the thread variables were read, not left set


def test_gpu_paper_profile_validates_and_covers_every_chapter():
    profile = load_profile("gpu-paper", REPO)
    chapters = discover_chapters(REPO)
    assert CHAPTER in {c.name for c in chapters}
    declared_anywhere: set[str] = set()
    for chapter in chapters:
        declared = declared_parameters(read_chapter(chapter), chapter.name)
        declared_anywhere |= set(declared)
        injected = chapter_parameters(profile, chapter.name, declared)  # raises on a bad value
        left_at_default = set(declared) - set(injected)
        assert not left_at_default, f"gpu-paper leaves {left_at_default} of {chapter.name} unset"
    assert set(profile.parameters) <= declared_anywhere  # no key that every chapter ignores
    assert set(profile.chapters) == {CHAPTER}
    own = profile.chapters[CHAPTER]
    fields = {f.name for f in dataclasses.fields(RerunSetup)}
    setup = RerunSetup(**{k: v for k, v in own.items() if k in fields})  # validates its values
    assert setup.pretrain_dataset in ADAPTERS and setup.nodes * setup.gpus_per_node == 16


def test_setup_rejects_bad_values():
    with pytest.raises(ValueError, match=r"dataset_roots: unknown dataset\(s\) \['mimic'\]"):
        RerunSetup(dataset_roots={"mimic": "/x"})
    with pytest.raises(ValueError, match="nodes must be a positive integer"):
        RerunSetup(nodes=0)
    with pytest.raises(ValueError, match="gpus_per_node must be a positive integer"):
        RerunSetup(gpus_per_node=True)
    with pytest.raises(ValueError, match="rdzv_endpoint must be HOST:PORT"):
        RerunSetup(rdzv_endpoint="node0")
    with pytest.raises(ValueError, match="pretrain_dataset 'brax'"):
        RerunSetup(pretrain_dataset="brax")
    with pytest.raises(ValueError, match="expected one chapter"):
        book_commands(RerunSetup(), "99", REPO)


def test_pretrain_plan_is_the_paper_recipe_on_16_gpus(tmp_path):
    one_node, many_nodes, from_rad_dino, resume = pretrain_commands(RerunSetup())
    plan = pretrain_plan(many_nodes, stand_in_data=str(tmp_path))
    summary = plan["summary"]
    assert summary["GPUs (world size)"] == 16 and summary["global batch"] == 640  # App. C.1
    assert summary["architecture"] == "vit_base" and summary["steps"] == 60_000
    assert summary["dataset folder (data.path)"] == "/data/raddino/mimic-cxr"  # the real path
    assert plan["config"]["data"]["path"] == str(tmp_path)  # validated with the stand-in
    assert plan["config"]["crops"]["global_crops_size"] == 518
    assert pretrain_plan(one_node, str(tmp_path))["summary"]["global batch"] == 320
    assert pretrain_plan(from_rad_dino, str(tmp_path))["config"]["model"]["init"] == (
        "/models/rad-dino"
    )
    with pytest.raises(ValueError, match="data.path"):  # without a stand-in: the real check
        pretrain_plan(resume)


@pytest.mark.slow
def test_chapter_commands_run_by_hand_and_by_the_runner(tmp_path):
    """The chapter executes under smoke, and its by-hand jupytext + papermill route runs too."""
    from raddino.book import ensure_kernel_spec, run_book

    root = copy_book_sources(REPO, tmp_path / "root")
    summary = run_book("smoke", root, [CHAPTER], progress=False, log=lambda _: None)
    assert summary[CHAPTER]["status"] == "executed"
    ensure_kernel_spec()
    bin_dir = Path(sys.executable).parent
    for command in book_commands(RerunSetup(book_profile="smoke"), "00", root)[2:]:
        argv = [str(bin_dir / command.argv[0]), *command.argv[1:]]
        env = {**os.environ, **dict(command.env)}
        done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
    executed = json.loads((root / "book" / "00_how_to_read.ipynb").read_text())
    injected = next(c for c in executed["cells"] if "injected-parameters" in c["metadata"]["tags"])
    assert 'profile_name = "smoke"' in "".join(injected["source"])


def test_real_data_parameters_are_declared_by_their_chapters_and_set_by_gpu_paper():
    """Every parameter the chapter lists as reading real folders exists in the chapter it names
    (so the table cannot drift from the notebooks) and gpu-paper.yml says what to put there."""
    profile = load_profile("gpu-paper", REPO)
    chapters = {c.name: c for c in discover_chapters(REPO)}
    for key, (chapter, _, _) in REAL_DATA_PARAMETERS.items():
        assert key in declared_parameters(read_chapter(chapters[chapter]), chapter), key
        assert key in profile.parameters, key
    rows = real_data_table(profile)
    assert [r["parameter"] for r in rows] == list(REAL_DATA_PARAMETERS)
    assert {r["value in the profile"] for r in rows} == {"(empty: phantoms)"}
    chosen = dataclasses.replace(
        profile, parameters={**profile.parameters, "probe_datasets": ["/d/v"]}
    )
    assert real_data_table(chosen)[0]["value in the profile"] == "['/d/v']"
