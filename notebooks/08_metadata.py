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
# # Patient metadata: what the image says about the patient
#
# Text-supervised encoders learn what radiology reports mention; reports rarely mention a
# patient's sex, age or weight. The paper argues that image-only self-supervision keeps such
# information, and tests it in its Table 7: a logistic regression on frozen CLS features of
# MIMIC-CXR "No Finding" images predicts sex, and age, weight and BMI each cut into five bins,
# with 5-fold cross-validation. RAD-DINO reads sex almost perfectly (99.6 %) and beats the
# text-supervised BioViL-T and BiomedCLIP on every variable.
#
# We repeat the protocol on the phantoms of chapter 06 (same images, same cached features):
# `raddino.eval.metadata` fits scikit-learn's default logistic regression per variable, with
# folds **by subject** and stratified by class, and reports mean (std) accuracy over the folds
# together with the **majority-class accuracy** of the same folds: the floor an encoder must beat
# to have read anything at all. Five-bin variables are imbalanced, so a majority-class guess can
# look respectable.
#
# As in chapter 06, the encoders are the profile's baselines (raw pixels, an untrained ViT) plus
# our own release checkpoints that ship in `raddino/release/` (chapter 02). The phantom simulator
# ties anatomy to metadata by its own rules (`raddino.data.phantom.subject`): thorax size with
# height and sex, soft tissue with BMI, breast shadows for women, bone density, cartilage
# calcification and aortic unfolding with age.
# What is readable here says how much of *those rules* survives in the features, not how well a
# real X-ray reveals a real patient's age.
#
# **On real data.** Index MIMIC-CXR with its MIMIC-IV records (`raddino index --dataset mimic-cxr
# --mimic-iv DIR`: sex, age at the study, and height, weight and BMI measured nearest it) and set
# the profile's `metadata_dataset` to that folder: the same cells then measure the paper's
# selection, the frontal images whose report says "No Finding", beside Table 7.

# %% tags=["parameters"]
# Parameters: `raddino book --profile NAME` injects the profile's values here (papermill).
profile_name = "cpu"
runs_root = "runs"
seed = 0
device = "cpu"
image_size = 224  # encoder input side in pixels (ViTs; the pixel baseline keeps its own size)
encoders = ["pixels:32", "random:vit_tiny"]  # encoder specs; released checkpoints are added
probe_n = 600  # phantoms (the same as chapter 06's probes)
probe_size = 224  # phantom side in pixels
metadata_folds = 5  # cross-validation folds, by subject
metadata_dataset = ""  # a real dataset folder with patient metadata instead (MIMIC-CXR: Table 7)

# %%
import warnings
from collections import Counter

import matplotlib.pyplot as plt
import torch
from IPython.display import display

from raddino.eval.ablations import cached_cls
from raddino.eval.chapter_data import metadata_folder
from raddino.eval.metadata import MetadataConfig
from raddino.eval.tables import (
    encoders_to_compare,
    metadata_beside_paper,
    metadata_frame,
    metadata_per_variable,
)
from raddino.viz.plots import bars_with_floor

torch.set_num_threads(2)
specs = encoders_to_compare(encoders)
# Chapter 06's frontal phantoms, or the frontal "No Finding" images of `metadata_dataset`.
folder, data_name = metadata_folder(
    metadata_dataset, n=probe_n, size=probe_size, seed=seed, runs_root=runs_root
)
print(
    f"{len(folder)} frontal images ({data_name}), {folder.table['subject_id'].nunique()} "
    f"subjects; encoders: {specs}"
)

# %% [markdown]
# ## Classes and how rare they are
#
# The paper's bins (`raddino.data.metadata_bins`), counted on these phantoms. A bin with very few
# images makes the majority class a strong guess and the folds noisy.

# %%
from raddino.eval.metadata import metadata_targets

counts = {}
for variable in MetadataConfig().variables:
    codes, classes = metadata_targets(folder.table, variable)
    counts[variable] = {c: int((codes == k).sum()) for k, c in enumerate(classes)}
    counts[variable]["unknown"] = int((codes < 0).sum())
for variable, row in counts.items():
    print(f"{variable:10s}", ", ".join(f"{c}: {n}" for c, n in row.items()))

# %% [markdown]
# ## Accuracy per variable and encoder
#
# Features come from the cache chapter 06 filled (`raddino.eval.features.extract`); nothing is
# recomputed when both chapters run. A variable that cannot be cross-validated (a single class,
# fewer subjects than folds) is listed with the reason instead of a number.

# %%
config = MetadataConfig(folds=metadata_folds, seed=seed)
results = {}
with warnings.catch_warnings(record=True) as caught:  # counted below instead of printed each time
    warnings.simplefilter("always")
    for spec in specs:
        features = cached_cls(
            spec, folder, size=image_size, seed=seed, runs_root=runs_root, device=device
        )
        results[spec] = metadata_per_variable(features, folder.table, config)
kinds = Counter(type(w.message).__name__ for w in caught)
if kinds:  # e.g. lbfgs stopping at the default 100 iterations, as the paper's "default settings"
    print("warnings while fitting:", dict(kinds))
ours = metadata_frame(results)
not_measured = ours[ours["note"] != ""]
if len(not_measured):
    display(not_measured[["encoder", "variable", "note"]])
display(metadata_beside_paper(ours, where=data_name))

# %% [markdown]
# The rows marked "(phantoms)" are ours (accuracy %, mean ± std over the folds) with the
# majority-class floor below them; the rows marked "(paper, MIMIC-CXR)" are Table 7. The two
# halves share the protocol and the bins, not the data.

# %%
measured = ours.dropna(subset=["accuracy_mean"])
fig, ax = plt.subplots(figsize=(8, 3.4))
bars_with_floor(
    ax,
    measured,
    x="variable",
    y="accuracy_mean",
    floor="majority_mean",
    floor_label="majority class",
    ylabel=f"accuracy % ({metadata_folds}-fold CV)",
)
fig.tight_layout()

# %% [markdown]
# Reading the bars: a bar at the black tick means the encoder learned nothing about that
# variable beyond its class balance. Sex and BMI change large areas of the phantom (thorax
# size, soft-tissue density, breast shadows), so raw pixels may clear the floor there; age acts
# through subtler cues (bone density, calcified cartilage, aortic unfolding), and weight mixes
# height and BMI. The paper's point — that an image-only encoder keeps
# patient information a report-supervised one discards — can only be tested here once our own
# pretrained checkpoints join the table; with baselines alone, the chapter measures how much the
# phantoms leak metadata through plain intensity patterns.
