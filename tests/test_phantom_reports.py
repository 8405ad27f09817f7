"""Phantom reports: consistent with labels (read by an independent keyword reader), varied."""

from __future__ import annotations

import re

import numpy as np
import pytest

from raddino.data.phantom import FINDINGS, PhantomConfig, render_phantom
from raddino.data.phantom.reports import phantom_report, write_report

# Our own reading of a report, written separately from the templates: which words name a finding.
LEXICON = {
    "cardiomegaly": r"cardiomegaly|heart size|heart is|cardiac silhouette",
    "aortic_enlargement": r"aort",
    "lung_opacity": r"opacity|consolidation|airspace",
    "pleural_effusion": r"effusion",
    "pneumothorax": r"pneumothorax",
    "chest_tube": r"chest tube|pleural drain",
    "support_devices": r"support device|lines|tubes|ecg leads|endotracheal|monitoring",
    "nodule": r"nodul",
    "fibrosis": r"fibros|fibrotic|interstitial",
    "pleural_thickening": r"thicken",
    "tuberculosis": r"tuberculosis",
    "rib_fracture": r"fractur",
}
NEGATION = re.compile(r"\bno\b|\bnot\b|\bwithout\b|\bnormal\b|\bclear\b")


def read_report(text: str) -> dict[str, set[str]]:
    """Map each finding to the polarities ("pos"/"neg") of the sentences that mention it."""
    assert text.startswith("Findings: ") and "\nImpression: " in text
    body = text.replace("Findings: ", "").replace("Impression: ", "").lower()
    mentions: dict[str, set[str]] = {name: set() for name in FINDINGS}
    for sentence in re.split(r"(?<=\.)\s+", body):
        polarity = "neg" if NEGATION.search(sentence) else "pos"
        for name, pattern in LEXICON.items():
            if re.search(pattern, sentence):
                mentions[name].add(polarity)
    return mentions


def _random_case(rng: np.random.Generator) -> tuple[dict[str, int], dict[str, dict]]:
    labels = {name: int(rng.random() < 0.3) for name in FINDINGS}
    if labels["chest_tube"]:
        labels["support_devices"] = 1
    details = {
        name: {
            "side": str(rng.choice(["left", "right", "both"])),
            "severity": float(rng.random()),
            "zone": str(rng.choice(["upper", "middle", "lower"])),
            "size_mm": float(rng.uniform(5, 30)),
            "rib": int(rng.integers(1, 11)),
            "cavity": bool(rng.random() < 0.5),
            "location": "apical",
        }
        for name, present in labels.items()
        if present
    }
    if labels["support_devices"]:
        others = ["ecg_leads", "endotracheal_tube"][: int(rng.integers(0, 3))]
        tube = ["chest_tube"] if labels["chest_tube"] else []
        details["support_devices"] = {"devices": tube + others or ["ecg_leads"]}
    return labels, details


def test_reports_agree_with_labels_on_many_cases():
    rng = np.random.default_rng(0)
    for case in range(1500):
        labels, details = _random_case(rng)
        view = str(rng.choice(["PA", "AP", "LATERAL"]))
        text = write_report(labels, details, view=view, rng=np.random.default_rng(case))
        mentions = read_report(text)
        for name in FINDINGS:
            if labels[name] and name != "support_devices":
                assert "pos" in mentions[name], (name, text)
            if not labels[name]:
                assert "pos" not in mentions[name], (name, text)
        if labels["support_devices"] and details["support_devices"]["devices"] != ["chest_tube"]:
            assert "pos" in mentions["support_devices"], text


def test_reports_mention_details():
    labels = dict.fromkeys(FINDINGS, 0) | {"nodule": 1, "rib_fracture": 1, "pneumothorax": 1}
    details = {
        "nodule": {"side": "left", "zone": "upper", "size_mm": 17.4},
        "rib_fracture": {"side": "right", "rib": 6},
        "pneumothorax": {"side": "left", "size": "small", "severity": 0.9},
    }
    for seed in range(20):
        text = write_report(labels, details, view="PA", rng=np.random.default_rng(seed))
        sentences = text.lower().split(". ")
        nodule = [s for s in sentences if "nodul" in s]
        assert all("17 mm" in s and "left" in s and "upper" in s for s in nodule), text
        assert any("right 6th rib" in s for s in sentences), text
        assert "small" in text.lower() and not re.search(r"\blarge\b", text.lower()), text


def test_normal_report_and_unknown_label():
    text = write_report(dict.fromkeys(FINDINGS, 0), {}, view="AP", rng=np.random.default_rng(1))
    assert all("pos" not in m for m in read_report(text).values()), text
    with pytest.raises(ValueError, match="no phrasings for label"):
        write_report({"pneumonia": 1}, {}, view="PA", rng=np.random.default_rng(0))


def test_rendered_phantom_reports_deterministic_consistent_and_varied():
    config = PhantomConfig(size=64, with_masks=False, views=("PA", "AP", "LATERAL"))
    texts = []
    for index in range(40):
        sample = render_phantom(index, seed=3, config=config)
        text = phantom_report(sample, seed=3, index=index)
        assert text == phantom_report(sample, seed=3, index=index)
        mentions = read_report(text)
        for name in FINDINGS:
            if sample.labels[name] and name not in ("support_devices",):
                assert "pos" in mentions[name], (name, sample.findings.get(name), text)
            if not sample.labels[name]:
                assert "pos" not in mentions[name], (name, text)
        texts.append(text)
    assert len(set(texts)) == len(texts)
    # The same phantom gets a different phrasing under another report seed.
    sample = render_phantom(0, seed=3, config=config)
    others = {phantom_report(sample, seed=s, index=0) for s in range(10)}
    assert len(others) >= 5


def test_phrasings_vary_for_the_same_labels():
    labels = dict.fromkeys(FINDINGS, 0) | {"cardiomegaly": 1, "pleural_effusion": 1}
    details = {"pleural_effusion": {"side": "right", "severity": 0.5}}
    texts = {
        write_report(labels, details, view="PA", rng=np.random.default_rng(s)) for s in range(50)
    }
    assert len(texts) >= 40
    first_sentences = {t.split(". ")[1] for t in texts}
    assert len(first_sentences) >= 3


SIDED = ("lung_opacity", "pleural_effusion", "pneumothorax", "chest_tube", "nodule", "rib_fracture")


def test_positive_sentences_name_the_side():
    rng = np.random.default_rng(5)
    for case in range(400):
        labels, details = _random_case(rng)
        text = write_report(labels, details, view="PA", rng=np.random.default_rng(case))
        sentences = re.split(r"(?<=\.)\s+", text.replace("Impression: ", "").lower())
        for name in SIDED:
            if not labels[name]:
                continue
            side = {"both": "bilateral"}.get(details[name]["side"], details[name]["side"])
            about = [s for s in sentences if re.search(LEXICON[name], s)]
            assert about and all(side in s for s in about), (name, side, text)
