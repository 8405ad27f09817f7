"""The evaluation chapters on real dataset folders: view and subject subsets, balanced lateral
tasks, labels beside the paper's columns, and chapters 06, 07, 08 and 10 run on made folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from tiny_models import tiny_dinov2_folder

from raddino.book import copy_book_sources, run_book
from raddino.data.adapters.candid import CANDID_FINDINGS
from raddino.data.adapters.padchest import PADCHEST_FINDINGS
from raddino.data.adapters.vindr import VINDR_FINDINGS
from raddino.data.dataset_folder import DatasetFolder, write_index, write_png
from raddino.eval.chapter_data import (
    LATERAL_SPLIT,
    PAPER_COLUMNS,
    balanced_tasks,
    dataset_beside_paper,
    masked_folder,
    metadata_set,
    not_probed_text,
    probe_results,
    probe_sets,
    subject_sample,
    view_subset,
)
from raddino.eval.probe_tables import probe_frame

REPO = Path(__file__).resolve().parents[1]


def made_dataset(
    root: Path,
    name: str,
    labels: list[str],
    views: list[str],
    seed: int = 0,
    metadata: bool = False,
) -> DatasetFolder:
    """A dataset folder laid out as `raddino index` writes a real one: images under a separate
    original root (image_root), two images per subject, each label drawn as a bright square;
    with `metadata`, sex, age, height, weight and BMI per subject (sex drawn as a bar)."""
    rng = np.random.default_rng(seed)
    originals = root / f"{name}-original"
    rows = []
    for i, view in enumerate(views):
        values = rng.random(len(labels)) < 0.35
        image = 0.2 * rng.random((56, 56))
        for k, positive in enumerate(values):
            if positive:
                image[4 + 8 * k : 10 + 8 * k, 10:40] += 0.6
        subject = np.random.default_rng(1000 + i // 2)  # the same draws for a subject's images
        female = bool(subject.random() < 0.5)
        if metadata and female:
            image[48:54, 4:50] += 0.5
        path = f"files/p{i // 2}/img{i}.png"
        (originals / path).parent.mkdir(parents=True, exist_ok=True)
        write_png(originals / path, (np.clip(image, 0, 1) * 65535).astype(np.uint16))
        row = {"image": path, "subject_id": f"s{i // 2}", "view": view}
        row |= {label: int(v) for label, v in zip(labels, values, strict=True)}
        if metadata:
            height, weight = subject.uniform(150, 195), subject.uniform(45, 120)
            row |= {"sex": "F" if female else "M", "age": subject.uniform(18, 95)}
            row |= {"height_cm": height, "weight_kg": weight, "bmi": weight / (height / 100) ** 2}
        rows.append(row)
    info = {"name": name, "labels": labels, "image_root": f"../{name}-original"}
    return write_index(root / name, pd.DataFrame(rows), info)


def _outputs_text(path: Path) -> str:
    """The printed and displayed text of an executed notebook."""
    notebook = json.loads(path.read_text())
    return "\n".join(
        "".join(output.get("text", "")) + "".join(output.get("data", {}).get("text/plain", ""))
        for cell in notebook["cells"]
        for output in cell.get("outputs", [])
    )


def _run_chapter(tmp_path: Path, chapter: str, encoders: list[str], **parameters) -> str:
    """Execute `chapter` under the smoke profile with `encoders` and the chapter's `parameters`
    (as a re-executor's profile sets them) in a scratch copy of the book; its output text."""
    root = copy_book_sources(REPO, tmp_path / "root")
    profile = yaml.safe_load((root / "profiles" / "smoke.yml").read_text())
    profile["parameters"]["encoders"] = encoders
    profile.setdefault("chapters", {})[chapter] = parameters
    (root / "profiles" / "real.yml").write_text(yaml.safe_dump(profile))
    summary = run_book("real", root, [chapter], progress=False, log=lambda _: None)
    assert summary[chapter]["status"] == "executed"
    return _outputs_text(root / "book" / f"{chapter}.ipynb")


def test_paper_columns_name_the_adapters_labels():
    """Each real label the chapter puts beside a paper column is one the adapter writes."""
    assert set(PAPER_COLUMNS["vindr-cxr"]) == set(VINDR_FINDINGS)
    assert set(PAPER_COLUMNS["candid-ptx"]) == set(CANDID_FINDINGS)
    assert set(PAPER_COLUMNS["padchest"]) == set(PADCHEST_FINDINGS)


def test_view_subset_is_a_cached_folder_of_those_views_reading_the_originals(tmp_path):
    views = ["PA", "LATERAL", "AP", "LATERAL", "PA", "LATERAL"]
    folder = made_dataset(tmp_path, "padchest", list(PADCHEST_FINDINGS), views)
    runs = str(tmp_path / "runs")
    lateral = view_subset(folder, ["LATERAL"], runs)
    assert list(lateral.table["view"]) == ["LATERAL"] * 3
    assert list(lateral.table["image"]) == list(folder.table["image"][1::2])
    np.testing.assert_array_equal(lateral.read_image(0), folder.read_image(1))
    np.testing.assert_array_equal(lateral.labels_array(), folder.labels_array()[1::2])
    assert lateral.info["subset_of"] == {"dataset": "padchest", "views": ["LATERAL"]}
    assert view_subset(folder, ["LATERAL"], runs).root == lateral.root  # cached
    assert view_subset(folder, ["PA", "AP"], runs).root != lateral.root
    assert view_subset(lateral, ["LATERAL"], runs) is lateral  # nothing to drop
    frontal_only = made_dataset(tmp_path, "vindr-cxr", list(VINDR_FINDINGS), ["PA"] * 4)
    with pytest.raises(ValueError, match=r"vindr-cxr: no LATERAL images \(its views: \['PA'\]\)"):
        view_subset(frontal_only, ["LATERAL"], runs)


def test_balanced_tasks_keep_every_positive_and_as_many_random_negatives():
    rng = np.random.default_rng(3)
    labels_nl = (rng.random((200, 3)) < np.array([0.1, 0.3, 0.8])).astype(np.float32)
    labels_nl[:7, 0] = np.nan
    balanced = balanced_tasks(labels_nl, seed=0)
    for column in range(3):
        kept = np.isfinite(balanced[:, column])
        positives = labels_nl[:, column] == 1
        negatives = labels_nl[:, column] == 0
        assert (balanced[positives, column] == 1).all()  # every positive kept
        assert np.isnan(balanced[np.isnan(labels_nl[:, column]), column]).all()
        assert (balanced[kept, column] == labels_nl[kept, column]).all()  # no label changed
        expected_negatives = min(negatives.sum(), positives.sum())
        assert (balanced[:, column] == 0).sum() == expected_negatives
    assert (balanced[:, 2] == labels_nl[:, 2]).all()  # fewer negatives than positives: all kept
    np.testing.assert_array_equal(balanced, balanced_tasks(labels_nl, seed=0))
    assert not np.array_equal(np.isnan(balanced), np.isnan(balanced_tasks(labels_nl, seed=1)))


def _frame(labels: list[str], auprc: float, auroc: float) -> pd.DataFrame:
    summary = {
        "per_label": {
            label: {
                "auprc": {"mean": auprc, "std": 0.01, "n": 5},
                "auroc": {"mean": auroc, "std": 0.02, "n": 5},
                "prevalence": {"mean": 0.25, "std": 0.0, "n": 5},
            }
            for label in labels
        },
        "macro": {
            "auprc": {"mean": auprc, "std": 0.01, "n": 5},
            "auroc": {"mean": auroc, "std": 0.02, "n": 5},
        },
    }
    return probe_frame({"enc": {"summary": summary}})


def test_dataset_beside_paper_sets_each_label_beside_its_paper_column():
    vindr = dataset_beside_paper(_frame(["Cardiomegaly", "Lung Opacity"], 0.5, 0.7), "vindr-cxr")
    assert vindr.loc["Cardiomegaly", "paper column"] == "Table 3: CM"
    assert vindr.loc["Cardiomegaly", "enc (vindr-cxr)"] == "50.0 ± 1.0"
    assert vindr.loc["Cardiomegaly", "chance (vindr-cxr)"] == "25.0"
    assert vindr.loc["Cardiomegaly", "RAD-DINO (paper)"] == "82.5"  # Table 3: 82.51
    assert vindr.loc["Cardiomegaly", "best other (paper)"] == "82.0 (MRM)"
    # a label the folder lacks (Kaggle's VinDr has no Tuberculosis) keeps its paper cells
    assert vindr.loc["Tuberculosis", "enc (vindr-cxr)"] == "–"
    assert vindr.loc["Tuberculosis", "RAD-DINO (paper)"] == "70.4"
    rsna = dataset_beside_paper(_frame(["Pneumonia"], 0.6, 0.8), "rsna-pneumonia")
    assert list(rsna["metric"]) == ["AUPRC", "AUROC"]
    auroc = rsna[rsna["metric"] == "AUROC"].iloc[0]
    assert auroc["enc (rsna-pneumonia)"] == "80.0 ± 2.0"
    assert auroc["chance (rsna-pneumonia)"] == "50.0"  # AUROC's chance, whatever the prevalence
    assert auroc["RAD-DINO (paper)"] == "88.4"
    padchest = dataset_beside_paper(_frame(["pleural effusion"], 0.7, 0.8), "padchest")
    assert "±" in padchest.loc["pleural effusion", "RAD-DINO (paper)"]  # Table A.1 prints std
    assert dataset_beside_paper(_frame(["Edema"], 0.5, 0.5), "chexpert") is None


def test_real_probe_sets_probe_frontal_images_and_balanced_lateral_tasks(tmp_path):
    views = ["PA", "AP", "LATERAL", "LATERAL"] * 30
    padchest = made_dataset(tmp_path, "padchest", list(PADCHEST_FINDINGS), views)
    vindr = made_dataset(tmp_path, "vindr-cxr", list(VINDR_FINDINGS), ["PA"] * 60, seed=1)
    runs = str(tmp_path / "runs")
    options = dict(n=0, size=0, seed=0, runs_root=runs)
    frontal = probe_sets([vindr.root, padchest.root], lateral=False, **options)
    assert [s.name for s in frontal] == ["vindr-cxr", "padchest"]
    assert frontal[0].folder is not None and len(frontal[0].folder) == 60
    assert set(frontal[1].folder.table["view"]) == {"PA", "AP"}
    assert frontal[1].split_fractions == (0.6, 0.2, 0.2)
    assert np.array_equal(frontal[0].labels_nl, vindr.labels_array())  # prevalences kept
    (lateral,) = probe_sets([padchest.root], lateral=True, **options)
    assert set(lateral.folder.table["view"]) == {"LATERAL"}
    assert lateral.split_fractions == LATERAL_SPLIT
    for column in range(len(lateral.labels)):
        kept = lateral.labels_nl[:, column]
        assert (kept == 1).sum() >= (kept == 0).sum()  # balanced (all negatives if fewer)
    assert "balanced task" in lateral.describe()
    with pytest.raises(ValueError, match=r"name\(s\) \['vindr-cxr'\] repeat"):
        probe_sets([vindr.root, vindr.root], lateral=False, **options)

    results = {"vindr-cxr": probe_results(frontal[0], ["pixels:8"], seeds=2, c=0.1, size=None)}
    frame = probe_frame(results["vindr-cxr"])
    assert set(frame["finding"]) <= {*VINDR_FINDINGS, "macro"}
    # the drawn squares make the labels readable from pixels: well above chance
    assert frame.loc[frame["finding"] == "macro", "auprc_mean"].iloc[0] > 0.6
    assert "vindr-cxr, pixels:8: not probed" in not_probed_text(results)


def test_chapter_06_probes_real_dataset_folders_beside_the_paper(tmp_path):
    """The re-executor's path: the chapter run with `probe_datasets`, `lateral_probe_datasets` and
    a weights folder among the encoders probes those folders with it and sets each label beside
    its paper column."""
    data = tmp_path / "data"
    vindr = made_dataset(data, "vindr-cxr", list(VINDR_FINDINGS), ["PA"] * 48)
    rsna = made_dataset(data, "rsna-pneumonia", ["Pneumonia"], ["PA", "AP"] * 24, seed=1)
    padchest = made_dataset(data, "padchest", list(PADCHEST_FINDINGS), ["PA", "LATERAL"] * 40)
    weights = tmp_path / "rad-dino"  # a microsoft/rad-dino-layout folder, tiny and random
    tiny_dinov2_folder(weights)
    text = _run_chapter(
        tmp_path,
        "06_linear_probes",
        ["pixels:8", str(weights)],
        probe_datasets=[str(vindr.root), str(rsna.root)],
        lateral_probe_datasets=[str(padchest.root)],
    )
    assert "vindr-cxr: 48 images (PA 48), 24 subjects" in text
    assert "padchest: 40 images (LATERAL 40)" in text and "balanced task" in text
    assert "Table 3: CM" in text and "Table 4: AUROC" in text
    assert "Vertebral Deg. Changes" in text
    assert "pixels:8 (vindr-cxr)" in text and "pixels:8 (padchest)" in text
    assert "rad-dino (vindr-cxr)" in text  # the weights folder, probed, named by its folder
    assert f"{weights} (" not in text  # tables do not print the machine's paths
    assert "frontal phantoms" not in text and "lateral phantoms" not in text  # no phantom set


def test_metadata_set_keeps_frontal_no_finding_images_and_needs_metadata(tmp_path):
    views = ["PA", "LATERAL", "AP", "AP"] * 6
    folder = made_dataset(tmp_path, "mimic-cxr", ["No Finding", "Edema"], views, metadata=True)
    chosen = metadata_set(folder.root, str(tmp_path / "runs"))
    expected = folder.table[
        folder.table["view"].isin(["PA", "AP"]) & (folder.table["No Finding"] == 1)
    ]
    assert list(chosen.table["image"]) == list(expected["image"])
    assert chosen.info["metadata"] == ["sex", "age", "height_cm", "weight_kg", "bmi"]
    assert chosen.info["subset_of"]["label"] == {"No Finding": 1}
    np.testing.assert_allclose(chosen.table["bmi"], expected["bmi"], rtol=1e-6)
    plain = made_dataset(tmp_path, "vindr-cxr", list(VINDR_FINDINGS), ["PA"] * 4)
    with pytest.raises(ValueError, match="vindr-cxr/dataset.json: no patient metadata columns"):
        metadata_set(plain.root)


def test_chapter_08_measures_a_real_folder_beside_table_7(tmp_path):
    views = ["PA", "AP"] * 40
    folder = made_dataset(tmp_path / "data", "mimic-cxr", ["No Finding"], views, metadata=True)
    text = _run_chapter(tmp_path, "08_metadata", ["pixels:8"], metadata_dataset=str(folder.root))
    positives = int((folder.table["No Finding"] == 1).sum())
    assert f"{positives} frontal images (mimic-cxr)" in text
    assert "pixels:8 (mimic-cxr)" in text and "RAD-DINO (paper, MIMIC-CXR)" in text


def made_masked_dataset(root: Path, n: int, name: str = "candid-ptx") -> DatasetFolder:
    """A CANDID-PTX-like folder: frontal images, a chest tube drawn as a bright bar and a
    pneumothorax as a dark apex, each with its mask (all-zero masks where absent)."""
    rng = np.random.default_rng(0)
    originals, out = root / f"{name}-original", root / name
    rows = []
    for i in range(n):
        image = 0.3 + 0.1 * rng.random((56, 56))
        tube, ptx = np.zeros((56, 56), bool), np.zeros((56, 56), bool)
        if i % 2 == 0:
            tube[10:46, 20 + i % 7 : 23 + i % 7] = True
        if i % 3 == 0:
            ptx[4:16, 30:50] = True
        image[tube] = 0.95
        image[ptx] = 0.02
        stem = f"img{i:03d}"
        (originals / "images").mkdir(parents=True, exist_ok=True)
        write_png(originals / "images" / f"{stem}.png", (image * 65535).astype(np.uint16))
        for structure, mask in (("chest_tube", tube), ("pneumothorax", ptx)):
            (out / "masks" / structure).mkdir(parents=True, exist_ok=True)
            write_png(out / "masks" / structure / f"{stem}.png", mask.astype(np.uint8) * 255)
        rows.append(
            {"image": f"images/{stem}.png", "subject_id": f"s{i // 2}", "view": "PA"}
            | {"Chest Tube": int(tube.any()), "Pneumothorax": int(ptx.any())}
        )
    info = {
        "name": name,
        "labels": ["Chest Tube", "Pneumothorax"],
        "structures": ["chest_tube", "pneumothorax"],
        "image_root": f"../{name}-original",
    }
    return write_index(out, pd.DataFrame(rows), info)


def test_subject_sample_takes_whole_subjects_up_to_n():
    subjects = np.array(["a", "a", "b", "c", "c", "c", "d"])
    eligible = np.array([True, True, True, True, True, False, True])
    for seed in range(5):
        chosen = subject_sample(subjects, eligible, 3, seed)
        assert (chosen & eligible).sum() <= 3
        for subject in set(subjects[chosen]):  # never a subject split
            assert chosen[subjects == subject].all()
    assert subject_sample(subjects, eligible, 100, 0).all()
    assert not np.array_equal(*(subject_sample(subjects, eligible, 3, s) for s in (0, 3)))


def test_masked_folder_subsets_subjects_and_reads_masks_in_place(tmp_path):
    folder = made_masked_dataset(tmp_path / "data", 24)
    runs = str(tmp_path / "runs")
    chosen, name = masked_folder(folder.root, n=10, size=56, seed=0, phantom_seed=0, runs_root=runs)
    assert name == "candid-ptx" and len(chosen) == 10
    assert chosen.structures == ["chest_tube", "pneumothorax"]
    original = {image: i for i, image in enumerate(folder.table["image"])}
    for i, image in enumerate(chosen.table["image"]):
        j = original[image]
        np.testing.assert_array_equal(
            chosen.read_mask("chest_tube", i), folder.read_mask("chest_tube", j)
        )
        np.testing.assert_array_equal(chosen.read_image(i), folder.read_image(j))
    assert not (Path(chosen.root) / "masks").exists()  # masks are not copied
    whole, _ = masked_folder(folder.root, n=1000, size=56, seed=0, phantom_seed=0, runs_root=runs)
    assert whole.root == folder.root
    plain = made_dataset(tmp_path, "vindr-cxr", list(VINDR_FINDINGS), ["PA"] * 4)
    with pytest.raises(ValueError, match="vindr-cxr/dataset.json: no mask structures"):
        masked_folder(plain.root, n=10, size=56, seed=0, phantom_seed=0, runs_root=runs)


def test_chapter_07_segments_a_real_folder_beside_table_6(tmp_path):
    folder = made_masked_dataset(tmp_path / "data", 40)
    encoders = ["pixels:8", "random:vit_pico"]
    text = _run_chapter(
        tmp_path, "07_segmentation", encoders, segmentation_dataset=str(folder.root)
    )
    assert "40 images (candid-ptx) at 112 px, structures ['pneumothorax', 'chest_tube']" in text
    assert "pixels:8 + linear (candid-ptx)" in text and "RAD-DINO + UPerNet (paper)" in text


def test_encoder_label_names_local_weights_by_their_folder(tmp_path):
    from raddino.eval.tables import encoder_label

    (tmp_path / "rad-dino").mkdir()
    assert encoder_label(str(tmp_path / "rad-dino")) == "rad-dino"
    assert encoder_label("microsoft/rad-dino") == "microsoft/rad-dino"  # a hub id, not a path
    assert encoder_label("raddino:phantom") == "raddino:phantom"
    assert encoder_label(str(tmp_path / "missing")) == str(tmp_path / "missing")


def test_chapter_10_reads_attention_on_a_real_folders_findings(tmp_path):
    folder = made_masked_dataset(tmp_path / "data", 24)
    text = _run_chapter(
        tmp_path, "10_attention", ["random:vit_pico"], attention_dataset=str(folder.root)
    )
    assert "24 images (candid-ptx) at 112 px; findings ['chest_tube', 'pneumothorax']" in text
