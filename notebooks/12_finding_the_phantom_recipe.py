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
# # How the phantom recipe was found
#
# The first phantom release (**v1**) was trained with the general release's recipe on 256,000
# phantoms. It met the lung-Dice part of chapter 02's bar and missed the rest: its class token
# read findings about as well as a random ViT's (+0.017 and -0.007 macro AUPRC on the bar's two
# probe sets) and sex worse. This chapter is the investigation that followed, in the order it
# was done. It ends with the recipe of the current `raddino:phantom`: KoLeo off, a teacher at
# temperature 0.01 and no intensity jitter, trained on a GPU (chapter 02, "The GPU run that
# became the release").
#
# The questions, in order:
#
# * Are the findings somewhere else in the network: in the patch tokens, in an earlier block?
# * What does a class token keep instead, and can the recipe be changed to drop a shortcut?
# * Can the pretraining task be solved on phantoms at all, and do labels get there?
# * Why does the trained class token not carry findings (its stability under small shifts,
#   KoLeo, the DINO head's targets)?
# * How far apart are two probe sets, and what does that mean for calling a winner?
# * With everything else held fixed, does a class token see a finding, and which part of the
#   recipe blinds it?
#
# Where the text speaks of "the releases" or "the phantom release", it means the general release
# and **v1**. Stored results (the JSON reports in `raddino/release/sweeps/`) are v1's, and in
# their tables `raddino:phantom` names v1, since a report keeps each spec as it was run. The
# tables computed live show v1 beside the current release, so each diagnosis can be checked
# against the fix. Most runs here are short CPU runs; `benchmarks/cpu_recipe_ab.py` and the other
# scripts named in each section regenerate their reports.

# %% tags=["parameters"]
# Parameters: `raddino book --profile NAME` injects the profile's values here (papermill).
profile_name = "cpu"
runs_root = "runs"
seed = 0
device = "cpu"
encoders = ["pixels:32", "random:vit_tiny"]  # compared below; released checkpoints are added
probe_n = 600  # held-out phantoms of the live tables below (chapter 06's probe set)
probe_size = 224

# %%
import pandas as pd
import torch
from IPython.display import display

from raddino.eval.ablations import crop_pair_retrieval, global_property_table
from raddino.eval.counterfactual import counterfactual_frame
from raddino.eval.probe_tables import probe_phantoms
from raddino.eval.stability import shift_stability_table
from raddino.eval.tables import encoders_to_compare
from raddino.models.weights import RELEASE_DIR
from raddino.ssl.bar import CLEAR_MARGIN, VALIDATION_SET
from raddino.ssl.config import load_config
from raddino.ssl.recipe_tables import (
    pooled_probe_table,
    recipe_ab_table,
    recipe_pair_table,
    recipe_scoreboard,
    recipe_verdict_table,
    sweep_table,
    target_geometry_table,
)
from raddino.ssl.release_tables import (
    checkpoint_curve_table,
    finding_sets_table,
    layer_probe_frame,
    release_verdict_table,
)
from raddino.viz.pretraining import (
    plot_counterfactuals,
    plot_layer_probe,
    plot_recipe_scoreboard,
    plot_shift_stability,
)

torch.set_num_threads(2)

# %% [markdown]
# ## Are the findings in the patch tokens instead?
#
# The same probes on other features of each encoder, on both probe sets
# (`benchmarks/pooled_probe.py`): the class token (the bar's, as RAD-DINO probes); the mean of the
# patch tokens, and both concatenated (DINOv2's linear-evaluation feature); and the patch tokens
# average-pooled to a 4 × 4 grid of cells, which keeps *where* in the image, as the raw-pixel
# baseline does. The first table is macro AUPRC, the second cardiomegaly alone.
#
# The mean of the patch tokens does no better than the class token. The grid of cells reads
# findings much better, cardiomegaly at 0.56-0.68 against 0.33-0.38 on the class token, but it
# does so for random init as well as for the releases. So the gain is the grid's, not the
# pretraining's. The phantom findings are mostly about *where*: how far the heart's outline
# reaches, fluid in the lower zones. A class token of these encoders keeps little of that, and
# at this grid pretraining has added no finding information to the patch tokens that random
# features lack. What it did add is the lung layout that the Dice column measures, and, the
# next measurement shows, some of the heart's size in a form that survives coarser pooling.
#
# The current release (v2, the last row, measured afterwards on the same sets) reads findings best
# from its class token and from the class token with the mean patch token (DINOv2's feature): +0.040
# and +0.020 over random init there (0.0197 before rounding, still short of the margin), against
# +0.048 and +0.019 for the class token alone, the bar's feature. Its 4 × 4 grid is ahead of random
# init's by only 0.010 and 0.017. So the new recipe put the finding gain where the bar reads it, and
# no other feature of v2 is clearly further ahead on set 1.

# %%
pooled = RELEASE_DIR / "sweeps" / "pooled_probe.json"
pooled_v2 = RELEASE_DIR / "sweeps" / "pooled_probe_phantom_v2.json"
for finding in (None, "cardiomegaly"):
    table = pd.concat(
        [
            pooled_probe_table(pooled, finding, {"raddino:phantom": "phantom v1 (first release)"}),
            pooled_probe_table(
                pooled_v2, finding, {"raddino:phantom": "phantom v2 (current release)"}
            ),
        ]
    )
    display(table.style.format("{:.3f}"))

# %% [markdown]
# ## Block by block
#
# Do earlier blocks keep findings that the last one drops, as probing an intermediate layer of a
# large model sometimes shows (`benchmarks/layer_probe.py`)? The same probes on the patch tokens
# of each of the six blocks, pooled over the whole image or into 2 × 2 cells,
# with the supervised reference below (trained *with* the finding labels; its weights stay in
# `runs/`, its numbers are in the JSON) as a picture of what labels do.
# For the findings as a whole (first figure), no block of either release clears the 0.02 margin
# over random init on both sets. The closest, the phantom release's block 4 in 2 × 2 cells, is
# ahead by 0.025 and 0.019; the mean of block 2's tokens leads by 0.057 on set 0 and trails on
# set 1. So probing a middle block would not meet the bar either. Cardiomegaly (second figure)
# is the exception, and it is clear: in 2 × 2 cells, from block 1 on, both releases read it
# 0.03-0.16 above random init on both sets (0.46-0.53 against 0.36-0.43). Pretraining put the
# heart's size into the patch tokens in a form that survives pooling over large regions; a
# random ViT keeps it only in a finer grid, as raw pixels do (the 4 × 4 grid above). The general
# release does this as well as the phantom one, so it is not something the chest X-ray phantoms
# taught. And the class token, the only output the DINO loss trains directly, reads cardiomegaly
# no better than random init's (0.33-0.38 above): the information is in the network, one
# attention step from the class token, and the class token does not pick it up.
#
# The supervised reference shows what the self-supervised runs lack. Its findings build up
# block by block, from 0.24-0.26 after the first block to 0.32-0.35 after the last, on both sets,
# while the releases level off after block 1 or 2, within 0.06 of random init. For cardiomegaly
# its 2 × 2 cells read 0.45-0.55, about what the releases' do (0.42-0.53), yet its class token
# reads it at 0.68 (set 0) where theirs read 0.33-0.38. With labels the class token gathers what
# the patch tokens hold; with the DINO loss at our budget it gathers how the image was taken.

# %%
layers = RELEASE_DIR / "sweeps" / "layer_probe.json"
figure = plot_layer_probe(layer_probe_frame(layers))
figure = plot_layer_probe(
    layer_probe_frame(layers, finding="cardiomegaly"), ylabel="cardiomegaly AUPRC"
)

# %% [markdown]
# ## What the class tokens keep
#
# A simpler question than findings: how much of a phantom's
# *global, pixel-obvious* properties does each encoder's class token keep? The properties are the
# view (PA or AP, where AP is magnified and brighter), the sex, age and BMI bins of the subject,
# and three facts about how the image was taken, which the phantoms record exactly: whether
# bright collimation borders were drawn, whether the exposure (photon count) was above the
# median, and whether the display window was. Each column is a linear read-out, cross-validated
# by subject. The last row is what always guessing the larger class scores.
#
# Raw pixels read view, sex and borders easily; the rows of the general release and v1 sit close
# to the majority row on everything about the *subject*. What their class tokens do keep is how
# the image was taken: the collimation borders (about 0.93 for both, 0.87 for random init) and
# the display window. (The current release, on the profile's 600 phantoms: view 0.66, sex 0.69,
# age bin 0.53 and BMI bin 0.69, against v1's 0.57, 0.61, 0.33 and 0.56, so its class token
# keeps the subject. It keeps the borders, 0.96, and the display window, 0.82, more than v1 did:
# without intensity jitter nothing asks it to ignore how an image was windowed.) A bright band
# along an edge is the easiest way to tell one radiograph from another, and an encoder trained
# to tell images apart keeps it. That is a shortcut the recipe's augmentations leave open;
# `crops.random_borders_p` draws such bands on crops at random, so that two crops of one image
# disagree about them (`raddino.ssl.crops.RandomBorders`; measured below).

# %%
probe_folder = probe_phantoms(probe_n, probe_size, seed, runs_root)
property_specs = {spec: spec for spec in encoders_to_compare(encoders)}
phantom_v1 = RELEASE_DIR / "sweeps" / "previous" / "phantom_v1.safetensors"
if phantom_v1.is_file():  # the first phantom release, which the diagnoses below were made on
    property_specs["phantom v1 (first release)"] = str(phantom_v1)
properties = global_property_table(
    property_specs, probe_folder, size=probe_size, seed=seed, runs_root=runs_root, device=device
)
display(properties.style.format("{:.3f}", na_rep="n/a"))

# %% [markdown]
# ## Does drawing random borders close the shortcut?
#
# Not at the budget we could measure it. Three short CPU runs continued `raddino:phantom` with the
# ablation profile (400 steps of 32 phantoms at 112 px, about 8 minutes each;
# `benchmarks/cpu_recipe_ab.py`): the recipe as is, and random borders on half and on nine in ten of
# the crops. Every run's class token still reads the collimation borders at 0.93, as the start did.
# Macro AUPRC stays within one standard deviation over probe seeds (about 0.02) of the start and of
# the run without borders. The one difference larger than its noise is sex at 0.65 for borders on
# nine in ten crops, against 0.59 without (600 probe phantoms: a standard error of 0.02), from one
# seed. 12,800 images do not unlearn what 256,000 taught, so the fair test retrains the phantom
# release with borders on the GPU (`benchmarks/gpu_session.py --variant`).

# %%
display(
    recipe_ab_table(
        RELEASE_DIR / "sweeps" / "cpu_random_borders_ab.json",
        properties=("collimation borders", "display window"),
    ).style.format(precision=3, na_rep="")
)

# %% [markdown]
# ## Can the pretraining task be solved on phantoms at all?
#
# DINO asks the student to give two crops of one image the same prototype distribution. That teaches
# something only if two crops of one image are more alike than crops of two different images. The
# table pairs each phantom's second global crop with its first among up to 200 phantoms: the top-1
# rate, for the release recipe's crops, for the same crops without intensity jitter, and for
# whole-image views with the jitter. Chance is in the last column.
#
# With the recipe's crops, even raw pixels barely pair a phantom's crops, and no encoder does
# better. All phantoms share one anatomical template, so where a crop falls and how large it is
# change an image more than which subject it shows. The instance-level task is then nearly
# unsolvable, and the teacher's targets flatten: in v1's run the teacher entropy climbed from
# 0.58 to 0.87 of ln K (`raddino/release/sweeps/previous/phantom_v1.metrics.jsonl`). With
# whole-image views v1 pairs far more images than random init does. So it did learn
# intensity-invariant features of the subject, but not features that a linear read-out turns
# into findings, view or age (the first table). The current release, trained without the
# jitter, is the mirror image: it pairs the recipe's crops without jitter (0.36 of 200 on the
# profile's phantoms, v1 0.05), and the jitter it never saw breaks the pairing (0.02-0.06).

# %%
retrieval_crops = {
    **load_config("phantom-release")["crops"],
    "global_crops_size": probe_size,  # the probe images' own side
}
retrieval = crop_pair_retrieval(
    property_specs,
    probe_folder,
    retrieval_crops,
    {
        # v1's jitter, which the current phantom-release profile no longer uses
        "release crops + intensity jitter": {"photometric_strength": 1.0},
        "release crops, no jitter": {"photometric_strength": 0.0},
        "whole image + intensity jitter": {
            "global_crops_side": [1.0, 1.0],
            "photometric_strength": 1.0,
        },
    },
    n=200,
    seed=seed,
    device=device,
)
display(retrieval.style.format("{:.3f}"))

# %% [markdown]
# ## Making the task solvable is not enough
#
# A sweep on the H200 trained five variants of the phantom recipe for 102,400 images each (8 epochs,
# continual from `raddino:general`, 40-75 s each) and held each to the same bar, beside the
# baselines it probed first. All use whole-image global views (90-100 % of the side), so that a crop
# keeps the heart's size and position:
#
# * `whole`: no local crops, half the intensity jitter;
# * `whole_locals`: local crops of 40-70 % of the side as well;
# * `whole_mim`: `whole`, with iBOT on every image at twice the weight;
# * `whole_gentle`: `whole`, with a tenth of the jitter.
#
# A fifth, `whole` from random initialisation instead of `raddino:general`, collapsed: uniform
# teacher targets for 50 steps, and the health check stopped it. The others train sharper
# targets than the release recipe (final teacher entropy 0.54-0.67 of ln K, against 0.87). Their
# class tokens still stay within 0.03 AUPRC of random init, and none reads sex better. Two CPU
# runs of 25,600 images each had found the same: gentler crops with a quarter of the jitter, and
# whole views without local crops.

# %%
display(sweep_table(RELEASE_DIR / "sweeps" / "h200_whole_views.json"))

# %% [markdown]
# ## Labels get there, given enough of them
#
# To tell a weak recipe from a hard task, we fine-tuned `raddino:general` end to end *with* the
# twelve finding labels (BCE through a linear head on the class token, phantoms disjoint from the
# probe set, 224 px, AdamW at 1e-4 with warm-up; `benchmarks/supervised_reference.py`) and held the
# frozen result to the same bar.
#
# * 4,000 phantoms for 3 epochs (12,000 labelled images, 10 minutes on 2 cores): the training
#   loss ended at 0.433, against 0.436 for predicting each finding's prevalence, and the class
#   token read findings at 0.255 macro AUPRC. It had learnt almost nothing yet.
# * 12,000 phantoms for 4 epochs (48,000 labelled images, 40 minutes): the loss stays near the
#   base rate for a fifth of the run, then falls steadily to 0.36 by its last fifth. The frozen
#   class token reads findings at **0.389** macro AUPRC, above raw pixels (0.367) and far above
#   the phantom release (0.232): lung opacity 0.78, pleural effusion 0.76, cardiomegaly 0.68,
#   fibrosis 0.61 (random init 0.35, 0.26, 0.34, 0.15). Sex stays at 0.64, as for random init.
#
# So a ViT-tiny class token *can* hold phantom findings at this resolution, and a fifth of the
# images the GPU release saw is enough when labels point at them. What is missing is in the
# self-supervised recipe: 256,000 images of instance discrimination did not lead the encoder
# to the findings, while it did keep how each image was taken. Phantoms that differ more between
# subjects (pose, field of view, habitus), as real radiographs do, a retrain with random
# borders, and stronger masked-image modelling are the next things to try on a GPU.

# %% [markdown]
# ## The trained class tokens hash their input
#
# The last measurement explains the others. Move every probe image a few pixels to the right (the
# left column repeated) and ask how far each encoder's class token moves. Tokens are standardised
# per dimension, as the linear probes standardise them, and the score is the mean cosine between an
# image's token and its shifted copy's (`raddino.eval.stability`): 1 is unmoved, and two *different*
# images score about 0 (the dotted lines). At 224 px, a 4-pixel shift (a quarter of a patch) leaves
# raw pixels at 0.84 and a random ViT at 0.78; the supervised reference, whose token reads findings
# at 0.389, keeps 0.54. The general release and v1 fall to about 0.2, nearly as far as if the
# patient had changed, and climb back at 16 pixels, where the image has moved by exactly one patch
# and the patch grid lines up again. Their tokens depend on where the patch grid cuts the image, not
# only on what it shows. The current release, trained without KoLeo and with a sharp teacher (the
# next sections), keeps 0.90 at 4 pixels, steadier than random init.
#
# A token that a quarter-patch shift scrambles cannot carry findings to a linear probe, and the
# training curves in chapter 02 say how it got that way. The DINO targets stayed nearly flat through
# the general and v1 runs (teacher entropy 0.74-0.87 of ln K): the head's prototypes barely told the
# images apart, so the class token was under little pressure to agree across crops. KoLeo, in
# the same runs, pushed the class tokens of a batch apart by whatever differed between them, and
# the cheapest differences are fine details that no crop keeps in place.

# %%
stability = shift_stability_table(
    property_specs, probe_folder, n=min(probe_n, 128), size=probe_size, device=device, seed=seed
)  # the A/B reports below measure the same way (raddino.ssl.release.class_token_stability)
display(stability.style.format("{:.3f}"))
figure = plot_shift_stability(stability)

# %% [markdown]
# ## Taking KoLeo away steadies the token
#
# If KoLeo's spreading is what scrambles the class token, a run without it should give a steadier
# one. Short CPU runs continued `raddino:phantom` with the ablation profile, as the random-borders
# runs above did (400 steps of 32 phantoms at 112 px; `benchmarks/cpu_recipe_ab.py`): without KoLeo;
# without KoLeo and with a sharper teacher (temperature 0.01 instead of 0.03); the sharper teacher
# alone; and the first two changes together for 800 and for 3,200 steps (102,400 images, 77 minutes
# on 2 cores). The column before the overrides is the 4-px shift score of the plot above.
#
# Without KoLeo the token steadies (0.215 at the start, 0.348 after 400 steps, 0.470 after 800,
# 0.586 after 3,200: as steady as the supervised reference's 0.543), and the global properties
# rise with it: lung Dice 0.607 to 0.668, sex 0.612 to 0.643-0.652 (random init: 0.633, about one
# standard error below). The sharper teacher alone changes neither. The run with KoLeo and no
# other change (`as_is` in the random-borders table above, measured afterwards the same way on
# its weights) stayed at 0.228 on the 4-px shift. But the findings do not follow: macro AUPRC
# goes 0.232, 0.241-0.252, 0.247 and, after 3,200 steps, 0.230, never more than about one
# standard deviation over probe seeds from where it started. KoLeo scrambled the token; a steady
# token is not yet one that reads findings.
# %%
display(
    recipe_ab_table(
        RELEASE_DIR / "sweeps" / "cpu_koleo_ab.json", properties=("collimation borders",)
    ).style.format(precision=3, na_rep="")
)

# %% [markdown]
# ## What the DINO head does with the steadier token
#
# The targets stay flat without KoLeo too (teacher entropy about 0.8 of ln K through the 3,200
# steps), so the next question is what the teacher's targets look like.
# `raddino.ssl.target_geometry` opens a checkpoint's teacher on its own training batches (8 batches
# of 32, both global crops) and measures its softmax at the run's temperature: how many prototypes
# share a target (the exponential of its entropy), the cosine between an image's bottleneck vector
# and its best prototype, how much an image's two crops share their targets and their backbone class
# tokens, and the same for two different images (`benchmarks/target_geometry.py`; the trainer now
# logs the crop overlap every step as `target_crop_overlap`).
#
# At the start (the release's backbone, fresh heads) the targets are sharp, about 2.5 of 256
# prototypes, but an image's two crops share almost none of them (overlap 0.06): the release's
# class tokens of two crops of one image are barely more alike than those of two patients (cosine
# 0.29 against 0.18). No student can predict a target that changes with the crop, and within 800
# steps the teacher has spread every target over about 100 prototypes, which the two crops
# share (0.87), and so do two different images, half as much (0.51). The class tokens of two
# crops now agree (0.84), more than two images' (0.38). The best prototype's cosine stays near 0.3
# all run long: no prototype comes to stand for a kind of image, so the targets say "one of these
# hundred" and the loss asks the backbone only for what a hundred prototypes' worth of images have
# in common. That fits what the probes read: a token steadier under crops and shifts that reads
# sex and lung layout a little better, and findings, which change a small part of the image, no
# better. Our hypothesis for the next GPU session, not yet tested: sharp targets need crops whose
# class tokens already agree, and a run long or large enough to get there may make prototypes
# specialise; the sweep there records this table for each variant.

# %%
display(
    target_geometry_table(RELEASE_DIR / "sweeps" / "cpu_no_koleo_geometry.json").style.format(
        precision=3
    )
)

# %% [markdown]
# ## One probe set is not enough to call a winner
#
# The same 3,200-step run, probed every 800 steps (`benchmarks/checkpoint_curve.py`) on the bar's
# probe phantoms and on a second, equally large set of other phantoms (evaluation seed 1, a
# validation set: nothing here was chosen on it). On the bar's phantoms, macro AUPRC peaks after 800
# steps at 0.262 ±0.008, which would have been the first encoder of ours clearly above random init
# (0.215 ±0.008) on findings. On the second set that peak is not there: 0.203 after 800 steps, 0.206
# at the start and at the end, random init 0.213. Sex accuracy moves the other way: on the bar's
# phantoms it ends at 0.643 against random init's 0.633, on the second set at 0.670 against 0.570.
# The ± in the tables is the spread over probe seeds on one set of phantoms; the spread between sets
# of 600 phantoms is larger (here 0.03-0.06 for macro AUPRC and sex). What holds on both sets:
# without KoLeo lung Dice rises well above random init (0.668 and 0.699 against 0.434 and 0.466),
# the token steadies, and macro AUPRC over findings does not move. A claim that an encoder "clearly
# beats" another should hold on more than one set of probe phantoms, and picking a checkpoint by the
# bar's own numbers would be picking on the test set. This is why the bar of chapter 02 now measures
# every release on both sets and asks for a win on each. Under that rule v1, like every run of this
# section, clearly beats random init on lung Dice only.

# %%
curves = RELEASE_DIR / "sweeps" / "cpu_no_koleo_curve.json"
display(
    pd.concat(
        {
            "bar's probe phantoms (seed 0)": checkpoint_curve_table(curves, seed=0),
            "second set (seed 1)": checkpoint_curve_table(curves, seed=1),
        }
    ).style.format(precision=3, na_rep="")
)

# %% [markdown]
# ## Whole views without KoLeo: the first clear win on sex, none on findings
#
# Two changes had each done something: whole-image global views keep where things are (the H200
# sweep above), and taking KoLeo away steadies the token. They had not been tried together. One more
# CPU run continued `raddino:phantom` for 800 steps with the ablation profile (112 px, 32 phantoms a
# step), with global views of 90-100 % of the side, no local crops, no KoLeo and the sharper teacher
# (0.01; 15.5 minutes of steps). It is held to the two-set bar beside the 800-step no-KoLeo run with
# the release's crops, and compared with random init on the same phantoms.
#
# It is the first encoder of ours that clearly beats random init on sex, on both sets (+0.037
# and +0.073). Its targets are sharper (teacher entropy 0.45 of ln K over the last quarter of
# the run, against 0.81 with the release's crops), and its class token is almost as steady
# under a 4-px shift as random init's (0.72 against 0.78). Findings still do not move (+0.016
# and -0.009), the class token still keeps the collimation borders (0.99), and lung Dice drops
# from 0.66 to 0.58, though still clearly above random init. Patch tokens pooled to the 4 × 4
# grid read findings at 0.29 and 0.27, as the releases and random init do (the pooled-probe
# benchmark run on this checkpoint).
#
# A third run adds local crops of 40-70 % of the side back to the whole views (20 minutes of
# steps). Lung Dice recovers part of the way (0.61), sex still clears random init on both sets,
# but only just (+0.023 and +0.023), and findings again stay within noise (+0.022 and +0.004).

# %%
whole_ab = RELEASE_DIR / "sweeps" / "cpu_whole_no_koleo_ab.json"
display(
    recipe_ab_table(whole_ab, properties=("collimation borders",)).style.format(
        precision=3, na_rep=""
    )
)
display(recipe_verdict_table(whole_ab).style.format(precision=3))

# %% [markdown]
# ## Frontal views only, as RAD-DINO trained: no difference the bar can see
#
# For its runs up to 546,000 images RAD-DINO kept only frontal scans (AP and PA), because its test
# sets are frontal and that gave the largest gains. Our phantom release samples PA, AP and lateral
# phantoms, and the probes are frontal. Two more CPU runs repeat the first two 800-step runs above
# without laterals (20 and 15 minutes of steps): same start, seed and steps, and the 512 phantoms in
# memory are all frontal instead of about two thirds of them.
#
# Against random init, the frontal run with the release's crops clearly beats it on sex (+0.053 and
# +0.063) as well as on lung Dice, and findings stay within noise (+0.032 and +0.002). Against its
# own twin with laterals, though, nothing moves clearly: sex +0.035 and -0.005, macro AUPRC -0.001
# and +0.003. The twin missed the sex margin on one set by 0.002, so the pass here says more about
# the margin than about the views. What does hold on both sets goes the other way: with the
# release's crops the lateral views add 0.03 of lung Dice. With whole views the frontal run loses
# the twin's clear sex win (-0.007 and +0.072); the two differ on one set only (-0.043 and -0.002).
# On four probe sets (the table after the next) the frontal run has a small edge on findings,
# 0.018 against 0.011 above random init on average, within the noise. So we keep lateral views in
# the release recipe for now. The lesson is about reading the bar: when one run clears the 0.02
# margin and another just misses it, compare the two runs directly before crediting the change.

# %%
frontal_ab = RELEASE_DIR / "sweeps" / "cpu_frontal_ab.json"
display(
    recipe_ab_table(frontal_ab, properties=("collimation borders",)).style.format(
        precision=3, na_rep=""
    )
)
display(recipe_verdict_table(frontal_ab).style.format(precision=3))
display(
    recipe_pair_table(
        {
            "frontal minus all views, release crops": (
                (frontal_ab, "frontal_no_koleo_800"),
                (whole_ab, "no_koleo_sharp_800"),
            ),
            "frontal minus all views, whole views": (
                (frontal_ab, "frontal_whole_no_koleo_800"),
                (whole_ab, "whole_no_koleo_800"),
            ),
        }
    ).style.format(precision=3)
)

# %% [markdown]
# ## Every recipe run on one page
#
# All twelve CPU runs of this chapter, each minus random init on the same phantoms, set by set (the
# first eight were measured on the second set afterwards, `cpu_earlier_arms_two_sets.json`, with
# their weights unchanged; a triangle marks a clear win). Lung Dice: every run clears random init,
# by 0.13-0.23. Sex: three runs clear it, all with KoLeo off. Every run is ahead on set 1 (+0.02 to
# +0.10), while set 0 ranges from -0.045 to +0.053. Findings: no run clears it. Every run is ahead
# on set 0 (+0.008 to +0.038) and none on set 1 (-0.014 to +0.005), so whatever differs between the
# two sets moves all the runs together, and a dozen runs on the same two sets are not a dozen
# independent tries.

# %%
board = recipe_scoreboard(
    [
        RELEASE_DIR / "sweeps" / "cpu_earlier_arms_two_sets.json",
        whole_ab,
        frontal_ab,
    ]
)
display(board.style.format(precision=3))
figure = plot_recipe_scoreboard(board, margin=CLEAR_MARGIN)

# %% [markdown]
# ## Is there a finding gain too small for the bar to see?
#
# The class-token finding probes alone (the cheap part of the bar) on four probe sets instead of
# two, with random init averaged over three draws of its weights on each set
# (`benchmarks/finding_sets.py`). The draws barely differ (standard deviation 0.002-0.005), so the
# baseline's luck is not what moves the verdicts; the probe phantoms are. The supervised reference,
# a positive control, is ahead on every set by 0.15-0.18: an effect of that size the probes see at
# once. The self-supervised encoders come nowhere near it. The shipped phantom release is ahead by
# 0.001 on average over the four sets, the general release by 0.009. The best CPU run, frontal views
# without KoLeo, is ahead on all four sets, by 0.002-0.033 and 0.018 on average (+0.008 and +0.028
# on sets 2 and 3, which chose nothing); the all-views run of the same recipe is ahead on three, by
# 0.011 on average. So a finding gain of one or two hundredths of AUPRC may be there for the
# KoLeo-free runs. It is smaller than the bar's margin, smaller than the spread between probe sets,
# and a tenth of what labels give. This is not the clear win the bar asks for, and we do not claim
# one.

# %%
display(
    finding_sets_table(RELEASE_DIR / "sweeps" / "finding_sets.json").style.format(
        precision=3, na_rep=""
    )
)

# %% [markdown]
# ## Does a class token see a finding when nothing else changes?
#
# The probes above ask a hard question: 600 phantoms whose subjects, views and exposures all differ,
# twelve findings, 360 training images. A finding's trace in a class token then competes with
# everything else the token holds, and the answer is a few hundredths of AUPRC either way. Phantoms
# allow a cleaner experiment than X-rays do. We render the same 200 frontal phantoms (100 subjects)
# twice: once without any finding, and once with exactly one finding, same subject, pose, exposure
# and noise (`raddino.eval.counterfactual`; the generator draws the same random numbers whatever the
# finding probabilities). Then the bar's probe, fitted on the pairs of four fifths of the subjects,
# scores the held-out fifth. Two read-outs per finding (`benchmarks/finding_counterfactuals.py`):
#
# * **AUROC** of with- over without-images of held-out subjects: can a linear read-out tell a
#   subject with the finding from another subject without it (0.5: blind)? This is the bar's
#   question with the confounding and the label noise taken out.
# * **Paired**: how often the held-out image with the finding scores above *the same image*
#   without it. The subject is then fixed, so this asks only whether the finding moves the
#   token along one direction (0.5: blind, 1: always).
#
# Raw pixels are the positive control. They tell six findings apart almost perfectly (cardiomegaly,
# lung opacity, effusion, pneumothorax, fibrosis, tuberculosis: AUROC 0.91-1.00, mean 0.95); nodules
# and rib fractures are invisible to every encoder at 224 px, pixels included. No ViT class token
# comes close. Over those six (the last column), random init reaches 0.603 (0.606 for a second draw
# of its weights, so the draw hardly matters), the general release 0.648, and v1 0.605:
# pretraining on phantoms with v1's recipe took the class token back from the general release's
# level to random init's. The paired read-out says how. A random network's class token moves with
# the heart's size in the same direction in 98 % of the pairs; v1's does so in 82 %.
# Pretraining taught the class token to *ignore* part of what it followed before. The mean patch
# token keeps more, and for every pretrained encoder alike (0.69 for both releases, random init
# 0.64).

# %%
counterfactuals = RELEASE_DIR / "sweeps" / "finding_counterfactuals.json"
figure = plot_counterfactuals(
    {
        f"{token}: AUROC, held-out subjects": counterfactual_frame(counterfactuals, "auroc", token)
        for token in ("cls", "patch_mean")
    }
)
display(counterfactual_frame(counterfactuals, "paired", "cls").style.format("{:.2f}"))

# %% [markdown]
# ## Which part of the recipe blinds the class token?
#
# Four 400-step CPU runs continue the general release on phantoms (the book's ablation profile:
# 112-px crops, 32 images a step, 512 phantoms in memory, 12,800 images in all) and differ in one
# thing at a time. With the release's recipe as it is, the six-finding AUROC falls from the general
# release's 0.648 to 0.605, exactly where the shipped phantom release sits, so the short run
# reproduces what the GPU run did. Without KoLeo and with a sharper teacher (temperature 0.01
# instead of 0.03) the same run goes *up* instead, to 0.667, and its paired read-out stays at random
# init's level (0.94, against 0.82 with the recipe as it is). Without the intensity jitter as well:
# 0.676. Whole-image global views without local crops: 0.644. The mean patch token barely notices
# the recipe (0.66-0.68 for all four). The two changes go together. KoLeo off at the release's
# temperature 0.03 is not a run at all: without KoLeo the class tokens of a batch draw together
# (their spread fell from 0.83 to 0.39 in 40 steps), the teacher's softmax at 0.03 turns flat
# (entropy 0.70 of ln K at the start, 0.93 by step 40, 0.99 by step 127), and the collapse check
# stopped it at step 127 (the `no_koleo` row below). The sharper temperature is what keeps the
# targets informative once KoLeo is gone. It fits the earlier CPU runs, where every sex win came
# from a run without KoLeo: KoLeo pushes the class tokens of a batch apart, and on phantoms the
# easiest way apart is what differs most between images (collimation, exposure, body size), not a
# finding.
#
# ### And on the bar?
#
# The two most finding-sensitive runs, held to the release bar on both probe
# sets (`cpu_from_general_ab.json`, against random init, then against the general release they
# started from). Without KoLeo, with a sharp teacher and no intensity jitter, a 400-step CPU run
# is the first encoder of this chapter to clear the findings margin on both sets: +0.031 and
# +0.021 over random init, +0.022 and +0.026 over the general release. It also beats the general
# release on sex (+0.052, +0.033) and random init on lung Dice (+0.07 on both). It is not yet the
# release the bar asks for: on sex it clears random init on one set only (+0.015, +0.073), and at
# 112 px its lung Dice is 0.025 below the general release's. The finding win is 0.001 over the
# margin on one set, so the next table holds it to four probe sets.
#
# ### Is longer better?
#
# The same run for 1,200 steps instead of 400 (38,400 images, 32 minutes;
# the `_1200` row) gains on the two parts the short one missed and loses the one it had. Sex now
# clears random init on both sets (0.670 and 0.635). Lung Dice rises from 0.507/0.540 to
# 0.528/0.577, back to the general release's level but not 0.02 past it. Findings fall to 0.235
# and 0.217: no longer past random init by the margin on either set. In the counterfactual pairs
# its class token still tells the six visible findings apart almost as well (0.666 against
# 0.676), so the longer run did not blind it; the token now holds more of everything else, and in
# 600 phantoms that differ in everything the findings' share of it shrinks. So the bar pulls two
# ways along one run: findings peak early, Dice keeps rising (as it did along the 3,200-step run
# from the phantom release above). No single CPU length met all three parts.

# %%
from_general = RELEASE_DIR / "sweeps" / "cpu_from_general_ab.json"
for against in ("random:vit_tiny", "raddino:general"):
    verdict = recipe_verdict_table(from_general, against=against)
    display(verdict.style.format(precision=3, na_rep=""))

# %% [markdown]
# ## The jitter-free recipe on four probe sets
#
# `benchmarks/finding_sets.py`, random init averaged over two draws of its weights per set. The
# jitter-free run is ahead of random init by 0.033, 0.023, 0.029 and 0.021:
# past the margin on every set, 0.027 on average, where the best earlier run managed 0.018 and
# cleared it on two sets. The general release it started from is ahead by 0.011, -0.003, 0.028 and
# 0.005. So the run beats its own start on all four sets, but by 0.001 and 0.016 on sets 2 and 3:
# the finding gain over the general release is real on average (+0.016) and not yet clear on every
# set. The 1,200-step run is ahead of random init by 0.023, 0.006, 0.024 and 0.018 (0.018 on
# average): the four sets agree that the longer run lost part of the finding gain. This is the
# recipe the GPU session then trained the phantom release with (`benchmarks/gpu_session.py`;
# chapter 02). Since the last step need not be the best one, that session kept a checkpoint every
# 200 steps, probed each on a validation set that no table here reads
# (`raddino.ssl.bar.VALIDATION_SET`), and took the one furthest past both baselines on its weakest
# metric; the bar's two sets then tested that choice. The two CPU rehearsals of that plan below
# came first.

# %%
display(
    finding_sets_table(RELEASE_DIR / "sweeps" / "finding_sets_from_general.json").style.format(
        precision=3, na_rep=""
    )
)

# %% [markdown]
# ## The same recipe from the phantom release, and a checkpoint chosen on the validation set
#
# The GPU session's plan can be rehearsed on CPU, at the ablation profile's 112 px: continue the
# *phantom* release, whose patch tokens already carry the lung Dice, with the jitter-free recipe
# for 800 steps, keep a checkpoint every 200, probe each on the validation set beside random init
# and the general release (`benchmarks/checkpoint_curve.py --choose`), and hold the chosen step to
# the bar (`raddino release --checkpoint ... --choice ...`). Its manifest is kept as a candidate
# in `raddino/release/sweeps/candidates/`, not shipped. On the validation set the findings rise
# from the release's 0.215 to 0.238 after 200 steps, then settle at 0.229-0.231, while Dice
# barely moves and sex gains 0.04 (first table; random init reads 0.224, the general release
# 0.228). Step 200 is furthest past both baselines on its weakest metric, but only by 0.010
# (findings over the general release), already short of the bar's 0.02. On the
# bar's two sets (second table) it clears lung Dice by far (+0.18 and +0.16 over random init) and
# misses the rest. Findings: +0.029 on set 0 and -0.004 on set 1. Sex: -0.010 and +0.047. Set 1
# again holds every run that starts from the phantom release below random init on findings, with
# or without the jitter, while the same recipe from the *general* release cleared it (+0.021).
# Whatever the phantom release's recipe taught the class token to ignore (the counterfactual
# pairs above), a few hundred CPU steps of a better recipe do not undo on every probe set.

# %%
candidates = RELEASE_DIR / "sweeps" / "candidates"
choice_curve = checkpoint_curve_table(
    candidates / "phantom_nks_nj_800_choice.json", seed=VALIDATION_SET
)
display(choice_curve.style.format(precision=3, na_rep=""))
candidate_verdict = release_verdict_table(["phantom_nj_s200"], candidates)
display(candidate_verdict.rename(index=lambda label: label.removeprefix("raddino:"), level=0))

# %% [markdown]
# ## From the general release at the release's resolution
#
# The last try on CPU takes the recipe that cleared findings from the general release and trains at
# 224 px instead of 112, the size the bar's probes and the releases use: 400 steps of 32 phantoms
# (12,800 images, 38 minutes), a checkpoint every 100, chosen on the validation set as above.
# Findings are the best of the chapter: +0.031 and +0.026 over random init, and +0.022 and +0.031
# over the general release it started from, so the finding gain clears the margin against both
# baselines on both sets. Sex clears random init on set 1 only (-0.003, +0.048). Lung Dice falls
# short: on the validation set it stays exactly at the general release's level along the whole run
# (0.559-0.560, so every step's worst margin is about zero and the choice is a coin toss), and on
# the bar's sets it is 0.020 and 0.039 *below* the general release. Training at 224 px stopped the
# fall in Dice that the 112-px runs showed on the validation set, but 12,800 images add nothing to
# the patch tokens that the general release did not already have. So on CPU the bar's three parts
# are met by different runs and never by one: Dice by runs from the phantom release, findings by
# runs from the general release, sex by a few runs on one set at a time. The release that meets all
# three needs the GPU session's budget (`benchmarks/gpu_session.py`).

# %%
display(
    checkpoint_curve_table(
        candidates / "general_nj_224_choice.json", seed=VALIDATION_SET
    ).style.format(precision=3, na_rep="")
)
candidate_verdict = release_verdict_table(["general_nj224_s400"], candidates)
display(candidate_verdict.rename(index=lambda label: label.removeprefix("raddino:"), level=0))

# %% [markdown]
# Both candidates on four probe sets (`benchmarks/finding_sets.py`, class-token findings minus
# random init, two draws of its weights per set). The 224-px run from the general release is
# ahead on every set: +0.033, +0.028, +0.030 and +0.019, 0.028 on average, the best of the
# chapter (the 112-px run managed 0.027). Over the general release it gains +0.022, +0.031,
# +0.002 and +0.014: on set 2 the general release is already as good, so "beats its start" holds
# on average and not on every set. The candidate from the phantom release is ahead on two sets
# only (+0.031, -0.002, -0.004, +0.020), the pattern of the release it started from (+0.019,
# -0.005, -0.004, +0.002), lifted where it was already ahead.

# %%
display(
    finding_sets_table(RELEASE_DIR / "sweeps" / "finding_sets_candidates.json").style.format(
        precision=3, na_rep=""
    )
)

# %% [markdown]
# ## Where this led
#
# On CPU the bar's three parts were met by different runs and never by one. The GPU session that
# followed trained the jitter-free recipe from the general release for 2,000 steps of 256
# phantoms at 224 px, chose the last step on the validation set, and shipped it as
# `raddino:phantom`: chapter 02 holds it to the bar, and the counterfactual figures above show it
# as "phantom v2 (current release)".
