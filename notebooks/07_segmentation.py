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
# # Segmentation: what frozen patch features know about shape
#
# The CLS-token probes of chapter 06 ask what an image *contains*; segmentation asks *where*.
# The paper's Table 6 freezes the backbone and trains only a decoder on its patch tokens: a
# **linear** head (BatchNorm + 1x1 convolution on the last layer, as DINOv2 does) and heavier
# **ViTDet** and **UPerNet** decoders on four intermediate layers. A **U-Net** trained end to end
# on the pixels gives the upper bound a task-specific network reaches. Dice is reported as
# "mean (std)" over the test images for lungs (left and right, averaged), six lung zones
# (averaged), pneumothorax, chest tubes and ribs; Figure 4 repeats the lung segmentation with
# fewer and fewer training images, and Figure A.5 shows predictions beside the truth.
#
# This chapter runs the same protocol on phantoms with exact masks (chapter 01), plus the heart,
# which the paper does not segment. Splits are by subject (70/15/15), the head with the lowest
# validation loss is scored on the test split (`raddino.eval.segment`). The encoders are the
# profile's baselines, raw pixels averaged to a grid (`pixels:S`) and an **untrained** ViT
# (`random:<arch>`), beside the release checkpoints the repository ships (`raddino:general`, the
# stand-in for natural-image DINOv2, and `raddino:phantom`, continual on phantoms, chapter 02). The
# paper's MIM ablation (Table 6's linear rows with and without masked image modelling) is
# chapter 13: two short runs that differ only in the iBOT loss, with these linear heads.
#
# What phantoms can tell: whether patch features keep enough spatial detail to draw an organ's
# outline, on images where every outline is exact. What they cannot tell: how an encoder does on
# real X-rays, where boundaries are blurred by overlapping anatomy. Read our numbers against
# each other and against the reference rows, never against the paper's.
#
# **On real data.** Set the profile's `segmentation_dataset` to a folder with masks written by
# `raddino index` (CANDID-PTX: the paper's pneumothorax and chest-tube columns) and the same cells
# segment up to `segmentation_n` of its frontal images, whole subjects drawn at random; columns
# the folder has no masks for show "–", and the few-shot curve follows its first structure.

# %% tags=["parameters"]
# Parameters: `raddino book --profile NAME` injects the profile's values here (papermill).
profile_name = "cpu"
runs_root = "runs"
seed = 0
device = "cpu"
encoders = ["pixels:32", "random:vit_tiny"]  # encoder specs; released checkpoints are added
segmentation_n = 160  # phantoms with masks (PA and AP views)
segmentation_size = 112  # side in pixels of the phantoms, the encoder input and the masks
segmentation_heads = ["linear", "upernet"]  # frozen-backbone heads (linear, vitdet, upernet)
segmentation_epochs = 100  # epochs of the linear heads and the few-shot curve (as the paper)
decoder_epochs = 12  # epochs of the UPerNet / ViTDet decoders (the paper: 100)
unet_epochs = 5  # epochs of the end-to-end U-Net upper bound
few_shot_head = "linear"  # the head of the few-shot curve (Fig. 4)
few_shot_sizes = [5, 10, 25, 50, 100]  # training images per point (capped at the train split)
segmentation_dataset = ""  # a real dataset folder with masks instead (CANDID-PTX: Table 6)

# %%
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
from IPython.display import display

from raddino.eval.chapter_data import masked_folder
from raddino.eval.dice import dice_per_image, summarize_dice
from raddino.eval.patch_grids import load_patch_encoder
from raddino.eval.segment import (
    DEFAULT_STRUCTURES,
    few_shot_curve,
    fit_and_score,
    load_segmentation_set,
    segmentation_inputs,
    split_rows,
)
from raddino.eval.segment_train import HeadTrainConfig
from raddino.eval.tables import (
    encoders_to_compare,
    interval_text,
    paired_dice_frame,
    segmentation_beside_paper,
    segmentation_frame,
)

torch.set_num_threads(2)
specs = encoders_to_compare(encoders)
# Frontal phantoms with masks, or up to segmentation_n frontal images of segmentation_dataset.
folder, data_name = masked_folder(
    segmentation_dataset,
    n=segmentation_n,
    size=segmentation_size,
    seed=seed,
    phantom_seed=seed + 3,
    runs_root=runs_root,
)
structures = [s for s in DEFAULT_STRUCTURES if s in folder.structures]
rows = split_rows(folder, seed)
head_config = HeadTrainConfig(epochs=segmentation_epochs, seed=seed, device=device)
decoder_config = HeadTrainConfig(epochs=decoder_epochs, seed=seed, device=device)
unet_config = HeadTrainConfig(epochs=unet_epochs, seed=seed, device=device)
print(
    f"{len(folder)} images ({data_name}) at {segmentation_size} px, structures {structures}, "
    f"split by subject into { {name: len(r) for name, r in rows.items()} } images; "
    f"encoders: {specs}"
)

# %% [markdown]
# ## Frozen heads, once per encoder
#
# Each encoder runs once over the phantoms; its patch grids (the last layer, or the last four
# for UPerNet and ViTDet) are cached under `runs/patch_grids/`, so heads, seeds and reruns never
# run the backbone again. Raw pixels have a single "layer" (the image itself, averaged to a grid),
# so only the linear head is trained on them: a pyramid of four copies of the same grid says
# nothing about a multi-layer decoder. All heads predict all structures at once (one sigmoid per
# structure) at the phantom's resolution.

# %%
results, outputs, inputs_of, data_of = {}, {}, {}, {}
for spec in specs:
    encoder = load_patch_encoder(spec, device)
    size = None if spec.startswith("pixels") else segmentation_size
    # masks are always scored at segmentation_size, whatever grid the encoder sees
    data = load_segmentation_set(
        folder, structures, encoder.preprocessing_at(size), segmentation_size, progress=False
    )
    data_of[spec] = data
    heads = ["linear"] if spec.startswith("pixels") else segmentation_heads
    for head in heads:
        inputs = segmentation_inputs(
            head, encoder, folder, data, size, cache_dir=f"{runs_root}/patch_grids", progress=False
        )
        inputs_of[spec, head] = inputs
        config = head_config if head == "linear" else decoder_config
        outputs[spec, head] = fit_and_score(head, inputs, data, rows, config, progress=False)
        results[spec, head] = outputs[spec, head]["dice"]
        print(f"{spec} + {head}: features {tuple(inputs.shape[1:])}")

# %% [markdown]
# ## Two references: the U-Net and the empty prediction
#
# The **U-Net** (a ResNet-18 U-Net, randomly initialised: there are no ImageNet weights offline)
# sees the pixels and is trained end to end, with far fewer epochs than the paper. The **empty
# prediction** predicts nothing anywhere. It matters because of the paper's convention for
# findings (after [5, 7]): every test image counts, including images *without* a pneumothorax or
# chest tube, and there an empty prediction on an empty truth scores **1** while any stray pixel
# scores **0**. So a head that never predicts a finding scores the share of test images without
# it, and per-image Dice is a mix of ones and zeros: that is why the pneumothorax and chest-tube
# stds are so large, in the paper (up to 47 points) and here.

# %%
first = data_of[specs[0]]
test_truth = first.masks_nshw[rows["test"]]
outputs["pixels", "unet"] = fit_and_score(
    "unet", first.images_n1hw, first, rows, unet_config, progress=False
)
results["U-Net on pixels", "end to end"] = outputs["pixels", "unet"]["dice"]
empty_dice_ns = dice_per_image(
    torch.zeros_like(test_truth), test_truth, first.defined_ns[rows["test"]]
)
results["reference", "empty prediction"] = summarize_dice(empty_dice_ns, structures)
frame = segmentation_frame(results)

# %% [markdown]
# ## Dice per structure, beside the paper's Table 6
#
# Ours first (Dice %, mean (std) over the test phantoms), then the paper's rows (real X-rays,
# ViT-B/14 at 518 px, 100 epochs; different data, same protocol). "Heart" is ours only.

# %%
display(segmentation_beside_paper(frame, where=data_name, complete=not segmentation_dataset))

# %%
shown = ["lungs", "lung_zones", "heart", "ribs", "chest_tube", "pneumothorax"]
shown = [s for s in shown if s in set(frame["structure"])]  # a real folder has fewer
plot_frame = frame[frame["structure"].isin(shown)].assign(
    model=lambda f: f["encoder"] + " + " + f["head"], dice=lambda f: 100 * f["dice_mean"]
)
fig, ax = plt.subplots(figsize=(11, 3.8))
sns.barplot(data=plot_frame, x="structure", y="dice", hue="model", order=shown, ax=ax)
ax.set_ylabel("Dice % (mean over test images)")
ax.set_xlabel("")
ax.set_ylim(0, 100)
ax.legend(fontsize=7, ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.1))
fig.tight_layout()

# %% [markdown]
# Reading it: large structures with a sharp outline (lungs, heart) are where a head on coarse patch
# grids gets closest to the U-Net; thin ones (ribs, chest tubes) need detail below the 14-pixel
# patch, which a linear head upsampling a patch grid cannot draw. For the findings, compare every
# row with the empty prediction first: a head that scores about the same has learnt to predict
# nothing. On the phantoms an untrained ViT's patches mostly encode position and brightness, and a
# UPerNet on four such layers can still learn fair organ outlines, because the decoder is trained;
# the paper's point is how much better a *pretrained* encoder does with the *same* small head. That
# is what the linear rows show: the phantom checkpoint's patch tokens draw the lungs clearly better
# than the general checkpoint's, and both better than random init's, while a UPerNet trained on top
# of four layers evens the encoders out. The linear heads train the paper's 100 epochs: with 12 they
# were still learning, and every encoder's lungs scored alike (about 38 %), which hid the
# difference. The `cpu` profile gives the UPerNet decoders and the U-Net fewer epochs than the paper
# (100), so the U-Net is not yet the upper bound it is there: a row above it says more about its
# training budget than about the frozen encoder. With the `smoke` profile the test split holds a few
# images and every number is noise.
#
# ## How sure are the linear rows?
#
# The linear rows differ by the encoder alone: the same test phantoms, split and head seed. So
# each difference pairs image by image. Below, each pretrained encoder's linear head minus random
# init's, and the phantom checkpoint's minus the general one's: the mean over test phantoms in
# Dice points, with a 95 % bootstrap interval over them (`raddino.eval.dice.paired_difference`,
# as in chapter 13's MIM ablation). An interval that excludes zero is a difference this test set
# resolves; the intervals do not cover a second pretraining or head seed.

# %%
linear_dice = {spec: outputs[spec, "linear"]["dice_per_image"] for spec in specs
               if (spec, "linear") in outputs and not spec.startswith("pixels")}  # fmt: skip
baseline = next((spec for spec in linear_dice if spec.startswith("random:")), None)
pairs = {
    f"{spec} − {baseline}": (spec, baseline) for spec in linear_dice if baseline not in (None, spec)
}
if {"raddino:phantom", "raddino:general"} <= set(linear_dice):
    pairs["raddino:phantom − raddino:general"] = ("raddino:phantom", "raddino:general")
if pairs:
    display(interval_text(paired_dice_frame(linear_dice, pairs, structures, shown, seed=seed)))

# %% [markdown]
# ## Few training images (Fig. 4)
#
# The paper's Figure 4 trains the heads on growing subsets of the training set and plots the
# lungs' mean Dice; pretrained encoders stay high with few images, where an end-to-end U-Net
# needs them all. Subsets are nested (the first n of one seeded permutation), the validation and
# test splits stay the same. The dashed line is our U-Net on the full training set.

# %%
curve_structure = shown[0]  # the lungs (on a real folder without them, its first structure)
sizes = sorted({min(int(n), len(rows["train"])) for n in few_shot_sizes})
curves = []
for spec in specs:
    if (spec, few_shot_head) not in inputs_of:
        continue
    for point in few_shot_curve(
        few_shot_head, inputs_of[spec, few_shot_head], data_of[spec], rows, sizes, head_config,
        seed=seed,
    ):  # fmt: skip
        stats = point["dice"][curve_structure]
        curves.append({"encoder": spec, "n_train": point["n_train"], "dice": 100 * stats["mean"]})
fig, ax = plt.subplots(figsize=(6, 3.6))
for spec in dict.fromkeys(c["encoder"] for c in curves):
    points = [c for c in curves if c["encoder"] == spec]
    ax.plot([p["n_train"] for p in points], [p["dice"] for p in points], "o-", label=spec)
ax.axhline(
    100 * results["U-Net on pixels", "end to end"][curve_structure]["mean"],
    ls="--",
    c="black",
    label=f"U-Net, {len(rows['train'])} images",
)
ax.set_xscale("log")
ax.set_xticks(sizes, [str(n) for n in sizes], minor=False)
ax.minorticks_off()
ax.set_xlabel("training images")
ax.set_ylabel(f"{curve_structure} Dice % ({few_shot_head} head)")
ax.set_ylim(0, 100)
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## Predictions beside the truth (Fig. A.5)
#
# Two test phantoms (the first with a chest tube or pneumothorax, if the test split has one),
# truth outlined in green and the prediction in red, for our release checkpoint
# (else the last encoder) with the heaviest frozen head trained.

# %%
from raddino.viz.overlays import segmentation_overlay

frozen = [key for key in outputs if key[0] in specs]
shown_key = next((k for k in reversed(frozen) if k[0].startswith("raddino:")), frozen[-1])
result = outputs[shown_key]
overlay_structures = ["left_lung", "right_lung", "heart", "ribs", "chest_tube", "pneumothorax"]
overlay_structures = [s for s in overlay_structures if s in structures]
columns = [structures.index(s) for s in overlay_structures]
findings = [structures.index(s) for s in ("chest_tube", "pneumothorax") if s in structures]
shown_truth = data_of[shown_key[0]].masks_nshw[rows["test"]]
with_finding = np.flatnonzero(shown_truth[:, findings].flatten(1).any(1).numpy())
first_shown = int(with_finding[0]) if len(with_finding) else 0
picked = list(dict.fromkeys([first_shown, 0 if first_shown else min(1, len(rows["test"]) - 1)]))
test_images = data_of[shown_key[0]].images_n1hw[rows["test"]][:, 0].float().numpy()
fig = segmentation_overlay(
    [test_images[i] for i in picked],
    [shown_truth[i, columns].numpy() for i in picked],
    [result["predicted"][i, columns].numpy() for i in picked],
    overlay_structures,
    dice_ns=result["dice_per_image"][np.ix_(picked, columns)],
)
fig.suptitle(f"{shown_key[0]} + {shown_key[1]}", fontsize=9)
fig.tight_layout()

# %% [markdown]
# A panel with no outline at all is an empty truth and an empty prediction (Dice 1, the
# convention above). What transfers from the paper is the protocol (frozen backbone, small
# decoder, Dice over every test image, the few-shot curve) and the question it asks: how far does
# a small head on frozen patches get towards a network trained end to end? The absolute numbers
# do not transfer.
