"""The commands of the GPU re-execution how-to (book chapter 11), built as argv lists from one
`RerunSetup` and checked with the real parsers (raddino, torchrun, papermill, jupytext, hf), so a
renamed flag breaks the chapter and its test instead of leaving a stale command in the book."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from raddino.rerun_check import check_command, parse_torchrun

__all__ = [
    "REAL_DATA_PARAMETERS",
    "RerunSetup",
    "ShownCommand",
    "all_commands",
    "book_commands",
    "check_command",
    "dataset_names",
    "evaluate_commands",
    "index_commands",
    "pretrain_commands",
    "pretrain_plan",
    "real_data_table",
    "supported_datasets",
    "weights_commands",
]

RAD_DINO_HUB_ID = "microsoft/rad-dino"
DINOV2_HUB_ID = "facebook/dinov2-base"  # the start of RAD-DINO's continual pretraining
PRETRAIN_PROFILE = "gpu-paper"  # raddino/ssl/configs/gpu-paper.yaml (the paper's App. C.1 recipe)
RDZV_ID = "raddino-pretrain"
EVALUATED_DATASETS = ("vindr-cxr", "candid-ptx", "rsna-pneumonia")  # paper Tables 3 and 4
_ENDPOINT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


@dataclass(frozen=True)
class ShownCommand:
    """One command the chapter shows: its step, what it does, its argv and environment."""

    step: str  # weights | index | pretrain | evaluate | book
    purpose: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()

    def shell(self, width: int = 92) -> str:
        """The command as shell text; lines longer than `width` break before an option (`\\`)."""
        chunks: list[str] = [f"{k}={shlex.quote(v)}" for k, v in self.env]
        chunks.append(shlex.quote(self.argv[0]))
        for word in self.argv[1:]:  # an option starts a chunk; its values follow it
            if word.startswith("-") or len(chunks) == len(self.env) + 1:
                chunks.append(shlex.quote(word))
            else:
                chunks[-1] += " " + shlex.quote(word)
        lines = [chunks[0]]
        for chunk in chunks[1:]:
            if len(lines[-1]) + 1 + len(chunk) > width:
                lines.append("    " + chunk)
            else:
                lines[-1] += " " + chunk
        return " \\\n".join(lines)


@dataclass(frozen=True)
class RerunSetup:
    """Where things live on the GPU machines: weights, datasets, run folder, nodes and GPUs."""

    book_profile: str = "gpu-paper"
    rad_dino_dir: str = "/models/rad-dino"
    dinov2_dir: str = "/models/dinov2-base"
    dataset_roots: Mapping[str, str] = field(default_factory=dict)  # name -> original download
    datasets_dir: str = "/data/raddino"  # indexed dataset folders, one per dataset
    mimic_iv_dir: str = ""  # MIMIC-IV (hosp/patients, hosp/omr): Table 7's metadata for MIMIC-CXR
    pretrain_dataset: str = "mimic-cxr"
    runs_root: str = "runs"
    pretrain_out: str = ""  # the pretraining run folder; default <runs_root>/pretrain-paper
    nodes: int = 2
    gpus_per_node: int = 8
    rdzv_endpoint: str = "node0:29400"
    device: str = "cuda"

    def __post_init__(self) -> None:
        names = dataset_names()
        for key, value in (("nodes", self.nodes), ("gpus_per_node", self.gpus_per_node)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        unknown = sorted(set(self.dataset_roots) - set(names))
        if unknown:
            raise ValueError(f"dataset_roots: unknown dataset(s) {unknown}; supported: {names}")
        if self.pretrain_dataset not in names:
            raise ValueError(f"pretrain_dataset {self.pretrain_dataset!r}; supported: {names}")
        if not _ENDPOINT.match(self.rdzv_endpoint):
            raise ValueError(f"rdzv_endpoint must be HOST:PORT, got {self.rdzv_endpoint!r}")

    @property
    def run_folder(self) -> str:
        """The pretraining run folder (shared by all nodes)."""
        return self.pretrain_out or f"{self.runs_root.rstrip('/')}/pretrain-paper"

    def dataset_root(self, name: str) -> str:
        """The original download of `name` (the placeholder /data/<name> when not configured)."""
        return self.dataset_roots.get(name, f"/data/{name}")

    def dataset_folder(self, name: str) -> str:
        """The dataset folder `raddino index` writes for `name`."""
        return f"{self.datasets_dir.rstrip('/')}/{name}"


# ------------------------------------------------------------------------------ datasets


def dataset_names() -> list[str]:
    """Datasets `raddino index` supports, read from the adapter registry (not typed by hand)."""
    from raddino.data.adapters import ADAPTERS

    return list(ADAPTERS)


def supported_datasets() -> list[dict[str, str]]:
    """One row per adapter: its name and the first line of its module docstring."""
    from raddino.data.adapters import ADAPTERS

    rows = []
    for name, parse in ADAPTERS.items():
        doc = (inspect.getmodule(parse).__doc__ or "").strip().splitlines()
        rows.append({"dataset": name, "what the adapter reads": doc[0] if doc else ""})
    return rows


# The chapter parameters that read real dataset folders: parameter -> (chapter, the folders it
# takes, what of the paper it reproduces). Everything else in the book stays on phantoms.
REAL_DATA_PARAMETERS: dict[str, tuple[str, str, str]] = {
    "probe_datasets": (
        "06_linear_probes",
        "vindr-cxr, candid-ptx, rsna-pneumonia (frontal images)",
        "Tables 3 and 4",
    ),
    "lateral_probe_datasets": (
        "06_linear_probes",
        "padchest (lateral images, balanced tasks)",
        "Table A.1",
    ),
    "segmentation_dataset": ("07_segmentation", "candid-ptx (masks)", "Table 6"),
    "metadata_dataset": (
        "08_metadata",
        "mimic-cxr indexed with --mimic-iv (frontal No Finding images)",
        "Table 7",
    ),
    "attention_dataset": ("10_attention", "candid-ptx (finding masks)", "Fig. A.2"),
}


def real_data_table(profile: Any) -> list[dict[str, str]]:
    """One row per real-data parameter: chapter, folders, paper table, the profile's value."""
    rows = []
    for key, (chapter, folders, reproduces) in REAL_DATA_PARAMETERS.items():
        value = (profile.chapters.get(chapter) or {}).get(key, profile.parameters.get(key))
        shown = value if value not in (None, "", []) else "(empty: phantoms)"
        rows.append(
            {
                "parameter": key,
                "chapter": chapter,
                "dataset folders": folders,
                "reproduces": reproduces,
                "value in the profile": str(shown),
            }
        )
    return rows


# ------------------------------------------------------------------------------ commands


def weights_commands(setup: RerunSetup) -> list[ShownCommand]:
    """`hf download` of the published RAD-DINO weights and of the DINOv2 start point."""
    return [
        ShownCommand(
            "weights",
            "RAD-DINO weights (config.json, model.safetensors, preprocessor_config.json)",
            ("hf", "download", RAD_DINO_HUB_ID, "--local-dir", setup.rad_dino_dir),
        ),
        ShownCommand(
            "weights",
            "DINOv2 ViT-B/14, the start of continual pretraining",
            ("hf", "download", DINOV2_HUB_ID, "--local-dir", setup.dinov2_dir),
        ),
    ]


def index_commands(setup: RerunSetup) -> list[ShownCommand]:
    """`raddino index` for every supported dataset, into `datasets_dir/<name>`; MIMIC-CXR with
    its MIMIC-IV metadata where `mimic_iv_dir` is set."""
    commands = []
    for name in dataset_names():
        argv = ("raddino", "index", "--dataset", name)
        argv += ("--root", setup.dataset_root(name), "--out", setup.dataset_folder(name))
        if name == "mimic-cxr" and setup.mimic_iv_dir:
            argv += ("--mimic-iv", setup.mimic_iv_dir)
        commands.append(ShownCommand("index", f"index {name}", argv))
    return commands


def _pretrain_argv(setup: RerunSetup, init: str, out: str, resume: bool = False) -> list[str]:
    data = f"data.path={setup.dataset_folder(setup.pretrain_dataset)}"
    argv = ["-m", "raddino.cli", "pretrain", "--profile", PRETRAIN_PROFILE, "--out", out]
    argv += ["--init", init, "--set", data]
    return [*argv, "--resume"] if resume else argv


def pretrain_commands(setup: RerunSetup) -> list[ShownCommand]:
    """torchrun on one node and on `nodes` nodes (rendezvous), from RAD-DINO, and a resume."""
    one_node = ("torchrun", "--standalone", "--nproc-per-node", str(setup.gpus_per_node))
    many_nodes = ("torchrun", "--nnodes", str(setup.nodes), *one_node[2:])
    many_nodes += ("--rdzv-backend", "c10d", "--rdzv-endpoint", setup.rdzv_endpoint)
    many_nodes += ("--rdzv-id", RDZV_ID)
    out, from_rad_dino = setup.run_folder, f"{setup.run_folder}-from-rad-dino"
    return [
        ShownCommand(
            "pretrain",
            f"1 node x {setup.gpus_per_node} GPUs, continual from DINOv2",
            (*one_node, *_pretrain_argv(setup, setup.dinov2_dir, out)),
        ),
        ShownCommand(
            "pretrain",
            f"{setup.nodes} nodes x {setup.gpus_per_node} GPUs: the same command on every node",
            (*many_nodes, *_pretrain_argv(setup, setup.dinov2_dir, out)),
        ),
        ShownCommand(
            "pretrain",
            "continual from the published RAD-DINO weights instead",
            (*one_node, *_pretrain_argv(setup, setup.rad_dino_dir, from_rad_dino)),
        ),
        ShownCommand(
            "pretrain",
            "resume after a stop (fails clearly when the run folder holds no run)",
            (*one_node, *_pretrain_argv(setup, setup.dinov2_dir, out, resume=True)),
        ),
    ]


def evaluate_commands(setup: RerunSetup) -> list[ShownCommand]:
    """Frozen-backbone probes of the RAD-DINO weights on the paper's classification datasets."""
    return [
        ShownCommand(
            "evaluate",
            f"linear probes on {name}",
            ("raddino", "probe", "--data", setup.dataset_folder(name))
            + ("--weights", setup.rad_dino_dir, "--device", setup.device)
            + ("--out", f"{setup.runs_root.rstrip('/')}/probe-{name}/metrics.json"),
        )
        for name in EVALUATED_DATASETS
        if name in dataset_names()
    ]


def book_commands(
    setup: RerunSetup, chapter: str, root: str | os.PathLike | None = None
) -> list[ShownCommand]:
    """`raddino book` for the whole book and one chapter, and the equivalent jupytext + papermill.

    The papermill command injects exactly the parameters the runner would (`chapter_parameters`)
    with the runner's thread limits and cell timeout.
    """
    from raddino.book import (
        KERNEL_NAME,
        OUTPUT_DIR,
        declared_parameters,
        discover_chapters,
        find_root,
        load_profile,
        read_chapter,
        select_chapters,
        set_thread_limits,
    )
    from raddino.book_profiles import chapter_parameters

    root = find_root(root)
    profile = load_profile(setup.book_profile, root)
    wanted = select_chapters(discover_chapters(root), [chapter])  # ValueError if not one match
    selected = next(c for c in wanted if chapter in (c.name, c.name.split("_", 1)[0]))
    declared = declared_parameters(read_chapter(selected), str(selected.source))
    parameters = chapter_parameters(profile, selected.name, declared)
    # The variables the runner sets for the profile's threads, read from an emptied copy of the
    # environment (a runner that launched this process may have set them already).
    with mock.patch.dict(os.environ, clear=True):
        set_thread_limits(profile.threads)
        env = tuple(os.environ.items())
    source = selected.source.relative_to(root).as_posix()
    converted = source.removesuffix(".py") + ".ipynb"  # beside the source, as chapter 00 shows
    executed = f"{OUTPUT_DIR}/{selected.name}.ipynb"
    papermill_argv = ["papermill", converted, executed, "-k", KERNEL_NAME, "--cwd", "."]
    papermill_argv += ["-y", json.dumps(parameters)]  # JSON is YAML: lists and strings survive
    if profile.cell_timeout_s:
        papermill_argv += ["--execution-timeout", str(profile.cell_timeout_s)]
    profile_arg = ("--profile", setup.book_profile)
    return [
        ShownCommand("book", "the whole book, then its HTML", ("raddino", "book", *profile_arg)),
        ShownCommand(
            "book",
            f"one chapter ({selected.name}), no HTML",
            ("raddino", "book", *profile_arg, "--only", selected.name, "--no-build"),
        ),
        ShownCommand(
            "book",
            "by hand, step 1: the Jupytext source as a notebook",
            ("jupytext", "--to", "ipynb", source, "-o", converted),
        ),
        ShownCommand(
            "book",
            "by hand, step 2: papermill with the profile's parameters",
            tuple(papermill_argv),
            env,
        ),
    ]


def all_commands(
    setup: RerunSetup, chapter: str = "06_linear_probes", root: str | os.PathLike | None = None
) -> list[ShownCommand]:
    """Every command the chapter shows, in the order it shows them."""
    return [
        *weights_commands(setup),
        *index_commands(setup),
        *pretrain_commands(setup),
        *evaluate_commands(setup),
        *book_commands(setup, chapter, root),
    ]


# ------------------------------------------------------------------------------ what runs


def pretrain_plan(command: ShownCommand, stand_in_data: str | None = None) -> dict[str, Any]:
    """The validated pretraining config a torchrun command launches, and its global numbers.

    `data.path` must exist for the config to validate; `stand_in_data` (an existing folder)
    replaces it where the dataset is not on this machine (the chapter says so).
    """
    from raddino.ssl.config import parse_set_arguments
    from raddino.ssl.pretrain_cli import resolve_config
    from raddino.ssl.schedules import scaled_lr

    parsed = parse_torchrun(list(command.argv[1:]))
    launcher, script = parsed["torchrun"], argparse.Namespace(**parsed["raddino"])
    data_path = parse_set_arguments(script.overrides).get("data.path", "")
    if stand_in_data is not None and not Path(data_path).exists():
        script.overrides = [o for o in script.overrides if not o.startswith("data.path=")]
        script.overrides.append(f"data.path={stand_in_data}")
    config = resolve_config(script)
    world = int(launcher["nnodes"].split(":")[-1]) * int(launcher["nproc_per_node"])
    train, optim, crops = config["train"], config["optim"], config["crops"]
    total_batch = train["batch_size_per_device"] * world
    return {
        "config": config,
        "summary": {
            "GPUs (world size)": world,
            "architecture": config["model"]["arch"],
            "initial weights (--init)": config["model"]["init"],
            "dataset folder (data.path)": data_path,
            "images per GPU per step": train["batch_size_per_device"],
            "global batch": total_batch,
            "steps": train["epochs"] * train["epoch_length"],
            "peak lr (scaled)": scaled_lr(optim["base_lr"], total_batch, optim["scaling_rule"]),
            "crops (global x 2, local x n)": (
                f"{crops['global_crops_size']} px x 2, "
                f"{crops['local_crops_size']} px x {crops['local_crops_number']}"
            ),
            "checkpoint every (steps)": train["checkpoint_every"],
            "precision": train["precision"],
        },
    }
