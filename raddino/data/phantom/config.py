"""Phantom vocabulary (findings, views, structures, landmarks), the validated config, a sample."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

FINDINGS: tuple[str, ...] = (
    "cardiomegaly",
    "aortic_enlargement",
    "lung_opacity",
    "pleural_effusion",
    "pneumothorax",
    "chest_tube",
    "support_devices",  # any device: chest tube, ECG leads, endotracheal tube
    "nodule",
    "fibrosis",
    "pleural_thickening",
    "tuberculosis",
    "rib_fracture",
)
VIEWS: tuple[str, ...] = ("PA", "AP", "LATERAL")
FRONTAL_VIEWS: tuple[str, ...] = ("PA", "AP")
# Findings sampled (and labelled) on every view but not drawn on laterals (lateral.py).
FINDINGS_NOT_ON_LATERAL: tuple[str, ...] = ("rib_fracture",)

N_RIBS = 10  # ribs per side drawn (and masked) on frontal views
SIDES = ("left", "right")  # the PATIENT's sides
ZONES = ("upper", "middle", "lower")

MASK_NAMES_FRONTAL: tuple[str, ...] = (
    "left_lung",
    "right_lung",
    *(f"lung_zone_{side}_{zone}" for side in SIDES for zone in ZONES),
    "heart",
    "clavicle_left",
    "clavicle_right",
    "ribs",
    *(f"rib_{side}_{k}" for side in SIDES for k in range(1, N_RIBS + 1)),
    "pneumothorax",
    "chest_tube",
    "pleural_effusion",
)
MASK_NAMES_LATERAL: tuple[str, ...] = (
    "left_lung",
    "right_lung",
    "heart",
    "pneumothorax",
    "chest_tube",
    "pleural_effusion",
)
LANDMARK_NAMES_FRONTAL: tuple[str, ...] = (
    "right_hilum",
    "left_ventricle",
    "aortic_arch",
    "clavicle_head_left",
    "clavicle_head_right",
    "carina",
    "costophrenic_angle_left",
    "costophrenic_angle_right",
    "apex_left",
    "apex_right",
)
LANDMARK_NAMES_LATERAL: tuple[str, ...] = (
    "right_hilum",
    "left_ventricle",
    "aortic_arch",
    "carina",
    "costophrenic_angle_left",
    "costophrenic_angle_right",
    "apex_left",
    "apex_right",
)
# Every structure / landmark name any view can produce (the dataset folder's vocabulary).
MASK_NAMES: tuple[str, ...] = MASK_NAMES_FRONTAL
LANDMARK_NAMES: tuple[str, ...] = LANDMARK_NAMES_FRONTAL

DEFAULT_PREVALENCE: Mapping[str, float] = MappingProxyType(
    {
        "cardiomegaly": 0.25,
        "aortic_enlargement": 0.15,
        "lung_opacity": 0.25,
        "pleural_effusion": 0.2,
        "pneumothorax": 0.15,
        "chest_tube": 0.15,
        "support_devices": 0.3,
        "nodule": 0.15,
        "fibrosis": 0.1,
        "pleural_thickening": 0.1,
        "tuberculosis": 0.1,
        "rib_fracture": 0.1,
    }
)


def structures_for_view(view: str) -> tuple[str, ...]:
    """Mask names rendered for `view` (lateral views have no zones, ribs or clavicles)."""
    _check_view(view, "view")
    return MASK_NAMES_LATERAL if view == "LATERAL" else MASK_NAMES_FRONTAL


def findings_for_view(view: str) -> tuple[str, ...]:
    """Finding labels that `view` draws (the rest are labelled but invisible on it)."""
    _check_view(view, "view")
    hidden = FINDINGS_NOT_ON_LATERAL if view == "LATERAL" else ()
    return tuple(name for name in FINDINGS if name not in hidden)


def landmarks_for_view(view: str) -> tuple[str, ...]:
    """Landmark names placed on `view`."""
    _check_view(view, "view")
    return LANDMARK_NAMES_LATERAL if view == "LATERAL" else LANDMARK_NAMES_FRONTAL


def _check_view(view: Any, where: str) -> None:
    if view not in VIEWS:
        raise ValueError(f"{where}: unknown view {view!r}; expected one of {VIEWS}")


def _check_unit_interval(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number in [0, 1], got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{where} must be in [0, 1], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class PhantomConfig:
    """What to render: image size, views, finding prevalences and acquisition variability.

    Validated on construction; every error names the offending field.
    """

    size: int = 224  # output side in pixels (square)
    views: tuple[str, ...] = ("PA",)  # views sampled per image (uniformly unless view_weights)
    prevalence: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_PREVALENCE))
    with_masks: bool = True
    images_per_subject: int = 2  # consecutive indices share a subject
    view_weights: Mapping[str, float] | None = None  # optional relative weight per view
    max_rotation_deg: float = 3.0  # patient rotation on the detector, uniform in +-this
    max_shift: float = 0.03  # translation, fraction of the image side
    max_scale_change: float = 0.04  # magnification jitter, 1 +- this
    noise: float = 1.0  # multiplies the quantum + electronic noise level (0 = noiseless)
    collimation_probability: float = 0.5  # chance of visible collimation borders

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int | np.integer):
            raise ValueError(f"size must be an int, got {type(self.size).__name__} {self.size!r}")
        if self.size < 32:
            raise ValueError(f"size must be >= 32 pixels, got {self.size}")
        object.__setattr__(self, "size", int(self.size))
        views = (self.views,) if isinstance(self.views, str) else tuple(self.views)
        if not views:
            raise ValueError("views must name at least one view")
        for view in views:
            _check_view(view, "views")
        if len(set(views)) != len(views):
            raise ValueError(f"views has duplicates: {views}")
        object.__setattr__(self, "views", views)
        if not isinstance(self.prevalence, Mapping):
            raise ValueError(
                f"prevalence must be a mapping finding -> probability, got {self.prevalence!r}"
            )
        prevalence = dict(DEFAULT_PREVALENCE)
        for name, value in self.prevalence.items():
            if name not in FINDINGS:
                raise ValueError(
                    f"prevalence: unknown finding {name!r}; expected one of {FINDINGS}"
                )
            prevalence[name] = _check_unit_interval(value, f"prevalence[{name!r}]")
        if prevalence["support_devices"] < prevalence["chest_tube"]:
            raise ValueError(
                "prevalence['support_devices'] must be >= prevalence['chest_tube'] "
                f"(a chest tube is a support device), got {prevalence['support_devices']} < "
                f"{prevalence['chest_tube']}"
            )
        object.__setattr__(self, "prevalence", MappingProxyType(prevalence))
        if not isinstance(self.with_masks, bool):
            raise ValueError(f"with_masks must be a bool, got {self.with_masks!r}")
        ips = self.images_per_subject
        if isinstance(ips, bool) or not isinstance(ips, int | np.integer) or ips < 1:
            raise ValueError(f"images_per_subject must be an int >= 1, got {ips!r}")
        object.__setattr__(self, "images_per_subject", int(ips))
        if self.view_weights is not None:
            weights = dict(self.view_weights)
            for view, weight in weights.items():
                if view not in views:
                    raise ValueError(f"view_weights: view {view!r} is not in views {views}")
                if not isinstance(weight, int | float) or not math.isfinite(weight) or weight < 0:
                    raise ValueError(
                        f"view_weights[{view!r}] must be a number >= 0, got {weight!r}"
                    )
            if sum(weights.get(v, 0.0) for v in views) <= 0:
                raise ValueError("view_weights must give a positive weight to at least one view")
            object.__setattr__(self, "view_weights", MappingProxyType(weights))
        for name, upper in (
            ("max_rotation_deg", 15.0),
            ("max_shift", 0.2),
            ("max_scale_change", 0.3),
            ("noise", 10.0),
            ("collimation_probability", 1.0),
        ):
            value = getattr(self, name)
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or not 0.0 <= value <= upper:
                raise ValueError(f"{name} must be a number in [0, {upper}], got {value!r}")
            object.__setattr__(self, name, float(value))

    def view_probabilities(self) -> np.ndarray:
        """Probability of each entry of `views`, shape (len(views),)."""
        if self.view_weights is None:
            return np.full(len(self.views), 1.0 / len(self.views))
        weights = np.array([self.view_weights.get(v, 0.0) for v in self.views], dtype=np.float64)
        return weights / weights.sum()

    def __hash__(self) -> int:
        # Mapping fields are unhashable; hash the canonical JSON form instead (equal -> same hash).
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def __reduce__(self):
        # Read-only mappings do not pickle; rebuild from the plain dict (DataLoader workers).
        return (PhantomConfig.from_dict, (self.to_dict(),))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (round-trips through `from_dict`)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mapping):
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PhantomConfig:
        """Inverse of `to_dict`; unknown keys raise a ValueError naming them."""
        if not isinstance(data, Mapping):
            raise ValueError(f"phantom config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"phantom config: unknown keys {unknown}; expected some of {sorted(known)}"
            )
        kwargs = dict(data)
        if "views" in kwargs and not isinstance(kwargs["views"], str):
            kwargs["views"] = tuple(kwargs["views"])
        return cls(**kwargs)


@dataclass
class PhantomSample:
    """One rendered phantom with its exact ground truth (labels, masks, landmarks, metadata)."""

    image: np.ndarray  # (H, W) float32 in [0, 1], bright = attenuating
    labels: dict[str, int]  # every name in FINDINGS -> 0/1
    findings: dict[str, dict]  # present findings -> details (side, severity, size_mm, ...)
    metadata: dict  # subject_id, sex, age, height_cm, weight_kg, bmi, view, acquisition
    masks: dict[str, np.ndarray]  # name -> (H, W) bool, only structures defined for this view
    landmarks: dict[str, tuple[float, float]]  # name -> (x, y) in pixels of this image
