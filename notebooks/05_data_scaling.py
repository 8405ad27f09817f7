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
# # Data size, and the "Control" model
#
# Paper §3.3 and Fig. 2 grow the pretraining set step by step: MIMIC-CXR alone (197 k images),
# then more frontal-only datasets (up to 546 k), then PadChest and lateral views (838 k in
# Table 1). Linear-probe AUPRC on VinDr-CXR rises with every step. Two details matter:
#
# * up to 546 k images only frontal views were used, because frontal images help a frontal test
#   set most;
# * **RAD-DINO-Control** is the first point of the curve: MIMIC-CXR only, no text, 197 k images.
#   Section 4.1 sets it beside MRM, which trained on MIMIC-CXR images *and* reports, and the two
#   are about equal on VinDr-CXR (60.75 vs 60.86 AUPRC). The gain comes from masked image
#   modelling on in-domain images, not from more data.
#
# The phantom version: short continual runs with the same steps and batch, which differ only in
# how many *distinct* phantoms exist to sample from. Then a frontal-only run against one that
# also sees lateral views. Phantoms are unlimited, so "all" means a stream: new phantoms enter
# the image pool at every step.

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
data_sizes = [16, 64, 0]  # distinct phantoms per run; 0 means the endless stream
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

from raddino.eval.ablations import by_finding_scale, probe_encoders
from raddino.eval.probe_tables import probe_phantoms
from raddino.paper import paper_table
from raddino.ssl.config import load_config
from raddino.ssl.short_runs import (
    available_init,
    distinct_images,
    pretrain_stage,
    short_run_overrides,
)

torch.set_num_threads(2)
folder = probe_phantoms(probe_n, probe_size, seed, runs_root)
init, note = available_init(ablation_init)
print(f"{len(folder)} held-out frontal phantoms; {note}")
base = short_run_overrides(init, ablation_epoch_length, ablation_batch)


def probe_runs(runs: dict[str, dict]) -> pd.DataFrame:
    """Train (or read from the cache) each short run, then probe its teacher."""
    encoders = {
        name: str(pretrain_stage(ablation_profile, overrides, runs_root=runs_root))
        + "/teacher_backbone.safetensors"
        for name, overrides in runs.items()
    }
    return probe_encoders(
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
# ## Fig. 2 on phantoms: the number of distinct images
#
# Each run takes the same number of steps, so the number of images *seen* is the same. What
# changes is how often each one comes back: with 16 distinct phantoms, every image returns
# dozens of times.

# %%
size_runs = {}
for size in data_sizes:
    overrides = {**base, "data.max_images": size}
    n_distinct = distinct_images(load_config(ablation_profile, overrides))
    size_runs[f"{n_distinct} phantoms" + (" (stream)" if size == 0 else "")] = overrides
size_frame = probe_runs(size_runs)
scales = by_finding_scale(size_frame)
scales["distinct phantoms"] = scales["encoder"].str.split().str[0].astype(int)
fig, ax = plt.subplots(figsize=(6, 3.4))
sns.lineplot(data=scales, x="distinct phantoms", y="auprc", hue="scale", marker="o", ax=ax)
ax.set_xscale("log")
ax.set_ylabel("mean AUPRC")
fig.tight_layout()
display(scales.pivot_table(index="scale", columns="distinct phantoms", values="auprc").round(3))

# %% [markdown]
# ## Frontal only, or frontal and lateral
#
# The probe phantoms are frontal (PA and AP). Two runs with the same steps: one samples only
# frontal phantoms, like the paper's runs up to 546 k images. The other also samples lateral
# views, like the full RAD-DINO.

# %%
view_runs = {
    "frontal only (PA, AP)": {**base, "data.phantom_views": ["PA", "AP"]},
    "frontal + lateral": {**base, "data.phantom_views": ["PA", "AP", "LATERAL"]},
}
view_frame = probe_runs(view_runs)
display(
    by_finding_scale(view_frame)
    .pivot_table(index="scale", columns="encoder", values="auprc")
    .round(3)
)

# %% [markdown]
# ## The paper's numbers
#
# Fig. 2 is printed without numbers. Its first point, RAD-DINO-Control, appears in the text and
# in Table 5, beside the models it is compared with:

# %%
display(paper_table("text-4.1", wide=True))

# %% [markdown]
# How to read this. Few distinct images and many repeats let a model memorise them. The paper
# saw this overfitting and used early stopping on a validation probe for its smaller sets. On
# phantoms the effect is real but small in a short run: a few minutes of training visit each
# stream phantom only about once. Phantoms also have no equivalent of the paper's mix of
# hospitals, scanners and populations, and that diversity is what the real data scaling added
# (PadChest's outpatient findings, for example). Read these runs as a check that the data-size
# switch (`raddino pretrain --max-images N`) does what it says, and that its effect has the
# expected sign. The size of the effect has to come from real data.
