"""Table 5 on phantoms: one frozen encoder -> a trained report decoder -> scored test reports.

`run_report_generation` is the whole protocol for one encoder (patch grids from the cache, image
tokens, decoder fit on the folder's train split with validation-loss model selection, greedy
reports for the test split, labels read back, bootstrap scores); the frames below are the tables
the chapter prints. The encoder "none" feeds the decoder the same blank image for every report:
what the text prior alone scores. The encoder "true labels" feeds it the image's finding labels as
one token: what the decoder and the training reports allow when the tokens state every finding
plainly (a positive control, not an encoder).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch

NO_IMAGE = "none"
TRUE_LABELS = "true labels"


def report_texts(folder: Any) -> list[str]:
    """The "Findings:" section of every image's report (an image without one is an error)."""
    from raddino.data.phantom.report_labels import findings_section

    texts = []
    for i in range(len(folder)):
        report = folder.report_of(i)
        if report is None:
            raise ValueError(f"{folder.root}: no report for {folder.table['image'].iat[i]}")
        texts.append(findings_section(report))
    return texts


def encoder_tokens(
    spec: str,
    folder: Any,
    grid_side: int,
    *,
    size: int | None,
    cache_dir: str | None,
    device: str = "cpu",
    progress: bool = False,
) -> torch.Tensor:
    """(N, grid_side^2, C) image tokens of `spec`'s last-layer patch grids (cached); a blank
    one-channel image for `NO_IMAGE`; the (N, 1, findings) 0/1 labels for `TRUE_LABELS`."""
    from raddino.data.phantom.report_labels import finding_names
    from raddino.eval.patch_grids import cached_patch_grids, load_patch_encoder
    from raddino.eval.report_generation import image_tokens

    if spec == NO_IMAGE:
        return torch.zeros(len(folder), grid_side * grid_side, 1)
    if spec == TRUE_LABELS:
        return torch.tensor(folder.labels_array(finding_names()), dtype=torch.float32)[:, None]
    encoder = load_patch_encoder(spec, device)
    size = None if spec.startswith("pixels") else size
    grids = cached_patch_grids(encoder, folder, cache_dir, size=size, progress=progress)
    return image_tokens(grids[:, -1], grid_side)


def run_report_generation(
    spec: str,
    folder: Any,
    config: Any,
    *,
    size: int | None,
    cache_dir: str | None = None,
    bootstrap_samples: int = 500,
    progress: bool = False,
) -> dict[str, Any]:
    """Train a decoder on `spec`'s frozen tokens (train split), write the test split's reports
    and score them. Returns scores, per-finding F1, texts, labels and the loss history."""
    from raddino.data.phantom.report_labels import finding_names, read_labels
    from raddino.eval.report_generation import generate_reports, train_report_generator
    from raddino.eval.report_metrics import bootstrap_scores, f1_per_finding, report_statistics

    texts = report_texts(folder)
    rows = {name: folder.split_indices(name) for name in ("train", "val", "test")}
    empty = [name for name, r in rows.items() if len(r) == 0]
    if empty:
        raise ValueError(f"{folder.root}: no images in split(s) {empty}")
    tokens = encoder_tokens(
        spec, folder, config.grid_side, size=size, cache_dir=cache_dir, device=config.device,
        progress=progress,
    )  # fmt: skip
    train, val, test = rows["train"], rows["val"], rows["test"]
    fitted = train_report_generator(
        tokens[train], [texts[i] for i in train], tokens[val], [texts[i] for i in val],
        config, progress=progress,
    )  # fmt: skip
    generated = generate_reports(fitted, tokens[test], config, progress=progress)
    names = finding_names()
    predicted = read_labels(generated)
    truth = folder.labels_array(names)[test]
    words = fitted["tokenizer"].words
    stats = report_statistics(
        [words(g) for g in generated], [words(texts[i]) for i in test], predicted, truth
    )
    return {
        "encoder": spec,
        "scores": bootstrap_scores(stats, bootstrap_samples, seed=config.seed),
        "f1_per_finding": dict(zip(names, f1_per_finding(stats["findings"].sum(0)), strict=True)),
        "test_rows": test,
        "generated": generated,
        "references": [texts[i] for i in test],
        "predicted": predicted,
        "truth": truth,
        "history": fitted["history"],
        "image_tokens": tuple(tokens.shape[1:]),
    }


def report_frame(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Long frame: encoder, metric, score, median, ci_low, ci_high (percent)."""
    frames = []
    for spec, result in results.items():
        scores = result["scores"].copy()
        scores[["score", "median", "ci_low", "ci_high"]] *= 100
        frames.append(scores.assign(encoder=spec))
    return pd.concat(frames, ignore_index=True)[
        ["encoder", "metric", "score", "median", "ci_low", "ci_high"]
    ]


def report_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Encoders x metrics as the paper prints them: "median [low, high]" in percent."""
    from raddino.eval.tables import wide_intervals

    return wide_intervals(frame, "encoder", "metric", "median", "ci_low", "ci_high")


# Our metric -> the paper's Table 5 column (CheXbert's 14 findings there, the phantom's 12 here).
PAPER_REPORT_COLUMNS = {"ROUGE-L": "ROUGE-L", "BLEU-4": "BLEU-4", "Macro-F1": "Macro-F1-14"}


def report_beside_paper(frame: pd.DataFrame) -> pd.DataFrame:
    """Our medians (phantoms) above the paper's Table 5 medians (MIMIC-CXR), shared columns."""
    from raddino.paper import paper_table

    ours = frame.pivot(index="encoder", columns="metric", values="median")
    ours = ours.loc[list(dict.fromkeys(frame["encoder"])), list(PAPER_REPORT_COLUMNS)]
    ours.index = [f"{spec} (phantoms)" for spec in ours.index]
    paper = paper_table("5", wide=True)[list(PAPER_REPORT_COLUMNS.values())]
    paper = paper.drop(index=[r for r in paper.index if r == "Δ"])
    paper.columns = list(PAPER_REPORT_COLUMNS)
    paper.index = [f"{row} (paper, MIMIC-CXR)" for row in paper.index]
    return pd.concat([ours.round(1), paper]).rename_axis(index="encoder")


def finding_f1_frame(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Encoders x findings: F1 (percent) of the findings read from the generated reports."""
    return 100 * pd.DataFrame({spec: r["f1_per_finding"] for spec, r in results.items()}).T
