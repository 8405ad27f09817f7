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
# # Pretraining: DINOv2 on chest X-rays
#
# RAD-DINO is not a new method. It is DINOv2's self-supervised recipe, run again from DINOv2's
# ViT-B/14 weights on 838 k chest X-rays (paper §2 and App. C.1). A **student** network and a
# **teacher** with the same architecture each see crops of the same image. The student learns by
# gradient descent to predict the teacher's outputs, and the teacher is an exponential moving
# average (EMA) of the student. Three losses are added:
#
# * **DINO** (image level): two *global* crops and several small *local* crops are cut from each
#   image. The teacher sees only the global crops, the student sees all of them. A projection
#   head maps each class token to $K$ prototype scores. The student's distribution $p_s$, a softmax
#   at temperature 0.1, must match the teacher's $p_t$, which is sharpened at a lower temperature
#   and *centred* (softmax centring with an EMA centre, or Sinkhorn–Knopp) so that no single
#   prototype takes over. Each student crop is scored against the teacher's *other* global crop
#   (and each local crop against both): $\mathcal{L}_{\text{DINO}} = -\sum p_t \log p_s$.
# * **iBOT** (patch level): some patches of the student's global crops are replaced by a mask
#   token. For those patches the student must predict the teacher's patch-token distribution,
#   and the teacher saw the image unmasked. This is masked image modelling. The paper credits it
#   for RAD-DINO's segmentation quality, and chapter 07 tests that claim.
# * **KoLeo**: a spread term on the student's class tokens within a batch, $-\frac{1}{n}\sum_i \log
#   \min_{j \ne i} \lVert x_i - x_j \rVert$ (weight 0.1). It pushes the images of a batch apart so
#   the features use the whole sphere.
#
# `raddino pretrain` implements these losses. Each one is tested against the official DINOv2
# code on seeded inputs, to 1e-5. This chapter shows what the networks see, runs a short live
# pretraining, and reports the runs behind the encoders that the evaluation chapters use.

# %% tags=["parameters"]
# Parameters: `raddino book --profile NAME` injects the profile's values here (papermill).
profile_name = "cpu"
runs_root = "runs"
seed = 0
device = "cpu"
image_size = 224  # phantom side in pixels for the multi-crop figure
pretrain_profile = "cpu"  # `raddino pretrain` profile of the live run below
pretrain_init = "random"  # or any weights load_backbone accepts: continual pretraining

# %%
import torch
from IPython.display import display

from raddino.data.dataset_folder import DatasetFolder
from raddino.eval.counterfactual import counterfactual_frame
from raddino.models.weights import RELEASE_DIR, release_names
from raddino.pipeline import phantom_folder
from raddino.ssl.bar import CLEAR_MARGIN, VALIDATION_SET
from raddino.ssl.config import load_config
from raddino.ssl.release import read_release_manifest
from raddino.ssl.release_tables import (
    checkpoint_curve_table,
    chosen_checkpoint_table,
    finding_sets_table,
    layer_probe_frame,
    release_finding_table,
    release_probe_table,
    release_table,
    release_verdict_table,
)
from raddino.ssl.short_runs import pretrain_stage, recipe_table, training_curves
from raddino.viz.pretraining import (
    plot_bar_verdict,
    plot_layer_probe,
    plot_multicrop,
    plot_training_curves,
)

torch.set_num_threads(2)
live_config = load_config(pretrain_profile, {"model.init": pretrain_init})

# %% [markdown]
# ## What the student and the teacher see
#
# RAD-DINO's crops (App. C.1) are set by their **side**: a global crop's side is drawn from
# U(259, 518) px of a 518 px image and resized to 518, and a local crop's side from U(104, 259),
# resized to 196. Our profiles keep those fractions at smaller sizes. Photometric jitter suits
# grayscale radiographs: brightness, contrast and gamma, and blur (less on the teacher's first
# crop). Horizontal flips are off, because laterality matters on a chest X-ray. Below is one
# phantom as the live run's profile cuts it. The shaded patches of the first global crop are
# an iBOT mask: the student sees mask tokens there and must predict what the teacher saw.

# %%
folder = DatasetFolder.open(
    phantom_folder(4, image_size, seed, views=("PA",), with_masks=False, root=runs_root, quiet=True)
)
figure = plot_multicrop(folder.read_image(0), live_config, seed=seed)

# %% [markdown]
# ## The recipe, ours beside the paper's
#
# The live run's profile, the profiles of the two shipped encoders and `gpu-paper` (RAD-DINO's
# schedule on real data), beside the values the paper's text states. DINOv2's defaults fill the
# gaps the paper leaves. Two small-scale departures are measured, not guessed. First, with
# LayerScale initialised at 1e-5, an untrained ViT gives every image the *same* class token, so
# our random-init runs use 1.0. Second, with thousands of prototypes and the teacher temperature
# warming up to 0.07, a short CPU run's teacher drifted towards uniform targets, so our small runs
# use 256 prototypes, Sinkhorn–Knopp targets and a fixed temperature of 0.03.

# %%
configs = {f"live ({pretrain_profile})": live_config}
for name in release_names():  # the resolved config each shipped run used, from its manifest
    configs[f"raddino:{name}"] = read_release_manifest(name)["config"]
configs["gpu-paper"] = load_config("gpu-paper", {"data.path": runs_root})
display(recipe_table(configs))

# %% [markdown]
# ## A live run
#
# This run uses the `pretrain_profile` above. It is cached as a pipeline stage, so a rebuild
# reads it back instead of training again, and an interrupted run resumes from its last
# checkpoint. With `pretrain_init` pointing at released weights it is *continual* pretraining,
# as in the paper. On two CPU cores it lasts a few minutes, long enough to see the losses move
# and to check that the teacher has not collapsed, far too short to learn a good encoder. The
# run logs these diagnostics at every step:
#
# * **teacher entropy** (of its targets, as a fraction of $\ln K$). Near 1 means uniform
#   targets, so the student learns nothing. Near 0 for every image at once means collapse onto
#   one prototype.
# * **batch entropy**: the entropy of the batch-mean target. Low means every image picks the
#   same prototypes.
# * **feature std**: the spread of normalised class tokens across the batch. 0 means every image
#   gets the same vector.

# %%
live_dir = pretrain_stage(pretrain_profile, {"model.init": pretrain_init}, runs_root=runs_root)
live = training_curves({f"live ({pretrain_profile})": live_dir})
figure = plot_training_curves(
    live, ("total", "dino_global", "dino_local", "ibot", "koleo", "teacher_entropy")
)
final = live[live["step"] == live["step"].max()].set_index("metric")["value"]
images_per_s = live.loc[live["metric"] == "images_per_s", "value"].median()
print(
    f"{live['step'].max() + 1} steps; final teacher entropy {final['teacher_entropy']:.3f} of "
    f"ln K, batch entropy {final['batch_entropy']:.3f}, feature std {final['feature_std']:.3f}; "
    f"median {images_per_s:.1f} images/s"
)

# %% [markdown]
# The schedules follow DINOv2: linear warm-up then cosine decay of the learning rate, with the
# square-root batch-size rule; weight decay rising 0.04 → 0.4; the EMA momentum rising towards
# 1. The last layer of the head stays frozen for the first epoch.

# %%
figure = plot_training_curves(live, ("lr", "momentum", "teacher_temp", "grad_norm"), smooth=1)

# %% [markdown]
# ## The shipped encoders and how they were made
#
# Minutes of CPU do not make a useful encoder, so the evaluation chapters use encoders our
# trainer made ahead of time. The repository ships them in `raddino/release/`, and
# `raddino pretrain --profile <name>-release` regenerates each one. The encoders:
#
# * `raddino:general` stands in for DINOv2's natural-image weights. It is pretrained from random
#   initialisation on procedurally generated *dead-leaves* images (Baradad et al., 2021): generic
#   shapes, textures and occlusions, no chest X-rays.
# * `raddino:phantom` stands in for RAD-DINO. It is continual pretraining from `raddino:general`
#   on chest X-ray phantoms, with PA, AP and lateral views: 2,000 steps of 256 phantoms at 224 px
#   on one H200, with the recipe that chapter 12's measurements arrived at (KoLeo off, a sharp
#   teacher, no intensity jitter), and the step chosen on a validation set. It replaced a first
#   phantom release (**v1**) that used the general release's recipe and failed the bar on
#   findings and sex. Chapter 12 tells how v1 was diagnosed and the new recipe found; v1's
#   weights and manifest stay on record in `raddino/release/sweeps/previous/`, and the training
#   curves below show both.
#
# Each one has a manifest beside it. The manifest records its resolved config, steps, images,
# hardware, wall time and sha256, and the frozen-probe bar it was held to.

# %%
shipped = release_names()
if shipped:
    display(release_table(shipped))
else:
    print(
        "no release checkpoints in raddino/release/: run `raddino pretrain --profile "
        "general-release --out RUN`, then `raddino release RUN --name general ...`"
    )

# %% [markdown]
# The paper's Table 1 lists the encoders it compares, with their size, training data and input
# resolution. Ours in its columns, then the paper's. "# Images" counts distinct training
# images (the releases prerender a pool of phantoms or dead-leaves scenes and see each one many
# times); the parameters are counted in the shipped files (backbone only). The scale differs by
# everything: 2.8 M parameters against 87 M for RAD-DINO, 8,192 images against 838,000.

# %%
if shipped:
    from raddino.paper import paper_table
    from raddino.ssl.release_tables import release_overview

    display(release_overview(shipped))
    display(paper_table("1", wide=True))

# %% [markdown]
# Their training curves, step by step as the runs logged them. `general` learned from random
# initialisation on dead leaves. `phantom` started from `general`'s teacher with fresh heads,
# which is why its losses start high and drop quickly. The first phantom release (v1) is drawn
# too: its teacher's targets flattened (entropy rising to 0.87 of ln K), while the current
# release's sharp teacher (temperature 0.01) keeps them peaked (0.10 at the end) and the
# batch-mean target stays spread over the prototypes, so nothing collapsed.

# %%
if shipped:
    curve_files = {f"raddino:{n}": RELEASE_DIR / f"{n}.metrics.jsonl" for n in shipped}
    v1_curve = RELEASE_DIR / "sweeps" / "previous" / "phantom_v1.metrics.jsonl"
    if v1_curve.is_file():
        curve_files["phantom v1 (first release)"] = v1_curve
    shipped_curves = training_curves(curve_files)
    figure = plot_training_curves(
        shipped_curves,
        ("total", "dino_global", "ibot", "koleo", "teacher_entropy", "batch_entropy"),
        smooth=9,
    )

# %% [markdown]
# ## The bar each release was held to
#
# Frozen features, linear read-outs, held-out phantoms (subjects never seen in pretraining):
#
# * **macro AUPRC** over the twelve findings: linear probes on the class token, five seeds;
# * **sex accuracy**: logistic regression, five folds split by subject;
# * **lung Dice**: a linear head on the frozen patch tokens, trained 100 epochs as in the paper.
#
# Each release is compared with a random-init backbone of the same shape and with raw pixels.
# The phantom checkpoint has to beat random init on all three, and beat the general
# checkpoint. Where raw pixels still win, the tables show that too: pixels are a strong baseline
# on large, bright phantom findings (chapter 01).
#
# Every number is measured on **two probe sets**: 600 probe phantoms and 160 segmentation
# phantoms each, drawn with evaluation seeds 0 and 1 (`raddino.ssl.bar`). Chapter 12 shows why
# one set is not enough: between two sets of 600 phantoms the same encoder's
# macro AUPRC moved by up to 0.06, more than the differences our recipe changes made. The first
# table gives the mean over the two sets and each metric's range between them.

# %%
if shipped:
    display(release_probe_table(shipped).style.format("{:.3f}"))

# %% [markdown]
# The verdict compares a release with each baseline *on the same phantoms*, set by set. A
# release **clearly beats** a baseline when it is ahead by at least 0.02 on both sets. That is
# about one standard error of an accuracy on 600 images, so a win on one set alone, or a smaller
# one, can be luck of the draw.
# The plot shows the same differences against random init and the general release; raw pixels
# stay in the table, where they still win on findings and sex (by about 0.1 over the phantom
# release, on both sets).

# %%
if shipped:
    verdict = release_verdict_table(shipped)
    display(verdict.style.format(precision=3))
    encoders_only = verdict.drop(index="pixels:32", level="against", errors="ignore")
    figure = plot_bar_verdict(encoders_only, CLEAR_MARGIN)  # the grey band: +-0.02

# %% [markdown]
# ## Where the bar is met, and where not yet
#
# **Lung Dice: met.** On both sets the phantom release's patch tokens segment the lungs clearly
# better than random init's (+0.165 on each) and than the general release's (+0.068 and +0.067).
# That needs the paper's 100 epochs for the linear head: with 12, as an earlier version of this
# bar used, the heads were still learning and every encoder scored alike (random 0.378, general
# 0.388, phantom v1 0.385), which hid a real difference.
#
# **Sex: met.** +0.057 and +0.115 over random init, +0.093 and +0.077 over the general release.
#
# **Findings: met against the general release, missed against random init by 0.001 on one set.**
# Macro AUPRC is 0.262 and 0.232 on the two sets: +0.039 and +0.024 over the general release,
# +0.048 and **+0.019** over random init, where the bar asks for +0.020 on every set. So eleven of
# the twelve per-set comparisons with the two encoder baselines clear the margin, and the twelfth
# misses it by less than a tenth of a probe seed's spread (the ± column above); by the rule we set
# ourselves before this run, the bar is not met. On four probe sets (the section on the GPU
# run below) the release is ahead of random init on every set. Raw pixels still read findings
# better by about 0.1, as they do for every encoder here (chapter 01).
#
# The first phantom release (v1, `raddino/release/sweeps/previous/`) met only the Dice part: its
# class token read findings about as well as random init's (+0.017 and -0.007) and sex worse on
# both sets, after 256,000 phantom images. Chapter 12 traces that to the
# recipe rather than to the budget. The new release is the same model, data and budget per step,
# with three settings changed (KoLeo off, teacher temperature 0.01, no intensity jitter) and
# twice the steps, chosen on a validation set that no bar reads. Along the run every validation
# metric rose after the first 400 steps (the curve below), so the last step was taken.
#
# The per-finding table (means over both sets) says where the macro number comes from. Raw pixels
# read cardiomegaly almost perfectly, since the heart's outline sits at fixed pixels; every ViT
# class token stays near the finding's prevalence on it. The phantom release gains over random
# init on the findings that change the lung's texture or brightness (lung opacity +0.16,
# pneumothorax +0.10, fibrosis +0.09), the cues that the intensity jitter used to erase; v1's
# gains were on support devices and chest tubes, lines that look alike wherever a crop falls.

# %%
if shipped:
    display(release_finding_table(shipped).style.format("{:.3f}"))

# %% [markdown]
# **How the released step was chosen.** Every 200 steps a checkpoint was kept, and each
# checkpoint's teacher was probed on a third probe set (seed 8, the validation set) beside random
# init and the general release (`benchmarks/checkpoint_curve.py --choose`). The step furthest past
# both on its weakest metric is released (`raddino release RUN --choice REPORT`); the manifest
# keeps the curve (second table: each step's worst margin over the two baselines). Findings dip
# after the warm-up (step 400) and climb back past their early level as the learning rate
# anneals, while sex and Dice rise throughout, and so does the class token's steadiness under a
# 4-px shift (0.64 to 0.91; v1 ended at 0.22).

# %%
if "phantom" in shipped and "released_checkpoint" in read_release_manifest("phantom"):
    display(
        checkpoint_curve_table(
            RELEASE_DIR / "sweeps" / "nj_2000_choice.json", seed=VALIDATION_SET
        ).style.format(precision=3, na_rep="")
    )
    display(chosen_checkpoint_table("phantom").style.format(precision=3, na_rep=""))

# %% [markdown]
# ## The GPU run that became the release
#
# One H200 session (`benchmarks/gpu_session.py --bring-checkpoints`) trained the jitter-free recipe
# (KoLeo off, teacher temperature 0.01, no intensity jitter; chapter 12) from the general release at
# 224 px with the release profile's 256 phantoms a step: 1,000 steps (2 minutes), then 2,000 (3.5
# minutes of steps; `raddino/release/sweeps/h200_jitter_free.json`). Every checkpoint's teacher came
# back as fp16 weights, so the choice of step and the release were made here on the CPU with the
# tools above, and the GPU's probes of the same checkpoints agree with the CPU's to within 0.002.
# What the 1,200-step CPU run of chapter 12 suggested, that a long run trades findings for Dice, did
# not happen at this batch size: after a dip at the end of the warm-up (steps 200-400), findings,
# sex and Dice all rose to the last step of both runs. The 1,000-step run ended at 0.244, 0.672 and
# 0.617 (findings, sex and Dice on the validation set), the 2,000-step run at 0.249, 0.698 and
# 0.642; its last step was furthest past both baselines on its weakest metric (+0.021) and is the
# shipped `raddino:phantom`.
#
# On four probe sets (below; random init averaged over two draws of its weights) the release is
# ahead of random init by +0.050, +0.021, +0.041 and +0.024, 0.034 on average, and the only
# encoder of ours that clears 0.02 on every set; v1 managed +0.019, -0.005, -0.004 and
# +0.002 on the same sets. Over the general release it gains on every set too, least on set 2
# (+0.013), where the general release is already strong.
#
# The counterfactual pairs of chapter 12 ask the cleaner question: the same subject rendered with
# and without one finding, and a linear read-out of the class token fitted on four fifths of the
# subjects, scored on the rest (AUROC; 0.5 is blind). Over the six findings
# raw pixels see, its class token separates held-out subjects at AUROC 0.718, against 0.605 for
# v1, 0.648 for the general release, 0.603 for random init and 0.676 for the best CPU run; and it
# moves the same way with a finding in 97 % of the pairs (v1 80 %, random init 95 %). The recipe
# that blinded v1's class token is gone, and with 512,000 images it reads more than any
# encoder of ours. Raw pixels (0.948) are still far ahead.

# %%
display(
    finding_sets_table(RELEASE_DIR / "sweeps" / "finding_sets_phantom_v2.json").style.format(
        precision=3, na_rep=""
    )
)
counterfactual_auroc = counterfactual_frame(
    RELEASE_DIR / "sweeps" / "finding_counterfactuals.json", "auroc", "cls"
)
display(
    counterfactual_auroc.loc[
        [
            "pixels:32",
            "random:vit_tiny",
            "raddino:general",
            "phantom v1 (first release)",
            "phantom v2 (current release)",
        ]
    ].style.format("{:.2f}")
)

# %% [markdown]
# Block by block (`benchmarks/layer_probe.py`, as chapter 12 does for v1): the release's patch
# tokens read findings above random init's at every block, most in 2 × 2 cells at block 2 (0.283 and
# 0.269 against 0.235 and 0.232 on the two sets), where v1's best block was +0.025 and +0.019. So
# the new recipe also put finding information into the patch tokens, not only into the class token.

# %%
figure = plot_layer_probe(layer_probe_frame(RELEASE_DIR / "sweeps" / "layer_probe_phantom_v2.json"))

# %% [markdown]
# Chapter 12 is the investigation that led here: why v1's class token missed the findings, what
# it kept instead, and which part of the recipe was to blame.
