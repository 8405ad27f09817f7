"""Report generation (Table 5 on phantoms): labeller, tokenizer, image tokens, metrics, decoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_phantom_reports import _random_case  # random labels with renderer-like details
from torchmetrics.functional.text import bleu_score

from raddino.data.phantom.report_labels import (
    NEGATION_WORDS,
    finding_names,
    findings_section,
    label_report,
    read_labels,
    split_sentences,
)
from raddino.data.phantom.reports import _GROUP_NEGATIVE, _NEGATIVE, _POSITIVE, write_report
from raddino.eval.report_generation import (
    ReportGenerator,
    ReportTokenizer,
    ReportTrainConfig,
    detokenize,
    generate_reports,
    image_tokens,
    train_report_generator,
)
from raddino.eval.report_metrics import (
    bleu_counts,
    bootstrap_scores,
    corpus_bleu,
    f1_per_finding,
    finding_counts,
    report_statistics,
)


def _written_reports(n: int, seed: int = 0) -> list[tuple[dict[str, int], str]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        labels, details = _random_case(rng)
        view = str(rng.choice(["PA", "AP", "LATERAL"]))
        out.append((labels, write_report(labels, details, view=view, rng=rng)))
    return out


def test_labeller_reads_every_written_report_exactly():
    written = _written_reports(1500)
    for labels, report in written:
        assert label_report(findings_section(report)) == labels, report
        impression = report.split("Impression:")[1]
        read = label_report(impression)
        assert all(labels[name] for name, v in read.items() if v), report  # never a false one
    table = read_labels([findings_section(report) for _, report in written])
    assert table.shape == (1500, len(finding_names()))
    assert (table == [[labels[n] for n in finding_names()] for labels, _ in written]).all()
    assert read_labels([]).shape == (0, len(finding_names()))


def test_negation_words_split_positive_from_negative_phrasings():
    for templates in _POSITIVE.values():
        assert not any(NEGATION_WORDS.search(t) for t in templates)
    negatives = [t for ts in _NEGATIVE.values() for t in ts]
    negatives += [t for _, ts in _GROUP_NEGATIVE for t in ts]
    assert all(NEGATION_WORDS.search(t) for t in negatives)


@pytest.mark.parametrize(
    ("text", "positive"),
    [
        ("No pneumothorax. There is no pneumothorax. No pleural effusion or pneumothorax.", set()),
        ("Small left pneumothorax.", {"pneumothorax"}),
        ("Left chest tube in situ.", {"chest_tube", "support_devices"}),
        ("ECG leads in situ.", {"support_devices"}),
        ("A 12 mm nodule in the right upper zone.", {"nodule"}),
        # a generator's garbled sentences match no phrasing in full
        ("There is a left apical pneumothorax is in place: ecg leads.", set()),
        ("no rib. no rib is not enlarged. the heart is.", set()),
        ("Mild cardiomegaly", {"cardiomegaly"}),  # a last sentence without its full stop
    ],
)
def test_labeller_on_single_sentences(text, positive):
    assert {name for name, v in label_report(text).items() if v} == positive


def test_findings_section_and_sentences():
    report = "Findings: PA view. No effusion.\nImpression: Normal chest radiograph."
    assert findings_section(report) == "PA view. No effusion."
    assert split_sentences("PA view. No effusion.") == ["PA view.", "No effusion."]
    with pytest.raises(ValueError, match="no 'Findings:' section"):
        findings_section("Impression: Normal.")


def test_tokenizer_round_trips_reports():
    texts = [findings_section(r) for _, r in _written_reports(300, seed=1)]
    tokenizer = ReportTokenizer(texts[:200])
    for text in texts[:200]:
        ids = tokenizer.encode(text)
        assert ids[0] == tokenizer.bos_id and ids[-1] == tokenizer.eos_id
        assert tokenizer.decode(ids) == text.lower()
    assert all(detokenize(tokenizer.words(t)) == t.lower() for t in texts)
    unseen = tokenizer.encode("zzz")[1:-1]
    assert unseen == [tokenizer.unk_id]
    with pytest.raises(ValueError, match="at least one"):
        ReportTokenizer([])


def test_image_tokens_of_pixels_and_patch_grids():
    pixels = torch.arange(2 * 32 * 32, dtype=torch.float32).reshape(2, 1, 32, 32)
    tokens = image_tokens(pixels, 4)
    assert tokens.shape == (2, 16, 64)
    # token 5 is the cell in row 1, column 1: pixels [8:16, 8:16], in raster order
    assert torch.equal(tokens[1, 5], pixels[1, 0, 8:16, 8:16].flatten())
    grid = torch.randn(3, 8, 4, 4)
    assert torch.equal(image_tokens(grid, 4)[2, 7], grid[2, :, 1, 3])
    pooled = image_tokens(torch.ones(1, 8, 14, 14) * torch.arange(8.0).view(1, 8, 1, 1), 4)
    assert pooled.shape == (1, 16, 8) and torch.allclose(pooled[0, 9], torch.arange(8.0))
    with pytest.raises(ValueError, match="does not cut"):
        image_tokens(torch.zeros(1, 1, 30, 30), 4)


def test_bleu_equals_torchmetrics_corpus_bleu():
    texts = [findings_section(r) for _, r in _written_reports(120, seed=2)]
    tokenizer = ReportTokenizer(texts)
    rng = np.random.default_rng(0)
    for _ in range(3):
        hyp = [tokenizer.words(texts[i]) for i in rng.choice(len(texts), 40)]
        ref = [tokenizer.words(texts[i]) for i in rng.choice(len(texts), 40)]
        ours = corpus_bleu(sum(bleu_counts(h, r) for h, r in zip(hyp, ref, strict=True)))
        theirs = bleu_score([" ".join(h) for h in hyp], [[" ".join(r)] for r in ref], n_gram=4)
        assert ours == pytest.approx(float(theirs), abs=1e-6)
        assert 0 < ours < 1
    assert corpus_bleu(bleu_counts(["a", "b"], ["c", "d", "e", "f"])) == 0.0


def test_finding_f1_and_bootstrap():
    truth = np.array([[1, 0], [1, 0], [0, 1], [0, 0]])
    predicted = np.array([[1, 0], [0, 0], [0, 1], [1, 0]])
    counts = finding_counts(predicted, truth).sum(0)
    assert counts.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert f1_per_finding(counts) == pytest.approx([0.5, 1.0])
    words = [["no", "effusion", "."], ["mild", "cardiomegaly", "."]] * 10
    perfect = report_statistics(words, words, np.tile(truth, (5, 1)), np.tile(truth, (5, 1)))
    table = bootstrap_scores(perfect, samples=50).set_index("metric")
    assert table.loc["ROUGE-L", "median"] == pytest.approx(1.0)
    assert table.loc["Macro-F1", "ci_low"] == pytest.approx(1.0)
    mixed = report_statistics(
        words, words[::-1], np.tile(predicted, (5, 1)), np.tile(truth, (5, 1))
    )
    a, b = bootstrap_scores(mixed, samples=50, seed=3), bootstrap_scores(mixed, samples=50, seed=3)
    assert a.equals(b)
    assert (a["ci_low"] <= a["median"]).all() and (a["median"] <= a["ci_high"]).all()
    assert a.set_index("metric").loc["ROUGE-L", "score"] < 1


def _two_class_task(n: int, seed: int) -> tuple[torch.Tensor, list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 2, n)
    tokens = torch.randn(n, 4, 8, generator=torch.Generator().manual_seed(seed)) * 0.3
    tokens[:, :, 0] += torch.tensor(2.0 * classes - 1).view(n, 1)
    reports = [
        "PA view. Small left pleural effusion.",
        "PA view. No effusion. Heart size is normal.",
    ]
    return tokens, [reports[c] for c in classes], classes


def test_decoder_writes_the_report_its_image_tokens_say():
    config = ReportTrainConfig(width=32, layers=1, heads=2, epochs=25, batch_size=16, lr=5e-3)
    train_x, train_texts, _ = _two_class_task(96, seed=0)
    val_x, val_texts, _ = _two_class_task(32, seed=1)
    test_x, test_texts, _ = _two_class_task(40, seed=2)
    fitted = train_report_generator(train_x, train_texts, val_x, val_texts, config, progress=False)
    losses = [h["val_loss"] for h in fitted["history"]]
    assert min(losses) < 0.5 * losses[0]
    written = generate_reports(fitted, test_x, config, progress=False)
    correct = np.mean([w == t.lower() for w, t in zip(written, test_texts, strict=True)])
    assert correct >= 0.9
    # the same decoder trained without the image cannot beat the larger class
    blank = ReportTrainConfig(width=32, layers=1, heads=2, epochs=5, batch_size=16, lr=5e-3)
    fitted_blank = train_report_generator(
        torch.zeros_like(train_x), train_texts, torch.zeros_like(val_x), val_texts, blank,
        progress=False,
    )  # fmt: skip
    written = generate_reports(fitted_blank, torch.zeros_like(test_x), blank, progress=False)
    assert len(set(written)) == 1


def test_generation_stops_at_eos_and_blocks_repeated_ngrams():
    model = ReportGenerator(8, 4, 30, 64, ReportTrainConfig(width=16, layers=1, heads=2), 0, 1, 2)
    ids = model.eval().generate(torch.randn(3, 4, 8), max_new_tokens=40, no_repeat_ngram_size=2)
    assert ids.shape[0] == 3 and ids.shape[1] <= 40
    for row in ids.tolist():
        row = row[: row.index(2)] if 2 in row else row
        pairs = list(zip(row, row[1:], strict=False))
        assert len(pairs) == len(set(pairs))


def test_training_refuses_mismatched_inputs():
    config = ReportTrainConfig(epochs=1)
    with pytest.raises(ValueError, match="differ in number"):
        train_report_generator(torch.zeros(3, 4, 2), ["a."], torch.zeros(1, 4, 2), ["a."], config)


@pytest.fixture(scope="module")
def report_folder(tmp_path_factory):
    from raddino.data.dataset_folder import write_phantom_folder
    from raddino.data.phantom import PhantomConfig

    root = tmp_path_factory.mktemp("report_phantoms")
    return write_phantom_folder(root, 40, PhantomConfig(size=64), seed=0, progress=False)


def test_run_report_generation_scores_the_test_split(report_folder, tmp_path):
    from raddino.eval.report_eval import (
        NO_IMAGE,
        TRUE_LABELS,
        finding_f1_frame,
        report_beside_paper,
        report_frame,
        report_table,
        run_report_generation,
    )

    config = ReportTrainConfig(width=16, layers=1, heads=2, epochs=2, max_new_tokens=24)
    results = {
        spec: run_report_generation(
            spec, report_folder, config, size=None, cache_dir=str(tmp_path), bootstrap_samples=20
        )
        for spec in (NO_IMAGE, "pixels:16", TRUE_LABELS)
    }
    test = np.flatnonzero(report_folder.table["split"].to_numpy() == "test")
    pixels = results["pixels:16"]
    assert pixels["image_tokens"] == (16, 16) and results[NO_IMAGE]["image_tokens"] == (16, 1)
    assert results[TRUE_LABELS]["image_tokens"] == (1, len(_POSITIVE))
    assert np.array_equal(pixels["test_rows"], test) and len(pixels["generated"]) == len(test)
    assert np.array_equal(pixels["truth"], report_folder.labels_array(list(_POSITIVE))[test])
    assert list(tmp_path.glob("patch-grids-*.safetensors"))  # the pixel grids were cached
    frame = report_frame(results)
    assert set(frame["metric"]) == {"BLEU-4", "ROUGE-L", "Macro-F1"}
    assert frame["median"].between(0, 100).all()
    assert report_table(frame).shape == (3, 3)
    beside = report_beside_paper(frame)
    assert beside.loc["RAD-DINO (paper, MIMIC-CXR)", "Macro-F1"] == pytest.approx(31.9)
    assert beside.loc["none (phantoms)", "ROUGE-L"] == pytest.approx(
        frame.set_index(["encoder", "metric"]).loc[(NO_IMAGE, "ROUGE-L"), "median"], abs=0.05
    )
    assert "Δ (paper, MIMIC-CXR)" not in beside.index
    assert finding_f1_frame(results).shape == (3, len(_POSITIVE))


def test_report_texts_name_an_image_without_report(report_folder):
    from raddino.eval.report_eval import report_texts

    report_folder._report_by_image.pop(report_folder.table["image"].iat[3])
    try:
        with pytest.raises(ValueError, match="no report for images/phantom_000003"):
            report_texts(report_folder)
    finally:
        report_folder._report_by_image = dict(
            zip(report_folder.reports["image"], report_folder.reports["report"], strict=True)
        )
