"""Open-ended bundles from AlpacaEval-style judged outputs."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._bundle import Bundle, BundleError
from ._importers_table import from_table

__all__ = ["from_alpaca_eval", "from_alpaca_eval_judged", "preference_to_win"]

PathLike = str | os.PathLike[str]

#: Default threshold of the AlpacaEval importers: an output is correct when it beats the
#: reference (a draw, 0.5, does not).
ALPACA_THRESHOLD = 1.0


def preference_to_win(preference: Any) -> float:
    """AlpacaEval's ``preference`` as the model's win against the reference, in ``[0, 1]``.

    ``1`` (reference better) → 0, ``2`` (model better) → 1, values in between (weighted
    annotators) → ``preference - 1``; ``0`` (the draw code of some annotators) → 0.5;
    ``None``/NaN (no judgment) → NaN.

    Raises:
        ValueError: any other value.

    Example:
        >>> [preference_to_win(p) for p in (1, 2, 1.5, 0, 1.75)]
        [0.0, 1.0, 0.5, 0.5, 0.75]
    """
    if preference is None:
        return math.nan
    if isinstance(preference, bool) or not isinstance(preference, int | float):
        raise ValueError(f"expected a number, got {json.dumps(preference, default=str)[:30]}")
    value = float(preference)
    if math.isnan(value):
        return math.nan
    if value == 0:
        return 0.5
    if not 1.0 <= value <= 2.0:
        raise ValueError(f"{value:g} is not 0 (draw) nor in [1, 2]")
    return value - 1.0


def from_alpaca_eval(
    runs: Mapping[str, PathLike] | Sequence[PathLike],
    *,
    threshold: float = ALPACA_THRESHOLD,
    task: str | None = None,
) -> Bundle:
    """An open-ended bundle from AlpacaEval results of several models.

    AlpacaEval writes, for a model, ``model_outputs.json`` (a list of ``{"instruction",
    "output", "generator", "dataset"}``) and, per annotator, ``annotations.json`` (a list of
    ``{"instruction", "output_1", "generator_1", "output_2", "generator_2", "preference",
    ...}``, where ``output_1`` is the reference and ``output_2`` the model's). The quality of the
    model on an instruction is its win against the reference: ``preference`` 1 → 0, 2 → 1,
    draws → 0.5, missing → NaN (not judged); see :func:`preference_to_win`.

    Samples are the instructions, aligned across models by their text, in order of first
    appearance (the first model's ``model_outputs.json`` order when present). An instruction a
    model has no judgment for is "not judged" for that model.

    Args:
        runs: ``{model name: path}``, or a sequence of paths. A path is an ``annotations.json``
            file or a folder holding one (searched recursively) and optionally
            ``model_outputs.json``. Unnamed runs are named by ``generator_2``.
        threshold: quality at or above which an output counts as correct; the default 1.0
            counts wins only (pass 0.5 to count draws as correct too).
        task: task name of the bundle.

    Returns:
        An open-ended :class:`~ensembles.Bundle`: ``quality`` (M, N), ``sample_ids`` = the
        instruction's position, ``groups`` = the ``dataset`` field when present.

    Raises:
        BundleError: one line naming the file, the item and the field of a malformed file, or
            two runs with the same name, or a model whose annotations judge another generator.

    Example:
        >>> b = from_alpaca_eval(["results/gpt4", "results/llama"])  # doctest: +SKIP
        >>> b.quality.shape  # doctest: +SKIP
        (2, 805)
    """
    if isinstance(runs, str | os.PathLike):
        raise BundleError("runs: pass one run per model (a mapping or a list of paths)")
    items = list(runs.items()) if isinstance(runs, Mapping) else [(None, r) for r in runs]
    if len(items) < 2:
        raise BundleError(f"runs: need at least 2 models, got {len(items)}")
    order: dict[str, int] = {}
    dataset: dict[int, str] = {}
    judged: list[tuple[str, dict[int, float]]] = []
    for given, path in items:
        ann_path, out_path = _locate(Path(path))
        annotations = _read_list(ann_path, ("instruction", "preference"))
        generators = {str(a.get("generator_2")) for a in annotations if a.get("generator_2")}
        if given is None:
            if len(generators) != 1:
                raise BundleError(
                    f"{ann_path}: generator_2: cannot name the model "
                    f"({len(generators)} generators); pass a mapping of names"
                )
            name = generators.pop()
        else:
            name = str(given)
            if len(generators) > 1:
                raise BundleError(
                    f"{ann_path}: generator_2: judges several models "
                    f"({', '.join(sorted(generators)[:4])}); give one annotations file per model"
                )
        if out_path is not None:
            for rec in _read_list(out_path, ("instruction",)):
                s = order.setdefault(rec["instruction"], len(order))
                if isinstance(rec.get("dataset"), str):
                    dataset.setdefault(s, rec["dataset"])
        wins: dict[int, float] = {}
        for k, rec in enumerate(annotations, start=1):
            s = order.setdefault(rec["instruction"], len(order))
            if isinstance(rec.get("dataset"), str):
                dataset.setdefault(s, rec["dataset"])
            try:
                win = preference_to_win(rec["preference"])
            except ValueError as exc:
                raise BundleError(f"{ann_path}: item {k}: preference: {exc}") from None
            if s in wins and not (math.isnan(win) and math.isnan(wins[s])) and wins[s] != win:
                raise BundleError(
                    f"{ann_path}: item {k}: instruction: judged twice with different preferences"
                )
            wins[s] = win
        if any(n == name for n, _ in judged):
            raise BundleError(f"runs: two runs are named {name!r}; pass a mapping of names")
        judged.append((name, wins))
    quality = np.full((len(judged), len(order)), np.nan)
    for m, (_, wins) in enumerate(judged):
        for s, win in wins.items():
            quality[m, s] = win
    groups = None
    if len(dataset) == len(order):
        groups = np.asarray([dataset[s] for s in range(len(order))])
    return Bundle.create(
        models=[n for n, _ in judged],
        quality=quality,
        threshold=threshold,
        sample_ids=np.arange(len(order)),
        groups=groups,
        task=task,
    )


def from_alpaca_eval_judged(
    path: PathLike,
    *,
    models: Sequence[str] | None = None,
    threshold: float = ALPACA_THRESHOLD,
    task: str | None = "alpaca_eval",
) -> Bundle:
    """An open-ended bundle from a long JSON-lines file of judged outputs.

    Each line is ``{"model": ..., "idx": ..., "win": ...}`` (other fields are ignored), where
    ``win`` is 1 (beats the reference), 0.5 (draw), 0 (loses) or null (not judged). This is the
    layout of the AlpacaEval-1 GPT-4-judged file shipped with the project's shared data.

    Args:
        path: the ``.jsonl`` or ``.jsonl.gz`` file.
        models: the models to keep (default: all, in order of first appearance).
        threshold: quality at or above which an output counts as correct (default 1.0: wins).
        task: task name of the bundle.

    Returns:
        An open-ended :class:`~ensembles.Bundle` with ``sample_ids`` = ``idx``.

    Raises:
        BundleError: one line naming the file, line and field of a bad row.

    Example:
        >>> b = from_alpaca_eval_judged(
        ...     "../shared/data/alignment/alpaca_eval1_gpt4_judged.jsonl.gz")  # doctest: +SKIP
        >>> b.quality.shape  # doctest: +SKIP
        (53, 805)
    """
    return from_table(
        path,
        layout="long",
        sample_column="idx",
        model_column="model",
        score_column="win",
        models=models,
        threshold=threshold,
        task=task,
    )


# ---------------------------------------------------------------------------------- files
def _locate(path: Path) -> tuple[Path, Path | None]:
    if not path.exists():
        raise BundleError(f"{path}: no such file or folder")
    if path.is_file():
        outputs = path.parent / "model_outputs.json"
        if not outputs.is_file():
            outputs = path.parent.parent / "model_outputs.json"
        return path, outputs if outputs.is_file() else None
    found = sorted(path.rglob("annotations.json"))
    if not found:
        raise BundleError(f"{path}: no annotations.json inside")
    if len(found) > 1:
        listing = ", ".join(str(f.relative_to(path)) for f in found[:4])
        raise BundleError(f"{path}: several annotations.json ({listing}); pass one file")
    outputs = path / "model_outputs.json"
    return found[0], outputs if outputs.is_file() else None


def _read_list(path: Path, required: tuple[str, ...]) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise BundleError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: bad JSON ({exc.msg} at line {exc.lineno})") from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not isinstance(data, list) or not data:
        raise BundleError(f"{path}: expected a non-empty JSON list of objects")
    for k, rec in enumerate(data, start=1):
        if not isinstance(rec, dict):
            raise BundleError(f"{path}: item {k}: expected a JSON object")
        for key in required:
            if key not in rec:
                raise BundleError(f"{path}: item {k}: {key}: missing")
        if not isinstance(rec["instruction"], str):
            raise BundleError(f"{path}: item {k}: instruction: expected a string")
    return data
