"""The "ours vs paper" tables of the evaluation chapters (raddino.eval.tables)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raddino.eval.dice import dice_per_image, summarize_dice
from raddino.eval.metadata import MetadataConfig, run_metadata
from raddino.eval.probe import ProbeConfig, run_probes
from raddino.eval.probe_tables import (
    drawn_labels,
    lateral_beside_paper,
    lateral_probe_phantoms,
    probe_beside_paper,
    probe_frame,
    probe_phantoms,
    probe_table,
    shared_findings_mean,
)
from raddino.eval.tables import (
    attention_frame,
    correspondence_frame,
    encoders_to_compare,
    interval_text,
    mean_std_text,
    metadata_beside_paper,
    metadata_frame,
    metadata_per_variable,
    paired_dice_frame,
    segmentation_beside_paper,
    segmentation_frame,
    wide_mean_std,
)


def test_encoders_to_compare_appends_releases_once_in_order():
    specs = encoders_to_compare(
        ["pixels:32", "random:vit_tiny", "pixels:32", "raddino:phantom"],
        release_names=lambda: ["general", "phantom"],
    )
    assert specs == ["pixels:32", "random:vit_tiny", "raddino:phantom", "raddino:general"]
    assert encoders_to_compare(["pixels:8"], release_names=list) == ["pixels:8"]


@pytest.mark.parametrize("bad", ["pixels:32", [], ["  "]])
def test_encoders_to_compare_rejects_bad_lists(bad):
    with pytest.raises(ValueError, match="encoder"):
        encoders_to_compare(bad, release_names=list)


def _probe_inputs(n_subjects: int = 40):
    rng = np.random.default_rng(0)
    subjects_n = np.repeat([f"s{i}" for i in range(n_subjects)], 2)
    labels_nl = rng.integers(0, 2, size=(len(subjects_n), 2)).astype(float)
    noise_nd = rng.normal(size=(len(subjects_n), 3))
    features_nd = np.concatenate([labels_nl[:, :1] * 3.0 + 0.1 * noise_nd[:, :1], noise_nd], 1)
    return features_nd, labels_nl, subjects_n


def test_probe_frame_matches_run_probes_summaries():
    features_nd, labels_nl, subjects_n = _probe_inputs()
    config = ProbeConfig(method="sklearn", seeds=2, c=1.0)
    results = {
        "informative": run_probes(
            features_nd, labels_nl, subjects_n, ["easy", "random"], config, progress=False
        ),
        "noise": run_probes(
            features_nd[:, 1:], labels_nl, subjects_n, ["easy", "random"], config, progress=False
        ),
    }
    frame = probe_frame(results)
    assert list(frame["finding"]) == ["easy", "random", "macro"] * 2
    for encoder, result in results.items():
        rows = frame[frame["encoder"] == encoder].set_index("finding")
        for name, summary in result["summary"]["per_label"].items():
            assert rows.loc[name, "auprc_mean"] == summary["auprc"]["mean"]
            assert rows.loc[name, "chance"] == summary["prevalence"]["mean"]
        assert rows.loc["macro", "auprc_mean"] == result["summary"]["macro"]["auprc"]["mean"]
    easy = frame[frame["finding"] == "easy"].set_index("encoder")["auprc_mean"]
    assert easy["informative"] > 0.95 > easy["noise"]  # the separable label is read only once


def test_probe_beside_paper_puts_each_finding_next_to_its_paper_column():
    frame = pd.DataFrame(
        {
            "encoder": ["a", "a", "b"],
            "finding": ["chest_tube", "macro", "chest_tube"],
            "auprc_mean": [0.2, 0.3, 0.1],
            "auprc_std": [0.01, 0.02, 0.03],
            "chance": [0.15, np.nan, 0.15],
            "seeds": [2, 2, 2],
        }
    )
    beside = probe_beside_paper(frame)
    assert list(beside.columns) == [
        "paper column",
        "a (phantoms)",
        "b (phantoms)",
        "chance (phantoms)",
        "RAD-DINO (paper)",
        "best other (paper)",
    ]
    tube = beside.loc["chest_tube"]
    assert tube["paper column"] == "Table 4: Chest Tube"
    assert (tube["a (phantoms)"], tube["b (phantoms)"]) == ("20.0 ± 1.0", "10.0 ± 3.0")
    assert tube["RAD-DINO (paper)"] == "90.8" and tube["best other (paper)"] == "58.2 (MRM)"
    assert beside.loc["lung_opacity", "RAD-DINO (paper)"] == "47.5"
    assert beside.loc["lung_opacity", "a (phantoms)"] == "–"  # not probed: no number invented
    assert "macro" not in beside.index


def _lateral_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "encoder": ["a", "a", "a", "b", "b"],
            "finding": ["pleural_effusion", "cardiomegaly", "macro", "pleural_effusion", "macro"],
            "auprc_mean": [0.8, 0.6, 0.7, 0.4, 0.4],
            "auprc_std": [0.05, 0.02, 0.01, 0.1, 0.1],
            "chance": [0.2, 0.25, np.nan, 0.2, np.nan],
            "seeds": [5, 5, 5, 5, 5],
        }
    )


def test_lateral_beside_paper_takes_ours_from_the_frame_and_the_paper_from_table_a1():
    from raddino.paper import paper_table

    beside = lateral_beside_paper(_lateral_frame())
    assert list(beside.index) == [
        "Vertebral Deg. Changes",
        "Pleural Effusion",
        "Costophrenic Angle Blunting",
    ]  # the paper's Agg is not beside our macro (different findings)
    assert list(beside.columns) == [
        "phantom finding",
        "a (phantoms)",
        "b (phantoms)",
        "chance (phantoms)",
        "RAD-DINO (paper)",
        "best other (paper)",
    ]
    effusion = beside.loc["Pleural Effusion"]
    assert effusion["phantom finding"] == "pleural_effusion"
    assert (effusion["a (phantoms)"], effusion["b (phantoms)"]) == ("80.0 ± 5.0", "40.0 ± 10.0")
    assert effusion["chance (phantoms)"] == "20.0"
    assert effusion["RAD-DINO (paper)"] == "94.5 ± 0.9"  # 94.53 ± 0.95 in results.yaml
    assert effusion["best other (paper)"] == "96.5 ± 1.0 (MRM)"  # MRM beats RAD-DINO here
    paper = paper_table("A.1", wide=True)
    assert paper.loc["RAD-DINO", "Pleural Effusion"] == 94.53
    for column in ("Vertebral Deg. Changes", "Costophrenic Angle Blunting"):
        row = beside.loc[column]  # no phantom finding: no number of ours, the paper's kept
        assert row["a (phantoms)"] == row["b (phantoms)"] == row["chance (phantoms)"] == "–"
        assert row["RAD-DINO (paper)"].startswith(f"{paper.loc['RAD-DINO', column]:.1f} ± ")
    assert beside.loc["Vertebral Deg. Changes", "RAD-DINO (paper)"] == "80.3 ± 1.3"
    assert beside.loc["Costophrenic Angle Blunting", "RAD-DINO (paper)"] == "83.6 ± 2.6"
    assert beside.loc["Costophrenic Angle Blunting", "best other (paper)"] == "83.1 ± 2.9 (MRM)"
    assert (
        "part of pleural_effusion" in beside.loc["Costophrenic Angle Blunting", "phantom finding"]
    )


def test_probe_table_orders_findings_by_label_names_and_adds_chance():
    table = probe_table(_lateral_frame(), ["cardiomegaly", "nodule", "pleural_effusion"])
    assert list(table.columns) == ["cardiomegaly", "pleural_effusion", "macro"]  # nodule unprobed
    assert list(table.index) == ["a", "b", "chance (prevalence)"]
    assert table.loc["a", "cardiomegaly"] == "60.0 ± 2.0"
    assert table.loc["b", "cardiomegaly"] == "–"  # b did not probe it
    assert table.loc["b", "macro"] == "40.0 ± 10.0"
    assert list(table.loc["chance (prevalence)"]) == ["25.0", "20.0", "–"]


def test_shared_findings_mean_averages_only_the_findings_every_set_probed():
    def frame(rows):
        encoder, finding, auprc, chance = zip(*rows, strict=True)
        return pd.DataFrame(
            {"encoder": encoder, "finding": finding, "auprc_mean": auprc, "chance": chance}
        )

    frontal = frame(
        [
            ("a", "x", 0.5, 0.1),
            ("a", "y", 0.3, 0.3),
            ("a", "fracture", 0.9, 0.1),  # not in the lateral set: left out
            ("a", "macro", 0.9, np.nan),
            ("b", "x", 0.2, 0.1),
            ("b", "y", 0.2, 0.3),
        ]
    )
    lateral = frame([("b", "x", 0.6, 0.2), ("b", "y", 0.4, 0.2), ("a", "y", 0.1, 0.2)])
    table = shared_findings_mean({"frontal": frontal, "lateral": lateral})
    assert list(table.columns) == ["frontal", "lateral"]
    assert list(table.index) == ["a", "b", "chance (prevalence)"]
    assert table.loc["a", "frontal"] == 40.0 and table.loc["b", "frontal"] == 20.0
    assert table.loc["b", "lateral"] == 50.0
    assert table.loc["a", "lateral"] == 10.0  # a probed only y on laterals
    assert list(table.loc["chance (prevalence)"]) == [20.0, 20.0]
    with pytest.raises(ValueError, match="share no finding"):
        shared_findings_mean({"frontal": frontal, "other": frame([("a", "z", 0.5, 0.1)])})


def test_drawn_labels_drop_findings_a_view_in_the_folder_does_not_draw():
    from types import SimpleNamespace

    from raddino.data.phantom import FINDINGS

    def folder(views):
        return SimpleNamespace(table=pd.DataFrame({"view": views}), label_names=list(FINDINGS))

    assert drawn_labels(folder(["PA", "AP"])) == list(FINDINGS)
    no_fracture = [name for name in FINDINGS if name != "rib_fracture"]
    assert drawn_labels(folder(["LATERAL"] * 3)) == no_fracture
    assert drawn_labels(folder(["PA", "LATERAL"])) == no_fracture


def test_lateral_probe_phantoms_hold_only_laterals_apart_from_the_frontal_set(
    tmp_path, monkeypatch
):
    import raddino.data.dataset_folder as dataset_folder

    lateral = lateral_probe_phantoms(8, 48, 0, str(tmp_path))
    frontal = probe_phantoms(8, 48, 0, str(tmp_path))
    assert len(lateral) == 8 and set(lateral.table["view"]) == {"LATERAL"}
    assert lateral.info["generator"]["config"]["views"] == ["LATERAL"]
    assert set(frontal.table["view"]) <= {"PA", "AP"}
    assert lateral.root != frontal.root  # a cache key of its own
    assert not set(lateral.table["subject_id"]) & set(frontal.table["subject_id"])
    assert drawn_labels(lateral) == [n for n in lateral.label_names if n != "rib_fracture"]

    def no_rendering(*args, **kwargs):
        raise AssertionError("rendered again instead of reading the cache")

    monkeypatch.setattr(dataset_folder, "write_phantom_folder", no_rendering)
    again = lateral_probe_phantoms(8, 48, 0, str(tmp_path))
    assert again.root == lateral.root
    pd.testing.assert_frame_equal(again.table, lateral.table)
    with pytest.raises(AssertionError, match="rendered again"):
        lateral_probe_phantoms(9, 48, 0, str(tmp_path))  # another n is another folder


def test_wide_mean_std_formats_percent_and_keeps_order():
    frame = pd.DataFrame(
        {
            "encoder": ["b", "b", "a"],
            "finding": ["y", "x", "x"],
            "m": [0.5, 0.25, np.nan],
            "s": [0.01, 0.125, 0.0],
        }
    )
    wide = wide_mean_std(frame, "encoder", "finding", "m", "s", order=["x"])
    assert list(wide.index) == ["b", "a"] and list(wide.columns) == ["x", "y"]
    assert wide.loc["b", "x"] == "25.0 ± 12.5"
    assert wide.loc["b", "y"] == "50.0 ± 1.0"
    assert wide.loc["a", "x"] == "–" and wide.loc["a", "y"] == "–"
    assert mean_std_text(0.123, 0.045, digits=2) == "12.30 ± 4.50"


def _metadata_table(n_subjects: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    subjects = np.repeat([f"p{i}" for i in range(n_subjects)], 2)
    sex = np.repeat(rng.choice(["F", "M"], n_subjects), 2)
    return pd.DataFrame(
        {
            "subject_id": subjects,
            "sex": sex,
            "age": np.repeat(rng.uniform(20, 90, n_subjects), 2),
            "weight_kg": np.full(len(subjects), 70.0),  # a single bin: cannot be predicted
            "bmi": np.repeat(rng.uniform(17, 40, n_subjects), 2),
        }
    )


def test_metadata_per_variable_reports_unmeasurable_variables_and_matches_run_metadata():
    table = _metadata_table()
    rng = np.random.default_rng(2)
    features_nd = np.stack([(table["sex"] == "M") * 2.0, rng.normal(size=len(table))], 1)
    config = MetadataConfig(folds=3, seed=0)
    results = metadata_per_variable(features_nd, table, config)
    assert "single class" in results["weight_kg"]["error"]
    direct = run_metadata(features_nd, table, MetadataConfig(variables=("sex",), folds=3))
    assert results["sex"]["accuracy"] == direct["variables"]["sex"]["accuracy"]
    assert results["sex"]["accuracy"]["mean"] == 1.0  # sex is written in feature 0
    frame = metadata_frame({"enc": results})
    assert frame.set_index("variable").loc["weight_kg", "note"].startswith("labels.csv")
    beside = metadata_beside_paper(frame)
    assert list(beside.columns) == ["Sex", "Age", "BMI"]
    assert beside.loc["enc (phantoms)", "Sex"] == "100.0 ± 0.0"
    assert beside.loc["RAD-DINO (paper, MIMIC-CXR)", "Sex"] == "99.6"
    assert beside.loc["BioViL-T (paper, MIMIC-CXR)", "BMI"] == "47.6"
    assert "majority class (phantoms)" in beside.index


def _summary(n, error, unmoved):
    return {
        "n": n,
        "mean_error_px": error,
        "hit_rate": {"8": 0.1, "16": 0.5},
        "quantisation_floor_px": 2.0,
        "same_position_error_px": unmoved,
        "same_position_hit_rate": {"8": 0.7, "16": 0.9},
    }


def test_correspondence_frame_rows_and_missing_radius():
    metrics = {
        "enc": {
            "radii_px": [8.0, 16.0],
            "per_landmark": {"carina": _summary(3, 10.0, 4.0), "apex": {"n": 0}},
            "overall": _summary(3, 10.0, 4.0),
        }
    }
    frame = correspondence_frame(metrics, radius=16)
    assert list(frame["landmark"]) == ["carina", "overall"]  # landmarks never matched are left out
    assert frame.loc[0, "hit_rate_16px"] == 0.5
    assert frame.loc[0, "same_position_hit_rate_16px"] == 0.9
    with pytest.raises(ValueError, match="radius 32 px not measured for enc"):
        correspondence_frame(metrics, radius=32)


SEGMENTED = ["left_lung", "right_lung", "heart", "pneumothorax", "chest_tube", "ribs"]


def _dice_summary(seed: int):
    """Dice summary of random masks against random truths, with one undefined structure."""
    rng = np.random.default_rng(seed)
    truth = rng.random((4, len(SEGMENTED), 8, 8)) > 0.5
    predicted = rng.random((4, len(SEGMENTED), 8, 8)) > 0.5
    truth[:, 3] = False  # no pneumothorax anywhere: an empty prediction there scores 1
    predicted[:, 3] = False
    defined = np.ones((4, len(SEGMENTED)), dtype=bool)
    defined[0, 4] = False  # chest tube undefined on image 0: left out, not scored
    dice_ns = dice_per_image(predicted, truth, defined)
    return dice_ns, summarize_dice(dice_ns, SEGMENTED)


def test_segmentation_frame_matches_dice_summaries():
    dice_ns, summary = _dice_summary(0)
    frame = segmentation_frame({("enc", "linear"): summary})
    assert list(frame["structure"]) == [*SEGMENTED, "lungs"]  # lung zones missing: no group
    row = frame.set_index("structure")
    assert row.loc["heart", "dice_mean"] == pytest.approx(dice_ns[:, 2].mean())
    assert row.loc["heart", "dice_std"] == pytest.approx(dice_ns[:, 2].std())
    assert row.loc["lungs", "dice_mean"] == pytest.approx(dice_ns[:, :2].mean())
    assert row.loc["pneumothorax", "dice_mean"] == 1.0
    assert row.loc["chest_tube", "n_images"] == 3


def test_segmentation_beside_paper_formats_ours_then_paper_rows():
    _, summary = _dice_summary(1)
    summary["lung_zones"] = {"mean": 0.5, "std": 0.25, "n": 4}
    frame = segmentation_frame({("enc", "linear"): summary, ("enc", "upernet"): summary})
    table = segmentation_beside_paper(frame)
    paper_columns = ["Lungs", "Lung zones", "Pneumothorax", "Chest tubes", "Ribs"]
    assert list(table.columns) == [*paper_columns, "Heart"]
    assert list(table.index[:2]) == ["enc + linear (phantoms)", "enc + upernet (phantoms)"]
    assert table.loc["enc + linear (phantoms)", "Lung zones"] == "50.0 (25.0)"
    assert table.loc["enc + linear (phantoms)", "Pneumothorax"] == "100.0 (0.0)"
    # the paper's printed numbers (Table 6), as mean (std), with no heart column
    assert table.loc["RAD-DINO + Linear (paper)", "Lungs"] == "95.9 (1.5)"
    assert table.loc["RAD-DINO + UPerNet (paper)", "Pneumothorax"] == "87.2 (29.4)"
    assert table.loc["RAD-DINO + Linear (paper)", "Heart"] == "–"
    del summary["lung_zones"]
    with pytest.raises(ValueError, match="lung_zones"):
        segmentation_beside_paper(segmentation_frame({("enc", "linear"): summary}))


def test_segmentation_beside_paper_keeps_only_the_named_paper_rows_in_their_order():
    _, summary = _dice_summary(1)
    summary["lung_zones"] = {"mean": 0.5, "std": 0.25, "n": 4}
    frame = segmentation_frame({("enc", "linear"): summary})
    named = ["RAD-DINO + Linear", "RAD-DINO (no MIM) + Linear"]
    table = segmentation_beside_paper(frame, paper_rows=named)
    assert list(table.index) == ["enc + linear (phantoms)", *[f"{r} (paper)" for r in named]]
    assert table.loc["RAD-DINO (no MIM) + Linear (paper)", "Chest tubes"] == "78.5 (39.6)"
    with pytest.raises(ValueError, match="no row"):
        segmentation_beside_paper(frame, paper_rows=["RAD-DINO + SegFormer"])


def test_paired_dice_frame_and_its_interval_text():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from raddino.viz.plots import paired_difference_bars

    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.7, size=(40, 3))
    per_image = {"a": base + 0.05, "b": base, "c": base - 0.02}
    structures = ["left_lung", "right_lung", "heart"]
    pairs = {"a − b": ("a", "b"), "c − b": ("c", "b")}
    frame = paired_dice_frame(per_image, pairs, structures, shown=["lungs", "heart"])
    assert list(frame["pair"]) == ["a − b", "a − b", "c − b", "c − b"]
    assert list(frame["structure"]) == ["lungs", "heart"] * 2
    np.testing.assert_allclose(frame["mean"], [5.0, 5.0, -2.0, -2.0])  # in Dice points
    assert (frame["n"] == 40).all()
    text = interval_text(frame)
    assert list(text.index) == ["a − b", "c − b"] and list(text.columns) == ["lungs", "heart"]
    assert text.loc["c − b", "heart"] == "-2.0 [-2.0, -2.0]"  # no spread: a point interval
    fig, ax = plt.subplots()
    paired_difference_bars(ax, frame)
    assert len(ax.patches) == 4 and [t.get_text() for t in ax.get_xticklabels()] == [
        "lungs",
        "heart",
    ]
    plt.close(fig)


def test_attention_frame_keeps_absent_findings():
    scores = {
        "mean_share": 0.2,
        "best_head": 1,
        "best_head_share": 0.3,
        "area_fraction": 0.1,
        "lift": 2.0,
        "best_head_lift": 3.0,
        "n_images": 5,
    }
    frame = attention_frame({"vit": {"structures": {"tube": scores, "ptx": {"n_images": 0}}}})
    assert list(frame["finding"]) == ["tube", "ptx"]
    assert frame.loc[0, "best_head_lift"] == 3.0 and frame.loc[0, "n_images"] == 5
    assert frame.loc[1, "n_images"] == 0 and np.isnan(frame.loc[1, "lift"])


def test_global_property_table_reads_view_from_pixels(tmp_path):
    """Raw pixels tell PA from AP on phantoms (AP is magnified); the table says so, beside a
    majority-class row that is the share of the larger view."""
    from raddino.data.dataset_folder import DatasetFolder
    from raddino.eval.ablations import global_property_table
    from raddino.pipeline import phantom_folder

    path = phantom_folder(80, 64, 5, views=("PA", "AP"), with_masks=False, root=str(tmp_path),
                          quiet=True)  # fmt: skip
    folder = DatasetFolder.open(path)
    frame = global_property_table({"pixels": "pixels:16"}, folder, size=64,
                                  runs_root=str(tmp_path))  # fmt: skip
    assert list(frame.columns) == ["view (PA/AP)", "sex", "age bin", "BMI bin",
                                   "collimation borders", "exposure", "display window"]  # fmt: skip
    assert list(frame.index) == ["pixels", "majority class"]
    share_ap = (folder.table["view"] == "AP").mean()
    assert abs(frame.loc["majority class", "view (PA/AP)"] - max(share_ap, 1 - share_ap)) < 0.1
    for column in ("view (PA/AP)", "collimation borders"):  # bright borders are pixel-obvious
        assert frame.loc["pixels", column] > frame.loc["majority class", column] + 0.1, column
    assert frame.to_numpy().min() >= 0.0 and frame.to_numpy().max() <= 1.0
    without = global_property_table({"pixels": "pixels:16"}, folder, size=64,
                                    runs_root=str(tmp_path), acquisition=False)  # fmt: skip
    assert list(without.columns) == ["view (PA/AP)", "sex", "age bin", "BMI bin"]


def test_acquisition_codes_name_the_image_without_a_record(tmp_path):
    from raddino.data.dataset_folder import DatasetFolder
    from raddino.eval.ablations import acquisition_codes
    from raddino.pipeline import phantom_folder

    path = phantom_folder(12, 32, 5, views=("PA",), with_masks=False, root=str(tmp_path),
                          quiet=True)  # fmt: skip
    folder = DatasetFolder.open(path)
    codes = acquisition_codes(folder)
    truth = [max(folder.details_of(i)["acquisition"]["collimation"]) > 0 for i in range(12)]
    assert codes["collimation borders"].tolist() == [int(t) for t in truth]
    assert codes["exposure"].sum() == 6  # above the median of 12 distinct values
    folder._details_by_image = {}  # as a folder without details.jsonl reads
    with pytest.raises(ValueError, match="no acquisition record for images/"):
        acquisition_codes(folder)


def test_crop_pair_retrieval_pairs_whole_views_and_not_random_crops(tmp_path):
    from raddino.data.dataset_folder import DatasetFolder
    from raddino.eval.ablations import crop_pair_retrieval
    from raddino.pipeline import phantom_folder
    from raddino.ssl.config import load_config

    folder = DatasetFolder.open(phantom_folder(40, 56, 6, views=("PA",), with_masks=False,
                                               root=str(tmp_path), quiet=True))  # fmt: skip
    crops = {**load_config("smoke")["crops"], "global_crops_size": 56}
    settings = {
        "whole, no jitter": {"global_crops_side": [1.0, 1.0], "photometric_strength": 0.0},
        "small crops": {"global_crops_side": [0.3, 0.4]},
    }
    frame = crop_pair_retrieval(
        {"pixels": "pixels:8", "random": "random:vit_pico"}, folder, crops, settings, n=40
    )
    assert frame.loc["whole, no jitter", "pixels"] >= 0.9  # only blur differs between the views
    assert frame.loc["small crops", "pixels"] < frame.loc["whole, no jitter", "pixels"]
    assert frame["chance"].eq(1 / 40).all() and frame.to_numpy().max() <= 1.0
