"""Tables of results: JSON-safe values, CSV text and files, and means over groups of rows, one rule each.

Every table robustnic writes or prints goes through these helpers: the ``attack`` command's
``summary.json/csv`` and ``per_image.json/csv``, ``eval``'s ``rd.json`` and ``rd.csv``, a store's export, the
report, the robustness curves and the ``defend`` summary. So the same rows give the same means
wherever they are averaged.

**Means** (:func:`finite_mean`, :func:`group_means`). ``None``, NaN and ±inf are left out of a mean:
a NaN (nothing measured) or an infinite PSNR (identical images) cannot enter a finite average. A
mean that no value entered is NaN. Every mean says how many values entered it: a row of
:func:`group_means` holds ``n``, the number of rows in its group, and ``n:COLUMN`` for each column
whose mean left a value out (absent when every row's value entered). Booleans average to the share
that holds (True = 1).

**JSON** (:func:`json_safe`, :func:`from_json`). NaN is written as ``null`` (no value) and ±inf as the
strings ``"inf"`` / ``"-inf"`` (strict JSON has neither). Reading turns ``"inf"`` / ``"-inf"`` back into
floats, and also ``"nan"``, which the ``attack`` command wrote for NaN before 0.3.

**CSV** (:func:`csv_text`, :func:`write_csv`). ``None`` and NaN are empty cells, ±inf ``inf`` / ``-inf``;
the columns are every key of every row, in order of first appearance.
"""

from __future__ import annotations

import csv
import io
import math
import os
from typing import Any, Iterable, Mapping, Sequence

from robustnic.utils.io import atomic_write_text

#: The strings that stand for non-finite floats in JSON files (``"nan"`` only in older files).
_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


# ----- values ------------------------------------------------------------------------------------
def is_number(value: Any) -> bool:
    """Whether ``value`` is an int or float (booleans are not numbers here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """Whether ``value`` is a finite int or float (not a boolean, NaN or infinity)."""
    return is_number(value) and math.isfinite(value)


def _finite(value: Any) -> float | None:
    """``value`` as a float if it can enter a mean (a finite number or a boolean), else None."""
    if isinstance(value, bool):
        return float(value)
    if is_number(value) and math.isfinite(value):
        return float(value)
    return None


def mean_count(values: Iterable[Any]) -> tuple[float, int]:
    """The mean of the values that can enter a mean (see the module docstring) and how many did."""
    got = [v for v in map(_finite, values) if v is not None]
    return (math.fsum(got) / len(got) if got else math.nan), len(got)


def finite_mean(values: Iterable[Any]) -> float:
    """Mean of the finite values (booleans count as 0/1; None, NaN, ±inf left out); NaN if there is none."""
    return mean_count(values)[0]


# ----- group means -------------------------------------------------------------------------------
def _group_key(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return ("unhashable", repr(value))
    return (type(value) is bool, value)  # True and 1 stay apart


def numeric_columns(rows: Sequence[Mapping[str, Any]], exclude: Iterable[str] = ()) -> list[str]:
    """Columns whose every value is a number, a boolean or None, with at least one not None (first-seen order)."""
    skip = set(exclude)
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns and k not in skip)
    def numeric(col: str) -> bool:
        values = [r.get(col) for r in rows]
        return (all(v is None or isinstance(v, (bool, int, float)) for v in values)
                and any(v is not None for v in values))
    return [c for c in columns if numeric(c)]


def group_means(
    rows: Iterable[Mapping[str, Any]], by: Sequence[str], metrics: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Mean of each of ``metrics`` over the rows that share the values of the ``by`` columns.

    ``metrics`` defaults to :func:`numeric_columns` (every column not in ``by`` that holds only
    numbers, booleans and None). Each output row holds the ``by`` values, ``n`` (rows in the group),
    each metric's mean, and ``n:METRIC`` where fewer than ``n`` values entered that mean (the rule
    is in the module docstring). Groups appear in the order of their first row.
    """
    rows = list(rows)
    by = tuple(by)
    metrics = numeric_columns(rows, by) if metrics is None else [m for m in metrics if m not in by]
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(_group_key(row.get(k)) for k in by), []).append(row)
    out = []
    for members in groups.values():
        entry: dict[str, Any] = {k: members[0].get(k) for k in by} | {"n": len(members)}
        counts = {}
        for m in metrics:
            entry[m], counts[m] = mean_count(r.get(m) for r in members)
        entry.update({f"n:{m}": c for m, c in counts.items() if c != len(members)})
        out.append(entry)
    return out


# ----- JSON ----------------------------------------------------------------------------------------
def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced: NaN -> None, ±inf -> ``"inf"`` / ``"-inf"``.

    Dicts, lists and tuples are converted recursively (tuples become lists); the result dumps as
    strict JSON (``json.dumps(..., allow_nan=False)``).
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def from_json(value: Any) -> Any:
    """Undo :func:`json_safe` on a value read back from JSON: ``"inf"``, ``"-inf"`` (and the older
    ``"nan"``) become floats, recursively through dicts and lists; ``null`` stays None."""
    if isinstance(value, str):
        return _NONFINITE.get(value, value)
    if isinstance(value, dict):
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


# ----- CSV -----------------------------------------------------------------------------------------
def csv_cell(value: Any, float_format: str | None = None) -> str:
    """One CSV cell: None and NaN empty, ±inf ``inf`` / ``-inf``, other floats by ``float_format``
    (e.g. ``"{:.6g}"``; default ``str``), everything else ``str``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, float) and float_format is not None:
        return float_format.format(value)
    return str(value)


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None,
             float_format: str | None = None) -> str:
    """CSV text (``\\n`` line ends) with a header; ``columns`` default to every key of every row in
    order of first appearance (a row without a column gets an empty cell)."""
    rows = list(rows)
    if columns is None:
        columns = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(row.get(c), float_format) for c in columns])
    return buf.getvalue()


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None,
              float_format: str | None = None) -> None:
    """Write :func:`csv_text` to ``path`` atomically."""
    atomic_write_text(path, csv_text(rows, columns, float_format))


__all__ = ["csv_cell", "csv_text", "finite_mean", "from_json", "group_means", "is_number", "json_safe",
           "mean_count", "numeric_columns", "write_csv"]
