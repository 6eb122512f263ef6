"""HQ-Ensemble hierarchical pruning (ICDM'21), as the paper intends (docs/compat.md).

Low diversity is inherited upward: when a small team is among the least diverse of its size,
every larger team containing it is pruned without being considered (Apriori-style). Teams are
scored by the FQ scores of the EnsembleBench pipeline (:func:`focal.compat.fq_scores`, steps 1–4
without the per-focal KMeans prefilter), so every FQ switch (``estimator``, ``member_weights``,
``constant_group``, ``sign_convention``, ...) applies here too and is recorded in the result.

The reference script (git-disl/HQ-Ensemble) has bugs that are **not** reproduced and have no
faithful switch (docs/compat.md): Python-2 constructs, lookups in the wrong metric's
dictionary, a stale or undefined slice index when no team is pruned at a level (``p = 0``), an
undefined statistics call, and train labels read from the test file. Its use of test accuracy in
the ordering is leakage; here the ordering uses the selection bundle only.

References:
    Yanzhao Wu, Ling Liu. "Boosting Deep Ensemble Performance with Hierarchical Pruning."
    IEEE ICDM 2021 (HQ-Ensemble). Code: git-disl/HQ-Ensemble.
    Yanzhao Wu, Ling Liu, Zhongwei Xie, Ka-Ho Chow, Wenqi Wei. "Boosting Ensemble Accuracy by
    Revisiting Ensemble Diversity Metrics." CVPR 2021 (the FQ scores).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ensembles import Bundle
from ensembles.util import InputError

from ._compat_ensemblebench import (
    FQ_MAX_TEAMS,
    FQOptions,
    TeamSelection,
    _bitmasks,
    _code,
    _EvalContext,
    _Pool,
    _selection,
)
from ._metrics import metric_spec
from ._objective import Objective
from ._teams import parse_sizes
from ._types import Selection, make_teams

__all__ = [
    "HQLevel",
    "HQMetricResult",
    "HQResult",
    "hq_search",
    "hq_select",
]

HQ_METRICS = ("CK", "BD", "KW", "GD")


@dataclasses.dataclass(frozen=True)
class HQLevel:
    """What hierarchical pruning did at one team size.

    Attributes:
        size: team size ``L``.
        n_teams: teams of that size (the full team excluded).
        n_skipped: teams never considered because they contain a pruned team.
        n_considered: candidates (``n_teams − n_skipped``).
        n_pruned: ``⌊prune_rate · n_considered⌋`` least diverse candidates, pruned.
        n_selected: the other candidates, selected.
    """

    size: int
    n_teams: int
    n_skipped: int
    n_considered: int
    n_pruned: int
    n_selected: int

    def to_dict(self) -> dict[str, int]:
        """Plain dict."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, eq=False)
class HQMetricResult:
    """HQ pruning for one metric.

    Attributes:
        selected: the selected teams (union over levels), canonical order, with FQ scores,
            selection accuracies and statistics.
        pruned_masks: the pruned teams, ``(P, M)`` booleans, in the order they were pruned.
        levels: one :class:`HQLevel` per size (empty for the mean-threshold variant).
    """

    selected: TeamSelection
    pruned_masks: np.ndarray
    levels: tuple[HQLevel, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = self.selected.to_dict()
        out["n_pruned"] = int(len(self.pruned_masks))
        out["levels"] = [lv.to_dict() for lv in self.levels]
        return out


@dataclasses.dataclass(frozen=True, eq=False)
class HQResult:
    """Result of :func:`hq_select`.

    Attributes:
        variant: ``"rate"`` (hierarchical) or ``"mean"`` (mean threshold).
        prune_rate, target_size: the hierarchical parameters (``target_size`` as used, at most
            ``M − 1``).
        mode, options: the FQ mode and switches (see :class:`focal.compat.FQOptions`).
        seed: seed of the FQ estimator and of the random baselines.
        models: model names.
        combiner: the combiner actually used for accuracies.
        eval_split: ``"selection"`` when statistics are on the selection bundle, else ``"eval"``.
        metrics: ``{code: HQMetricResult}``.
        n_teams_scored: teams FQ-scored per metric.
        flags: notes on degenerate cases.
    """

    variant: str
    prune_rate: float
    target_size: int
    mode: str
    options: FQOptions
    seed: int
    models: tuple[str, ...]
    combiner: str
    eval_split: str
    metrics: Mapping[str, HQMetricResult]
    n_teams_scored: int
    flags: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict recording the variant, the mode and every option."""
        return {
            "method": f"hq_{self.variant}",
            "variant": self.variant,
            "prune_rate": self.prune_rate,
            "target_size": self.target_size,
            "mode": self.mode,
            "options": self.options.to_dict(),
            "seed": self.seed,
            "models": list(self.models),
            "combiner": self.combiner,
            "eval_split": self.eval_split,
            "n_teams_scored": self.n_teams_scored,
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            "flags": list(self.flags),
        }


def _least_diverse_first(fq: np.ndarray, acc: np.ndarray, rows: np.ndarray, convention: str):
    """Order of ``rows``: least diverse first (main: FQ descending; NaN first), ties by
    accuracy ascending, then canonical order. FQ compared at 10 decimals."""
    key = np.round(fq, 10)
    key = -key if convention == "main" else key
    key = np.where(np.isnan(key), -np.inf, key)  # an undefined FQ is the least diverse
    return np.lexsort((rows, acc, key))


def _hierarchical(pool: _Pool, code: str, fq: np.ndarray, prune_rate: float, target: int):
    convention = pool.options.sign_convention
    bits = _bitmasks(pool.masks)
    pruned_bits: list[int] = []
    pruned_rows: list[np.ndarray] = []
    selected_rows: list[np.ndarray] = []
    levels = []
    for size in range(2, target + 1):
        rows = np.flatnonzero(pool.team_size == size)
        contains = np.zeros(rows.size, dtype=bool)
        for p in pruned_bits:  # Apriori: a superset of a pruned team is never considered
            contains |= (bits[rows] & p) == p
        cand = rows[~contains]
        order = cand[_least_diverse_first(fq[cand], pool.acc[cand], cand, convention)]
        n_prune = math.floor(prune_rate * cand.size)
        pruned_rows.append(order[:n_prune])
        selected_rows.append(order[n_prune:])  # p = 0 keeps every candidate
        pruned_bits.extend(bits[order[:n_prune]].tolist())
        levels.append(
            HQLevel(
                size=size,
                n_teams=int(rows.size),
                n_skipped=int(contains.sum()),
                n_considered=int(cand.size),
                n_pruned=int(n_prune),
                n_selected=int(cand.size - n_prune),
            )
        )
    sel = np.sort(np.concatenate(selected_rows)) if selected_rows else np.zeros(0, np.int64)
    pru = np.concatenate(pruned_rows) if pruned_rows else np.zeros(0, np.int64)
    return sel, pru, tuple(levels)


def _mean_threshold(pool: _Pool, fq: np.ndarray):
    ok = ~np.isnan(fq)
    if not ok.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    thr = float(np.round(fq[ok].mean(), 3))
    with np.errstate(invalid="ignore"):
        keep = fq < thr if pool.options.sign_convention == "main" else fq > thr
    return np.flatnonzero(keep), np.flatnonzero(~keep)


def hq_select(
    bundle_select: Bundle,
    *,
    metrics: Sequence[str] = HQ_METRICS,
    prune_rate: float = 0.1,
    target_size: int = 5,
    variant: str = "rate",
    seed: int = 0,
    faithful: bool = False,
    bundle_eval: Bundle | None = None,
    random_baseline: bool = True,
    max_teams: int | None = FQ_MAX_TEAMS,
    **fq_options: Any,
) -> HQResult:
    """HQ-Ensemble hierarchical pruning on FQ scores (docs/compat.md, as intended).

    Per metric: ``pruned = selected = ∅``; for ``L = 2 … target_size``: the candidates are the
    teams of size ``L`` containing no pruned team; order them least → most diverse (FQ
    descending in the main convention, ties by selection accuracy ascending, then canonical
    order); prune the first ``p = ⌊prune_rate · |candidates|⌋`` and select the rest. The result
    is the union of the selected teams over levels. The ``"mean"`` variant instead selects every
    team of sizes 2..M-1 with ``FQ < round(mean FQ, 3)`` (``>`` in the dev convention).

    Args:
        bundle_select: outputs on the selection split (the reference uses train outputs for
            diversity; pass whichever split chooses).
        metrics: EnsembleBench codes; HQ-Ensemble uses CK, BD, KW and GD.
        prune_rate: fraction of each level's candidates pruned, in ``[0, 1]``.
        target_size: the largest team size considered (clipped to ``M − 1``; the full team is
            always excluded).
        variant: ``"rate"`` (hierarchical) or ``"mean"``.
        seed: seed of the subsampled estimator (when chosen) and of the random baselines.
        faithful: start the FQ switches from the faithful preset (:class:`focal.compat.FQOptions`).
        bundle_eval: bundle the statistics are reported on (default ``bundle_select``).
        random_baseline: add statistics of a random set of equal size to every selection.
        max_teams: refuse pools with more teams than this.
        **fq_options: switches of :class:`focal.compat.FQOptions` (``estimator``,
            ``member_weights``, ``constant_group``, ``sign_convention``, ``acc_source``,
            ``combiner``, ...);
            KMeans and baseline switches have no effect here.

    Returns:
        An :class:`HQResult` with, per metric, the selected teams, the pruned teams, counts
        per level and statistics.

    References:
        Wu & Liu, "Boosting Deep Ensemble Performance with Hierarchical Pruning", ICDM 2021.

    Example:
        >>> import ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b", "c", "d", "e"], labels=[0] * 8,
        ...     preds=[[1, 1, 0, 0, 0, 0, 1, 0], [0, 1, 1, 0, 0, 0, 0, 1],
        ...            [0, 0, 1, 1, 0, 1, 0, 0], [1, 0, 0, 0, 1, 1, 0, 0],
        ...            [1, 1, 0, 0, 0, 0, 0, 1]])
        >>> res = hq_select(b, metrics=("GD",), prune_rate=0.2, target_size=4)
        >>> [(lv.size, lv.n_considered, lv.n_pruned) for lv in res.metrics["GD"].levels]
        [(2, 10, 2), (3, 5, 1), (4, 0, 0)]
    """
    if variant not in ("rate", "mean"):
        raise InputError(f"variant: unknown variant {variant!r}; use rate or mean")
    rate = float(prune_rate)
    if not 0.0 <= rate <= 1.0:
        raise InputError(f"prune_rate: must be in [0, 1], got {prune_rate}")
    m = bundle_select.n_models
    if m < 3:
        raise InputError("models: HQ pruning needs at least 3 models (sizes 2..M-1)")
    if isinstance(target_size, bool) or int(target_size) != target_size or target_size < 2:
        raise InputError(f"target_size: must be an integer ≥ 2, got {target_size!r}")
    target = min(int(target_size), m - 1)
    codes = tuple(dict.fromkeys(_code(c) for c in metrics))
    if not codes:
        raise InputError("metrics: give at least one EnsembleBench metric")
    opts = FQOptions.resolve(faithful=faithful, **fq_options)
    sizes = tuple(range(2, target + 1)) if variant == "rate" else tuple(range(2, m))
    pool = _Pool(bundle_select, sizes, opts, seed, max_teams)
    evaluation = bundle_eval if bundle_eval is not None else bundle_select
    if evaluation.models != bundle_select.models:
        raise InputError("bundle_eval: its models differ from bundle_select's")
    ctx = _EvalContext(evaluation, opts.combiner, opts, seed, pool.masks, random_baseline)
    method = f"hq_{variant}"

    out: dict[str, HQMetricResult] = {}
    for code in codes:
        fq = pool.fq(code)
        if variant == "rate":
            sel, pru, levels = _hierarchical(pool, code, fq, rate, target)
        else:
            sel, pru = _mean_threshold(pool, fq)
            levels = ()
        out[code] = HQMetricResult(
            selected=_selection(method, code, pool, sel, fq[sel], ctx),
            pruned_masks=pool.masks[pru],
            levels=levels,
        )
    return HQResult(
        variant=variant,
        prune_rate=rate,
        target_size=target,
        mode=opts.mode,
        options=opts,
        seed=int(seed),
        models=bundle_select.models,
        combiner=pool.combiner,
        eval_split="selection" if bundle_eval is None else "eval",
        metrics=out,
        n_teams_scored=len(pool.masks),
        flags=tuple(pool.flags),
    )


def hq_search(
    bundle: Bundle,
    *,
    objective: Objective | None = None,
    top_k: int = 10,
    prune_rate: float = 0.1,
    target_size: int = 5,
    metrics: Sequence[str] = HQ_METRICS,
    variant: str = "rate",
    sizes: Any = None,
    seed: int = 0,
    faithful: bool = False,
    **fq_options: Any,
) -> Selection:
    """HQ pruning as a search method: the best ``top_k`` HQ-selected teams by an objective.

    Runs :func:`hq_select` on ``bundle`` (the selection split), pools the teams selected under
    any of ``metrics``, and ranks them by ``objective`` fitness (default
    :class:`focal.Objective`: ``0.2·focal + 0.8·plurality accuracy``) on the same bundle;
    ties (fitness equal to 10 decimals) go to the smaller team, then canonical order.

    Args:
        bundle: the selection bundle.
        objective: the ranking objective (default ``Objective()``).
        top_k: number of teams returned.
        prune_rate, target_size, metrics, variant, seed, faithful, **fq_options: as in
            :func:`hq_select`.
        sizes: optional team sizes (an int, ``(lo, hi)``, ``"2-5"``, ...): only teams of these
            sizes are ranked, and ``target_size`` becomes their maximum (clipped to ``M − 1``).

    Returns:
        A :class:`focal.Selection` (strategy ``hq``); ``params`` holds the HQ variant, the
        number of candidates and the HQ run itself (``params["hq"]``, an :class:`HQResult`).

    Example:
        >>> import ensembles
        >>> b = ensembles.Bundle.create(models=["a", "b", "c", "d", "e"], labels=[0] * 8,
        ...     preds=[[1, 1, 0, 0, 0, 0, 1, 0], [0, 1, 1, 0, 0, 0, 0, 1],
        ...            [0, 0, 1, 1, 0, 1, 0, 0], [1, 0, 0, 0, 1, 1, 0, 0],
        ...            [1, 1, 0, 0, 0, 0, 0, 1]])
        >>> res = hq_search(b, top_k=3)
        >>> fitness = [t.fitness for t in res.teams]
        >>> len(res.teams), bool(np.all(np.diff(fitness) <= 0))
        (3, True)
    """
    if isinstance(top_k, bool) or int(top_k) != top_k or int(top_k) < 1:
        raise InputError(f"top-k: must be at least 1, got {top_k}")
    obj = Objective() if objective is None else objective
    start = time.perf_counter()
    wanted = None
    if sizes is not None:
        wanted = parse_sizes(sizes, bundle.n_models)
        target_size = max(2, min(max(wanted), bundle.n_models - 1))
    hq = hq_select(
        bundle,
        metrics=metrics,
        prune_rate=prune_rate,
        target_size=target_size,
        variant=variant,
        seed=seed,
        faithful=faithful,
        random_baseline=False,
        **fq_options,
    )
    chosen = [r.selected.masks for r in hq.metrics.values() if len(r.selected.masks)]
    if chosen:
        stacked = np.concatenate(chosen)
        _, first = np.unique(_bitmasks(stacked), return_index=True)
        cand = stacked[first]
        # canonical order: size, then lexicographic over member indices
        keys = [(int(r.sum()), tuple(np.flatnonzero(r).tolist())) for r in cand]
        cand = cand[sorted(range(len(cand)), key=keys.__getitem__)]
    else:
        cand = np.zeros((0, bundle.n_models), dtype=bool)
    if wanted is not None:
        cand = cand[np.isin(cand.sum(axis=1), wanted)]
    if len(cand):
        comp = obj.components(bundle, cand)
        fit = np.round(comp["fitness"], 10)
        order = np.lexsort((np.arange(len(cand)), cand.sum(axis=1), -fit))[: int(top_k)]
    else:
        comp = {"fitness": np.zeros(0), "score": np.zeros(0), "accuracy": np.zeros(0)}
        order = np.zeros(0, dtype=np.int64)
    masks = cand[order]
    spec = metric_spec(obj.metric)
    size_tuple = wanted if wanted is not None else tuple(range(2, hq.target_size + 1))
    return Selection(
        teams=make_teams(
            bundle.models,
            masks,
            comp["score"][order],
            comp["accuracy"][order],
            comp["fitness"][order],
        ),
        metric=spec.name,
        direction=spec.direction,
        objective=obj.name,
        strategy="hq",
        n_models=bundle.n_models,
        n_samples=bundle.n_samples,
        n_evaluated=hq.n_teams_scored,
        sizes=size_tuple,
        seconds=time.perf_counter() - start,
        params={"variant": hq.variant, "n_candidates": int(len(cand)), "hq": hq},
    )
