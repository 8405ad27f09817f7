"""The bar on several probe sets: means, ranges between sets, and the paired 'clearly beats'."""

from __future__ import annotations

import pytest

from raddino.ssl.bar import (
    CLEAR_MARGIN,
    choose_checkpoint,
    combine_sets,
    compare_on_sets,
    worst_margin,
)


def one_set(macro: float, sex: float, dice: float, nodule: float = 0.2) -> dict:
    return {
        "macro_auprc": macro,
        "macro_auprc_std": 0.01,
        "sex_accuracy": sex,
        "sex_majority_accuracy": 0.54,
        "lung_dice": dice,
        "finding_auprc": {"nodule": nodule},
    }


def test_combine_sets_means_ranges_and_keeps_eachone_set():
    per_set = {"0": one_set(0.26, 0.65, 0.64, 0.3), "1": one_set(0.20, 0.62, 0.66, 0.1)}
    combined = combine_sets(per_set)
    assert combined["macro_auprc"] == pytest.approx(0.23)
    assert combined["sex_accuracy"] == pytest.approx(0.635)
    assert combined["finding_auprc"] == {"nodule": pytest.approx(0.2)}
    assert combined["between_set_range"] == {
        "macro_auprc": pytest.approx(0.06),
        "sex_accuracy": pytest.approx(0.03),
        "lung_dice": pytest.approx(0.02),
    }
    assert combined["per_set"] is per_set


def test_a_finding_missing_from_one_set_is_averaged_over_the_others():
    no_nodule = one_set(0.2, 0.6, 0.6)
    no_nodule["finding_auprc"] = {"effusion": 0.5}
    combined = combine_sets({"0": one_set(0.2, 0.6, 0.6, nodule=0.3), "1": no_nodule})
    assert combined["finding_auprc"] == {"nodule": 0.3, "effusion": 0.5}


def test_combine_sets_names_a_set_that_lacks_a_metric():
    incomplete = one_set(0.2, 0.6, 0.6)
    del incomplete["lung_dice"]
    with pytest.raises(KeyError, match=r"probe set 1 lacks \['lung_dice'\]"):
        combine_sets({"0": one_set(0.2, 0.6, 0.6), "1": incomplete})


def test_clearly_beats_needs_the_margin_on_everyone_set():
    this = combine_sets({"0": one_set(0.26, 0.64, 0.66), "1": one_set(0.20, 0.67, 0.70)})
    random = combine_sets({"0": one_set(0.22, 0.63, 0.43), "1": one_set(0.21, 0.57, 0.47)})
    verdict = compare_on_sets(this, random)
    # macro: +0.04 on one set, -0.01 on the other -> a mean win of +0.015 that is not clear
    assert verdict["macro_auprc"]["difference_per_set"] == {
        "0": pytest.approx(0.04),
        "1": pytest.approx(-0.01),
    }
    assert verdict["macro_auprc"]["clearly_beats"] is False
    # sex: ahead on both sets but by less than the margin on one
    assert min(verdict["sex_accuracy"]["difference_per_set"].values()) < CLEAR_MARGIN
    assert verdict["sex_accuracy"]["clearly_beats"] is False
    assert verdict["lung_dice"]["clearly_beats"] is True
    assert compare_on_sets(this, random, margin=0.0)["sex_accuracy"]["clearly_beats"] is True


def test_compare_refuses_one_set_manifests_and_disjoint_sets():
    two = combine_sets({"0": one_set(0.2, 0.6, 0.6), "1": one_set(0.2, 0.6, 0.6)})
    with pytest.raises(KeyError, match="--reprobe"):
        compare_on_sets(two, one_set(0.2, 0.6, 0.6))
    other = combine_sets({"5": one_set(0.2, 0.6, 0.6)})
    with pytest.raises(ValueError, match="no probe set in common"):
        compare_on_sets(two, other)


def test_a_bar_without_probe_sets_is_refused():
    from raddino.ssl.bar import bar_on_sets
    from raddino.ssl.release import ReleaseEval

    with pytest.raises(ValueError, match="ReleaseEval.sets is empty"):
        bar_on_sets("random:vit_pico", ReleaseEval(sets=()))


def test_plot_bar_verdict_draws_each_set_s_differences_per_baseline():
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    import pandas as pd

    from raddino.viz.pretraining import plot_bar_verdict

    index = pd.MultiIndex.from_tuples(
        [("raddino:phantom", b, m) for b in ("random", "general") for m in ("macro", "dice")],
        names=["release", "against", "metric"],
    )
    verdict = pd.DataFrame(
        {
            "difference on set 0": [0.02, 0.17, 0.01, 0.08],
            "difference on set 1": [-0.01, 0.16, 0.0, 0.06],
        },
        index=index,
    )
    figure = plot_bar_verdict(verdict, margin=CLEAR_MARGIN)
    assert len(figure.axes) == 2  # one panel per baseline
    dots = [line for line in figure.axes[1].get_lines() if line.get_marker() == "o"]
    np.testing.assert_allclose(dots[1].get_ydata(), [0.0, 0.06])  # set 1 against general
    with pytest.raises(ValueError, match="no 'difference on set' columns"):
        plot_bar_verdict(verdict[[]], margin=CLEAR_MARGIN)


def test_worst_margin_is_the_weakest_metric_against_the_best_baseline():
    random_init, general = one_set(0.21, 0.63, 0.43), one_set(0.22, 0.60, 0.53)
    # findings +0.03 over general, sex +0.01 over random, Dice +0.05 over general: sex decides
    margin = worst_margin(one_set(0.25, 0.64, 0.58), [random_init, general])
    assert margin == pytest.approx(0.01)
    assert worst_margin(one_set(0.25, 0.70, 0.50), [random_init, general]) == pytest.approx(-0.03)
    with pytest.raises(ValueError, match="at least one baseline"):
        worst_margin(one_set(0.25, 0.70, 0.50), [])


def test_choose_checkpoint_takes_the_step_that_meets_every_part_best():
    baselines = [one_set(0.21, 0.63, 0.43), one_set(0.22, 0.60, 0.53)]
    curve = {
        400: one_set(0.25, 0.65, 0.50),  # best findings, Dice short of general
        800: one_set(0.24, 0.66, 0.56),  # every part met: worst margin +0.02
        1200: one_set(0.22, 0.67, 0.58),  # findings back at general's
    }
    assert choose_checkpoint(curve, baselines) == 800
    tied = {400: one_set(0.24, 0.66, 0.56), 800: one_set(0.24, 0.66, 0.56)}
    assert choose_checkpoint(tied, baselines) == 800
    with pytest.raises(ValueError, match="at least one probed checkpoint"):
        choose_checkpoint({}, baselines)


def test_a_release_keeps_the_validation_curve_its_checkpoint_was_chosen_on(tmp_path):
    import json

    from raddino.ssl.release_cli import checkpoint_choice

    steps = {"200": one_set(0.25, 0.66, 0.60), "400": one_set(0.24, 0.67, 0.62)}
    report = {
        "curves": {"8": {"steps": {s: {"bar": bar} for s, bar in steps.items()}}},
        "choice": {"seed": 8, "step": 400, "weights": "/tmp/w.safetensors", "worst_margin": {}},
    }
    path = tmp_path / "choice.json"
    path.write_text(json.dumps(report))
    kept = checkpoint_choice(path)
    assert kept["step"] == 400 and kept["report"] == "choice.json" and "weights" not in kept
    assert kept["validation_curve"]["200"] == {
        "macro_auprc": 0.25,
        "sex_accuracy": 0.66,
        "lung_dice": 0.60,
    }
    path.write_text(json.dumps({"curves": {}}))
    with pytest.raises(SystemExit, match="no 'choice'"):
        checkpoint_choice(path)


def test_a_choice_names_the_checkpoint_to_release_and_refuses_another(tmp_path):
    from raddino.ssl.release_cli import chosen_checkpoint

    run = tmp_path / "run"
    step_400 = run / "checkpoints" / "step_00000399"  # after 400 steps (counted from 0)
    assert chosen_checkpoint(run, {"step": 400}, None, None) == step_400
    assert chosen_checkpoint(run, {"step": 400}, step_400, None) == step_400
    assert chosen_checkpoint(run, None, step_400, None) == step_400  # no choice: as given
    other = run / "checkpoints" / "step_00000199"
    with pytest.raises(SystemExit, match="is not the step 400 that .*choice.json chose"):
        chosen_checkpoint(run, {"step": 400}, other, tmp_path / "choice.json")


def test_choice_record_keeps_each_steps_margin_and_the_step_choose_checkpoint_takes():
    from raddino.ssl.bar import VALIDATION_SET, choice_record, worst_margin

    baselines = {
        "random:vit_tiny": one_set(0.22, 0.59, 0.49),
        "raddino:general": one_set(0.23, 0.58, 0.56),
    }
    curve = {200: one_set(0.24, 0.63, 0.64), 400: one_set(0.231, 0.63, 0.64)}
    record = choice_record(curve, baselines)
    assert record["seed"] == VALIDATION_SET
    assert record["baselines"] == ["random:vit_tiny", "raddino:general"]
    assert record["step"] == 200 == choose_checkpoint(curve, list(baselines.values()))
    assert record["worst_margin"]["400"] == round(
        worst_margin(curve[400], list(baselines.values())), 4
    )
    assert record["worst_margin"]["200"] == pytest.approx(0.01)  # findings over the general
