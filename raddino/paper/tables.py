"""The paper's tables as data: load, validate and look up the numbers in `results.yaml`.

The book sets these beside our own runs; every value was transcribed from the paper text (see the
header of results.yaml for the conventions) and is checked here for shape on first load.
"""

from __future__ import annotations

import copy
import functools
import math
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is imported lazily so `import raddino.paper` stays light
    import pandas as pd

RESULTS_FILE = "results.yaml"
ROW_KINDS = ("model", "delta", "total")
UNITS = ("percent", "count", "pixels", "thousand_images")
POINT_FIELDS = ("mean", "median")
CELL_FIELDS = (*POINT_FIELDS, "std", "ci_low", "ci_high", "printed", "uncertain", "note")
VALUE_FIELDS = ("value", "mean", "median", "std", "ci_low", "ci_high")
# Fixed columns of the long DataFrame; attribute columns (printed names) are appended after them.
LONG_COLUMNS = (
    "table",
    "row",
    "name",
    "kind",
    "column",
    "label",
    "dataset",
    "metric",
    "unit",
    "estimate",
    "value",
    "std",
    "ci_low",
    "ci_high",
    "printed",
    "uncertain",
    "note",
    "name_restored",
    "line",
)


class PaperKeyError(KeyError):
    """A table, row, column or setting that the paper data does not have (message names it)."""

    def __str__(self) -> str:  # KeyError would print the message inside quotes
        return str(self.args[0]) if self.args else ""


def load_paper_results() -> dict[str, Any]:
    """All paper data, validated: {"source", "tables": {table_id: table}, "figures", "settings"}.

    Rows get their `row` key (defaulting to `name`) and `kind` (default "model"); attribute values
    given as {value, uncertain, note} are flattened to the value, their notes kept in
    `attribute_notes`. Returns a fresh copy each call, so callers may modify it.
    """
    return copy.deepcopy(_validated_results())


def paper_table(table_id: str | int, wide: bool = False) -> pd.DataFrame:
    """The paper's table `table_id` ("3", "A.1", ...) as a DataFrame.

    Long format (default): one line per (row, column) cell, with the columns of `LONG_COLUMNS`
    then one column per printed attribute (e.g. "Arch"); `value` is the printed point estimate
    (a mean, or Table 5's bootstrap median, named in `estimate`), NaN where the paper prints "-".
    Wide format (`wide=True`): index = row key, one column per table column, point estimates only.
    """
    import pandas as pd

    table = _table(table_id)
    records = []
    for row in table["rows"]:
        for column in table["columns"]:
            cell = row["values"][column["key"]]
            estimate = "median" if "median" in cell else "mean"
            record = {
                "table": table["table"],
                "row": row["row"],
                "name": row["name"],
                "kind": row["kind"],
                "column": column["key"],
                "label": column.get("label"),
                "dataset": column.get("dataset", table.get("dataset")),
                "metric": column.get("metric", table.get("metric")),
                "unit": column.get("unit", table["unit"]),
                "estimate": estimate,
                "value": _as_float(cell.get(estimate)),
                "std": _as_float(cell.get("std")),
                "ci_low": _as_float(cell.get("ci_low")),
                "ci_high": _as_float(cell.get("ci_high")),
                "printed": cell.get("printed"),
                "uncertain": bool(cell.get("uncertain", False)),
                "note": cell.get("note"),
                "name_restored": bool(row.get("name_restored", False)),
                "line": row["line"],
            }
            record.update(row["attributes"])
            records.append(record)
    long_df = pd.DataFrame.from_records(
        records, columns=[*LONG_COLUMNS, *table["attribute_columns"]]
    )
    if not wide:
        return long_df
    wide_df = long_df.pivot(index="row", columns="column", values="value")
    # pivot sorts; restore the paper's row and column order
    wide_df = wide_df.loc[[r["row"] for r in table["rows"]], [c["key"] for c in table["columns"]]]
    wide_df.columns.name = None
    return wide_df


def paper_value(table_id: str | int, row: str, column: str, field: str = "value") -> float:
    """One number of the paper: `field` ("value" = printed point estimate, or "mean", "median",
    "std", "ci_low", "ci_high") of cell (`row`, `column`) of table `table_id`."""
    if field not in VALUE_FIELDS:
        raise ValueError(f"field {field!r} is not one of {VALUE_FIELDS}")
    table = _table(table_id)
    rows = {r["row"]: r for r in table["rows"]}
    if row not in rows:
        raise PaperKeyError(f"table {table['table']!r} has no row {row!r}; rows: {list(rows)}")
    cell = rows[row]["values"].get(column)
    if cell is None:
        columns = [c["key"] for c in table["columns"]]
        raise PaperKeyError(
            f"table {table['table']!r} has no column {column!r}; columns: {columns}"
        )
    if field == "value":
        field = "median" if "median" in cell else "mean"
    if field not in cell:
        raise ValueError(
            f"table {table['table']!r}, row {row!r}, column {column!r}: the paper prints no "
            f"{field!r} here (printed fields: {[f for f in cell if f in VALUE_FIELDS]})"
        )
    if cell[field] is None:
        raise ValueError(
            f"table {table['table']!r}, row {row!r}, column {column!r}: not applicable "
            f"(printed {cell.get('printed', '-')!r})"
        )
    return float(cell[field])


def paper_setting(key: str) -> float | int | str:
    """A training or evaluation setting stated in the paper text (e.g. "pretrain.batch_size")."""
    settings = _validated_results()["settings"]
    if key not in settings:
        raise PaperKeyError(f"paper setting {key!r} is not recorded; settings: {sorted(settings)}")
    return settings[key]["value"]


def _as_float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _table(table_id: str | int) -> dict[str, Any]:
    tables = _validated_results()["tables"]
    key = str(table_id).strip()
    if key.lower().startswith("table "):
        key = key[len("table ") :].strip()
    if key not in tables:
        raise PaperKeyError(f"the paper has no table {table_id!r}; tables: {list(tables)}")
    return tables[key]


@functools.cache
def _validated_results() -> dict[str, Any]:
    import yaml

    text = resources.files("raddino.paper").joinpath(RESULTS_FILE).read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict) or "tables" not in raw:
        raise ValueError(f"{RESULTS_FILE}: expected a mapping with a 'tables' list")
    tables: dict[str, dict[str, Any]] = {}
    for table in raw["tables"]:
        table_id = str(table.get("table", "")).strip()
        if not table_id:
            raise ValueError(f"{RESULTS_FILE}: a table has no 'table' id: {table.get('title')!r}")
        if table_id in tables:
            raise ValueError(f"{RESULTS_FILE}: table {table_id!r} appears twice")
        tables[table_id] = _validate_table(table_id, table)
    settings: dict[str, dict[str, Any]] = {}
    for setting in raw.get("settings", []):
        key = setting.get("key")
        if key in settings or "value" not in setting or "line" not in setting:
            raise ValueError(f"{RESULTS_FILE}: setting {key!r} is repeated or lacks value/line")
        settings[key] = setting
    return {
        "source": raw.get("source", {}),
        "tables": tables,
        "figures": raw.get("figures", []),
        "settings": settings,
    }


def _validate_table(table_id: str, table: dict[str, Any]) -> dict[str, Any]:
    where = f"{RESULTS_FILE}: table {table_id!r}"
    for key in ("title", "lines", "unit", "columns", "rows", "attribute_columns"):
        if key not in table:
            raise ValueError(f"{where}: missing key {key!r}")
    table = dict(table, table=table_id)
    column_keys = [c["key"] for c in table["columns"]]
    if len(set(column_keys)) != len(column_keys):
        raise ValueError(f"{where}: duplicate column keys {column_keys}")
    for column in table["columns"]:
        unit = column.get("unit", table["unit"])
        if unit not in UNITS:
            raise ValueError(f"{where}, column {column['key']!r}: unknown unit {unit!r}")
    reserved = set(LONG_COLUMNS) & set(table["attribute_columns"])
    if reserved:
        raise ValueError(f"{where}: attribute columns {sorted(reserved)} clash with fixed names")
    rows, seen = [], set()
    for raw_row in table["rows"]:
        row = _validate_row(where, raw_row, column_keys, table["attribute_columns"])
        if row["row"] in seen:
            raise ValueError(f"{where}: row key {row['row']!r} appears twice")
        seen.add(row["row"])
        rows.append(row)
    for row in rows:  # a Δ row names the rows it is the difference of
        if row["kind"] == "delta" and (
            row.get("minuend") not in seen or row.get("subtrahend") not in (*seen, "best_baseline")
        ):
            raise ValueError(
                f"{where}, row {row['row']!r}: a delta row needs 'minuend' (a row) and "
                f"'subtrahend' (a row or 'best_baseline'); rows: {sorted(seen)}"
            )
    table["rows"] = rows
    return table


def _validate_row(
    where: str, raw_row: dict[str, Any], column_keys: list[str], attribute_columns: list[str]
) -> dict[str, Any]:
    if "name" not in raw_row or "line" not in raw_row:
        raise ValueError(f"{where}: a row lacks 'name' or 'line': {raw_row}")
    row = dict(raw_row)
    row.setdefault("row", row["name"])
    row.setdefault("kind", "model")
    where = f"{where}, row {row['row']!r}"
    if row["kind"] not in ROW_KINDS:
        raise ValueError(f"{where}: kind {row['kind']!r} is not one of {ROW_KINDS}")
    values = row.get("values") or {}
    missing = [k for k in column_keys if k not in values]
    extra = [k for k in values if k not in column_keys]
    if missing or extra:
        raise ValueError(f"{where}: values missing columns {missing}, unknown columns {extra}")
    for column, cell in values.items():
        _validate_cell(f"{where}, column {column!r}", cell)
    attributes = row.get("attributes") or {}
    if sorted(attributes) != sorted(attribute_columns):
        raise ValueError(
            f"{where}: attributes {sorted(attributes)} differ from the table's "
            f"attribute_columns {sorted(attribute_columns)}"
        )
    row["attributes"], row["attribute_notes"] = {}, {}
    for name, value in attributes.items():
        if isinstance(value, dict):
            if "value" not in value:
                raise ValueError(f"{where}, attribute {name!r}: mapping form needs 'value'")
            row["attribute_notes"][name] = {k: v for k, v in value.items() if k != "value"}
            value = value["value"]
        row["attributes"][name] = value
    return row


def _validate_cell(where: str, cell: Any) -> None:
    if not isinstance(cell, dict):
        raise ValueError(f"{where}: expected a mapping like {{mean: 1.0, std: 0.1}}, got {cell!r}")
    unknown = [k for k in cell if k not in CELL_FIELDS]
    if unknown:
        raise ValueError(f"{where}: unknown fields {unknown}; allowed: {CELL_FIELDS}")
    points = [k for k in POINT_FIELDS if k in cell]
    if len(points) != 1:
        raise ValueError(f"{where}: needs exactly one of {POINT_FIELDS}, has {points}")
    point = cell[points[0]]
    numbers = {k: cell[k] for k in ("std", "ci_low", "ci_high") if k in cell}
    if point is None:
        if numbers:
            raise ValueError(f"{where}: a not-applicable cell cannot carry {sorted(numbers)}")
        return
    for key, value in {points[0]: point, **numbers}.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: {key} must be a number, got {value!r}")
    if numbers.get("std", 0) < 0:
        raise ValueError(f"{where}: negative std {numbers['std']}")
    if ("ci_low" in numbers) != ("ci_high" in numbers):
        raise ValueError(f"{where}: ci_low and ci_high must come together")
    if "ci_low" in numbers and not numbers["ci_low"] <= point <= numbers["ci_high"]:
        raise ValueError(f"{where}: point {point} outside its interval {list(numbers.values())}")
    if cell.get("uncertain") and not cell.get("note"):
        raise ValueError(f"{where}: an uncertain value needs a 'note' saying why")
