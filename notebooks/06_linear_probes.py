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
# # Linear probes: what a frozen encoder knows about findings
#
# The paper's main measure of an image encoder is the **linear probe**: freeze the backbone, take
# one vector per image (the CLS token), and fit a single linear layer per finding. Whatever the
# probe gets right was already linearly readable from the features; nothing in the backbone is
# tuned to the task. Tables 3 and 4 of the paper report the area under the precision-recall
# curve (AUPRC) of such probes on VinDr-CXR, CANDID-PTX and RSNA Pneumonia, as mean ± std over
# five seeds, each seed a fresh 60/20/20 split **by subject** (no patient in two splits).
#
# This chapter runs the same protocol on the phantom world (chapter 01) for every encoder the
# profile lists. By default these are two *baselines*: raw pixels averaged down to a small grid
# (`pixels:S`) and an **untrained** ViT (`random:<arch>`). The release checkpoints of our own
# DINOv2 trainer that ship in `raddino/release/` (`raddino:general`, `raddino:phantom`, chapter
# 02) join the tables automatically; a checkout without them shows only the baselines, which say
# nothing about what continual self-supervised pretraining buys.
#
# What phantoms can tell: whether a feature vector keeps the information a finding needs, on
# images where every label is exact. What they cannot tell: how an encoder does on real chest
# X-rays. The phantom findings are drawn by a simulator, so an encoder may solve them by cues
# that real images do not carry (or miss subtleties real images have). Read our numbers against
# each other and against chance, never against the paper's columns.

# %% tags=["parameters"]
# Parameters: `raddino book --profile NAME` injects the profile's values here (papermill).
profile_name = "cpu"
runs_root = "runs"
seed = 0
device = "cpu"
image_size = 224  # encoder input side in pixels (ViTs; the pixel baseline keeps its own size)
encoders = ["pixels:32", "random:vit_tiny"]  # encoder specs; released checkpoints are added
probe_n = 600  # phantoms for the probes and the metadata chapter
probe_size = 224  # phantom side in pixels
probe_seeds = 5  # seeds, each with its own subject-level split
probe_c = 0.1  # inverse L2 strength of the logistic-regression probes

# %%
import matplotlib.pyplot as plt
import seaborn as sns
import torch
from IPython.display import display

from raddino.eval.ablations import cached_cls
from raddino.eval.probe import ProbeConfig, run_probes
from raddino.eval.tables import encoders_to_compare, probe_frame, probe_phantoms, wide_mean_std

torch.set_num_threads(2)
specs = encoders_to_compare(encoders)
# Rendered once and cached under runs/phantoms/<hash>/; chapter 08 reads the same phantoms.
folder = probe_phantoms(probe_n, probe_size, seed, runs_root)
print(
    f"{len(folder)} frontal phantoms of {probe_size} px, "
    f"{folder.table['subject_id'].nunique()} subjects; encoders: {specs}"
)

# %% [markdown]
# ## Features, once per encoder
#
# `raddino.eval.ablations.cached_cls` (through `raddino.eval.features.extract`) runs each frozen
# encoder over the phantoms and caches the features on disk (keyed by the encoder's weights,
# preprocessing and the dataset), so the metadata chapter and any rerun read them instead of
# recomputing. The probe is a standardised logistic regression per finding (scikit-learn), the
# same for every encoder.

# %%
features = {  # spec -> (N, C) class tokens, cached (pixels keep their own grid)
    spec: cached_cls(spec, folder, size=image_size, seed=seed, runs_root=runs_root, device=device)
    for spec in specs
}
config = ProbeConfig(method="sklearn", seeds=probe_seeds, c=probe_c, split_seed=seed)
results = {
    spec: run_probes(
        cls_nc,
        folder.labels_array(),
        folder.table["subject_id"].to_numpy(),
        folder.label_names,
        config,
        progress=False,
    )
    for spec, cls_nc in features.items()
}
for spec, result in results.items():
    width = features[spec].shape[1]
    skipped = result["labels_not_probed"] or "none"
    print(f"{spec}: {width}-d features; not probed (no positives in a split): {skipped}")

# %% [markdown]
# ## AUPRC per finding
#
# Mean ± std over the seeds, in percent, as the paper prints it; "chance" is the test-set
# prevalence, the AUPRC of a probe that ranks at random. The macro column averages the findings
# each seed could score.

# %%
ours = probe_frame(results)
order = [n for n in folder.label_names if n in set(ours["finding"])] + ["macro"]
table = wide_mean_std(ours, "encoder", "finding", "auprc_mean", "auprc_std", order)
chance = ours[ours["finding"] != "macro"].groupby("finding")["chance"].mean()
table.loc["chance (prevalence)"] = [
    f"{100 * chance[c]:.1f}" if c in chance.index else "–" for c in table.columns
]
display(table.T)

# %%
plot_frame = ours.assign(auprc=100 * ours["auprc_mean"], sd=100 * ours["auprc_std"])
fig, ax = plt.subplots(figsize=(11, 3.8))
sns.barplot(data=plot_frame, x="finding", y="auprc", hue="encoder", order=order, ax=ax)
positions = {name: k for k, name in enumerate(order)}
ax.scatter(
    [positions[n] for n in chance.index],
    100 * chance.to_numpy(),
    marker="_",
    s=400,
    c="black",
    zorder=3,
    label="chance (prevalence)",
)
ax.set_ylabel(f"AUPRC % (mean of {probe_seeds} seeds)")
ax.set_xlabel("")
ax.set_ylim(0, 100)
ax.tick_params(axis="x", rotation=35)
ax.legend(fontsize=8, ncols=3, loc="upper right")
fig.tight_layout()

# %% [markdown]
# Findings differ in how far above chance *any* encoder gets. Large, bright or shape-changing
# findings (cardiomegaly, pleural effusion, lung opacity) change many pixels and are linearly
# readable even from a coarse pixel grid; thin or small ones (chest tubes, rib fractures, small
# nodules) change a handful of pixels and sit near chance for raw pixels, because averaging the
# image down to a grid washes them out. An untrained ViT is a random projection of patches: it keeps
# some of the global intensity pattern and often does no better than pixels. These are the floors a
# pretrained encoder has to clear; on real X-rays the paper found the largest gains of RAD-DINO
# exactly on thin structures (chest tubes: +32.6 AUPRC points in Table 4).
#
# ## The paper's numbers, beside
#
# Table 3 (VinDr-CXR, six findings and their aggregate) and Table 4 (CANDID-PTX: pneumothorax,
# chest tube, rib fracture; RSNA Pneumonia: AUPRC and AUROC), as the paper prints them (AUPRC %,
# mean over five seeds; Δ = RAD-DINO minus the best other model). They are real-data numbers from
# ViT-B-sized models at 518 px and are shown for orientation, not for comparison with phantoms.
# First, each phantom finding that has a column in those tables, our AUPRC beside the paper's
# RAD-DINO and its best other model:

# %%
from raddino.eval.tables import probe_beside_paper
from raddino.paper import paper_table

display(probe_beside_paper(ours))

# %% [markdown]
# The paper's tables in full, with the rows it prints:

# %%
print("Table 3: VinDr-CXR linear probing, AUPRC %")
display(paper_table("3", wide=True))
print("Table 4: CANDID-PTX (PTX, chest tube, fracture) and RSNA Pneumonia (AUPRC, AUROC), %")
display(paper_table("4", wide=True))

# %% [markdown]
# What transfers from the paper to the phantoms is the *protocol* (frozen features, linear
# probe, subject-level splits, AUPRC over seeds) and the *ordering question*: does an encoder
# beat raw pixels most on thin findings? What does not transfer is any absolute number: phantom
# prevalences, sizes and the simulator's shortcuts are not those of VinDr-CXR or CANDID-PTX.
# With the `smoke` profile the test splits hold a few images and the numbers are noise.
