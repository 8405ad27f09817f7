"""The paper's numbers (raddino/paper/results.yaml): shape, plausibility, internal consistency,
spot checks against the paper text, and the lookup API's errors.

Line numbers in comments refer to shared/paper/000_4df429ea0bdd6cf6.txt (1-based); where that file
is present, test_every_row_matches_its_source_line re-reads each cited line.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pytest

from raddino.paper import (
    PaperKeyError,
    load_paper_results,
    paper_setting,
    paper_table,
    paper_value,
)
from raddino.paper import tables as paper_tables

PAPER_TEXT_NAME = "000_4df429ea0bdd6cf6.txt"
# Printed numbers have two decimals at most; a difference or mean of them may round by one unit.
ROUNDING_TOLERANCE = 0.011


@pytest.fixture(scope="module")
def results() -> dict:
    return load_paper_results()


def _model_rows(table: dict) -> list[dict]:
    return [row for row in table["rows"] if row["kind"] == "model"]


def _point(cell: dict) -> float | None:
    return cell["median"] if "median" in cell else cell["mean"]


def test_every_paper_table_is_present(results):
    assert {"1", "2", "3", "4", "5", "6", "7", "A.1"} <= set(results["tables"])
    for table_id, table in results["tables"].items():
        assert table["title"].strip(), table_id
        assert len(_model_rows(table)) >= 2, table_id


def test_rows_have_one_cell_per_column_and_every_attribute(results):
    for table_id, table in results["tables"].items():
        keys = [c["key"] for c in table["columns"]]
        assert len(keys) == len(set(keys)) > 0, table_id
        for row in table["rows"]:
            assert list(row["values"]) == keys, (table_id, row["row"])  # same order as printed
            assert set(row["attributes"]) == set(table["attribute_columns"]), (table_id, row["row"])
        row_keys = [row["row"] for row in table["rows"]]
        assert len(row_keys) == len(set(row_keys)), table_id


def test_values_are_in_plausible_ranges(results):
    checked = 0
    for table_id, table in results["tables"].items():
        units = {c["key"]: c.get("unit", table["unit"]) for c in table["columns"]}
        for row in table["rows"]:
            for column, cell in row["values"].items():
                point, where = _point(cell), (table_id, row["row"], column)
                if point is None:
                    assert cell.get("printed") == "-", where  # only "-" means not applicable
                    continue
                checked += 1
                if units[column] == "percent":
                    low = -100.0 if row["kind"] == "delta" else 0.0
                    assert low <= point <= 100.0, where
                    assert 0.0 <= cell.get("std", 0.0) <= 50.0, where
                else:
                    assert point > 0, where
                if "ci_low" in cell:
                    assert cell["ci_low"] <= point <= cell["ci_high"], where
                    assert cell["ci_high"] - cell["ci_low"] < 10.0, where
    assert checked > 250  # every numeric cell of every table


def test_uncertainties_parse_as_printed(results):
    # Tables 2, 3, 4, 6, 7 and A.1 print "mean ± std" or "mean (std)" for every finding (the
    # macro average "Agg" has no std); Table 5 prints "median [low, high]".
    for table_id in ("2", "3", "4", "6", "7", "A.1"):
        for row in _model_rows(results["tables"][table_id]):
            for column, cell in row["values"].items():
                if column == "Agg":
                    assert "std" not in cell, (table_id, row["row"])
                else:
                    assert cell["std"] > 0, (table_id, row["row"], column)
    for row in _model_rows(results["tables"]["5"]):
        for cell in row["values"].values():
            assert set(cell) >= {"median", "ci_low", "ci_high"}
    assert paper_value("5", "RAD-DINO", "ROUGE-L", "ci_low") == 24.2  # line 227
    assert paper_value("4", "MRM", "Fracture", "std") == 7.11  # line 176


def _consistency_checks(results) -> list[tuple[tuple[str, str, str], float, float, bool]]:
    """(where, printed, recomputed, flagged uncertain) for every number the paper derives:
    macro averages (Agg), Δ rows and the total of Table B.1."""
    checks = []
    for table_id, table in results["tables"].items():
        rows = {row["row"]: row for row in table["rows"]}
        for row in table["rows"]:
            for column, cell in row["values"].items():
                where = (table_id, row["row"], column)
                if column == "Agg" and row["kind"] == "model" and len(row["values"]) > 1:
                    findings = [_point(c) for k, c in row["values"].items() if k != "Agg"]
                    expected = sum(findings) / len(findings)
                elif row["kind"] == "delta":
                    minuend = _point(rows[row["minuend"]]["values"][column])
                    if row["subtrahend"] == "best_baseline":
                        others = [
                            _point(r["values"][column])
                            for r in _model_rows(table)
                            if not r["name"].startswith("RAD-DINO")
                        ]
                        subtrahend = max(others)
                    else:
                        subtrahend = _point(rows[row["subtrahend"]]["values"][column])
                    expected = minuend - subtrahend
                elif row["kind"] == "total":
                    expected = sum(_point(r["values"][column]) for r in _model_rows(table))
                else:
                    continue
                checks.append((where, _point(cell), expected, bool(cell.get("uncertain"))))
    return checks


def test_derived_numbers_agree_with_their_parts_unless_flagged(results):
    checks = _consistency_checks(results)
    assert len(checks) == 32  # Agg: 4 (T2) + 6 (T3) + 4 (A.1); Δ: 7 + 5 + 4; totals: 2 (B.1)
    for where, printed, expected, flagged in checks:
        agrees = abs(printed - expected) <= ROUNDING_TOLERANCE
        # A flagged value must really disagree (the flag is earned), an unflagged one must agree.
        assert agrees != flagged, (where, printed, expected)


def test_the_paper_inconsistencies_we_flag_are_exactly_the_known_two(results):
    flagged = {where: (p, e) for where, p, e, f in _consistency_checks(results) if f}
    # Table 5, Δ BLEU-4: printed +1.4 (line 228); RAD-DINO 9.3 (line 227) − CLIP@336 8.4 = 0.9.
    # Table B.1, Total images: printed 838,336 (line 531); lines 525–530 sum to 838,696.
    assert set(flagged) == {("5", "Δ", "BLEU-4"), ("B.1", "Total", "Number of images")}
    assert flagged[("5", "Δ", "BLEU-4")][1] == pytest.approx(0.9)
    assert flagged[("B.1", "Total", "Number of images")] == (838336, 838696)


def test_spot_checks_reread_from_the_paper_text():
    # Table 3, RAD-DINO row, line 152: "47.55 ± 2.96 82.51 ± 1.66 46.13 ± 4.98 83.53 ± 0.73
    # 69.67 ± 2.29 70.36 ± 3.51 66.63"
    expected_t3 = {"LO": 47.55, "CM": 82.51, "PL-T": 46.13, "AE": 83.53, "PF": 69.67}
    expected_t3 |= {"TB": 70.36, "Agg": 66.63}
    assert paper_table("3", wide=True).loc["RAD-DINO"].to_dict() == expected_t3
    assert paper_value("3", "RAD-DINO", "PF", "std") == 2.29
    # Table 2, line 117: DINOv2 (ViT-G) LO "31.22 ± 5.98"
    assert paper_value("2", "DINOv2 (ViT-G)", "LO") == 31.22
    assert paper_value("2", "DINOv2 (ViT-G)", "LO", "std") == 5.98
    # Table 4, line 177: RAD-DINO Chest Tube "90.80 ± 1.56", RSNA AUROC "88.38 ± 0.63"
    assert paper_value("4", "RAD-DINO", "Chest Tube") == 90.80
    assert paper_value("4", "RAD-DINO", "AUROC", "std") == 0.63
    # Table 5, line 227: RAD-DINO Macro-F1-14 "31.9 [30.4, 33.3]"
    assert paper_value("5", "RAD-DINO", "Macro-F1-14") == 31.9
    assert paper_value("5", "RAD-DINO", "Macro-F1-14", "ci_high") == 33.3
    # Table 6, line 249: RAD-DINO + UPerNet pneumothorax "87.2 (29.4)"; no-MIM linear lungs 91.3
    assert paper_value("6", "RAD-DINO + UPerNet", "Pneumothorax") == 87.2
    assert paper_value("6", "RAD-DINO + UPerNet", "Pneumothorax", "std") == 29.4
    assert paper_value("6", "RAD-DINO (no MIM) + Linear", "Lungs") == 91.3
    # Table 7, line 271: RAD-DINO "99.6 (0.1) 72.3 (0.3) 62.4 (0.4) 71.3 (0.2)"
    assert paper_table("7", wide=True).loc["RAD-DINO"].tolist() == [99.6, 72.3, 62.4, 71.3]
    # Table A.1, line 453: MRM pleural effusion "96.45 ± 0.98"
    assert paper_value("A.1", "MRM", "Pleural Effusion") == 96.45
    # Table 1, line 80: DINO-v2 "1.1 B" parameters; line 82: RAD-DINO "838 k" images
    assert paper_value("1", "DINO-v2", "# Params.") == 1.1e9
    assert paper_value("1", "RAD-DINO", "# Images") == 838_000
    # Section 4.1, line 161: RAD-DINO-Control "60.75" vs MRM "60.86" aggregate AUPRC
    assert paper_value("text-4.1", "RAD-DINO-Control", "Agg") == 60.75


def test_tables_that_repeat_a_result_agree(results):
    # Table 2's "(Continual)" row is Table 3's RAD-DINO row (lines 119 and 152).
    assert (
        paper_table("2", wide=True).loc["RAD-DINO (Continual)"].tolist()
        == paper_table("3", wide=True).loc["RAD-DINO"].tolist()
    )
    assert paper_value("text-4.1", "MRM", "Agg") == paper_value("3", "MRM", "Agg")
    # Table 1 (838 k) and Table B.1's printed total (838,336) name the same Multi-CXR size.
    b1_total = paper_value("B.1", "Total", "Number of images")
    assert round(b1_total, -3) == paper_value("1", "RAD-DINO", "# Images")


def test_metadata_bins_cover_the_metadata_dataset(results):
    # Appendix C.3 (lines 565-571): each variable's five bins (sex: two) hold the 60.1k images,
    # up to the rounding of the printed thousands (0.05k per bin).
    per_variable: dict[str, float] = {}
    for row in results["tables"]["C.3"]["rows"]:
        variable = row["attributes"]["Variable"]
        per_variable[variable] = per_variable.get(variable, 0.0) + row["values"]["N"]["mean"]
    assert len(per_variable) == 4
    total_thousands = paper_setting("metadata.images") / 1000
    for variable, total in per_variable.items():
        assert abs(total - total_thousands) <= 0.25, (variable, total)


def test_restored_rad_dino_names_keep_what_was_printed(results):
    restored = 0
    for table_id, table in results["tables"].items():
        for row in table["rows"]:
            assert row["name"].strip(), (table_id, row["line"])
            if row.get("name_restored"):
                restored += 1
                assert row["name"].startswith("RAD-DINO"), (table_id, row["row"])
                # the restored name is the macro's text followed by what was printed
                restored_name = "RAD-DINO" + row["printed_name"]
                assert row["name"].replace(" ", "") == restored_name.replace(" ", ""), row["row"]
    assert restored >= 12


def _paper_text_lines() -> list[str] | None:
    repo = Path(__file__).resolve().parents[1]
    candidates = [os.environ.get("RADDINO_PAPER_TEXT", "")]
    candidates += [str(base / "shared" / "paper" / PAPER_TEXT_NAME) for base in (repo, repo.parent)]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_text(encoding="utf-8").splitlines()
    return None


def _numbers(text: str) -> list[float]:
    """The standalone numbers of a printed line, in order ("19,351" -> 19351, "0.8k" -> 0.8);
    numbers inside names ("PMC-15M", "ViT-B/16", "CLIP@224") are not counted."""
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # thousands separators
    tokens = re.split(r"[\s,()\[\]:]+", text)
    return [float(t.rstrip("k")) for t in tokens if re.fullmatch(r"[-+]?\d+(?:\.\d+)?k?", t)]


def _find_run(haystack: list[float], needle: list[float], start: int) -> int:
    """Index of the first contiguous run `needle` in `haystack` at or after `start`, or -1."""
    n = len(needle)
    for i in range(start, len(haystack) - n + 1):
        if all(math.isclose(a, b) for a, b in zip(haystack[i : i + n], needle, strict=True)):
            return i
    return -1


def test_every_row_matches_its_source_line(results):
    """Each row's numbers appear, in order and contiguously, on the line it cites; rows that
    share a line (Tables 6 and 7 are flattened into one line each) appear in the printed order."""
    lines = _paper_text_lines()
    if lines is None:
        pytest.skip("paper text not found (set RADDINO_PAPER_TEXT to check against it)")
    checked = 0
    for table_id, table in results["tables"].items():
        next_start: dict[int, int] = {}  # line -> where the next row's numbers may start
        for row in table["rows"]:
            line = " ".join(lines[row["line"] - 1].split())  # also folds no-break spaces
            printed_numbers: list[float] = []
            for cell in row["values"].values():
                if "printed" in cell:
                    printed_numbers += _numbers(cell["printed"])
                    continue
                printed_numbers.append(_point(cell))
                printed_numbers += [cell[k] for k in ("std", "ci_low", "ci_high") if k in cell]
            found = _find_run(_numbers(line), printed_numbers, next_start.get(row["line"], 0))
            assert found >= 0, (table_id, row["row"], line)
            next_start[row["line"]] = found + len(printed_numbers)
            if table_id != "C.3":  # C.3's names and attributes are ours ("Age: < 20")
                label = row.get("printed_name", row["name"])
                label += f" [{row['ref']}]" if "ref" in row else ""
                assert label in line, (table_id, row["row"], label)
                for name, value in row["attributes"].items():
                    if value is not None and not isinstance(value, bool):  # bools: marks lost
                        assert str(value) in line, (table_id, row["row"], name, value)
            checked += 1
    assert checked == sum(len(t["rows"]) for t in results["tables"].values())


def test_every_setting_is_printed_on_its_line(results):
    lines = _paper_text_lines()
    if lines is None:
        pytest.skip("paper text not found (set RADDINO_PAPER_TEXT to check against it)")
    for key, setting in results["settings"].items():
        line = " ".join(lines[setting["line"] - 1].split())
        assert str(setting.get("printed", setting["value"])) in line, (key, setting["line"])


def test_long_and_wide_frames():
    long_df = paper_table("4")
    assert len(long_df) == 7 * 5  # 6 encoders + Δ, 5 columns (lines 172-178)
    assert list(long_df.columns[: len(paper_tables.LONG_COLUMNS)]) == list(
        paper_tables.LONG_COLUMNS
    )
    assert "Arch" in long_df.columns
    rsna = long_df[(long_df["row"] == "MRM") & (long_df["column"] == "AUROC")].iloc[0]
    assert (rsna["dataset"], rsna["metric"], rsna["value"]) == ("RSNA Pneumonia", "AUROC", 88.98)
    wide = paper_table("6", wide=True)
    assert wide.shape == (8, 5)
    assert wide.index[0] == "NN-UNet + Unet"  # printed order kept, not sorted
    t5 = paper_table("5")
    assert set(t5["estimate"]) == {"median"}
    assert t5["uncertain"].sum() == 1  # only the Δ BLEU-4 cell
    assert math.isnan(paper_table(1, wide=True).loc["DINO-v2", "# Text"])  # printed "-"


def test_lookup_errors_name_what_is_missing():
    with pytest.raises(KeyError, match=r"no table '9'.*'A\.1'"):
        paper_table("9")
    with pytest.raises(KeyError, match=r"table '3' has no row 'RADDINO'.*'RAD-DINO'"):
        paper_value("3", "RADDINO", "LO")
    with pytest.raises(KeyError, match=r"table '3' has no column 'XX'.*'PL-T'"):
        paper_value("3", "RAD-DINO", "XX")
    with pytest.raises(ValueError, match=r"'Agg': the paper prints no 'std'"):
        paper_value("3", "RAD-DINO", "Agg", "std")
    with pytest.raises(ValueError, match="not applicable"):
        paper_value("1", "RAD-DINO", "# Text")
    with pytest.raises(ValueError, match="field 'sd'"):
        paper_value("3", "RAD-DINO", "LO", "sd")
    with pytest.raises(PaperKeyError, match="pretrain.nope"):
        paper_setting("pretrain.nope")
    assert paper_value("Table 3", "MRM", "Agg") == 60.86


def test_settings_stated_in_the_text():
    assert paper_setting("pretrain.batch_size") == 640  # line 71
    assert paper_setting("pretrain.local_crop_output") == 196  # line 541
    assert paper_setting("report.test_pairs") == 2461  # line 211
    settings = load_paper_results()["settings"]
    for key, setting in settings.items():
        assert setting["line"] > 0, key
        if setting.get("uncertain"):
            assert setting.get("note"), key


def test_load_returns_an_independent_copy():
    first = load_paper_results()
    first["tables"]["3"]["rows"][0]["values"]["LO"]["mean"] = -1.0
    assert paper_value("3", "CLIP@224", "LO") == 22.95
    assert load_paper_results()["tables"]["3"]["rows"][0]["values"]["LO"]["mean"] == 22.95


def _minimal_table(**row_changes) -> dict:
    row = {"name": "A", "line": 1, "values": {"x": {"mean": 1.0, "std": 0.1}}} | row_changes
    return {
        "title": "t",
        "lines": [1, 1],
        "unit": "percent",
        "attribute_columns": [],
        "columns": [{"key": "x"}],
        "rows": [row],
    }


@pytest.mark.parametrize(
    ("row_changes", "message"),
    [
        ({"values": {}}, r"row 'A': values missing columns \['x'\]"),
        ({"values": {"x": {"mean": 1.0}, "y": {"mean": 2.0}}}, r"unknown columns \['y'\]"),
        ({"values": {"x": {"mean": 1.0, "std": -0.1}}}, "column 'x': negative std"),
        ({"values": {"x": {"mean": 1.0, "uncertain": True}}}, "needs a 'note'"),
        ({"values": {"x": {"median": 5.0, "ci_low": 1.0, "ci_high": 2.0}}}, "outside its interval"),
        ({"values": {"x": {"mean": "1.0"}}}, "mean must be a number"),
        ({"values": {"x": {"mean": 1.0, "median": 1.0}}}, "exactly one of"),
        ({"values": {"x": {"mean": 1.0, "sd": 0.1}}}, r"unknown fields \['sd'\]"),
        ({"kind": "average"}, "kind 'average'"),
        ({"kind": "delta", "minuend": "B", "subtrahend": "A"}, "delta row needs 'minuend'"),
        ({"attributes": {"Arch": "ViT"}}, "differ from the table's attribute_columns"),
    ],
)
def test_validation_rejects_bad_entries(row_changes, message):
    with pytest.raises(ValueError, match=message):
        paper_tables._validate_table("T", _minimal_table(**row_changes))


def test_validation_rejects_duplicate_rows_and_unknown_units():
    table = _minimal_table()
    table["rows"] = table["rows"] * 2
    with pytest.raises(ValueError, match="table 'T': row key 'A' appears twice"):
        paper_tables._validate_table("T", table)
    with pytest.raises(ValueError, match="unknown unit 'furlongs'"):
        paper_tables._validate_table("T", _minimal_table() | {"unit": "furlongs"})
    assert paper_tables._validate_table("T", _minimal_table())["rows"][0]["kind"] == "model"
