"""Sample which findings a phantom has and their details (side, severity, size, position).

Chronic findings are drawn once per subject (shared by the subject's images); acute findings and
devices once per image. Positions are lung-relative (`t` from apex 0 to base 1, `u` from medial 0
to lateral 1) so every view can place them on its own geometry.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

CHRONIC = (
    "cardiomegaly",
    "aortic_enlargement",
    "nodule",
    "fibrosis",
    "pleural_thickening",
    "tuberculosis",
    "rib_fracture",
)
ACUTE = ("lung_opacity", "pleural_effusion", "pneumothorax", "chest_tube", "support_devices")
ZONE_T_RANGE = {"upper": (0.08, 0.33), "middle": (0.36, 0.63), "lower": (0.66, 0.9)}


def _side(rng: np.random.Generator, both_probability: float = 0.0) -> str:
    if rng.random() < both_probability:
        return "bilateral"
    return "left" if rng.random() < 0.5 else "right"


def _round(value: float, digits: int = 3) -> float:
    return round(float(value), digits)


def sample_chronic(rng: np.random.Generator, prevalence: Mapping[str, float]) -> dict[str, dict]:
    """Subject-level findings -> details (always draws the same number of numbers per finding)."""
    out: dict[str, dict] = {}
    presence = rng.random(len(CHRONIC))
    detail_seeds = rng.integers(0, 2**63 - 1, size=len(CHRONIC))
    for name, draw, detail_seed in zip(CHRONIC, presence, detail_seeds, strict=True):
        if draw < prevalence[name]:
            out[name] = _chronic_details(name, np.random.default_rng(detail_seed))
    return out


def _chronic_details(name: str, rng: np.random.Generator) -> dict:
    if name == "cardiomegaly":
        ctr = rng.uniform(0.52, 0.66)
        return {"ctr": _round(ctr), "severity": _round((ctr - 0.5) / 0.18)}
    if name == "aortic_enlargement":
        return {"severity": _round(rng.uniform(0.3, 1.0))}
    if name == "nodule":
        zone = str(rng.choice(["upper", "middle", "lower"]))
        t = rng.uniform(*ZONE_T_RANGE[zone])
        return {
            "side": _side(rng),
            "zone": zone,
            "size_mm": _round(rng.uniform(6.0, 30.0), 1),
            "t": _round(t),
            "u": _round(rng.uniform(0.3, 0.8)),
            "calcified": bool(rng.random() < 0.15),
        }
    if name == "fibrosis":
        return {"side": _side(rng, both_probability=0.7), "severity": _round(rng.uniform(0.3, 1.0))}
    if name == "pleural_thickening":
        return {
            "side": _side(rng, both_probability=0.2),
            "location": str(rng.choice(["apical", "lateral"])),
            "thickness_mm": _round(rng.uniform(3.0, 10.0), 1),
        }
    if name == "tuberculosis":
        return {
            "side": _side(rng, both_probability=0.25),
            "severity": _round(rng.uniform(0.3, 1.0)),
            "cavity": bool(rng.random() < 0.5),
            "u": _round(rng.uniform(0.3, 0.7)),
        }
    if name == "rib_fracture":
        return {
            "side": _side(rng),
            "rib": int(rng.integers(4, 10)),
            "u": _round(rng.uniform(0.55, 0.92)),
            "displacement_mm": _round(rng.uniform(0.5, 3.0), 1),
        }
    raise AssertionError(name)


def sample_acute(
    rng: np.random.Generator, prevalence: Mapping[str, float], chronic: Mapping[str, dict]
) -> dict[str, dict]:
    """Image-level findings and devices -> details; support_devices is set by any device."""
    out: dict[str, dict] = {}
    uniform = rng.random(5)
    details_rng = np.random.default_rng(rng.integers(0, 2**63 - 1))
    if uniform[0] < prevalence["lung_opacity"]:
        zone = str(details_rng.choice(["upper", "middle", "lower"], p=[0.2, 0.35, 0.45]))
        out["lung_opacity"] = {
            "side": _side(details_rng, both_probability=0.15),
            "zone": zone,
            "severity": _round(details_rng.uniform(0.2, 1.0)),
            "t": _round(details_rng.uniform(*ZONE_T_RANGE[zone])),
            "u": _round(details_rng.uniform(0.35, 0.75)),
        }
    if uniform[1] < prevalence["pleural_effusion"]:
        out["pleural_effusion"] = {
            "side": _side(details_rng, both_probability=0.3),
            "severity": _round(details_rng.uniform(0.1, 1.0)),
        }
    if uniform[2] < prevalence["pneumothorax"]:
        severity = details_rng.uniform(0.04, 0.5)
        out["pneumothorax"] = {
            "side": _side(details_rng),
            "severity": _round(severity),
            "size": "small" if severity < 0.15 else ("moderate" if severity < 0.3 else "large"),
        }
    if uniform[3] < prevalence["chest_tube"]:
        # A tube usually drains the side that has air or fluid.
        side = None
        for reason in ("pneumothorax", "pleural_effusion"):
            if reason in out and out[reason]["side"] != "bilateral" and details_rng.random() < 0.8:
                side = out[reason]["side"]
                break
        out["chest_tube"] = {
            "side": side or _side(details_rng),
            "entry_t": _round(details_rng.uniform(0.55, 0.85)),
            "tip_t": _round(details_rng.uniform(0.05, 0.3)),
            "tip_u": _round(details_rng.uniform(0.3, 0.6)),
            "side_holes": int(details_rng.integers(2, 4)),
        }
    p_sd, p_ct = prevalence["support_devices"], prevalence["chest_tube"]
    other_devices_probability = 0.0 if p_ct >= 1.0 else (p_sd - p_ct) / (1.0 - p_ct)
    wants_other = uniform[4] < other_devices_probability
    devices: list[str] = []
    if "chest_tube" in out:
        devices.append("chest_tube")
    if wants_other:
        kind = details_rng.random()
        if kind < 0.45:
            devices.append("ecg_leads")
        elif kind < 0.75:
            devices.append("endotracheal_tube")
        else:
            devices += ["ecg_leads", "endotracheal_tube"]
    if devices:
        out["support_devices"] = {
            "devices": devices,
            "n_ecg_leads": int(details_rng.integers(3, 6)) if "ecg_leads" in devices else 0,
            "ett_tip_above_carina_mm": _round(details_rng.uniform(20.0, 70.0), 1),
        }
    return out


def labels_from_findings(findings: Mapping[str, dict], names: tuple[str, ...]) -> dict[str, int]:
    """Every finding name -> 0/1."""
    return {name: int(name in findings) for name in names}


def sides_of(details: Mapping | None) -> tuple[str, ...]:
    """The patient sides a finding affects: () when absent, ("left", "right") when "bilateral"."""
    if not details:
        return ()
    side = details.get("side", "bilateral")
    return ("left", "right") if side == "bilateral" else (side,)
