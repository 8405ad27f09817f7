"""Templated radiology reports for phantoms: "Findings:" and "Impression:" sections in varied prose.

Hand-written (no library writes CXR reports from labels): each finding has several positive
phrasings filled from its details (side, severity, size) and several negations; a seeded
`numpy.random.Generator` picks phrasings, which negatives to mention and their order. A positive
sentence never contains a negation word and a negative sentence never asserts a finding, so a
report is always consistent with its labels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

_REPORT_STREAM = 0x5E9027  # separates the report's random stream from the renderer's

_POSITIVE: dict[str, tuple[str, ...]] = {
    "cardiomegaly": (
        "The heart is {degree}ly enlarged.",
        "{Degree} cardiomegaly.",
        "The cardiac silhouette is enlarged, in keeping with {degree} cardiomegaly.",
        "Enlarged cardiac silhouette.",
    ),
    "aortic_enlargement": (
        "The aorta is enlarged.",
        "Unfolded and dilated thoracic aorta.",
        "Prominent aortic knob, suggesting aortic enlargement.",
    ),
    "lung_opacity": (
        "There is an opacity in the {side} {zone} zone.",
        "Patchy {side} {zone} zone airspace opacity.",
        "{Side} {zone} zone consolidation.",
        "Ill-defined opacity projecting over the {side} {zone} zone.",
    ),
    "pleural_effusion": (
        "{Size} {side} pleural effusion.",
        "There is a {size} {side} pleural effusion.",
        "Blunting of the {side} costophrenic angle due to a {size} pleural effusion.",
        "A {size} {side} pleural effusion is present.",
    ),
    "pneumothorax": (
        "{Size} {side} pneumothorax.",
        "There is a {size} {side} apical pneumothorax.",
        "A {side} pneumothorax is seen, {size} in size.",
    ),
    "chest_tube": (
        "A {side} chest tube is in place.",
        "{Side} chest tube in situ.",
        "There is a {side} pleural drain (chest tube).",
    ),
    "support_devices": (
        "Support devices are in place: {devices}.",
        "Lines and tubes: {devices}.",
        "{Devices} in situ.",
    ),
    "nodule": (
        "A {size_mm} mm nodule in the {side} {zone} zone.",
        "There is a {size_mm} mm {side} {zone} zone pulmonary nodule.",
        "{Side} {zone} zone nodule measuring {size_mm} mm.",
    ),
    "fibrosis": (
        "Reticular interstitial changes in keeping with {side} fibrosis.",
        "{Degree} fibrotic changes {side_where}.",
        "Coarse interstitial markings consistent with pulmonary fibrosis.",
    ),
    "pleural_thickening": (
        "{Side} {location} pleural thickening.",
        "There is {location} pleural thickening {side_where}.",
        "Thickened pleura {side_where}.",
    ),
    "tuberculosis": (
        "{Side} upper zone {tb_pattern} suggestive of tuberculosis.",
        "Appearances in the {side} apex are compatible with pulmonary tuberculosis.",
        "Findings suggestive of post-primary tuberculosis, {side} upper zone.",
    ),
    "rib_fracture": (
        "Fracture of the {side} {rib} rib.",
        "There is a {side} {rib} rib fracture.",
        "{Side} {rib} rib fracture is noted.",
    ),
}

_NEGATIVE: dict[str, tuple[str, ...]] = {
    "cardiomegaly": ("Heart size is normal.", "The cardiac silhouette is not enlarged."),
    "aortic_enlargement": ("The aorta is not enlarged.", "No aortic enlargement."),
    "lung_opacity": ("No focal consolidation.", "No airspace opacity."),
    "pleural_effusion": ("No pleural effusion.", "No effusion."),
    "pneumothorax": ("No pneumothorax.", "There is no pneumothorax."),
    "chest_tube": ("No chest tube.",),
    "support_devices": ("No support devices.", "No lines or tubes."),
    "nodule": ("No pulmonary nodule.", "No nodules are seen."),
    "fibrosis": ("No fibrosis.", "No interstitial fibrotic change."),
    "pleural_thickening": ("No pleural thickening.",),
    "tuberculosis": ("No features of tuberculosis.",),
    "rib_fracture": ("No rib fracture.", "No displaced rib fracture."),
}

# Negations that cover several findings at once, used only when all of them are absent.
_GROUP_NEGATIVE: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("pleural_effusion", "pneumothorax"), ("No pleural effusion or pneumothorax.",)),
    (
        ("lung_opacity", "nodule", "fibrosis", "tuberculosis", "pleural_effusion", "pneumothorax"),
        ("The lungs are clear.", "The lungs are clear without focal consolidation."),
    ),
)

_VIEW_SENTENCES: dict[str, tuple[str, ...]] = {
    "PA": ("PA chest radiograph.", "Frontal (PA) view of the chest.", "Single PA view."),
    "AP": ("AP chest radiograph.", "Portable AP view of the chest.", "Frontal (AP) view."),
    "LATERAL": ("Lateral chest radiograph.", "Lateral view of the chest."),
}

_IMPRESSION_NORMAL = (
    "No acute cardiopulmonary abnormality.",
    "Normal chest radiograph.",
    "No acute findings.",
)
_ORDINALS = {1: "1st", 2: "2nd", 3: "3rd"}


def phantom_report(sample: Any, *, seed: int, index: int) -> str:
    """Report for a rendered `PhantomSample`, deterministic per (seed, index)."""
    rng = np.random.default_rng([seed, index, _REPORT_STREAM])
    return write_report(
        sample.labels, sample.findings, view=sample.metadata.get("view", "PA"), rng=rng
    )


def write_report(
    labels: Mapping[str, int],
    findings: Mapping[str, Mapping[str, Any]],
    *,
    view: str,
    rng: np.random.Generator,
) -> str:
    """A two-section report consistent with `labels`, phrased with `findings` details and `rng`."""
    unknown = set(labels) - set(_POSITIVE)
    if unknown:
        raise ValueError(f"write_report: no phrasings for label(s) {sorted(unknown)}")
    positives = [name for name in _POSITIVE if labels.get(name, 0) == 1]
    findings = dict(findings)
    if "chest_tube" in positives and "support_devices" in positives:
        # The chest tube has its own sentence: the device sentence lists only the other devices.
        details = dict(findings.get("support_devices", {}))
        others = [d for d in details.get("devices") or [] if d != "chest_tube"]
        if others:
            findings["support_devices"] = details | {"devices": others}
        else:
            positives.remove("support_devices")
    negatives = [name for name in _POSITIVE if labels.get(name, 0) == 0]

    findings_text = [_choice(rng, _VIEW_SENTENCES.get(view, _VIEW_SENTENCES["PA"]))]
    positive_text = [_fill(_choice(rng, _POSITIVE[n]), findings.get(n, {})) for n in positives]
    negative_text = _negations(negatives, rng)
    findings_text += positive_text + negative_text
    if positive_text:
        impression = " ".join(
            _fill(_choice(rng, _POSITIVE[n]), findings.get(n, {}))
            for n in positives[: 1 + int(rng.integers(len(positives)))]
        )
    else:
        impression = _choice(rng, _IMPRESSION_NORMAL)
    return f"Findings: {' '.join(findings_text)}\nImpression: {impression}"


def _negations(negatives: list[str], rng: np.random.Generator) -> list[str]:
    """Mention a random subset of absent findings, grouping where a group is wholly absent."""
    remaining = [n for n in negatives if rng.random() < 0.6]
    sentences = []
    for group, phrasings in _GROUP_NEGATIVE:
        if all(g in negatives for g in group) and rng.random() < 0.5:
            sentences.append(_choice(rng, phrasings))
            remaining = [n for n in remaining if n not in group]
    sentences += [_choice(rng, _NEGATIVE[n]) for n in remaining]
    order = rng.permutation(len(sentences))
    return [sentences[i] for i in order]


def _fill(template: str, details: Mapping[str, Any]) -> str:
    """Fill a template's {side}, {size}, {degree}, ... from finding details (neutral fallbacks)."""
    severity = float(details.get("severity", 0.5))
    grade = 0 if severity < 1 / 3 else 1 if severity < 2 / 3 else 2
    side = str(details.get("side", ""))
    side = "bilateral" if side == "both" else side
    size = details.get("size")  # the renderer names pneumothorax sizes itself
    rib = details.get("rib")
    values = {
        "side": side,
        "size": size if isinstance(size, str) else ("small", "moderate", "large")[grade],
        "degree": ("mild", "moderate", "marked")[grade],
        "zone": str(details.get("zone", "")),
        "size_mm": f"{float(details['size_mm']):.0f}" if "size_mm" in details else "several",
        "rib": _ORDINALS.get(int(rib), f"{int(rib)}th") if rib is not None else "",
        "devices": _device_list(details.get("devices")),
        "tb_pattern": "cavitating changes" if details.get("cavity") else "patchy scarring",
        "location": str(details.get("location", "")),
        "side_where": {"": "", "bilateral": "on both sides"}.get(side, f"on the {side}"),
    }
    values.update({k.capitalize(): v[:1].upper() + v[1:] for k, v in values.items()})
    text = template.format(**values)
    text = re.sub(r"\s+", " ", text).replace(" ,", ",").replace(" .", ".").strip()
    if side == "bilateral":
        text = re.sub(r"\bzone\b(?=[.,]|$)", "zones", text)  # "in the bilateral lower zones."
    return text[0].upper() + text[1:]


def _device_list(devices: Any) -> str:
    names = {
        "chest_tube": "chest tube",
        "ecg_leads": "ECG leads",
        "ett": "endotracheal tube",
        "endotracheal_tube": "endotracheal tube",
    }
    if not devices:
        return "monitoring leads"
    items = [names.get(str(d), str(d).replace("_", " ")) for d in devices]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _choice(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]
