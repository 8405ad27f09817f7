"""Scores of generated reports as the paper's Table 5 prints them: median [95 % CI] of a bootstrap.

Lexical: BLEU-4 (corpus-level, as torchmetrics' `bleu_score`) and ROUGE-L F (mean over reports,
torchmetrics). Clinical: macro-F1 over findings of the labels read from the generated text against
the image's true labels (the paper uses CheXbert's labels of the reference report; a phantom's
reference report states its true labels exactly, `report_labels` is tested for that). RadGraph's
RGER needs a model trained on real reports and is left out.

BLEU is recomputed on every bootstrap sample, so each report's n-gram counts are kept once and
summed per sample (torchmetrics recounts every n-gram per call: 500 samples took minutes);
`corpus_bleu` is checked against torchmetrics in the tests.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

BLEU_ORDER = 4


def bleu_counts(hypothesis: Sequence[str], reference: Sequence[str]) -> np.ndarray:
    """(2 * BLEU_ORDER + 2,): clipped n-gram matches, n-gram totals, both lengths (hyp, ref)."""
    counts = np.zeros(2 * BLEU_ORDER + 2)
    for n in range(1, BLEU_ORDER + 1):
        hyp = Counter(tuple(hypothesis[i : i + n]) for i in range(len(hypothesis) - n + 1))
        ref = Counter(tuple(reference[i : i + n]) for i in range(len(reference) - n + 1))
        counts[n - 1] = sum(min(c, ref[g]) for g, c in hyp.items())
        counts[BLEU_ORDER + n - 1] = max(len(hypothesis) - n + 1, 0)
    counts[-2:] = len(hypothesis), len(reference)
    return counts


def corpus_bleu(summed_counts: np.ndarray) -> float:
    """BLEU-4 of `bleu_counts` summed over reports: geometric mean precision x brevity penalty."""
    matches, totals = summed_counts[:BLEU_ORDER], summed_counts[BLEU_ORDER : 2 * BLEU_ORDER]
    hyp_len, ref_len = summed_counts[-2:]
    if np.any(matches == 0) or hyp_len == 0:
        return 0.0
    log_precision = np.mean(np.log(matches / totals))
    brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return float(brevity * math.exp(log_precision))


def rouge_l(hypothesis: Sequence[str], reference: Sequence[str]) -> float:
    """ROUGE-L F-measure of two word lists (torchmetrics)."""
    from torchmetrics.functional.text import rouge_score

    scores = rouge_score(" ".join(hypothesis), " ".join(reference), rouge_keys="rougeL")
    return float(scores["rougeL_fmeasure"])


def finding_counts(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(N, F) 0/1 labels -> (N, F, 3) true positives, false positives, false negatives."""
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    if predicted.shape != truth.shape:
        raise ValueError(f"labels of shape {predicted.shape} against truth of {truth.shape}")
    return np.stack([predicted & truth, predicted & ~truth, ~predicted & truth], axis=-1)


def f1_per_finding(summed_counts: np.ndarray) -> np.ndarray:
    """(F, 3) summed counts -> F1 per finding (0 where a finding has no positive either way)."""
    tp, fp, fn = summed_counts.T.astype(float)
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)


def report_statistics(
    hypotheses: Sequence[Sequence[str]],
    references: Sequence[Sequence[str]],
    predicted_labels: np.ndarray,
    true_labels: np.ndarray,
) -> dict[str, np.ndarray]:
    """Per-report sufficient statistics of every metric, for `bootstrap_scores`."""
    if not len(hypotheses) == len(references) == len(predicted_labels) == len(true_labels):
        raise ValueError("hypotheses, references and labels differ in number")
    return {
        "bleu": np.stack([bleu_counts(h, r) for h, r in zip(hypotheses, references, strict=True)]),
        "rouge_l": np.array([rouge_l(h, r) for h, r in zip(hypotheses, references, strict=True)]),
        "findings": finding_counts(predicted_labels, true_labels),
    }


def scores_of(stats: Mapping[str, np.ndarray], rows: np.ndarray | None = None) -> dict[str, float]:
    """BLEU-4, ROUGE-L and finding macro-F1 (findings with a positive in the sample) of `rows`."""
    rows = np.arange(len(stats["rouge_l"])) if rows is None else rows
    findings = stats["findings"][rows].sum(0)
    has_positive = (findings[:, 0] + findings[:, 2]) > 0
    f1 = f1_per_finding(findings)
    return {
        "BLEU-4": corpus_bleu(stats["bleu"][rows].sum(0)),
        "ROUGE-L": float(stats["rouge_l"][rows].mean()),
        "Macro-F1": float(f1[has_positive].mean()) if has_positive.any() else math.nan,
    }


def bootstrap_scores(
    stats: Mapping[str, np.ndarray], samples: int = 500, seed: int = 0
) -> pd.DataFrame:
    """Median and 95 % interval of each score over `samples` resamplings of the reports (as the
    paper: 500), beside the score of the whole test set."""
    rng = np.random.default_rng(seed)
    n = len(stats["rouge_l"])
    draws = pd.DataFrame([scores_of(stats, rng.integers(0, n, n)) for _ in range(samples)])
    whole = scores_of(stats)
    return pd.DataFrame(
        {
            "metric": list(whole),
            "score": list(whole.values()),
            "median": draws.median().to_numpy(),
            "ci_low": draws.quantile(0.025).to_numpy(),
            "ci_high": draws.quantile(0.975).to_numpy(),
        }
    )
