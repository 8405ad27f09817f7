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
# # Patch correspondence: do patch features know anatomy?
#
# The paper's Figure 3 (and A.3, A.4) shows something the CLS-token probes cannot: pick a patch
# in one X-ray, say on the aortic arch, and the most similar patch embedding in *another
# patient's* X-ray lies on that patient's aortic arch. The paper shows it qualitatively. The
# phantoms carry exact anatomical landmarks, so here we can **measure** it
# (`raddino.eval.correspondence`): for every landmark of a query image, take the patch under it,
# find the most cosine-similar patch in a target image of another subject with the same view,
# and score the distance from that patch's centre to the target's true landmark (in target
# pixels), and the hit rate within a radius.
#
# Two references come with every number. The **quantisation floor** is the error of a perfect
# patch match (the true point to the centre of its own patch): no patch-level method does better.
# The **keep-the-position baseline** predicts that the landmark sits at the same place in the
# target as in the query. Phantoms are drawn centred and upright, with modest variation in body
# size and pose, so this baseline is *strong* here, much stronger than on real X-rays with their
# varied positioning and collimation: an encoder shows anatomical knowledge only where it beats
# it. An untrained ViT's patches mostly encode position and local brightness.
#
# The encoders are the profile's patch encoders (the raw-pixel baseline has no patches and is left
# out) plus our release checkpoints that ship in `raddino/release/` (chapter 02); a checkout
# without them shows only untrained baselines and demonstrates the measurement alone.

# %% tags=["parameters"]
# Parameters: `raddino book --profile NAME` injects the profile's values here (papermill).
profile_name = "cpu"
runs_root = "runs"
seed = 0
device = "cpu"
image_size = 224  # phantom side and encoder input side in pixels
encoders = ["pixels:32", "random:vit_tiny"]  # encoder specs; released checkpoints are added
correspondence_n = 48  # phantoms with landmarks (PA, AP and lateral views)
correspondence_pairs = 300  # (query, target) pairs: different subjects, same view
hit_radius_px = 16  # the radius of the hit rate in the tables

# %%
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
from IPython.display import HTML, display

from raddino.eval.correspondence import match_points, run_correspondence
from raddino.eval.tables import correspondence_frame, encoders_to_compare
from raddino.pipeline import phantom_folder

torch.set_num_threads(2)
radii = sorted({8.0, float(hit_radius_px), 32.0})
specs = [s for s in encoders_to_compare(encoders) if not s.startswith("pixels")]
if not specs:
    raise ValueError(f"encoders {encoders}: no encoder with patch features (pixels:S has none)")
data_dir = phantom_folder(
    correspondence_n, image_size, seed, views=("PA", "AP", "LATERAL"), root=runs_root, quiet=True
)  # the same phantoms as chapter 01 when correspondence_n equals its n_images
metrics, extras = {}, {}
for spec in specs:
    metrics[spec], extras[spec] = run_correspondence(
        str(data_dir),
        spec,
        n_pairs=correspondence_pairs,
        size=image_size,
        radii=radii,
        seed=seed,
        device=device,
        cache_dir=f"{runs_root}/patch_grids",
        progress=False,
    )
folder = extras[specs[0]]["folder"]
print(
    f"{len(folder)} phantoms, {metrics[specs[0]]['n_pairs']} pairs per encoder, "
    f"patch grid {metrics[specs[0]]['grid_hw']} at {image_size} px; encoders: {specs}"
)

# %% [markdown]
# ## One query, one target (the paper's Fig. 3, measured)
#
# Left: the query phantom with a landmark circled. Right: another subject's phantom, coloured by
# the cosine similarity of each of its patches to the query patch (yellow = similar), the best
# patch (red x) and the true landmark (cyan circle). Shown for our release checkpoint (else the
# published RAD-DINO weights if the profile lists them, else the last encoder).

# %%
from raddino.viz.overlays import correspondence_figure

# our release if one ships, else the published RAD-DINO weights if listed, else the last encoder
shown_spec = next((s for s in specs if s.startswith("raddino:")), None)
shown_spec = shown_spec or next((s for s in specs if "rad-dino" in s), specs[-1])
grids, frames = extras[shown_spec]["grids_nhwc"], extras[shown_spec]["frames"]
views = folder.table["view"].to_numpy()
pairs = [(int(q), int(t)) for q, t in extras[shown_spec]["pairs"]]
query, target = next((p for p in pairs if views[p[0]] == "PA"), pairs[0])  # frontal, as Fig. 3
names = sorted(set(folder.landmarks_of(query)) & set(folder.landmarks_of(target)))[:4]
query_xy = np.asarray([folder.landmarks_of(query)[n] for n in names])
true_xy = np.asarray([folder.landmarks_of(target)[n] for n in names])
predicted, maps_khw, _ = match_points(
    grids[query], grids[target], frames[query].to_model(query_xy), frames[query].out_hw
)
# The maps cover the model's crop; its footprint in the target image's pixels:
(left, top), (right, bottom) = frames[target].to_image(
    np.asarray([[0.0, 0.0], [frames[target].out_hw[1], frames[target].out_hw[0]]])
)
fig = correspondence_figure(
    [folder.read_image(query)] * len(names),
    [folder.read_image(target)] * len(names),
    query_xy,
    maps_khw.numpy(),
    frames[target].to_image(predicted),
    true_xy,
    labels=[f"{n.replace('_', ' ')} ({shown_spec})" for n in names],
    map_extents=[(left, right, bottom, top)] * len(names),
)

# %% [markdown]
# ## Transfer error per landmark
#
# Mean error in target pixels and the hit rate within the radius, per landmark, over all pairs
# that share it; beside them the keep-the-position baseline and the quantisation floor.

# %%
table = correspondence_frame(metrics, radius=hit_radius_px).round(3)
order = sorted(set(table["landmark"]) - {"overall"}) + ["overall"]
display(table.set_index(["landmark", "encoder"]).loc[order])

# %%
per_landmark = table[table["landmark"] != "overall"]
baseline = per_landmark.drop_duplicates("landmark")[["landmark", "same_position_error_px"]]
fig, ax = plt.subplots(figsize=(11, 3.8))
sns.barplot(data=per_landmark, x="landmark", y="mean_error_px", hue="encoder", ax=ax)
ax.scatter(
    range(len(baseline)),
    baseline["same_position_error_px"],
    marker="_",
    s=400,
    c="black",
    zorder=3,
    label="keep the position",
)
ax.set_ylabel("mean transfer error (px)")
ax.set_xlabel("")
ax.tick_params(axis="x", rotation=40)
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# Reading the table: on phantoms the keep-the-position baseline lands within about a patch of the
# true landmark (not far above the quantisation floor), because the simulator places anatomy
# consistently; it is weakest where anatomy moves with body size and inspiration (costophrenic
# angles, the left ventricle). An untrained ViT does much worse than that baseline: its most
# similar patch is a patch of similar brightness anywhere in the image, not the same anatomy. A
# pretrained encoder would have to get close to the floor to show anatomical patch features on
# these images; the harder, and more telling, test is real X-rays, where positioning varies and
# the baseline collapses. The paper gives no numbers for this experiment, so there is no paper
# column.
#
# ## Explore it yourself
#
# The explorer below runs in the browser on the patch features embedded in this page (no kernel):
# click a patch of one phantom to see its similarity to every patch of both. Same encoder and
# phantoms as the figure above.

# %%
from raddino.viz.explorer_static import static_explorer_html

patches_nhwc = grids[[query, target]].float().numpy()
display(
    HTML(
        static_explorer_html(
            [folder.read_image(query), folder.read_image(target)],
            patches_nhwc,
            [f"query #{query} ({views[query]})", f"target #{target} ({views[target]})"],
            display_px=224,
            dims=min(64, patches_nhwc.shape[-1]),
        )
    )
)

# %% [markdown]
# ## The live explorer (JupyterLab)
#
# With a running kernel there is a richer tool, `PatchExplorer` (`raddino.viz.explorer_widget`):
# choose the query and target phantoms, the encoder and the layer (the last few blocks), pick a
# query patch with the row and column sliders (or a click, when `ipyevents` is installed), and see
# the target coloured by cosine similarity with its top matches marked and listed. It needs Python
# behind the page, so the rendered book keeps the static explorer above; the cell below builds the
# widget only when an interactive frontend runs the notebook (a papermill run only checks that the
# explorer's features and similarity map compute).

# %%
from raddino.viz.explorer_widget import (
    PatchExplorer,
    PatchFeatureStore,
    kernel_has_interactive_frontend,
    top_k_patches,
)

same_view = [i for i in range(len(folder)) if views[i] == views[query] and i not in (query, target)]
explorer_indices = [query, target, *same_view[:2]]
explorer_images = [folder.read_image(i) for i in explorer_indices]
explorer_names = [f"#{i} ({views[i]})" for i in explorer_indices]
explorer_encoders = {spec: spec for spec in specs}
if kernel_has_interactive_frontend():
    explorer = PatchExplorer(
        explorer_images, explorer_encoders, names=explorer_names, size=image_size, device=device
    )
    display(explorer)
else:
    store = PatchFeatureStore(explorer_images, explorer_encoders, size=image_size, device=device)
    grid_h, grid_w = store.grid_hw(shown_spec)
    similarity_hw = store.similarity(
        encoder=shown_spec,
        layer=-1,
        query_image=0,
        query_row=grid_h // 2,
        query_col=grid_w // 2,
        target_image=1,
    )
    best = top_k_patches(similarity_hw, 1)[0]
    print(
        f"live explorer not built (no interactive frontend); its logic on {shown_spec}: the "
        f"centre patch of {explorer_names[0]} best matches patch ({best.row}, {best.col}) of "
        f"{explorer_names[1]}, cosine {best.cosine:.3f}"
    )
