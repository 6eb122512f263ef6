"""Bundles from lm-evaluation-harness ``--log_samples`` output (one run per model)."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._bundle import Bundle, BundleError
from ._importers import _read_jsonl

__all__ = ["from_lm_eval"]

PathLike = str | os.PathLike[str]

# samples_<task>_<timestamp>.jsonl, the timestamp as lm-eval writes it (2024-05-01T12-30-45.123)
_SAMPLES_NAME = re.compile(r"^samples_(?P<task>.+?)_(?P<date>\d{4}-\d{2}-\d{2}T[\d.\-]+)\.jsonl$")


def from_lm_eval(
    runs: Mapping[str, PathLike] | Sequence[PathLike],
    *,
    task: str | None = None,
    metric: str | None = None,
    filter: str | None = None,  # noqa: A002 - lm-eval's own name for it
    normalize: bool = False,
    common_only: bool = False,
    threshold: float | None = None,
) -> Bundle:
    """A bundle from the per-sample logs that ``lm_eval ... --log_samples`` writes.

    lm-evaluation-harness writes, for each task, a file ``samples_<task>_<timestamp>.jsonl``
    under ``<output_path>/<model>/``. Each line is one document: ``doc_id``, ``doc``,
    ``target``, ``arguments``, ``resps``, ``filtered_resps``, the per-sample metrics (``acc``,
    ``exact_match``, ...) and, in recent versions, ``filter`` and ``metrics``. Give one run per
    model; documents are aligned by ``doc_id``.

    - **Multiple-choice tasks** (``filtered_resps`` holds one ``[log-likelihood, is_greedy]``
      pair per choice; numbers may be written as strings) give a labelled bundle: ``probs`` is
      the softmax of each model's per-choice log-likelihoods (so ``preds`` is the choice with
      the highest log-likelihood, as lm-eval's ``acc``), and ``labels`` is ``target`` (a choice
      index, or the text of one choice). Documents with fewer choices than others get zero
      scores for the missing ones.
    - **Generation tasks** (``filtered_resps`` holds the generated text) give an open-ended
      bundle whose ``quality`` is a per-sample metric in ``[0, 1]`` (default ``exact_match``).

    Args:
        runs: ``{model name: path}``, or a sequence of paths named after their folder (the
            folder lm-eval names after the model). A path is a ``samples_*.jsonl`` file or a
            folder searched recursively for them.
        task: the task to read when a folder holds several; the newest file of the task is used.
        metric: generation tasks: the per-sample field to use as quality (default
            ``exact_match``).
        filter: the filter to read when the logs hold several (e.g. ``strict-match``).
        normalize: multiple-choice: divide each log-likelihood by the byte length of its choice
            text before the softmax (lm-eval's ``acc_norm`` choice).
        common_only: keep only the documents every model has (default: refuse differing sets).
        threshold: generation tasks: quality at or above which an output is correct (0.5).

    Returns:
        A :class:`~ensembles.Bundle` with ``sample_ids`` = ``doc_id`` (ascending) and ``task``.

    Raises:
        BundleError: one line naming the file, the line and the field of a malformed log, or
            the problem with the request (unknown task, filter or metric, documents that differ
            between models).

    Example:
        >>> b = from_lm_eval({"llama": "out/llama", "qwen": "out/qwen"},
        ...                  task="arc_easy")  # doctest: +SKIP
        >>> b.probs.shape  # doctest: +SKIP
        (2, 2376, 4)
    """
    named = _named_runs(runs)
    logs = []
    tasks = set()
    for name, path in named:
        file, task_name = _samples_file(Path(path), task)
        if task_name is not None:
            tasks.add(task_name)
        logs.append((name, file, _read_log(file, filter)))
    if len(tasks) > 1:
        raise BundleError(
            f"task: the runs are of different tasks ({', '.join(sorted(tasks))}); pass task=..."
        )
    kinds = {log.kind for _, _, log in logs}
    if len(kinds) > 1:
        raise BundleError(
            "runs: some logs are multiple-choice and some are generation: "
            + ", ".join(f"{n}: {log.kind}" for n, _, log in logs)
        )
    doc_ids = _aligned_ids(logs, common_only)
    names = [n for n, _, _ in logs]
    task_name = tasks.pop() if tasks else None
    if kinds == {"choice"}:
        if metric is not None or threshold is not None:
            raise BundleError(
                "metric: multiple-choice logs give probs and labels; metric and threshold apply "
                "to generation tasks"
            )
        return _choice_bundle(logs, names, doc_ids, task_name, normalize)
    if normalize:
        raise BundleError("normalize: applies to multiple-choice logs only")
    return _generation_bundle(logs, names, doc_ids, task_name, metric, threshold)


# ---------------------------------------------------------------------------------- locating
def _named_runs(runs: Any) -> list[tuple[str, PathLike]]:
    if isinstance(runs, Mapping):
        pairs = [(str(k), v) for k, v in runs.items()]
    elif isinstance(runs, str | os.PathLike):
        raise BundleError("runs: pass one run per model (a mapping or a list of paths)")
    else:
        pairs = []
        for path in runs:
            p = Path(path)
            pairs.append(((p if p.is_dir() else p.parent).resolve().name or str(p), path))
    if len(pairs) < 2:
        raise BundleError(f"runs: need at least 2 models, got {len(pairs)}")
    seen: dict[str, PathLike] = {}
    for name, path in pairs:
        if name in seen:
            raise BundleError(
                f"runs: two runs are named {name!r} ({seen[name]} and {path}); name them "
                "explicitly (NAME=PATH on the command line, a mapping in Python)"
            )
        seen[name] = path
    return pairs


def _samples_file(path: Path, task: str | None) -> tuple[Path, str | None]:
    if not path.exists():
        raise BundleError(f"{path}: no such file or folder")
    if path.is_file():
        m = _SAMPLES_NAME.match(path.name)
        if m is None:  # a renamed file: its task is unknown
            return path, task
        if task is not None and m.group("task") != task:
            raise BundleError(f"{path}: holds task {m.group('task')!r}, not {task!r}")
        return path, m.group("task")
    found: dict[str, list[tuple[str, Path]]] = {}
    for f in sorted(path.rglob("samples_*.jsonl")):
        m = _SAMPLES_NAME.match(f.name)
        if m:
            found.setdefault(m.group("task"), []).append((m.group("date"), f))
    if not found:
        raise BundleError(
            f"{path}: no samples_<task>_<date>.jsonl file (run lm_eval --log_samples)"
        )
    if task is None:
        if len(found) > 1:
            listing = ", ".join(sorted(found)[:20])
            raise BundleError(f"{path}: holds several tasks ({listing}); pass task=...")
        task = next(iter(found))
    if task not in found:
        listing = ", ".join(sorted(found)[:20])
        raise BundleError(f"{path}: no samples file for task {task!r}; tasks: {listing}")
    return max(found[task])[1], task  # the newest run of the task


# ---------------------------------------------------------------------------------- one log
class _Log:
    """The documents of one samples file: kind, targets, per-choice scores or metrics."""

    def __init__(self, path: Path, kind: str):
        self.path = path
        self.kind = kind  # "choice" or "generation"
        self.rows: dict[int, dict[str, Any]] = {}  # doc_id -> parsed row
        self.line: dict[int, int] = {}  # doc_id -> line number


def _read_log(path: Path, filter_name: str | None) -> _Log:
    records = _read_jsonl(path)
    if not records:
        raise BundleError(f"{path}: no records")
    for line_no, rec in records:
        if not isinstance(rec, dict):
            raise BundleError(f"{path}: line {line_no}: expected a JSON object")
    filters = sorted({str(rec["filter"]) for _, rec in records if "filter" in rec})
    if filter_name is not None:
        if not filters:
            raise BundleError(f"{path}: filter: the log names no filters (no 'filter' field)")
        if filter_name not in filters:
            raise BundleError(
                f"{path}: filter: no rows with filter {filter_name!r}; filters: "
                + ", ".join(filters)
            )
        records = [(n, r) for n, r in records if r.get("filter") == filter_name]
    elif len(filters) > 1:
        raise BundleError(
            f"{path}: filter: the log holds several filters ({', '.join(filters)}); choose one"
        )
    log: _Log | None = None
    for line_no, rec in records:
        where = f"{path}: line {line_no}"
        doc_id = rec.get("doc_id")
        if isinstance(doc_id, bool) or not isinstance(doc_id, int):
            raise BundleError(f"{where}: doc_id: expected an integer, got {_show(doc_id)}")
        resps = _responses(rec, where)
        kind = "generation" if isinstance(resps[0], str) else "choice"
        if log is None:
            log = _Log(path, kind)
        elif kind != log.kind:
            raise BundleError(
                f"{where}: filtered_resps: a {kind} record in a {log.kind} log (line "
                f"{next(iter(log.line.values()))})"
            )
        if doc_id in log.rows:
            raise BundleError(
                f"{where}: doc_id: {doc_id} already on line {log.line[doc_id]} (several filters "
                "in one file without a 'filter' field?)"
            )
        log.line[doc_id] = line_no
        log.rows[doc_id] = _parse_row(rec, resps, kind, where)
    assert log is not None
    return log


def _responses(rec: dict[str, Any], where: str) -> list[Any]:
    if "filtered_resps" in rec:
        resps, field = rec["filtered_resps"], "filtered_resps"
    elif "resps" in rec:  # one list of repeats per request: take the first repeat
        field = "resps"
        raw = rec["resps"]
        if not isinstance(raw, list) or not all(isinstance(r, list) and r for r in raw):
            raise BundleError(f"{where}: resps: expected a list of non-empty lists")
        resps = [r[0] for r in raw]
    else:
        raise BundleError(f"{where}: filtered_resps: missing (and no resps)")
    if not isinstance(resps, list) or not resps:
        raise BundleError(f"{where}: {field}: expected a non-empty list")
    if isinstance(resps[0], str):
        if len(resps) != 1:
            raise BundleError(f"{where}: {field}: expected one generated text, got {len(resps)}")
        return resps
    return [_loglik(r, f"{where}: {field}[{i}]") for i, r in enumerate(resps)]


def _loglik(value: Any, where: str) -> float:
    if isinstance(value, list | tuple) and len(value) == 2:
        value = value[0]
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise BundleError(f"{where}: log-likelihood {_show(value)} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BundleError(f"{where}: expected [log-likelihood, is_greedy], got {_show(value)}")
    value = float(value)
    if math.isnan(value) or value > 0:
        raise BundleError(f"{where}: log-likelihood {value} must be <= 0")
    return value


def _parse_row(rec: dict[str, Any], resps: list[Any], kind: str, where: str) -> dict[str, Any]:
    if kind == "generation":
        return {"record": rec}
    texts = _choice_texts(rec.get("arguments"), len(resps))
    target = rec.get("target")
    if isinstance(target, list) and len(target) == 1:
        target = target[0]
    if isinstance(target, bool) or target is None:
        raise BundleError(f"{where}: target: expected a choice index, got {_show(target)}")
    if isinstance(target, str) and target.strip().lstrip("-").isdigit():
        target = int(target.strip())
    if isinstance(target, str):
        matches = [i for i, t in enumerate(texts or []) if t.strip() == target.strip()]
        if len(matches) != 1:
            raise BundleError(
                f"{where}: target: {_show(target)} is not a choice index nor the text of one choice"
            )
        target = matches[0]
    if not isinstance(target, int) or not 0 <= target < len(resps):
        raise BundleError(f"{where}: target: {_show(target)} out of range for {len(resps)} choices")
    return {"target": target, "logliks": resps, "texts": texts}


def _choice_texts(arguments: Any, n: int) -> list[str] | None:
    """The continuation text of each choice, from ``arguments`` (list or dict form)."""
    if isinstance(arguments, dict):  # {"gen_args_0": {"arg_0": context, "arg_1": choice}, ...}
        items = [arguments[k] for k in sorted(arguments, key=_trailing_int)]
        args = [[v.get("arg_0"), v.get("arg_1")] if isinstance(v, dict) else v for v in items]
    else:
        args = arguments
    if not isinstance(args, list) or len(args) != n:
        return None
    texts = []
    for a in args:
        if not isinstance(a, list | tuple) or len(a) < 2 or not isinstance(a[1], str):
            return None
        texts.append(a[1])
    return texts


def _trailing_int(key: str) -> int:
    m = re.search(r"(\d+)$", key)
    return int(m.group(1)) if m else 0


# ---------------------------------------------------------------------------------- bundles
def _aligned_ids(logs: list[tuple[str, Path, _Log]], common_only: bool) -> list[int]:
    sets = [set(log.rows) for _, _, log in logs]
    common = set.intersection(*sets)
    if not common_only:
        for (name, path, _log), ids in zip(logs, sets, strict=True):
            extra = sorted(ids - common)
            if extra:
                other = next(
                    n for (n, _, _), s in zip(logs, sets, strict=True) if extra[0] not in s
                )
                raise BundleError(
                    f"{path}: doc_id: {len(extra)} document(s) of model {name!r} are missing "
                    f"from model {other!r} (first: doc_id {extra[0]}); pass common_only=True to "
                    "keep the shared ones"
                )
    if not common:
        raise BundleError("runs: the models share no doc_id")
    return sorted(common)


def _choice_bundle(logs, names, doc_ids, task, normalize) -> Bundle:
    n_choices = {}
    labels = np.zeros(len(doc_ids), dtype=np.int64)
    for j, d in enumerate(doc_ids):
        first_name, first_path, first = logs[0]
        row0 = first.rows[d]
        n_choices[d] = len(row0["logliks"])
        labels[j] = row0["target"]
        for _name, path, log in logs[1:]:
            row = log.rows[d]
            where = f"{path}: line {log.line[d]}"
            if len(row["logliks"]) != n_choices[d]:
                raise BundleError(
                    f"{where}: filtered_resps: {len(row['logliks'])} choices for doc_id {d}, "
                    f"model {first_name!r} has {n_choices[d]}"
                )
            if row["target"] != row0["target"]:
                raise BundleError(
                    f"{where}: target: {row['target']} for doc_id {d}, model {first_name!r} "
                    f"has {row0['target']}"
                )
    c = max(n_choices.values())
    probs = np.zeros((len(logs), len(doc_ids), c))
    for m, (_, path, log) in enumerate(logs):
        for j, d in enumerate(doc_ids):
            row = log.rows[d]
            ll = np.asarray(row["logliks"], dtype=np.float64)
            if normalize:
                if row["texts"] is None:
                    raise BundleError(
                        f"{path}: line {log.line[d]}: arguments: no choice texts to normalize by"
                    )
                ll = ll / np.maximum([len(t.encode("utf-8")) for t in row["texts"]], 1)
            z = np.exp(ll - ll.max())
            probs[m, j, : len(z)] = z / z.sum()
    try:
        return Bundle.create(
            models=names,
            labels=labels,
            probs=probs,
            sample_ids=np.asarray(doc_ids, dtype=np.int64),
            task=task,
        )
    except BundleError as exc:
        raise BundleError(f"{logs[0][1]}: {exc}") from None


def _generation_bundle(logs, names, doc_ids, task, metric, threshold) -> Bundle:
    quality = np.zeros((len(logs), len(doc_ids)))
    for m, (_, path, log) in enumerate(logs):
        for j, d in enumerate(doc_ids):
            rec = log.rows[d]["record"]
            where = f"{path}: line {log.line[d]}"
            key = metric or _default_metric(rec, where)
            if key not in rec:
                numeric = [k for k, v in rec.items() if _is_number(v)]
                raise BundleError(
                    f"{where}: {key}: missing; numeric fields: {', '.join(numeric) or 'none'}"
                )
            value = rec[key]
            if isinstance(value, list) and len(value) == 1:
                value = value[0]
            if not _is_number(value) or not 0 <= float(value) <= 1:
                raise BundleError(
                    f"{where}: {key}: expected a number in [0, 1], got {_show(value)}"
                )
            quality[m, j] = float(value)
    try:
        return Bundle.create(
            models=names,
            quality=quality,
            threshold=threshold,
            sample_ids=np.asarray(doc_ids, dtype=np.int64),
            task=task,
        )
    except BundleError as exc:
        raise BundleError(f"{logs[0][1]}: {exc}") from None


def _default_metric(rec: dict[str, Any], where: str) -> str:
    if "exact_match" in rec:
        return "exact_match"
    listed = rec.get("metrics")
    if isinstance(listed, list) and listed and isinstance(listed[0], str):
        return listed[0]
    numeric = [k for k, v in rec.items() if _is_number(v) and k != "doc_id"]
    raise BundleError(
        f"{where}: exact_match: missing; choose a metric among: {', '.join(numeric) or 'none'}"
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(float(value))


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."
