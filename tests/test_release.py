"""Release packaging: fp16 weights, a manifest that says how it was made and how it probes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors import safe_open

from raddino.ssl.recipe_tables import recipe_ab_table, sweep_table
from raddino.ssl.release import (
    ReleaseEval,
    class_token_readouts,
    class_token_stability,
    package_release,
    sha256_of,
    training_record,
)
from raddino.ssl.release_tables import SHIFT_COLUMN, release_finding_table

TINY_EVAL = ReleaseEval(
    probe_n=48,
    probe_size=56,
    probe_seeds=2,
    metadata_folds=3,
    segmentation_n=40,
    segmentation_size=56,
    segmentation_epochs=2,
    sets=(0,),  # one probe set where a test is about packaging, two where it is about sets
)


@pytest.fixture
def finished_run(finished_smoke_run):
    return finished_smoke_run


def test_package_writes_fp16_weights_and_an_honest_manifest(finished_run, tmp_path):
    from raddino.models.weights import load_backbone

    runs_root = str(tmp_path / "runs")
    manifest_path = package_release(
        finished_run,
        "tiny",
        profile="smoke",
        out_dir=tmp_path / "release",
        compare=("pixels:8",),
        evaluation=TINY_EVAL,
        runs_root=runs_root,
    )
    manifest = json.loads(manifest_path.read_text())
    weights = tmp_path / "release" / "tiny.safetensors"
    assert manifest["sha256"] == sha256_of(weights)
    assert manifest["steps"] == 3 and manifest["images_seen"] == 3 * 4
    assert manifest["config"]["model"]["arch"] == "vit_pico"
    assert manifest["hardware"]["world_size"] == 1 and manifest["train_wall_s"] > 0
    # 3 steps are too few to judge whether the DINO targets stayed flat: said as null, not dropped
    assert "flat_targets_warning" in manifest and manifest["flat_targets_warning"] is None
    with safe_open(str(weights), "pt") as handle:
        assert {handle.get_tensor(k).dtype for k in handle.keys()} == {torch.float16}
    # the released file loads through load_backbone and matches the run's teacher in fp16
    released = load_backbone(weights)
    teacher = load_backbone(finished_run / "teacher_backbone.safetensors")
    x = torch.randn(1, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(released(x), teacher(x), atol=5e-2)
    probes = manifest["frozen_probes"]
    assert set(probes["baselines"]) == {"random:vit_pico", "pixels:8"}
    for metrics in [probes["this"], *probes["baselines"].values()]:
        assert 0.0 < metrics["macro_auprc"] <= 1.0
        assert 0.0 < metrics["sex_accuracy"] <= 1.0
        assert 0.0 <= metrics["lung_dice"] <= 1.0
        # each finding's AUPRC is kept, and the macro is their mean over the probed findings
        per_finding = list(metrics["finding_auprc"].values())
        assert per_finding and abs(np.mean(per_finding) - metrics["macro_auprc"]) < 0.05
    findings = release_finding_table(["tiny"], tmp_path / "release")
    assert list(findings.columns) == ["raddino:tiny", "random:vit_pico", "pixels:8"]
    assert findings["pixels:8"].to_dict() == probes["baselines"]["pixels:8"]["finding_auprc"]
    # random init and pixels are different encoders: their numbers must not coincide
    assert probes["baselines"]["random:vit_pico"] != probes["baselines"]["pixels:8"]
    assert (tmp_path / "release" / "tiny.metrics.jsonl").read_text() == (
        finished_run / "metrics.jsonl"
    ).read_text()
    assert set(probes["this"]["per_set"]) == {"0"}


def test_reprobe_measures_every_set_and_keeps_how_the_release_was_made(finished_run, tmp_path):
    from dataclasses import replace

    from raddino.ssl.release import reprobe_release
    from raddino.ssl.release_tables import release_probe_table, release_verdict_table

    runs_root, release_dir = str(tmp_path / "runs"), tmp_path / "release"
    package_release(
        finished_run,
        "tiny",
        profile="smoke",
        out_dir=release_dir,
        compare=("pixels:8",),
        evaluation=TINY_EVAL,
        runs_root=runs_root,
    )
    before = json.loads((release_dir / "tiny.json").read_text())
    two_sets = replace(TINY_EVAL, sets=(0, 1))
    after = json.loads(
        reprobe_release(
            "tiny", release_dir=release_dir, evaluation=two_sets, runs_root=runs_root
        ).read_text()
    )
    assert {k: v for k, v in after.items() if k != "frozen_probes"} == {
        k: v for k, v in before.items() if k != "frozen_probes"
    }
    probes = after["frozen_probes"]
    assert probes["evaluation"]["sets"] == [0, 1]
    assert set(probes["baselines"]) == {"random:vit_pico", "pixels:8"}
    this = probes["this"]
    assert set(this["per_set"]) == {"0", "1"}
    # set 0 is the packaged measurement again (same phantoms, seeds and caches); set 1 differs
    assert this["per_set"]["0"] == before["frozen_probes"]["this"]["per_set"]["0"]
    assert this["per_set"]["1"] != this["per_set"]["0"]
    sets = this["per_set"].values()
    assert this["macro_auprc"] == pytest.approx(np.mean([m["macro_auprc"] for m in sets]), abs=1e-4)
    spread = np.ptp([m["macro_auprc"] for m in sets])
    assert this["between_set_range"]["macro_auprc"] == pytest.approx(spread, abs=1e-4)
    table = release_probe_table(["tiny"], release_dir)
    assert table.loc["raddino:tiny", "macro_auprc range between sets"] == pytest.approx(
        spread, abs=1e-4
    )
    verdict = release_verdict_table(["tiny"], release_dir)
    assert len(verdict) == 2 * 3  # two baselines, three bar metrics
    row = verdict.loc[("raddino:tiny", "random:vit_pico", "lung_dice")]
    random_sets = probes["baselines"]["random:vit_pico"]["per_set"]
    assert row["difference on set 1"] == pytest.approx(
        this["per_set"]["1"]["lung_dice"] - random_sets["1"]["lung_dice"], abs=1e-4
    )
    # a release whose file is not the one its manifest records is refused
    weights = release_dir / "tiny.safetensors"
    weights.write_bytes(weights.read_bytes() + b"x")
    with pytest.raises(ValueError, match="sha256 differs"):
        reprobe_release("tiny", release_dir=release_dir, runs_root=runs_root)


def test_package_a_chosen_checkpoint_releases_its_teacher_and_its_curve(finished_run, tmp_path):
    from raddino.ssl.release import backbone_from_checkpoint

    first, last = sorted((finished_run / "checkpoints").glob("step_*"))  # after steps 2 and 3
    manifest_path = package_release(
        finished_run,
        "early",
        profile="smoke",
        out_dir=tmp_path / "release",
        compare=(),
        evaluation=TINY_EVAL,
        runs_root=str(tmp_path / "runs"),
        checkpoint=first,
        choice={"seed": 8, "step": 2},
    )
    manifest = json.loads(manifest_path.read_text())
    assert manifest["steps"] == 2 and manifest["images_seen"] == 2 * 4
    assert manifest["released_checkpoint"] == {
        "step": 2,
        "run_steps": 3,
        "choice": {"seed": 8, "step": 2},
    }
    curve = (finished_run / "metrics.jsonl").read_text().splitlines(keepends=True)
    assert (tmp_path / "release" / "early.metrics.jsonl").read_text() == "".join(curve[:2])
    with safe_open(str(tmp_path / "release" / "early.safetensors"), "pt") as handle:
        released = {k: handle.get_tensor(k) for k in handle.keys()}

    def in_fp16(folder):  # a checkpoint's teacher as the release stores it
        state = backbone_from_checkpoint(folder).state_dict()
        return {k: v.half() for k, v in state.items() if k in released}

    chosen, final = in_fp16(first), in_fp16(last)
    assert chosen.keys() == released.keys()
    assert all(torch.equal(released[k], chosen[k]) for k in released)
    assert not all(torch.equal(released[k], final[k]) for k in released)  # not the final teacher
    other_run = tmp_path / "other" / "checkpoints" / first.name
    other_run.mkdir(parents=True)
    with pytest.raises(ValueError, match="not a checkpoint of"):
        package_release(
            finished_run, "x", profile="smoke", out_dir=tmp_path / "x", checkpoint=other_run
        )


def test_a_teacher_only_copy_releases_the_same_weights_and_cannot_resume(finished_run, tmp_path):
    import shutil

    from raddino.ssl.checkpoint import restore_training_state, teacher_only_checkpoint

    slim = tmp_path / "slim" / finished_run.name  # as gpu_session --bring-checkpoints packs it
    slim.mkdir(parents=True)
    for name in ("config.yaml", "metrics.jsonl", "hardware.json"):
        shutil.copy2(finished_run / name, slim / name)
    first = sorted((finished_run / "checkpoints").glob("step_*"))[0]
    copy = teacher_only_checkpoint(first, slim)
    assert copy.name == first.name
    size = (copy / "state.safetensors").stat().st_size
    assert size < (first / "state.safetensors").stat().st_size / 4
    made = {
        "profile": "smoke",
        "compare": (),
        "evaluation": TINY_EVAL,
        "runs_root": str(tmp_path / "runs"),
        "choice": {"seed": 8, "step": 2},
    }
    full = package_release(finished_run, "a", out_dir=tmp_path / "a", checkpoint=first, **made)
    cut = package_release(slim, "a", out_dir=tmp_path / "b", checkpoint=copy, **made)

    def weights(folder):  # not sha256: safetensors writes its metadata in no fixed order
        with safe_open(str(folder / "a.safetensors"), "pt") as handle:
            return handle.metadata(), {k: handle.get_tensor(k) for k in handle.keys()}

    (full_meta, full_tensors), (cut_meta, cut_tensors) = weights(full.parent), weights(cut.parent)
    assert cut_meta == full_meta and cut_tensors.keys() == full_tensors.keys()
    assert all(torch.equal(cut_tensors[k], full_tensors[k]) for k in full_tensors)  # fp16 both
    full, cut = json.loads(full.read_text()), json.loads(cut.read_text())
    assert cut["released_checkpoint"] == full["released_checkpoint"]
    assert cut["frozen_probes"] == full["frozen_probes"]
    with pytest.raises(ValueError, match="teacher-only checkpoint .* cannot resume"):
        restore_training_state(slim, None, None, None)


def test_unfinished_or_truncated_runs_are_refused(finished_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="has not finished"):
        package_release(tmp_path, "x", profile="smoke", out_dir=tmp_path / "out")
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("config.yaml", "metrics.jsonl"):
        (copy / name).write_text((finished_run / name).read_text())
    lines = (copy / "metrics.jsonl").read_text().splitlines()
    (copy / "metrics.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ValueError, match="2 steps logged, the config runs 3"):
        training_record(copy)


def test_checkpoint_backbones_are_the_run_s_teacher_and_student(finished_run):
    from raddino.models.weights import load_backbone
    from raddino.ssl.checkpoint import latest_checkpoint
    from raddino.ssl.release import backbone_from_checkpoint

    last = latest_checkpoint(finished_run)  # written at the final step
    teacher = backbone_from_checkpoint(last, "teacher")
    student = backbone_from_checkpoint(last, "student")
    final = load_backbone(finished_run / "teacher_backbone.safetensors")
    for name, tensor in final.state_dict().items():
        assert torch.equal(teacher.state_dict()[name], tensor), name
    assert any(
        not torch.equal(student.state_dict()[n], t) for n, t in final.state_dict().items()
    ), "student and EMA teacher should differ after training"
    with pytest.raises(ValueError, match="'teacher' or 'student'"):
        backbone_from_checkpoint(last, "both")


def test_sweep_table_lists_baselines_variants_and_failures(tmp_path):
    probe = {
        "macro_auprc": 0.2,
        "macro_auprc_std": 0.01,
        "sex_accuracy": 0.6,
        "sex_majority_accuracy": 0.5,
        "lung_dice": 0.5,
        "finding_auprc": {"nodule": 0.2},
    }
    report = {
        "evaluation": {"probe_n": 600},
        "epochs": 8,
        "random:vit_tiny": probe,
        "variants": {
            "whole": {
                "overrides": {"crops.local_crops_number": "0"},
                "train_s": 40.0,
                "last_step": {"teacher_entropy": 0.67},
                "frozen_probes": {**probe, "macro_auprc": 0.24},
            },
            "cold": {"overrides": {"model.init": "random"}, "failed": "teacher targets collapsed"},
        },
    }
    (tmp_path / "sweep.json").write_text(json.dumps(report))
    table = sweep_table(tmp_path / "sweep.json")
    assert list(table.index) == ["random:vit_tiny", "variant whole", "variant cold"]
    assert table.loc["variant whole", "macro_auprc"] == 0.24
    assert table.loc["variant whole", "overrides"] == "crops.local_crops_number=0"
    assert table.loc["variant cold", "failed"] == "teacher targets collapsed"
    assert "finding_auprc" not in table.columns  # per finding stays in the JSON


def test_sweep_table_shows_class_token_readouts_where_the_sweep_measured_them(tmp_path):
    probe = {"macro_auprc": 0.2, "sex_accuracy": 0.6, "lung_dice": 0.5}
    readouts = {"collimation borders": 0.93, "sex": 0.6}
    report = {
        "random:vit_tiny": probe,  # an older sweep's baseline: no read-outs
        "majority_class": {"collimation borders": 0.52, "sex": 0.54},
        "variants": {
            "borders": {
                "overrides": {"crops.random_borders_p": "0.5"},
                "last_step": {"teacher_entropy": 0.6},
                "frozen_probes": {**probe, "class_token_properties": readouts},
            },
        },
    }
    (tmp_path / "sweep.json").write_text(json.dumps(report))
    table = sweep_table(tmp_path / "sweep.json")
    assert list(table.index) == ["random:vit_tiny", "variant borders", "majority class"]
    column = table["class token: collimation borders"]
    assert column.isna().tolist() == [True, False, False]
    assert column.tolist()[1:] == [0.93, 0.52]
    assert "class token: sex" not in table.columns  # only the properties asked for
    assert "class_token_properties" not in table.columns


def test_recipe_ab_table_puts_variants_beside_their_start_and_the_majority(tmp_path):
    bar = {"macro_auprc": 0.23, "sex_accuracy": 0.61, "lung_dice": 0.6, "finding_auprc": {}}
    properties = {"collimation borders": 0.93, "sex": 0.61}
    majority = {"collimation borders": 0.52, "sex": 0.54}
    report = {
        "majority_class": majority,
        "start": {"spec": "raddino:phantom", "bar": bar, "class_token_properties": properties},
        "variants": {
            "as_is": {
                "overrides": {},
                "wall_s": 500.0,
                "bar": bar,
                "class_token_properties": properties,
            },
            "borders": {
                "overrides": {"crops.random_borders_p": "0.5"},
                "wall_s": 510.0,
                "bar": {**bar, "macro_auprc": 0.25},
                "class_token_properties": {**properties, "collimation borders": 0.7},
            },
        },
    }
    (tmp_path / "ab.json").write_text(json.dumps(report))
    table = recipe_ab_table(tmp_path / "ab.json")
    assert list(table.index) == [
        "start raddino:phantom",
        "variant as_is",
        "variant borders",
        "majority class",
    ]
    column = "class token: collimation borders"
    assert table[column].tolist() == [0.93, 0.93, 0.7, 0.52]
    assert table.loc["variant borders", "macro_auprc"] == 0.25
    assert table.loc["variant as_is", "overrides"] == "(as is)"
    assert table.loc["variant borders", "overrides"] == "crops.random_borders_p=0.5"
    assert "finding_auprc" not in table.columns
    with pytest.raises(KeyError, match="no class-token read-out 'exposure'"):
        recipe_ab_table(tmp_path / "ab.json", properties=("exposure",))
    assert SHIFT_COLUMN not in table.columns  # an older report measured no shift stability

    report["variants"]["borders"]["class_token_shift_stability"] = {
        "shift_1px": 0.6,
        "shift_4px": 0.31,
    }
    (tmp_path / "ab.json").write_text(json.dumps(report))
    shifted = recipe_ab_table(tmp_path / "ab.json")[SHIFT_COLUMN]
    assert shifted.isna().tolist() == [True, True, False, True]
    assert shifted["variant borders"] == 0.31


def test_class_token_readouts_give_the_encoder_and_majority_rows(tmp_path):
    readouts = class_token_readouts("random:vit_tiny", TINY_EVAL, str(tmp_path / "runs"))
    assert set(readouts) == {"encoder", "majority class"}
    expected = {"view (PA/AP)", "sex", "collimation borders", "exposure", "display window"}
    assert expected <= set(readouts["encoder"])
    assert set(readouts["encoder"]) == set(readouts["majority class"])
    majority = readouts["majority class"]["collimation borders"]
    assert 0.5 <= majority <= 1.0  # the larger class of a binary property


def test_class_token_stability_of_a_random_vit_is_high_and_names_each_shift(tmp_path):
    stability = class_token_stability("random:vit_tiny", TINY_EVAL, str(tmp_path / "runs"))
    assert set(stability) == {f"shift_{k}px" for k in (1, 2, 4, 8, 16)} | {"other_image"}
    # a random ViT's class token barely moves (0.95 on the bar's phantoms at 224 px; 0.74 here,
    # at 56 px, where one pixel is a larger part of a 14 px patch)
    assert stability["shift_1px"] > 0.5
    assert stability["shift_1px"] > stability["other_image"] + 0.3


def test_checkpoint_curve_table_orders_steps_and_names_a_missing_seed(tmp_path):
    from raddino.ssl.release_tables import checkpoint_curve_table

    def entry(auprc, shift):
        bar = {"macro_auprc": auprc, "sex_accuracy": 0.6, "lung_dice": 0.6, "finding_auprc": {}}
        return {"bar": bar, "shift_stability": {"shift_4px": shift, "shift_1px": 0.9}}

    curve = {
        "steps": {"1600": entry(0.24, 0.58), "800": entry(0.26, 0.50), "0": entry(0.23, 0.21)},
        "random": {"macro_auprc": 0.21, "sex_accuracy": 0.63, "lung_dice": 0.43},
    }
    path = tmp_path / "curve.json"
    path.write_text(json.dumps({"curves": {"1": curve}}))
    table = checkpoint_curve_table(path, seed=1)
    steps = ["after 0 steps", "after 800 steps", "after 1,600 steps"]
    assert list(table.index) == [*steps, "random init"]
    curve["baselines"] = {"raddino:general": {**curve["random"], "lung_dice": 0.55}}
    path.write_text(json.dumps({"curves": {"1": curve}}))
    with_baselines = checkpoint_curve_table(path, seed=1)
    assert list(with_baselines.index) == [*steps, "random init", "raddino:general"]
    assert with_baselines.loc["raddino:general", "lung_dice"] == 0.55
    assert table.loc["after 800 steps", "macro_auprc"] == 0.26
    assert table.loc["after 1,600 steps", SHIFT_COLUMN] == 0.58
    assert np.isnan(table.loc["random init", SHIFT_COLUMN])
    with pytest.raises(KeyError, match="no curve for evaluation seed 0"):
        checkpoint_curve_table(path, seed=0)


def test_chosen_checkpoint_table_marks_the_step_taken_on_the_validation_curve(tmp_path):
    from raddino.ssl.release_tables import chosen_checkpoint_table

    def bar(auprc, dice):
        return {"macro_auprc": auprc, "sex_accuracy": 0.6, "lung_dice": dice}

    choice = {
        "seed": 8,
        "step": 200,
        "worst_margin": {"200": 0.01, "400": 0.003, "0": -0.013},
        "validation_curve": {
            "400": bar(0.231, 0.64),
            "0": bar(0.215, 0.64),
            "200": bar(0.238, 0.64),
        },
    }
    manifest = {"released_checkpoint": {"step": 200, "run_steps": 800, "choice": choice}}
    (tmp_path / "early.json").write_text(json.dumps(manifest))
    table = chosen_checkpoint_table("early", tmp_path)
    assert list(table.index) == [0, 200, 400]
    assert table["chosen"].tolist() == [False, True, False]
    assert table.loc[400, "worst margin"] == 0.003 and table.loc[200, "macro_auprc"] == 0.238
    (tmp_path / "final.json").write_text(json.dumps({"steps": 800}))
    with pytest.raises(KeyError, match="final.json: not a chosen checkpoint"):
        chosen_checkpoint_table("final", tmp_path)


def test_pooled_probe_table_groups_sets_under_each_feature(tmp_path):
    from raddino.ssl.recipe_tables import pooled_probe_table

    def result(macro, heart):
        return {"macro_auprc": macro, "finding_auprc": {"cardiomegaly": heart}}

    sets = {
        "0": {"cls": result(0.23, 0.33), "patch_grid_4x4": result(0.31, 0.56)},
        "1": {"cls": result(0.21, 0.38), "patch_grid_4x4": result(0.28, 0.64)},
    }
    path = tmp_path / "pooled.json"
    path.write_text(json.dumps({"encoders": {"raddino:phantom": sets}}))
    table = pooled_probe_table(path)
    assert list(table.columns) == [
        ("cls", "set 0"),
        ("cls", "set 1"),
        ("patch_grid_4x4", "set 0"),
        ("patch_grid_4x4", "set 1"),
    ]
    assert table.loc["raddino:phantom", ("patch_grid_4x4", "set 1")] == 0.28
    hearts = pooled_probe_table(path, finding="cardiomegaly")
    assert hearts.loc["raddino:phantom", ("cls", "set 1")] == 0.38
    with pytest.raises(KeyError, match="set 0 has no AUPRC for 'nodule'"):
        pooled_probe_table(path, finding="nodule")
    renamed = pooled_probe_table(path, labels={"raddino:phantom": "phantom v1"})
    assert list(renamed.index) == ["phantom v1"]
    assert renamed.loc["phantom v1", ("cls", "set 0")] == 0.23


def test_recipe_verdict_table_compares_each_encoder_with_the_manifest_baseline(tmp_path):
    from raddino.ssl.bar import combine_sets
    from raddino.ssl.recipe_tables import recipe_verdict_table

    def bar(macro_0, macro_1):
        one = {"macro_auprc": macro_0, "sex_accuracy": 0.6, "lung_dice": 0.6}
        return combine_sets({"0": one, "1": {**one, "macro_auprc": macro_1}})

    evaluation = {"probe_n": 600, "sets": [0, 1]}
    manifest = {
        "frozen_probes": {
            "evaluation": evaluation,
            "this": bar(0.23, 0.21),
            "baselines": {"random:vit_tiny": bar(0.21, 0.21)},
        }
    }
    (tmp_path / "phantom.json").write_text(json.dumps(manifest))
    report = {
        "evaluation": evaluation,
        "start": {"spec": "raddino:phantom", "bar": bar(0.23, 0.21)},
        "variants": {
            "long": {"bar": bar(0.26, 0.24)},
            "flat": {"overrides": {"dino.koleo_loss_weight": "0"}, "failed": "collapsed"},
        },
    }
    path = tmp_path / "ab.json"
    path.write_text(json.dumps(report))
    table = recipe_verdict_table(path, release_dir=tmp_path)
    assert list(table.index) == ["start raddino:phantom", "variant long", "variant flat"]
    # a run the collapse check stopped keeps its row: why, and no numbers
    assert table.loc["variant flat", ("failed", "")] == "collapsed"
    assert math.isnan(table.loc["variant flat", ("macro_auprc", "set 0")])
    assert table.loc["variant long", ("macro_auprc", "set 1")] == pytest.approx(0.03)
    assert table.loc["variant long", ("macro_auprc", "clearly beats")]
    assert not table.loc["start raddino:phantom", ("macro_auprc", "clearly beats")]
    with pytest.raises(KeyError, match="no baseline 'pixels:32'"):
        recipe_verdict_table(path, against="pixels:32", release_dir=tmp_path)
    path.write_text(json.dumps({**report, "evaluation": {"probe_n": 80, "sets": [0, 1]}}))
    with pytest.raises(ValueError, match="another bar than phantom.json"):
        recipe_verdict_table(path, release_dir=tmp_path)


def test_recipe_pair_table_subtracts_variants_across_reports(tmp_path):
    from raddino.ssl.bar import combine_sets
    from raddino.ssl.recipe_tables import recipe_pair_table

    def bar(macro_0, macro_1, sex=0.6):
        one = {"macro_auprc": macro_0, "sex_accuracy": sex, "lung_dice": 0.6}
        return combine_sets({"0": one, "1": {**one, "macro_auprc": macro_1}})

    evaluation = {"probe_n": 600, "sets": [0, 1]}
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(
        json.dumps(
            {"evaluation": evaluation, "variants": {"frontal": {"bar": bar(0.25, 0.24, sex=0.66)}}}
        )
    )
    second.write_text(
        json.dumps({"evaluation": evaluation, "variants": {"all": {"bar": bar(0.22, 0.23)}}})
    )
    table = recipe_pair_table({"frontal - all": ((first, "frontal"), (second, "all"))})
    assert table.loc["frontal - all", ("macro_auprc", "set 0")] == pytest.approx(0.03)
    assert table.loc["frontal - all", ("macro_auprc", "set 1")] == pytest.approx(0.01)
    assert not table.loc["frontal - all", ("macro_auprc", "clearly beats")]
    assert table.loc["frontal - all", ("sex_accuracy", "clearly beats")]
    with pytest.raises(KeyError, match="no variant 'other'"):
        recipe_pair_table({"x": ((first, "other"), (second, "all"))})
    second.write_text(
        json.dumps({"evaluation": {"probe_n": 80}, "variants": {"all": {"bar": bar(0.22, 0.23)}}})
    )
    with pytest.raises(ValueError, match="probed under other bars"):
        recipe_pair_table({"x": ((first, "frontal"), (second, "all"))})


def test_finding_probes_reads_a_separable_finding_and_not_a_random_one():
    from types import SimpleNamespace

    import numpy as np
    import pandas as pd

    from raddino.ssl.release import ReleaseEval, finding_probes

    rng = np.random.default_rng(0)
    n = 200
    labels_nl = np.stack([rng.random(n) < 0.3, rng.random(n) < 0.3], 1).astype(float)
    features_nd = rng.normal(size=(n, 8)).astype(np.float32)
    features_nd[:, 0] += 4.0 * labels_nl[:, 0]  # the first finding is written into feature 0
    folder = SimpleNamespace(
        labels_array=lambda: labels_nl,
        table=pd.DataFrame({"subject_id": [f"s{i}" for i in range(n)]}),
        label_names=["visible", "invisible"],
    )
    result = finding_probes(features_nd, folder, ReleaseEval(probe_seeds=2))
    assert result["finding_auprc"]["visible"] > 0.9
    assert result["finding_auprc"]["invisible"] < 0.6
    mean = np.mean(list(result["finding_auprc"].values()))
    assert result["macro_auprc"] == pytest.approx(mean, abs=2e-4)


def test_layer_probe_frame_is_long_form_and_names_a_missing_finding(tmp_path):
    import matplotlib

    matplotlib.use("Agg")

    from raddino.ssl.release_tables import layer_probe_frame
    from raddino.viz.pretraining import plot_layer_probe

    def result(macro, heart):
        return {"macro_auprc": macro, "finding_auprc": {"cardiomegaly": heart}}

    blocks = {
        "0": {"patch_mean": result(0.22, 0.35), "grid_2x2": result(0.24, 0.41)},
        "1": {"patch_mean": result(0.23, 0.37), "grid_2x2": result(0.25, 0.45)},
    }
    path = tmp_path / "layers.json"
    path.write_text(json.dumps({"encoders": {"random:vit_tiny": {"0": blocks, "1": blocks}}}))
    frame = layer_probe_frame(path)
    assert len(frame) == 8  # 2 sets x 2 blocks x 2 poolings
    row = frame.query("`probe set` == 'set 1' and block == 1 and pooling == 'grid_2x2'")
    assert row["auprc"].item() == 0.25
    hearts = layer_probe_frame(path, finding="cardiomegaly")
    assert hearts.query("block == 0 and pooling == 'patch_mean'")["auprc"].tolist() == [0.35] * 2
    with pytest.raises(KeyError, match="no AUPRC for 'nodule'"):
        layer_probe_frame(path, finding="nodule")
    figure = plot_layer_probe(frame)
    assert len(figure.axes) == 2  # one panel per pooling
    assert [list(line.get_ydata()) for line in figure.axes[0].get_lines()] == [[0.22, 0.23]] * 2
    with pytest.raises(ValueError, match="empty"):
        plot_layer_probe(frame.iloc[:0])


def test_recipe_scoreboard_lists_each_run_once_and_plots_its_verdicts(tmp_path):
    import matplotlib

    matplotlib.use("Agg")

    from raddino.ssl.bar import CLEAR_MARGIN, combine_sets
    from raddino.ssl.recipe_tables import recipe_scoreboard
    from raddino.viz.pretraining import plot_recipe_scoreboard

    def bar(macro_0, macro_1):
        one = {"macro_auprc": macro_0, "sex_accuracy": 0.6, "lung_dice": 0.6}
        return combine_sets({"0": one, "1": {**one, "macro_auprc": macro_1}})

    evaluation = {"probe_n": 600, "sets": [0, 1]}
    baselines = {"random:vit_tiny": bar(0.21, 0.21)}
    manifest = {"evaluation": evaluation, "this": bar(0.23, 0.21), "baselines": baselines}
    (tmp_path / "phantom.json").write_text(json.dumps({"frozen_probes": manifest}))
    start = {"spec": "raddino:phantom", "bar": bar(0.23, 0.21)}

    def report(name, variants):
        path = tmp_path / f"{name}.json"
        path.write_text(
            json.dumps({"evaluation": evaluation, "start": start, "variants": variants})
        )
        return path

    first = report("first", {"long": {"overrides": {"a": "1"}, "bar": bar(0.26, 0.24)}})
    second = report(
        "second",
        {
            "long": {"overrides": {"a": "1"}, "bar": bar(0.26, 0.24)},  # the same run again
            "other": {"overrides": {"b": "2"}, "bar": bar(0.22, 0.20)},
        },
    )
    board = recipe_scoreboard([first, second], release_dir=tmp_path)
    assert list(board.index) == [
        ("start", "start raddino:phantom"),
        ("first", "long"),
        ("second", "other"),
    ]
    assert board.loc[("first", "long"), ("macro_auprc", "clearly beats")]
    assert board.loc[("second", "other"), ("macro_auprc", "set 1")] == pytest.approx(-0.01)
    figure = plot_recipe_scoreboard(board, margin=CLEAR_MARGIN)
    assert len(figure.axes) == 3  # one panel per bar metric
    clear = [line for line in figure.axes[0].get_lines() if line.get_label() == "clear"]
    assert len(clear[0].get_xdata()) == 1  # only "long" clears macro AUPRC


def test_finding_sets_table_puts_the_baseline_draws_beside_each_encoder(tmp_path):
    from raddino.ssl.release_tables import finding_sets_table

    report = {
        "baseline": {
            "spec": "random:vit_tiny",
            "draws": 2,
            "macro_auprc": {"0": [0.21, 0.23], "1": [0.20, 0.20]},
        },
        "encoders": {
            "raddino:phantom": {
                "macro_auprc": {"0": 0.25, "1": 0.19},
                "minus_baseline": {"0": 0.03, "1": -0.01},
                "mean_difference": 0.01,
                "sets_ahead": 1,
            }
        },
    }
    path = tmp_path / "sets.json"
    path.write_text(json.dumps(report))
    table = finding_sets_table(path)
    baseline = "random:vit_tiny (mean of 2 draws)"
    assert list(table.index) == [baseline, "raddino:phantom"]
    assert table.loc[baseline, ("macro AUPRC", "set 0")] == pytest.approx(0.22)
    assert table.loc[baseline, ("draw spread (sd)", "set 0")] == pytest.approx(0.01414, abs=1e-4)
    assert table.loc["raddino:phantom", ("minus random init", "sets ahead")] == 1
    assert [c[0] for c in table.columns][:2] == ["macro AUPRC", "macro AUPRC"]


def test_spec_and_label_splits_a_named_benchmark_spec():
    from raddino.utils import spec_and_label

    assert spec_and_label("raddino:phantom") == ("raddino:phantom", "raddino:phantom")
    assert spec_and_label("supervised reference=runs/w.safetensors") == (
        "runs/w.safetensors",
        "supervised reference",
    )


def test_release_overview_counts_the_shipped_parameters_in_table_1_columns():
    from raddino.models import load_backbone
    from raddino.paper import paper_table
    from raddino.ssl.release import read_release_manifest
    from raddino.ssl.release_tables import release_overview

    overview = release_overview(["general", "phantom"])
    assert set(paper_table("1", wide=True).columns) <= set(overview.columns)
    backbone = load_backbone("raddino:phantom")
    counted = sum(p.numel() for p in backbone.state_dict().values())
    assert overview.loc["raddino:phantom", "# Params."] == counted
    manifest = read_release_manifest("phantom")
    assert overview.loc["raddino:phantom", "# Images"] == manifest["config"]["data"]["max_images"]
    assert "continual from raddino:general" in overview.loc["raddino:phantom", "Training dataset"]
    assert overview.loc["raddino:general", "Training dataset"] == "dead-leaves scenes"
