# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python (raddino)
#     language: python
#     name: raddino
# ---

# %% [markdown]
# # Re-running the book on GPUs with real data
#
# The default build runs on phantoms, on a CPU, offline. This chapter is the how-to for the third
# kind of reader: someone with GPUs, the published weights and the real datasets who wants the
# paper's experiments rather than their phantom stand-ins. It walks through five steps:
#
# 1. get the weights (`microsoft/rad-dino`, and DINOv2 as the start of pretraining);
# 2. index the real datasets into dataset folders with `raddino index`;
# 3. write a profile that points the chapters at them (`profiles/gpu-paper.yml`);
# 4. pretrain with `torchrun` on one node or many;
# 5. re-run the whole book with one command.
#
# Every command below is **built by the library** (`raddino.rerun`) from this chapter's parameters
# and **parsed by its program's own parser** (the `raddino` CLI, torchrun, papermill, jupytext,
# `hf`) while this chapter executes. A renamed or misspelt flag therefore breaks the build of the
# book instead of leaving a stale command on this page. The chapter runs nothing heavy: no
# download, no training, no GPU.

# %% tags=["parameters"]
# Parameters: `raddino book --profile NAME` injects the profile's values here (papermill).
profile_name = "cpu"
runs_root = "runs"
device = "cpu"  # where this build loads the weights folder, if it exists on this machine
rerun_profile = "gpu-paper"  # the book profile the commands below use
rad_dino_dir = "/models/rad-dino"  # local copy of microsoft/rad-dino
dinov2_dir = "/models/dinov2-base"  # local copy of facebook/dinov2-base (continual start)
dataset_roots = {}  # dataset name -> folder of its original download (default /data/<name>)
datasets_dir = "/data/raddino"  # `raddino index` writes one dataset folder per dataset here
mimic_iv_dir = ""  # MIMIC-IV download: sex, age, height, weight, BMI for MIMIC-CXR (Table 7)
pretrain_dataset = "mimic-cxr"  # the indexed dataset that feeds pretraining (data.path)
pretrain_out = ""  # run folder on a shared filesystem (empty: runs_root/pretrain-paper)
nodes = 2  # nodes of the multi-node example (2 x 8 GPUs x 40 images: the batch 640 of the paper)
gpus_per_node = 8
rdzv_endpoint = "node0:29400"  # HOST:PORT of the rendezvous, reachable from every node
example_chapter = "06_linear_probes"  # the chapter shown with its equivalent papermill command

# %%
import tempfile
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from raddino.rerun import RerunSetup, all_commands, check_command, supported_datasets

setup = RerunSetup(
    book_profile=rerun_profile,
    rad_dino_dir=rad_dino_dir,
    dinov2_dir=dinov2_dir,
    dataset_roots=dict(dataset_roots),
    datasets_dir=datasets_dir,
    mimic_iv_dir=mimic_iv_dir,
    pretrain_dataset=pretrain_dataset,
    runs_root=runs_root,
    pretrain_out=pretrain_out,
    nodes=nodes,
    gpus_per_node=gpus_per_node,
    rdzv_endpoint=rdzv_endpoint,
)
commands = all_commands(setup, example_chapter)
parsed = [check_command(c) for c in commands]  # raises, naming the command, if one is stale


def show(step: str) -> None:
    """Show the commands of one step as a shell block, each under a comment saying what it does."""
    blocks = [f"# {c.purpose}\n{c.shell()}" for c in commands if c.step == step]
    display(Markdown("```bash\n" + "\n\n".join(blocks) + "\n```"))


print(f"this build: profile {profile_name!r}; {len(commands)} commands, each parsed by its program")
pd.Series([c.argv[0] for c in commands]).value_counts().rename("commands").to_frame()

# %% [markdown]
# ## 1. The weights
#
# The published RAD-DINO encoder lives on the Hugging Face Hub as `microsoft/rad-dino`; the
# paper's continual pretraining starts from DINOv2 ViT-B/14 (`facebook/dinov2-base`). GPU nodes
# often have no network: download both once, on a machine that has it, and copy the folders over.

# %%
show("weights")

# %% [markdown]
# Pass the **folder** wherever raddino takes weights: `--weights` of the evaluators, `--init` of
# `raddino pretrain`, the `encoders` and `explorer_weights` parameters of the book.
# `raddino.models.load_backbone` then checks, before any number is computed:
#
# * the folder holds `config.json` and `model.safetensors` (or `pytorch_model.bin`), else it
#   names what it found;
# * `config.json` describes a DINOv2 model (`model_type` `dinov2` or `dinov2_with_registers`);
# * every tensor matches the backbone built from that config, strictly: missing, unexpected and
#   mis-shaped keys are listed (no silent partial load), and nothing is unpickled;
# * the preprocessing comes from `preprocessor_config.json` (RAD-DINO: resize 518 bicubic, centre
#   crop 518, mean 0.5307, std 0.2583); without that file, a folder named like `rad-dino` gets
#   RAD-DINO's recipe and any other DINOv2 folder ImageNet's.
#
# On this machine:

# %%
from raddino.models.weights import load_backbone


def load_error(source) -> str:
    """The one-line message load_backbone gives for `source` (or 'loads')."""
    try:
        load_backbone(source)
    except (FileNotFoundError, ValueError) as err:
        return f"{type(err).__name__}: {err}"
    return "loads"


if Path(rad_dino_dir).is_dir():
    backbone = load_backbone(rad_dino_dir, device=device)
    display(
        pd.Series(
            {
                "folder": rad_dino_dir,
                "files": ", ".join(sorted(p.name for p in Path(rad_dino_dir).iterdir())),
                "depth x width": f"{backbone.depth} x {backbone.embed_dim}",
                "patch size": backbone.patch_size,
                "register tokens": backbone.num_register_tokens,
                "parameters (M)": round(sum(p.numel() for p in backbone.parameters()) / 1e6, 1),
                "preprocessing": backbone.preprocessing,
            },
            name="weights",
        ).to_frame()
    )
else:
    print(f"{rad_dino_dir} is not on this machine. What load_backbone says instead:")
    with tempfile.TemporaryDirectory() as scratch:
        incomplete = Path(scratch) / "rad-dino"
        incomplete.mkdir()
        (incomplete / "README.md").write_text("a folder copied without its weights\n")
        display(
            pd.DataFrame(
                {
                    "source": ["a missing folder", "a folder without config.json / weights"],
                    "load_backbone": [load_error(rad_dino_dir), load_error(incomplete)],
                }
            )
        )

# %% [markdown]
# ## 2. Index the real datasets
#
# `raddino index` reads a dataset's own label files where the dataset lies (images are **not**
# copied) and writes a raddino dataset folder — `labels.csv`, `dataset.json` and, for datasets with
# RLE masks, `masks/` — that every tool of the library reads. It checks that each image exists,
# takes missing views from the DICOM `ViewPosition` tag (no other header field is read: no
# identifiers), keeps the official splits and draws subject-level splits where there are none.
# The datasets it supports, read from the library's adapter registry:

# %%
pd.DataFrame(supported_datasets())

# %% [markdown]
# One command per dataset (`dataset_roots` in the profile says where each download lies):

# %%
show("index")

# %% [markdown]
# The options that change labels or rows are recorded in each folder's `dataset.json`; here they
# are as the CLI parser defines them:

# %%
from raddino.cli import build_parser

index_parser = next(a for a in build_parser()._actions if a.dest == "command").choices["index"]
pd.DataFrame(
    [
        {"option": ", ".join(a.option_strings), "default": a.default, "meaning": a.help}
        for a in index_parser._actions
        if a.option_strings and a.dest != "help"
    ]
)

# %% [markdown]
# Dataset folders already indexed under `datasets_dir` on this machine (counts only; no file
# names, no identifiers):

# %%
from raddino.data.dataset_folder import DatasetFolder
from raddino.rerun import dataset_names

indexed = []
for name in dataset_names():
    folder_path = Path(setup.dataset_folder(name))
    if (folder_path / "dataset.json").is_file():
        folder = DatasetFolder.open(folder_path, check_images=False)
        splits = folder.table["split"].value_counts().to_dict() if "split" in folder.table else {}
        indexed.append(
            {"dataset": name, "images": len(folder), "labels": len(folder.label_names), **splits}
        )
print(f"{len(indexed)} of {len(dataset_names())} dataset folders found under {datasets_dir}")
if indexed:
    display(pd.DataFrame(indexed))

# %% [markdown]
# With the folders in place the evaluators run on real data directly, e.g. the linear probes of
# the paper's Tables 3 and 4 (VinDr-CXR, CANDID-PTX, RSNA-Pneumonia) on the published weights:

# %%
show("evaluate")

# %% [markdown]
# ## 3. The profile
#
# A profile is the one file that says which sizes, weights and data the chapters use.
# `profiles/gpu-paper.yml` follows the paper's settings; its comments say what to edit (local
# weights folders instead of hub ids where there is no network; your dataset roots). Chapter 06
# reads the folders indexed above when the profile lists them: `probe_datasets` (e.g.
# `<datasets_dir>/vindr-cxr`, `candid-ptx`, `rsna-pneumonia`: the paper's Tables 3 and 4) and
# `lateral_probe_datasets` (`padchest`: Table A.1, each finding a balanced task), each label set
# beside the paper's column for it; chapter 07 reads `segmentation_dataset` (`candid-ptx`'s masks:
# Table 6), chapter 10 `attention_dataset` (the same masks: Fig. A.2) and chapter 08
# `metadata_dataset` (`mimic-cxr` indexed with MIMIC-IV, `mimic_iv_dir`: Table 7); the other
# chapters stay on phantoms. Loaded and
# validated by the book's own loader against every chapter's `parameters` cell — an unknown key,
# a per-chapter override a chapter does not declare, or a value of the wrong type stops here:

# %%
from raddino.book import declared_parameters, discover_chapters, load_profile, read_chapter
from raddino.book_profiles import chapter_parameters

profile = load_profile(rerun_profile)
chapters = discover_chapters()
used_by: dict[str, list[str]] = {}
unset: dict[str, list[str]] = {}
injected_by_chapter: dict[str, dict] = {}  # what the runner injects into each chapter
for chapter in chapters:
    declared = declared_parameters(read_chapter(chapter), str(chapter.source))
    injected = chapter_parameters(profile, chapter.name, declared)  # raises on a bad value
    injected_by_chapter[chapter.name] = injected
    for key in injected:
        used_by.setdefault(key, []).append(chapter.name.split("_", 1)[0])
    for key in set(declared) - set(injected):
        unset.setdefault(key, []).append(chapter.name.split("_", 1)[0])
unused = sorted(set(profile.parameters) - set(used_by))
values = {**profile.parameters, **{k: v for o in profile.chapters.values() for k, v in o.items()}}
print(f"{profile.path.name}: {profile.description}")
print(f"threads {profile.threads}, cell timeout {profile.cell_timeout_s} s")
print(f"parameters no chapter declares (would be ignored): {unused or 'none'}")
print(f"chapter parameters left at the notebook's default: {unset or 'none'}")


def set_in(key: str) -> str:
    """Where a parameter's value comes from: the runner, the profile's globals or a chapter."""
    if key == "profile_name":
        return "the runner (the profile's name)"
    return "parameters (every chapter)" if key in profile.parameters else "chapters: (one)"


table = pd.DataFrame(
    {
        "value": {k: values.get(k, profile.name) for k in used_by},
        "set in": {k: set_in(k) for k in used_by},
        "chapters": {k: " ".join(v) for k, v in used_by.items()},
    }
)
table.index.name = "parameter"
display(table)

# %% [markdown]
# The parameters that point chapters at real dataset folders, and what each reproduces
# (`raddino.rerun.REAL_DATA_PARAMETERS`). Each can also be given on the command line without
# editing the profile: `raddino book --profile gpu-paper --set probe_datasets='[<folder>, ...]'`.

# %%
from raddino.rerun import real_data_table

display(pd.DataFrame(real_data_table(profile)).set_index("parameter"))

# %% [markdown]
# ## 4. Pretraining with `torchrun`
#
# `raddino pretrain --profile gpu-paper` is RAD-DINO's recipe (paper App. C.1): ViT-B/14 at
# 518 px, 40 images per GPU, continual from DINOv2 weights, DINO + iBOT + KoLeo with an EMA
# teacher. `torchrun` starts one process per GPU; the trainer joins the process group (NCCL on
# GPUs) and writes the run folder from rank 0. On many nodes, run **the same command on every
# node**: they meet at the rendezvous endpoint (any one node's address and a free port), and the
# run folder, the weights and the dataset folder must lie on a filesystem every node sees.

# %%
show("pretrain")

# %% [markdown]
# Each command is parsed by torchrun's own parser and by `raddino pretrain`'s; the config it
# launches is then resolved and validated the way the trainer does it. `data.path` must exist for
# that validation: where the dataset folder is not on this machine, an empty stand-in folder takes
# its place for this check (the table shows the real path).

# %%
from raddino.rerun import pretrain_plan

pretraining = [c for c in commands if c.step == "pretrain"]
with tempfile.TemporaryDirectory() as stand_in:
    plans = {c.purpose: pretrain_plan(c, stand_in_data=stand_in) for c in pretraining[:3]}
pd.DataFrame({purpose: plan["summary"] for purpose, plan in plans.items()})

# %% [markdown]
# What the numbers mean for a run:
#
# * **Global batch.** The paper used 16 GPUs x 40 = 640 images per step. On one node of 8 GPUs the
#   batch is halved and the learning rate follows the square-root rule of the official code
#   (`base_lr * sqrt(batch / 1024)`), so the recipe stays consistent but is not the paper's run.
# * **Resuming.** A run writes `checkpoints/step_*/` (safetensors + JSON, atomically) every
#   `train.checkpoint_every` steps. Relaunching the *same* command resumes from the last one; the
#   `--resume` variant refuses to start a fresh run when the folder holds none. A changed config
#   in an existing run folder is refused. If one rank dies, the others stop at their next
#   collective with a message naming the last checkpoint; relaunch to continue.
# * **Continual from RAD-DINO.** `--init` takes anything `load_backbone` accepts: the DINOv2
#   folder reproduces the paper's start, the RAD-DINO folder continues from the published encoder.
# * **Pretraining data.** The paper pretrained on Multi-CXR: BRAX, CheXpert, MIMIC-CXR, NIH-CXR,
#   PadChest and a private set (Table B.1, 838k images). `data.path` takes **one** dataset
#   folder, so this command trains on one indexed dataset; raddino has no adapter for BRAX and no
#   command yet that merges several dataset folders into one.
# * **Ablations** (chapters 03-05 run them on phantoms) are flags of the same command:
#   `--no-mim`, `--resolution`, `--max-images`, and any `--set key=value` of the config.

# %% [markdown]
# ## 5. Re-run the whole book
#
# With the profile edited, one command executes every chapter on the GPU machine and builds the
# HTML. A chapter whose source, parameters and imported library code did not change since its
# last successful run is skipped; expensive stages are cached under `runs_root`, so an interrupted
# build resumes where it stopped. Below it, one chapter alone, and the same chapter by hand with
# Jupytext and papermill, injecting exactly the parameters the runner injects:

# %%
show("book")

# %% [markdown]
# The by-hand papermill command is checked against the runner's resolution: the parameters it
# injects are the ones `raddino book` resolves for that chapter (section 3), and its thread
# variables and cell timeout are the profile's. Papermill needs the `raddino` Jupyter kernel,
# which `raddino book` registers (inside this Python's environment) on its first run. A notebook
# executed by hand carries no runner record, so the next `raddino book` executes that chapter
# again.

# %%
papermill_command = next(c for c in commands if c.argv[0] == "papermill")
injected_by_hand = check_command(papermill_command)["injected"]
example = next(c for c in chapters if example_chapter in (c.name, c.name.split("_", 1)[0]))
assert injected_by_hand == injected_by_chapter[example.name], example.name
assert dict(papermill_command.env)["OMP_NUM_THREADS"] == str(profile.threads)
assert check_command(papermill_command)["execution_timeout"] == profile.cell_timeout_s
print(f"papermill injects the runner's {len(injected_by_hand)} parameters for {example.name}")

# %% [markdown]
# ## Every command on this page
#
# For the record, each command with the program whose parser accepted it while this chapter ran:

# %%
pd.DataFrame(
    {
        "step": [c.step for c in commands],
        "what it does": [c.purpose for c in commands],
        "parsed by": [c.argv[0] for c in commands],
    }
)
