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
# # Resolution: large findings and small ones
#
# RAD-DINO pretrains and evaluates at 518 px. Most baselines it is compared with work at 224–512
# px. This raises a fair question: does RAD-DINO win only because it sees more pixels? The paper
# answers with two ablations, each starting from DINOv2 ViT-B and using one resolution for both
# pretraining and inference:
#
# * **Fig. 1**: large findings on VinDr-CXR (cardiomegaly, lung opacity, …) at 224 to 518 px.
#   RAD-DINO's advantage barely depends on resolution, because the signal covers a large part of
#   the image.
# * **Fig. A.1**: small or thin findings on CANDID-PTX (pneumothorax, chest tubes). Performance
#   drops at low resolution, where fine detail is lost, but image-only pretraining still beats
#   the baselines.
#
# The paper prints these figures without numbers, so there are no paper values to set beside
# ours. This chapter runs both designs on phantoms, whose findings split the same way (the
# split is `raddino.eval.ablations.FINDING_SCALE`):
#
# 1. **inference only**: the shipped encoders, frozen, fed the same held-out phantoms resized to
#    several input sizes;
# 2. **pretraining and inference** at each resolution: short continual runs from the shipped
#    general-domain checkpoint, each one probed at its own resolution.

# %% tags=["parameters"]
# Parameters: `raddino book --profile NAME` injects the profile's values here (papermill).
profile_name = "cpu"
runs_root = "runs"
seed = 0
device = "cpu"
probe_n = 600  # held-out phantoms for the probes (the same as chapter 06)
probe_size = 224  # phantom side in pixels; encoders see them resized to each resolution
probe_seeds = 5
probe_c = 0.1
inference_sizes = [56, 112, 168, 224]  # encoder input sides for the inference-only sweep
pretrain_resolutions = [56, 112]  # global crop side of each short run, also its probe size
ablation_profile = "ablation"  # `raddino pretrain` profile of the short runs
ablation_init = "raddino:general"  # where the short runs start (continual pretraining)
ablation_epoch_length = 15  # steps per epoch of the short runs (4 epochs)
ablation_batch = 32  # images per step of the short runs

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
from IPython.display import display

from raddino.eval.ablations import FINDING_SCALE, by_finding_scale, probe_encoders
from raddino.eval.probe_tables import probe_phantoms
from raddino.models.weights import release_names
from raddino.paper import load_paper_results
from raddino.ssl.config import load_config
from raddino.ssl.short_runs import (
    available_init,
    pretrain_stage,
    resolution_overrides,
    short_run_overrides,
)

torch.set_num_threads(2)
folder = probe_phantoms(probe_n, probe_size, seed, runs_root)
print(f"{len(folder)} held-out frontal phantoms of {probe_size} px")
for scale, findings in FINDING_SCALE.items():
    print(f"{scale} findings: {', '.join(findings)}")


def probe_at(encoders: dict[str, str], size: int) -> pd.DataFrame:
    """Linear-probe AUPRC by finding scale of frozen encoders fed `size`-px inputs."""
    frame = probe_encoders(
        encoders,
        folder,
        size=size,
        seeds=probe_seeds,
        c=probe_c,
        seed=seed,
        runs_root=runs_root,
        device=device,
    )
    return by_finding_scale(frame).assign(resolution=size)


# %% [markdown]
# ## 1. Inference only: the same encoder, smaller inputs
#
# A ViT with 14-px patches sees a 56-px input as a 4×4 grid of patches and a 224-px input as a
# 16×16 grid. The position embeddings are interpolated to each grid. The shipped encoders were
# pretrained with 112-px global crops.

# %%
shipped = {f"raddino:{n}": f"raddino:{n}" for n in release_names()}
encoders = shipped or {"random:vit_tiny": "random:vit_tiny"}
sweep = pd.concat([probe_at(encoders, size) for size in inference_sizes], ignore_index=True)
grid = sns.relplot(
    data=sweep[sweep["scale"] != "macro"],
    x="resolution",
    y="auprc",
    hue="encoder",
    col="scale",
    kind="line",
    marker="o",
    height=3.2,
    aspect=1.2,
)
for ax, scale in zip(grid.axes[0], ["large", "small"], strict=True):
    chance = sweep.loc[sweep["scale"] == scale, "chance"].mean()
    ax.axhline(chance, color="black", lw=0.8, ls="--")
    ax.text(inference_sizes[0], chance, " chance", va="bottom", fontsize=8)
grid.set_axis_labels("input side (px)", "mean AUPRC over the group")
display(
    sweep.pivot_table(index=["encoder", "scale"], columns="resolution", values="auprc").round(3)
)

# %% [markdown]
# ## 2. Pretraining and inference at each resolution (the paper's design)
#
# Each short run below continues from the same starting checkpoint, with the same number of
# steps and images. Only the crop sizes change: the global crops are the resolution and the
# local crops keep their ratio to it. Each run's teacher is then probed at its own resolution.
# The runs are cached, so chapters 04 and 05 reuse the run they share with this one.

# %%
init, note = available_init(ablation_init)
print(note)
base = short_run_overrides(init, ablation_epoch_length, ablation_batch)
crops = load_config(ablation_profile, base)["crops"]
runs = {
    resolution: pretrain_stage(
        ablation_profile, {**base, **resolution_overrides(crops, resolution)}, runs_root=runs_root
    )
    for resolution in pretrain_resolutions
}
paired = pd.concat(
    [
        probe_at({f"pretrained at {r} px": str(d / "teacher_backbone.safetensors")}, r)
        for r, d in runs.items()
    ],
    ignore_index=True,
)
fig, ax = plt.subplots(figsize=(6, 3.4))
sns.barplot(data=paired, x="scale", y="auprc", hue="encoder", ax=ax)
ax.set_ylabel("mean AUPRC")
ax.set_xlabel("findings")
ax.legend(fontsize=8)
fig.tight_layout()
display(paired.pivot_table(index="scale", columns="encoder", values="auprc").round(3))

# %% [markdown]
# ## What the paper says, and what phantoms can tell
#
# The paper's statements for these figures, as `raddino.paper` records them. There are no
# numbers, only the claim and the range of resolutions:

# %%
figures = {f["figure"]: f for f in load_paper_results()["figures"]}
for key in ("1", "A.1"):
    print(f"Fig. {key}: {figures[key]['title']} ({figures[key]['numeric_data']})")

# %% [markdown]
# How to read our curves. On phantoms, large findings change hundreds of pixels, so they stay
# readable from a coarse grid. Small ones (a 2-px chest tube, a rib fracture) lose their signal
# once the patch grid is coarser than the structure. So the gap between the large and small
# panels as the input shrinks is the phantom version of Fig. 1 against Fig. A.1. What phantoms
# cannot tell is how big these effects are on real radiographs: there, the detector, the
# patient and the label noise all limit what higher resolution can add. Part 2 compares short
# runs (minutes on a CPU). A difference smaller than the seed-to-seed spread of chapter 06
# should be read as none.
