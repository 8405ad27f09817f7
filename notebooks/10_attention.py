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
# # Attention maps: where does the class token look?
#
# The paper's Figure A.2 shows, for a few chest X-rays, the attention of the class token to
# every patch in the last transformer block, one map per head. Some heads of RAD-DINO light up
# on devices (tubes, lines) and on findings, without ever having been told what a finding is;
# DINO's authors made the same observation for objects in natural images. The paper shows this
# qualitatively. The phantoms carry exact masks of their findings, so here we also **measure**
# it (`raddino.eval.attention`): the share of each head's class-token attention that falls
# inside a finding's mask, beside the share that uniform attention would give, the mask's area
# fraction. Their ratio (the *lift*) is 1 for a head that ignores the finding.
#
# Attention maps belong to ViTs: the raw-pixel baseline has none and is left out. The encoders
# are the profile's ViTs (by default an **untrained** one) plus our release checkpoints that ship
# in `raddino/release/` (chapter 02). The untrained ViT's maps show what random attention looks
# like, a useful picture of what *not* to read into such maps.
#
# **On real data.** Set the profile's `attention_dataset` to a folder with finding masks written
# by `raddino index` (CANDID-PTX: chest tubes and pneumothoraces) and the same cells draw and
# measure the attention on up to `attention_n` of its frontal images.

# %% tags=["parameters"]
# Parameters: `raddino book --profile NAME` injects the profile's values here (papermill).
profile_name = "cpu"
runs_root = "runs"
seed = 0
device = "cpu"
image_size = 224  # phantom side and encoder input side in pixels
encoders = ["pixels:32", "random:vit_tiny"]  # encoder specs; released checkpoints are added
attention_n = 120  # phantoms (PA and AP) over which the attention-on-finding score is averaged
attention_shown = 3  # phantoms with a finding shown per encoder in the figure
attention_dataset = ""  # a real dataset folder with finding masks instead (CANDID-PTX)

# %%
import numpy as np
import torch
from IPython.display import display

from raddino.eval.attention import (
    DEFAULT_FINDING_STRUCTURES,
    attention_on_findings,
    class_attention_maps,
)
from raddino.eval.chapter_data import masked_folder
from raddino.eval.patch_grids import load_patch_encoder
from raddino.eval.segment import load_segmentation_set
from raddino.eval.tables import attention_frame, encoders_to_compare

torch.set_num_threads(2)
specs = [s for s in encoders_to_compare(encoders) if not s.startswith("pixels")]
if not specs:
    raise ValueError(f"encoders {encoders}: no ViT encoder (pixels:S has no attention maps)")

# Frontal phantoms with finding masks, or up to attention_n frontal images of attention_dataset.
folder, data_name = masked_folder(
    attention_dataset,
    n=attention_n,
    size=image_size,
    seed=seed,
    phantom_seed=seed + 4,
    runs_root=runs_root,
)
findings = [s for s in DEFAULT_FINDING_STRUCTURES if s in folder.structures]
if not findings:
    raise ValueError(f"{folder.root}: no finding masks {list(DEFAULT_FINDING_STRUCTURES)}")
print(
    f"{len(folder)} images ({data_name}) at {image_size} px; findings {findings}; encoders {specs}"
)

# %% [markdown]
# ## The maps (Fig. A.2)
#
# For each encoder, a few phantoms that carry a chest tube or a pneumothorax: the image, then
# each head's class-token attention in the last block (bright = more attention), the finding
# outlined in green. Maps live on the patch grid and are stretched over the model's input.
# Each panel's colour scale is stretched to its own minimum and maximum, so a nearly uniform map
# (an untrained ViT's) still shows a pattern: read the numbers below before the pictures.

# %%
from raddino.viz.overlays import attention_figure

encoder_of, skipped = {}, {}
for spec in specs:
    encoder = load_patch_encoder(spec, device)
    data = load_segmentation_set(
        folder, findings, encoder.preprocessing_at(image_size), image_size, progress=False
    )
    present_ns = data.masks_nshw.flatten(2).any(-1)  # (N, findings): finding drawn in image
    rows = np.flatnonzero(present_ns[:, : min(2, len(findings))].any(1).numpy())[:attention_shown]
    if len(rows) == 0:
        raise ValueError(f"no phantom of {len(folder)} has {findings[:2]}; raise attention_n")
    batch = encoder.prepare([folder.read_image(int(i)) for i in rows], image_size)
    try:
        maps_bkhw = class_attention_maps(encoder, batch)
    except ValueError as err:  # e.g. an encoder from another library without attention maps
        skipped[spec] = str(err)
        continue
    encoder_of[spec] = encoder
    for b, i in enumerate(rows):
        k = int(np.flatnonzero(present_ns[i].numpy())[0])
        fig = attention_figure(
            data.images_n1hw[i, 0].float().numpy(),
            maps_bkhw[b].numpy(),
            mask_hw=data.masks_nshw[i, k].numpy(),
        )
        fig.suptitle(f"{spec}: phantom #{i}, {findings[k].replace('_', ' ')} in green", fontsize=9)
        fig.tight_layout()
print("skipped (no attention maps):", skipped or "none")

# %% [markdown]
# ## Attention on findings vs chance
#
# Over every phantom where a finding is drawn: the mean share of attention inside its mask,
# averaged over heads and for the best head (the head with the highest mean share for that
# finding, chosen on the same images, so it is optimistic), beside the mask's area share. A lift
# near 1 means the heads do not single out the finding. The paper gives no number for this, so
# there is no paper column.

# %%
scores = {
    spec: attention_on_findings(
        spec, str(folder.root), findings, size=image_size, device=device, progress=False
    )
    for spec in encoder_of
}
table = attention_frame(scores).round(3)
display(table.set_index(["finding", "encoder"]).sort_index())

# %% [markdown]
# Reading it: an untrained ViT's attention depends on patch brightness and position, not on
# anatomy, so its heads sit near lift 1 on average; a "best head" above 1 on a few dozen images
# is partly selection (we pick the best of several heads on the same images). Findings that are
# bright (a chest tube, an effusion) can attract random attention simply by their intensity,
# which is why the figure alone proves little. A pretrained encoder would show heads with a lift
# well above 1 that hold on new images; on real X-rays that is what the paper's Figure A.2
# suggests for tubes and lines. With the `smoke` profile only a handful of phantoms carry each
# finding and every number is noise.
