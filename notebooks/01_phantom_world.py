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
# # The phantom world
#
# The paper pretrains on 838 k chest X-rays from five public datasets and one private one, and
# evaluates on public benchmarks with expert labels. None of that can ship with a book that must
# run offline in minutes, so the book carries its own data: **chest X-ray phantoms**, drawn from
# a seeded simulator with analytic anatomy (lungs, heart, ribs, clavicles, vessels), twelve
# findings, support devices, a simulated detector (noise, scatter, windowing, collimation) and
# exact ground truth for everything it draws.
#
# This chapter shows what the phantoms look like, what ground truth comes with them, and how hard
# they are: how much a plain logistic regression on raw pixels already gets right. Every later
# chapter's phantom numbers should be read against that baseline.

# %% tags=["parameters"]
# Parameters: `raddino book --profile NAME` injects the profile's values here (papermill).
profile_name = "cpu"
runs_root = "runs"
seed = 0
device = "cpu"
image_size = 224  # phantom side in pixels
n_images = 48  # phantoms with full ground truth (masks, landmarks) for the figures
calibration_n = 1200  # phantoms for the raw-pixel baseline
calibration_size = 128
calibration_grid = 16  # raw pixels averaged down to grid x grid features
explorer_weights = "random:vit_small"  # backbone of the patch explorer at the end

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from raddino.data.dataset_folder import DatasetFolder
from raddino.pipeline import phantom_folder
from raddino.viz.plots import image_gallery, overlay_masks, plot_landmarks

if calibration_size % calibration_grid:
    raise ValueError(f"calibration_size {calibration_size} must be a multiple of the grid")
# Rendered once per configuration and cached under runs/phantoms/<hash>/ (a pipeline stage).
folder = DatasetFolder.open(
    phantom_folder(n_images, image_size, seed, views=("PA", "AP", "LATERAL"), root=runs_root)
)
print(f"{len(folder)} phantoms of {image_size} px, {folder.table['subject_id'].nunique()} subjects")

# %% [markdown]
# ## A gallery: PA, AP and lateral views
#
# Frontal images come as posteroanterior (PA, standing, the detector in front of the chest) and
# anteroposterior (AP, often bedside: more magnified heart, different scapula position); lateral
# views show the chest from the side. Consecutive phantoms share a subject, as real datasets have
# several images per patient; every split in this book is made by subject.

# %%
shown = []
for view in ("PA", "AP", "LATERAL"):
    shown += list(np.flatnonzero(folder.table["view"].to_numpy() == view)[:4])
titles = []
for i in shown:
    row = folder.table.iloc[i]
    present = [name for name in folder.label_names if row[name] == 1]
    titles.append(f"{row['view']} #{i}\n{', '.join(present[:2]) or 'no finding'}")
fig = image_gallery([folder.read_image(i) for i in shown], titles, ncols=4)

# %% [markdown]
# ## Ground truth that comes with every image
#
# Each phantom carries binary labels for twelve findings, segmentation masks (lungs and lung
# zones, heart, clavicles, ribs, and the pneumothorax, chest tube and effusion when present),
# anatomical landmarks, patient metadata (sex, age, height, weight, BMI) and a free-text report
# written from the same ground truth. Below, one frontal and one lateral phantom with their masks
# and landmarks.

# %%
frontal = int(np.flatnonzero(folder.table["view"].isin(["PA", "AP"]).to_numpy())[0])
lateral_rows = np.flatnonzero(folder.table["view"].to_numpy() == "LATERAL")
fig, axes = plt.subplots(1, 2 if len(lateral_rows) else 1, figsize=(10, 5), squeeze=False)
for ax, i in zip(axes.flat, [frontal, *lateral_rows[:1]], strict=False):
    structures = [s for s in folder.structures if not s.startswith(("rib_", "lung_zone"))]
    masks = {s: folder.read_mask(s, i) for s in structures if folder.has_mask(s, i)}
    overlay_masks(ax, folder.read_image(i), masks)
    plot_landmarks(ax, folder.landmarks_of(i))
    ax.set_title(f"{folder.table['view'].iat[i]} #{i}: masks and landmarks", fontsize=9)
fig.tight_layout()

# %%
print(folder.report_of(frontal))
folder.table.iloc[[frontal]].T.rename(columns={frontal: "value"})

# %% [markdown]
# ## Labels and metadata, beside the paper's data
#
# The paper's patient-metadata experiment (its Table 7, distribution in Appendix C.3) uses
# MIMIC-CXR "No Finding" images with sex, age, weight and BMI, each cut into five classes. The
# phantom subjects are drawn with their own distributions; the bars below put the two side by
# side. They are *not* expected to agree: the comparison shows which classes are rare in each,
# which matters when reading balanced accuracies later.

# %%
from raddino.data.metadata_bins import bin_labels, bin_metadata
from raddino.paper import paper_table
from raddino.viz.plots import side_by_side_distribution

calibration = DatasetFolder.open(
    phantom_folder(
        calibration_n,
        calibration_size,
        seed + 1,
        views=("PA", "AP"),
        with_masks=False,
        root=runs_root,
    )
)
paper_c3 = paper_table("C.3")
variables = {"age": "Age (years)", "weight_kg": "Weight (kg)", "bmi": "BMI (kg/m2)"}
fig, axes = plt.subplots(1, 4, figsize=(15, 3))
sex = calibration.table["sex"]
ours = [float((sex == "F").mean()), float((sex == "M").mean())]
paper = paper_c3[paper_c3["Variable"] == "Sex"]["value"].to_numpy()
side_by_side_distribution(axes[0], ["female", "male"], ours, paper / paper.sum())
axes[0].set_title("sex")
for ax, (name, paper_name) in zip(axes[1:], variables.items(), strict=True):
    codes = bin_metadata(name, calibration.table[name].to_numpy())
    classes = bin_labels(name)
    ours = np.bincount(codes[codes >= 0], minlength=len(classes)) / max(1, (codes >= 0).sum())
    paper = paper_c3[paper_c3["Variable"] == paper_name]["value"].to_numpy()
    side_by_side_distribution(ax, classes, ours, paper / paper.sum(), paper_label="MIMIC (paper)")
    ax.set_title(name)
fig.tight_layout()

# %%
prevalence = pd.DataFrame(
    {
        "phantom prevalence": calibration.table[calibration.label_names].mean(),
        "positives": calibration.table[calibration.label_names].sum().astype(int),
    }
).round(3)
display(prevalence)

# %% [markdown]
# For scale, the paper's pretraining data (its Table B.1) — a reminder of how far the phantom
# world is from the real one in size as well as realism:

# %%
paper_table("B.1", wide=True)

# %% [markdown]
# ## How hard are the phantoms? A raw-pixel baseline
#
# If a logistic regression on a coarse grid of raw pixels already solves a task, that task cannot
# tell a good encoder from a bad one. We average each phantom down to a small grid and fit the
# same linear probe the later chapters fit on encoder features (`raddino.eval.probe`: one
# standardised logistic regression per finding, subject-level 60/20/20 splits, three seeds),
# reporting the area under the precision-recall curve (AUPRC, the paper's metric) next to chance
# (the test prevalence). Large findings (cardiomegaly, effusion) should be well above chance;
# thin or small ones (chest tube, nodule, rib fracture) should not be solved. A frozen backbone is
# useful on phantoms only where it beats these numbers.

# %%
from raddino.eval.probe import ProbeConfig, run_probes
from raddino.viz.plots import bars_with_reference

block = calibration_size // calibration_grid
pixels_nd = np.stack(
    [
        calibration.read_image(i)
        .reshape(calibration_grid, block, calibration_grid, block)
        .mean(axis=(1, 3))
        .ravel()
        for i in range(len(calibration))
    ]
)
probes = run_probes(
    pixels_nd,
    calibration.labels_array(),
    calibration.table["subject_id"].to_numpy(),
    calibration.label_names,
    ProbeConfig(method="sklearn", seeds=3, c=0.1, split_seed=seed),
    progress=False,
)
per_label = probes["summary"]["per_label"]
baseline = pd.DataFrame(
    {
        name: {
            "AUPRC": row["auprc"]["mean"],
            "AUPRC std": row["auprc"]["std"],
            "chance": row["prevalence"]["mean"],
        }
        for name, row in per_label.items()
    }
).T.round(3)
print("not probed (too few positives in a split):", probes["labels_not_probed"] or "none")
display(baseline)

# %%
fig, ax = plt.subplots(figsize=(8, 3))
bars_with_reference(
    ax,
    list(baseline.index),
    baseline["AUPRC"].to_numpy(),
    baseline["chance"].to_numpy(),
    value_label=f"raw pixels {calibration_grid}x{calibration_grid}",
    ylabel="AUPRC (test, mean of 3 seeds)",
)
ax.set_ylim(0, 1)
fig.tight_layout()

# %% [markdown]
# With the `smoke` profile these numbers come from a few dozen test images and are noise; with
# `cpu` they are stable to a few points. Either way they describe the phantoms, not chest X-rays.
#
# ## Patch similarity without a kernel
#
# Later chapters ask whether an encoder's *patch* features know anatomy: click a patch on one
# image and see which patches of other images look most similar. The explorer below runs in your
# browser on features embedded in this page. Here the encoder is **untrained** (random weights,
# profile value `explorer_weights`), so the heatmap mostly reflects position and local brightness;
# that is the baseline against which the trained encoders of later chapters are shown.

# %%
import json

from IPython.display import HTML
from safetensors.numpy import load_file

from raddino.pipeline import embeddings
from raddino.viz.explorer_static import static_explorer_html

embedding_file = embeddings(
    folder.root,
    explorer_weights,
    size=image_size,
    patches=True,
    seed=seed,
    device=device,
    root=runs_root,
)
patches_nhwc = load_file(embedding_file)["patches"].astype(np.float32)  # (N, h, w, C)
record = json.loads(embedding_file.with_suffix(".json").read_text())
assert record["ids"] == list(folder.table["image"]), "embedding rows must follow the folder"
views = folder.table["view"].to_numpy()
picked = [int(np.flatnonzero(views == v)[0]) for v in ("PA", "AP", "LATERAL") if (views == v).any()]
HTML(
    static_explorer_html(
        [folder.read_image(i) for i in picked],
        patches_nhwc[picked],
        [f"{folder.table['view'].iat[i]} #{i}" for i in picked],
        display_px=224,
        dims=min(64, patches_nhwc.shape[-1]),
    )
)
