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
# # Initialisation: random weights or continual pretraining
#
# Before RAD-DINO saw a single chest X-ray, its weights came from DINOv2, pretrained on 142 M
# natural images (LVD-142M). Paper §3.2 and Table 2 ask what that start is worth. On VinDr-CXR
# linear probes:
#
# * the general-domain DINOv2 models, used as they are, score lowest (ViT-B 39.5 and ViT-G 43.4
#   aggregate AUPRC);
# * RAD-DINO pretrained on chest X-rays **from random initialisation** scores 59.8;
# * RAD-DINO pretrained **continually from DINOv2 ViT-B** scores 66.6. The largest gains are on
#   findings that are rare in the ICU data it trained on: fibrosis +19.7, tuberculosis +17.5.
#
# In-domain data matters most. A general-domain start adds to it.
#
# The phantom version has the same four rows. Our general-domain encoder is `raddino:general`,
# pretrained on dead-leaves images, a different distribution that contains no chest X-rays at
# all. Two short phantom runs of equal length start from it or from random weights. The shipped
# `raddino:phantom`, a much longer continual run, is shown too.

# %% tags=["parameters"]
# Parameters: `raddino book --profile NAME` injects the profile's values here (papermill).
profile_name = "cpu"
runs_root = "runs"
seed = 0
device = "cpu"
image_size = 224  # encoder input side in pixels
probe_n = 600  # held-out phantoms for the probes (the same as chapter 06)
probe_size = 224
probe_seeds = 5
probe_c = 0.1
ablation_profile = "ablation"  # `raddino pretrain` profile of the short runs
ablation_init = "raddino:general"  # the general-domain start of the continual run
ablation_epoch_length = 15  # steps per epoch of the short runs (4 epochs)
ablation_batch = 32  # images per step of the short runs

# %%
import matplotlib.pyplot as plt
import seaborn as sns
import torch
from IPython.display import display

from raddino.eval.ablations import probe_encoders
from raddino.eval.probe_tables import probe_phantoms
from raddino.eval.tables import wide_mean_std
from raddino.models.weights import release_names
from raddino.paper import paper_table
from raddino.ssl.short_runs import available_init, pretrain_stage, short_run_overrides

torch.set_num_threads(2)
folder = probe_phantoms(probe_n, probe_size, seed, runs_root)
init, note = available_init(ablation_init)
print(f"{len(folder)} held-out frontal phantoms; {note}")

# %% [markdown]
# ## Two short runs, one difference
#
# Both runs use the same profile, steps, images, crops and seed. One starts from the
# general-domain checkpoint. The other starts from random weights of the same architecture,
# with LayerScale at 1.0: at DINOv2's 1e-5 an untrained ViT gives every image the same class
# token, and such a baseline would measure nothing. The heads start fresh in both runs.

# %%
continual = short_run_overrides(init, ablation_epoch_length, ablation_batch)
from_random = short_run_overrides("random", ablation_epoch_length, ablation_batch)
continual_dir = pretrain_stage(ablation_profile, continual, runs_root=runs_root)
random_dir = pretrain_stage(ablation_profile, from_random, runs_root=runs_root)

encoders = {"untrained ViT (random init)": "random:vit_tiny"}
if "general" in release_names():
    encoders["general-domain only (raddino:general)"] = "raddino:general"
encoders["phantom run, random init"] = str(random_dir / "teacher_backbone.safetensors")
encoders["phantom run, continual"] = str(continual_dir / "teacher_backbone.safetensors")
if "phantom" in release_names():
    encoders["shipped continual (raddino:phantom)"] = "raddino:phantom"
encoders["raw pixels (32 x 32)"] = "pixels:32"
frame = probe_encoders(
    encoders,
    folder,
    size=image_size,
    seeds=probe_seeds,
    c=probe_c,
    seed=seed,
    runs_root=runs_root,
    device=device,
)

# %% [markdown]
# ## Table 2, on phantoms
#
# AUPRC in percent, mean ± std over the seeds, each seed a fresh split by subject. Rows are in
# the paper's order, from no in-domain training at all to continual pretraining.

# %%
order = [n for n in folder.label_names if n in set(frame["finding"])] + ["macro"]
table = wide_mean_std(frame, "encoder", "finding", "auprc_mean", "auprc_std", order)
display(table.loc[list(encoders)])

# %%
macro = frame[frame["finding"] == "macro"].assign(auprc=lambda f: 100 * f["auprc_mean"])
fig, ax = plt.subplots(figsize=(7, 3.2))
sns.barplot(data=macro, y="encoder", x="auprc", order=list(encoders), ax=ax, color="#4c72b0")
ax.errorbar(
    macro.set_index("encoder").loc[list(encoders), "auprc"],
    range(len(encoders)),
    xerr=100 * macro.set_index("encoder").loc[list(encoders), "auprc_std"],
    fmt="none",
    color="black",
)
ax.set_xlabel(f"macro AUPRC % (mean ± std, {probe_seeds} seeds)")
ax.set_ylabel("")
fig.tight_layout()

# %% [markdown]
# ## The paper's Table 2
#
# VinDr-CXR, AUPRC %, mean ± std over five seeds:

# %%
display(paper_table("2", wide=True))

# %% [markdown]
# How to read the comparison. The paper's ordering is general-only < random init < continual.
# It comes from 60 k steps on 838 k real images at ViT-B size. Our two phantom runs are a few
# minutes of CPU each. What they can show is the *direction* at the start of training: does a
# general-domain start give the phantom run a head start over random weights, for the same
# compute? That start saw only dead leaves. Whether the gap survives a long run is what the
# shipped `raddino:phantom` and, on a GPU, the `gpu-paper` profile are for. As in chapter 06,
# a difference within one standard deviation over seeds is not a difference.
