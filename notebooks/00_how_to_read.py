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
# # How to read (and re-run) this book
#
# Each chapter is a notebook. Read it top to bottom: prose says what is being measured and why,
# short code cells call the `raddino` library to do it, and the outputs below each cell are what
# *this* build of the book measured. Nothing in the outputs is typed by hand.
#
# Three kinds of numbers appear side by side, and the chapters always say which is which:
#
# * **the paper's numbers**, taken from its tables (`raddino.paper`), with the table they come from;
# * **our numbers on phantoms**, measured by this build with the profile named in each chapter;
# * **our numbers on real data**, only when the book is re-executed with real datasets (never in the
#   default build, which has no network and no patient data).

# %% tags=["parameters"]
# Parameters: `raddino book --profile NAME` injects the profile's values here (papermill).
profile_name = "cpu"
runs_root = "runs"

# %% [markdown]
# ## Profiles: the same notebooks at different sizes
#
# A *profile* is a YAML file in `profiles/` whose values are injected into each notebook's
# `parameters` cell. The default build uses `cpu` (phantoms at 224 px; the whole book is meant to
# build within half an hour on two CPU cores); `smoke` checks in a few minutes that every chapter
# runs (its numbers mean nothing); `gpu-paper` follows the paper's settings (518 px inputs,
# ViT-B/14, the published weights) on a GPU machine. This build used:

# %%
import pandas as pd

from raddino.book import discover_chapters, load_profile

profiles = {name: load_profile(name) for name in ("smoke", "cpu", "gpu-paper")}
print(f"this build: profile {profile_name!r} — {profiles[profile_name].description}")
pd.DataFrame({name: p.parameters for name, p in profiles.items()})

# %% [markdown]
# ## Re-running the book
#
# From a checkout of the repository:
#
# ```bash
# make book                         # = raddino book --profile cpu, then the HTML build
# PROFILE=smoke make book           # a few minutes, numbers meaningless
# raddino book --profile gpu-paper --only 01   # one chapter (by number or name)
# raddino book --no-build           # execute only
# ```
#
# `raddino book` executes each chapter with [papermill](https://papermill.readthedocs.io), writing
# the executed notebook to `book/<chapter>.ipynb`, then builds this HTML with Jupyter Book. A
# chapter is skipped when nothing it depends on changed: its source, the parameters it receives,
# and the source of the `raddino` modules it imports. A single notebook can also be run by hand:
#
# ```bash
# jupytext --to ipynb notebooks/01_phantom_world.py
# papermill notebooks/01_phantom_world.ipynb out.ipynb -p image_size 112 -p n_images 12
# ```
#
# Expensive steps — rendering phantoms, extracting features, fitting heads, pretraining — are
# *stages*: pure functions of a config whose results are cached in `runs/<stage>/<hash>/` with a
# `manifest.json` (config, versions, metrics, timings). A chapter asks for a result and gets the
# cached one when it exists, so no chapter re-computes what another already made, and an
# interrupted build resumes where it stopped.

# %%
chapters = discover_chapters()
pd.DataFrame({"chapter": [c.name for c in chapters], "source": [str(c.source) for c in chapters]})

# %% [markdown]
# ## What the phantom world can and cannot tell
#
# The default build runs on procedurally generated phantoms (chapter 1). They have exact ground
# truth, so they can tell us whether a method *works*: whether a linear probe can find a finding
# that is drawn in the image, whether a segmentation head recovers a lung mask, whether two
# patches that cover the same anatomical landmark are matched. They can also rank methods on
# *this* synthetic task, and show effects that follow from the method itself (a frozen backbone
# that was never trained carries little beyond position and brightness; a trained one more).
#
# They cannot tell how well anything works on real chest X-rays: phantom anatomy is simpler,
# findings are drawn from a handful of shape models, and label noise, scanner variety and disease
# co-occurrence of real data are absent. The paper's central claims — that RAD-DINO matches or beats
# text-supervised encoders on real benchmarks — can only be checked by re-executing the book on the
# real datasets with the published weights (`gpu-paper`).
#
# Similarity between patch features, used by the explorers in later chapters, is the cosine of the
# angle between two feature vectors $u, v \in \mathbb{R}^C$:
#
# $$ \cos(u, v) = \frac{u \cdot v}{\lVert u \rVert \, \lVert v \rVert}. $$

# %% [markdown]
# ## Provenance of this build

# %%
from raddino.utils import versions

pd.Series(versions(), name="version").to_frame()
