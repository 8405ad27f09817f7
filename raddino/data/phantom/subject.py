"""Seeded subject model: sex, age, height, weight -> BMI, and the body traits they drive."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Subject:
    """One simulated patient: demographics plus the anatomical traits derived from them."""

    subject_id: str
    sex: str  # "M" / "F"
    age: int  # years, 18..95
    height_cm: float
    weight_kg: float
    bmi: float
    thorax_scale: float  # ~1: multiplies thorax width/height on the detector
    thorax_aspect: float  # width / height tweak (men relatively wider)
    soft_tissue: float  # 0..1 subcutaneous fat thickness, rises with BMI
    breast: float  # 0 for men; 0..1 breast shadow size for women
    bone_density: float  # ~0.55..1.05, falls with age (faster in older women)
    cartilage_calcification: float  # 0..1, rises with age
    aortic_unfolding: float  # 0..1, rises with age
    right_dome_offset: float  # how much higher the right hemidiaphragm sits (normalised units)
    inspiration: float  # 0.9..1.1, lung height factor
    heart_shift: float  # small lateral offset of the heart (normalised units)
    texture_seed: int  # seeds the subject's vascular / rib texture phases


def _clip(value: float, low: float, high: float) -> float:
    return float(min(max(value, low), high))


def sample_subject(rng: np.random.Generator, subject_id: str) -> Subject:
    """Draw one subject; all randomness comes from `rng` (same rng state -> same subject)."""
    sex = "M" if rng.random() < 0.5 else "F"
    age = int(round(18 + 77 * rng.beta(2.2, 1.8)))
    male = sex == "M"
    height = rng.normal(176.0 if male else 163.0, 7.0 if male else 6.5)
    height -= max(0, age - 60) * 0.12  # height loss with age
    height = _clip(height, 140.0, 205.0)
    bmi = _clip(float(np.exp(rng.normal(np.log(26.0), 0.17))), 15.0, 50.0)
    weight = bmi * (height / 100.0) ** 2
    # Thorax on a fixed ~40 cm detector: taller / male subjects fill more of it.
    thorax_scale = _clip(
        1.0 + 0.003 * (height - 170.0) + (0.008 if male else -0.008) + rng.normal(0.0, 0.045),
        0.84,
        1.12,
    )
    thorax_aspect = _clip((1.01 if male else 0.99) + rng.normal(0.0, 0.03), 0.9, 1.1)
    soft_tissue = _clip((bmi - 17.0) / 23.0 + rng.normal(0.0, 0.04), 0.0, 1.0)
    breast = 0.0 if male else _clip(0.1 + 0.5 * soft_tissue + rng.normal(0.0, 0.25), 0.0, 1.0)
    density_loss = 0.006 * max(0, age - 30) + (0.006 * max(0, age - 50) if not male else 0.0)
    bone_density = _clip(1.0 - density_loss + rng.normal(0.0, 0.04), 0.5, 1.1)
    cartilage = _clip(1.0 / (1.0 + np.exp(-(age - 62) / 8.0)) + rng.normal(0.0, 0.08), 0.0, 1.0)
    unfolding = _clip((age - 35) / 50.0 + rng.normal(0.0, 0.1), 0.0, 1.0)
    return Subject(
        subject_id=subject_id,
        sex=sex,
        age=age,
        height_cm=round(float(height), 1),
        weight_kg=round(float(weight), 1),
        bmi=round(float(bmi), 1),
        thorax_scale=thorax_scale,
        thorax_aspect=thorax_aspect,
        soft_tissue=soft_tissue,
        breast=breast,
        bone_density=bone_density,
        cartilage_calcification=cartilage,
        aortic_unfolding=unfolding,
        right_dome_offset=_clip(rng.normal(0.022, 0.01), -0.01, 0.05),
        inspiration=_clip(rng.normal(1.0, 0.04), 0.9, 1.1),
        heart_shift=_clip(rng.normal(0.0, 0.014), -0.035, 0.035),
        texture_seed=int(rng.integers(0, 2**31 - 1)),
    )


def subject_metadata(subject: Subject) -> dict:
    """The metadata fields of the phantom contract (JSON-friendly)."""
    return {
        "subject_id": subject.subject_id,
        "sex": subject.sex,
        "age": subject.age,
        "height_cm": subject.height_cm,
        "weight_kg": subject.weight_kg,
        "bmi": subject.bmi,
    }
