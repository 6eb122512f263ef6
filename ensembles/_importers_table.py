"""Bundles from tables of per-sample scores or predictions (CSV, Parquet, JSON lines)."""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._bundle import Bundle, BundleError
from ._importers import _read_jsonl

__all__ = ["from_table"]

PathLike = str | os.PathLike[str]

#: Column names taken as the sample id when ``sample_column`` is not given.
_ID_COLUMNS = ("sample", "sample_id", "idx", "id", "doc_id", "question_id")

_MISSING = {"", "nan", "na", "n/a", "null", "none"}


def from_table(
    path: PathLike,
    *,
    layout: str = "auto",
    sample_column: str | None = None,
    model_column: str = "model",
    score_column: str = "score",
    label_column: str | None = None,
    group_column: str | None = None,
    models: Sequence[str] | None = None,
    threshold: float | None = None,
    task: str | None = None,
) -> Bundle:
    """A bundle from a table of per-sample results, as routing benchmarks publish them.

    Two layouts are read:

    - **wide**: one row per sample, one column per model (every column that is not the sample,
      label or group column, or only those in ``models``);
    - **long**: one row per (model, sample) pair, with columns ``model_column``,
      ``sample_column`` and ``score_column``.

    Without ``label_column`` the values are per-sample quality scores in ``[0, 1]`` (1/0
    correctness, a judge's score, a win rate): the result is an open-ended bundle, and a missing
    value (empty cell, ``NaN``, ``null``, or a pair absent from a long table) means "not judged".
    With ``label_column`` the values are each model's predicted class (integers, ``-1`` or a
    missing value = no answer) and the column gives the true class: a labelled bundle.

    Files: ``.csv``/``.tsv`` (header row first; optionally gzipped), ``.parquet`` (needs
    ``pyarrow``), ``.jsonl``/``.jsonl.gz`` (one JSON object per row).

    Args:
        path: the table file.
        layout: ``"wide"``, ``"long"`` or ``"auto"`` (long when the table has ``model_column``
            and ``score_column``).
        sample_column: column of sample ids. Default: the first of ``sample``,
            ``sample_id``, ``idx``, ``id``, ``doc_id``, ``question_id`` present; a wide table
            without one uses row order, a long table needs one.
        model_column: long layout: column of model names.
        score_column: long layout: column of values.
        label_column: column of true classes; makes the values class predictions.
        group_column: optional column of per-sample groups (sub-task, category).
        models: wide layout: the model columns to read (default: every other column); long
            layout: the models to keep (default: all, in order of first appearance).
        threshold: open-ended bundles: quality at or above which an output is correct (0.5).
        task: task name of the bundle.

    Returns:
        A :class:`~ensembles.Bundle`; ``sample_ids`` from ``sample_column`` when given.

    Raises:
        BundleError: one line naming the file, the row and the column of a bad value, or a
            missing column, duplicate (model, sample) pair, or unreadable file.

    Example:
        >>> import pathlib, tempfile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "wide.csv"
        >>> _ = p.write_text("id,gpt,llama\\nq1,1,0\\nq2,0.5,\\nq3,0,1\\n")
        >>> b = from_table(p, sample_column="id")
        >>> b.models, b.errors.tolist()
        (('gpt', 'llama'), [[0, 0, 1], [1, 1, 0]])
    """
    p = Path(path)
    columns, rows, row_label = _read_rows(p)
    if layout not in ("auto", "wide", "long"):
        raise BundleError(f"layout: expected 'auto', 'wide' or 'long', got {layout!r}")
    if layout == "auto":
        layout = "long" if model_column in columns and score_column in columns else "wide"
    for name, col in (("label_column", label_column), ("group_column", group_column)):
        if col is not None and col not in columns:
            raise BundleError(f"{p}: {col}: no such column ({name}); columns: {_cols(columns)}")
    if layout == "long":
        return _long(
            p,
            columns,
            rows,
            row_label,
            sample_column,
            model_column,
            score_column,
            label_column,
            group_column,
            models,
            threshold,
            task,
        )
    return _wide(
        p,
        columns,
        rows,
        row_label,
        sample_column,
        label_column,
        group_column,
        models,
        threshold,
        task,
    )


# ---------------------------------------------------------------------------------- reading
def _read_rows(p: Path) -> tuple[list[str], list[dict[str, Any]], list[str]]:
    """Column names, rows as dicts, and how to name each row in a message."""
    if not p.exists():
        raise BundleError(f"{p}: no such file")
    if p.is_dir():
        raise BundleError(f"{p}: is a directory, not a table file")
    name = p.name.lower().removesuffix(".gz")
    if name.endswith(".parquet"):
        return _read_parquet(p)
    if name.endswith(".jsonl") or name.endswith(".json"):
        records = _read_jsonl(p)
        columns: list[str] = []
        rows, labels = [], []
        for line_no, rec in records:
            if not isinstance(rec, dict):
                raise BundleError(f"{p}: line {line_no}: expected a JSON object")
            for k in rec:
                if k not in columns:
                    columns.append(k)
            rows.append(rec)
            labels.append(f"line {line_no}")
        if not rows:
            raise BundleError(f"{p}: no rows")
        return columns, rows, labels
    if name.endswith(".csv") or name.endswith(".tsv"):
        return _read_csv(p, "\t" if name.endswith(".tsv") else ",")
    raise BundleError(f"{p}: unknown table format; use .csv, .tsv, .parquet or .jsonl")


def _read_csv(p: Path, delimiter: str) -> tuple[list[str], list[dict[str, Any]], list[str]]:
    try:
        raw = p.read_bytes()
        if p.name.lower().endswith(".gz"):
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BundleError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (OSError, EOFError) as exc:
        raise BundleError(f"{p}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        table = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    except csv.Error as exc:
        raise BundleError(f"{p}: not a readable CSV file ({exc})") from None
    table = [(i, r) for i, r in enumerate(table, start=1) if any(c.strip() for c in r)]
    if len(table) < 2:
        raise BundleError(f"{p}: needs a header row and at least one data row")
    header = [c.strip() for c in table[0][1]]
    if any(not c for c in header):
        raise BundleError(f"{p}: line {table[0][0]}: empty column name in the header")
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise BundleError(f"{p}: line {table[0][0]}: duplicate column {dup[0]!r}")
    rows, labels = [], []
    for line_no, r in table[1:]:
        if len(r) != len(header):
            raise BundleError(f"{p}: line {line_no}: {len(r)} fields, the header has {len(header)}")
        rows.append(dict(zip(header, r, strict=True)))
        labels.append(f"line {line_no}")
    return header, rows, labels


def _read_parquet(p: Path) -> tuple[list[str], list[dict[str, Any]], list[str]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise BundleError(
            f"{p}: reading Parquet needs the 'pyarrow' package (pip install pyarrow)"
        ) from None
    try:
        table = pq.read_table(p)
    except Exception as exc:  # any reader failure becomes one line
        text = " ".join(str(exc).split())[:160]
        raise BundleError(f"{p}: not a readable Parquet file ({text})") from None
    columns = [str(c) for c in table.column_names]
    data = table.to_pylist()
    if not data:
        raise BundleError(f"{p}: no rows")
    return columns, data, [f"row {i}" for i in range(1, len(data) + 1)]


# ---------------------------------------------------------------------------------- layouts
def _wide(
    p, columns, rows, row_label, sample_column, label_column, group_column, models, threshold, task
) -> Bundle:
    if sample_column is None:
        sample_column = next((c for c in _ID_COLUMNS if c in columns), None)
    if sample_column is not None and sample_column not in columns:
        raise BundleError(
            f"{p}: {sample_column}: no such column (sample_column); columns: {_cols(columns)}"
        )
    reserved = {sample_column, label_column, group_column}
    if models is None:
        model_cols = [c for c in columns if c not in reserved]
    else:
        model_cols = [str(m) for m in models]
        for m in model_cols:
            if m not in columns:
                raise BundleError(f"{p}: {m}: no such model column; columns: {_cols(columns)}")
    if len(model_cols) < 2:
        raise BundleError(
            f"{p}: needs at least 2 model columns, found {len(model_cols)} ({_cols(model_cols)})"
        )
    n = len(rows)
    values = np.zeros((len(model_cols), n))
    labels = np.zeros(n, dtype=np.int64) if label_column else None
    for j, row in enumerate(rows):
        where = f"{p}: {row_label[j]}"
        for m, col in enumerate(model_cols):
            values[m, j] = _value(row.get(col), f"{where}: {col}", predictions=bool(label_column))
        if label_column:
            labels[j] = _label(row.get(label_column), f"{where}: {label_column}")
    ids = _column(rows, sample_column)
    if ids is not None:
        _check_unique(p, ids, row_label, sample_column)
    return _build(
        p,
        model_cols,
        values,
        labels,
        ids,
        _column(rows, group_column),
        threshold,
        task,
        label_column,
    )


def _long(
    p,
    columns,
    rows,
    row_label,
    sample_column,
    model_column,
    score_column,
    label_column,
    group_column,
    models,
    threshold,
    task,
) -> Bundle:
    if sample_column is None:
        sample_column = next((c for c in _ID_COLUMNS if c in columns), None)
        if sample_column is None:
            raise BundleError(
                f"{p}: long table needs a sample column (sample_column=...); "
                f"columns: {_cols(columns)}"
            )
    for name, col in (
        ("sample_column", sample_column),
        ("model_column", model_column),
        ("score_column", score_column),
    ):
        if col not in columns:
            raise BundleError(f"{p}: {col}: no such column ({name}); columns: {_cols(columns)}")
    model_order: dict[str, int] = {}
    sample_order: dict[Any, int] = {}
    cells: dict[tuple[int, int], tuple[float, int]] = {}
    truth: dict[int, tuple[int, int]] = {}
    groups: dict[int, Any] = {}
    keep = None if models is None else {str(m) for m in models}
    for j, row in enumerate(rows):
        where = f"{p}: {row_label[j]}"
        model = row.get(model_column)
        if model is None or (isinstance(model, str) and not model.strip()):
            raise BundleError(f"{where}: {model_column}: empty model name")
        model = str(model)
        if keep is not None and model not in keep:
            continue
        sid = row.get(sample_column)
        if sid is None or (isinstance(sid, str) and not sid.strip()):
            raise BundleError(f"{where}: {sample_column}: empty sample id")
        m = model_order.setdefault(model, len(model_order))
        s = sample_order.setdefault(sid, len(sample_order))
        if (m, s) in cells:
            raise BundleError(
                f"{where}: {sample_column}: model {model!r} already has sample {sid!r} "
                f"({row_label[cells[(m, s)][1]]})"
            )
        value = _value(row.get(score_column), f"{where}: {score_column}", bool(label_column))
        cells[(m, s)] = (value, j)
        if label_column:
            lab = _label(row.get(label_column), f"{where}: {label_column}")
            if s in truth and truth[s][0] != lab:
                raise BundleError(
                    f"{where}: {label_column}: {lab} for sample {sid!r}, but "
                    f"{row_label[truth[s][1]]} says {truth[s][0]}"
                )
            truth[s] = (lab, j)
        if group_column:
            groups.setdefault(s, row.get(group_column))
    if keep is not None:
        missing = sorted(keep - set(model_order))
        if missing:
            raise BundleError(f"{p}: {model_column}: no rows for model {missing[0]!r}")
    if len(model_order) < 2:
        raise BundleError(f"{p}: {model_column}: need at least 2 models, found {len(model_order)}")
    fill = -1.0 if label_column else np.nan
    values = np.full((len(model_order), len(sample_order)), fill)
    for (m, s), (value, _) in cells.items():
        values[m, s] = value
    labels = None
    if label_column:
        labels = np.array([truth[s][0] for s in range(len(sample_order))], dtype=np.int64)
    ids = np.asarray(list(sample_order))
    group_arr = None
    if group_column:
        group_arr = np.asarray([str(groups[s]) for s in range(len(sample_order))])
    return _build(
        p, list(model_order), values, labels, ids, group_arr, threshold, task, label_column
    )


def _build(p, names, values, labels, ids, groups, threshold, task, label_column) -> Bundle:
    try:
        if label_column:
            if threshold is not None:
                raise BundleError("threshold: applies to quality tables (no label column)")
            return Bundle.create(
                models=names,
                labels=labels,
                preds=values.astype(np.int64),
                sample_ids=ids,
                groups=groups,
                task=task,
            )
        return Bundle.create(
            models=names,
            quality=values,
            threshold=threshold,
            sample_ids=ids,
            groups=groups,
            task=task,
        )
    except BundleError as exc:
        raise BundleError(f"{p}: {exc}") from None


# ---------------------------------------------------------------------------------- cells
def _value(cell: Any, where: str, predictions: bool) -> float:
    if cell is None or (isinstance(cell, str) and cell.strip().lower() in _MISSING):
        return -1.0 if predictions else math.nan
    if isinstance(cell, bool):
        if predictions:
            raise BundleError(f"{where}: expected a class index, got {cell}")
        return float(cell)
    if isinstance(cell, str):
        text = cell.strip()
        if text.lower() in ("true", "false") and not predictions:
            return 1.0 if text.lower() == "true" else 0.0
        try:
            cell = float(text)
        except ValueError:
            raise BundleError(f"{where}: {text[:30]!r} is not a number") from None
    if not isinstance(cell, int | float):
        raise BundleError(f"{where}: expected a number, got {type(cell).__name__}")
    value = float(cell)
    if math.isnan(value):
        return -1.0 if predictions else math.nan
    if predictions:
        if value != int(value) or value < -1:
            raise BundleError(f"{where}: {cell} is not a class index (integer >= -1)")
    elif not 0.0 <= value <= 1.0:
        raise BundleError(f"{where}: {cell} outside [0, 1]")
    return value


def _label(cell: Any, where: str) -> int:
    value = _value(cell, where, predictions=True)
    if value < 0:
        raise BundleError(f"{where}: missing or negative true class")
    return int(value)


def _column(rows: list[dict[str, Any]], col: str | None) -> np.ndarray | None:
    if col is None:
        return None
    values = [r.get(col) for r in rows]
    arr = np.asarray(values)
    if arr.dtype.kind == "O":
        arr = np.asarray([str(v) for v in values])
    return arr


def _check_unique(p: Path, ids: np.ndarray, row_label: list[str], col: str) -> None:
    seen: dict[Any, int] = {}
    for j, v in enumerate(ids.tolist()):
        if v in seen:
            raise BundleError(
                f"{p}: {row_label[j]}: {col}: sample {v!r} already on {row_label[seen[v]]}"
            )
        seen[v] = j


def _cols(columns: Sequence[str]) -> str:
    shown = ", ".join(map(str, columns[:12]))
    return shown + (f", ... ({len(columns) - 12} more)" if len(columns) > 12 else "")
