"""Read finding labels back out of phantom report text: the phantom world's CheXbert.

The paper scores generated reports with CheXbert, a model that labels report text. Phantom reports
come from our own templates (`reports.py`), so their labeller can be exact instead: each positive
phrasing becomes a regular expression (its placeholders replaced by the words `_fill` can put
there), and a sentence is positive for every finding whose phrasing it matches in full. Negations
and sentences of no template (a generator's garbled output) assert nothing, as CheXbert's
"blank" and "negative" both count as absent in the paper's Macro-F1-14. Hand-written: the
templates are ours, so no library knows them.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Sequence

import numpy as np

from raddino.data.phantom.reports import _POSITIVE

# What `_fill` can put in each placeholder (lower case; matching ignores case).
_SIDE = r"(?:left|right|bilateral)"
_PLACEHOLDER_PATTERNS: dict[str, str] = {
    "side": rf"{_SIDE}?",
    "size": r"[a-z]+",
    "degree": r"(?:mild|moderate|marked)",
    "zone": r"[a-z]*",
    "size_mm": r"(?:\d+|several)",
    "rib": r"(?:\d+(?:st|nd|rd|th))?",
    # a device list never starts with a side: "Left chest tube in situ." is the chest tube's
    "devices": rf"(?!{_SIDE}\b)[a-z0-9][a-z0-9 ,\-]*?",
    "tb_pattern": r"(?:cavitating changes|patchy scarring)",
    "location": r"[a-z ]*?",
    "side_where": r"(?:on both sides|on the (?:left|right))?",
}

# The writer never puts these words in a positive sentence and always in a negation (tested), so a
# sentence with one asserts nothing: "No pneumothorax." must not read as "{Size} pneumothorax."
NEGATION_WORDS = re.compile(r"\b(?:no|not|normal|clear)\b", re.IGNORECASE)

# A chest tube is a support device (the phantom labels say so; the writer then lists only the
# other devices, or none), so a chest-tube sentence is also positive for support devices.
_IMPLIED = {"chest_tube": ("support_devices",)}


def _template_regex(template: str) -> re.Pattern[str]:
    """A template such as "{Size} {side} pleural effusion." as a full-sentence regex.

    Spaces next to an empty placeholder collapse when filled, so literal spaces are optional;
    "zone" may read "zones" (bilateral); the final full stop is optional.
    """
    parts = []
    for literal, field, _, _ in string.Formatter().parse(template.removesuffix(".")):
        text = re.escape(literal).replace(r"\ ", " ").replace(" ", r"\s*")
        parts.append(text.replace("zone", "zones?"))
        if field is not None:
            parts.append(_PLACEHOLDER_PATTERNS[field.lower()])
    # the full stop may be missing where a generator ran out of words mid-report
    return re.compile(r"\s*" + "".join(parts) + r"\.?\s*", re.IGNORECASE)


@functools.cache
def _finding_patterns() -> dict[str, tuple[re.Pattern[str], ...]]:
    return {
        name: tuple(_template_regex(t) for t in templates) for name, templates in _POSITIVE.items()
    }


def finding_names() -> list[str]:
    """The findings the labeller reads, in the phantom labels' order."""
    return list(_POSITIVE)


def findings_section(report: str) -> str:
    """The text of a report's "Findings:" section (the part the paper generates)."""
    match = re.search(r"Findings:(.*?)(?:\n\s*Impression:|\Z)", report, re.DOTALL)
    if match is None:
        raise ValueError(f"no 'Findings:' section in report {report[:60]!r}")
    return match.group(1).strip()


def split_sentences(text: str) -> list[str]:
    """Sentences ending in a full stop (a last one without it is kept)."""
    return [s for s in re.split(r"(?<=\.)\s+", text.strip()) if s]


def label_report(text: str) -> dict[str, int]:
    """Finding -> 1 if some sentence of `text` matches one of its positive phrasings, else 0."""
    patterns = _finding_patterns()
    labels = dict.fromkeys(patterns, 0)
    for sentence in split_sentences(text):
        if NEGATION_WORDS.search(sentence):
            continue
        for name, regexes in patterns.items():
            if any(regex.fullmatch(sentence) for regex in regexes):
                labels[name] = 1
                for implied in _IMPLIED.get(name, ()):
                    labels[implied] = 1
    return labels


def read_labels(texts: Sequence[str]) -> np.ndarray:
    """(N, findings) 0/1 labels of many report texts, columns in `finding_names()` order."""
    return np.array([list(label_report(t).values()) for t in texts], dtype=int).reshape(
        len(texts), len(_POSITIVE)
    )
