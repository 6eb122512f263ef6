"""HQ-Ensemble hierarchical pruning (ICDM'21), as the paper intends (ALGORITHMS.md §5.5).

Low diversity is inherited upward: when a small team is among the least diverse of its size,
every larger team containing it is pruned without being considered (Apriori-style). Teams are
scored by the FQ scores of the EnsembleBench pipeline (:func:`focal.fq_scores`, §5.3 steps 1–4
without the per-focal KMeans prefilter), so every FQ switch (``estimator``, ``member_weights``,
``constant_group``, ``sign_convention``, ...) applies here too and is recorded in the result.

The reference script (git-disl/HQ-Ensemble) has bugs that are **not** reproduced and have no
faithful switch (ALGORITHMS §8 #8): Python-2 constructs, lookups in the wrong metric's
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
from typing import TYPE_CHECKING, Any

import numpy as np

import ensembles
from ensembles import Bundle
from ensembles.util import InputError

from ._compat_ensemblebench import (
    DEFAULT_MAX_TEAMS,
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

if TYPE_CHECKING:
    from ._scoring import PruneResult

__all__ = [
    "HQLevel",
    "HQMetricResult",
    "HQResult",
    "HQSearchResult",
    "HQTeam",
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
        mode, options: the FQ mode and switches (see :class:`focal.FQOptions`).
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
    max_teams: int | None = DEFAULT_MAX_TEAMS,
    **fq_options: Any,
) -> HQResult:
    """HQ-Ensemble hierarchical pruning on FQ scores (ALGORITHMS §5.5, as intended).

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
        faithful: start the FQ switches from the faithful preset (:class:`focal.FQOptions`).
        bundle_eval: bundle the statistics are reported on (default ``bundle_select``).
        random_baseline: add statistics of a random set of equal size to every selection.
        max_teams: refuse pools with more teams than this.
        **fq_options: switches of :class:`focal.FQOptions` (``estimator``, ``member_weights``,
            ``constant_group``, ``sign_convention``, ``acc_source``, ``combiner``, ...);
            KMeans and baseline switches have no effect here.

    Returns:
        An :class:`HQResult` with, per metric, the selected teams, the pruned teams, counts
        per level and statistics.

    References:
        Wu & Liu, "Boosting Deep Ensemble Performance with Hierarchical Pruning", ICDM 2021.

    Example:
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


@dataclasses.dataclass(frozen=True)
class HQTeam:
    """One team found by :func:`hq_search`.

    Attributes:
        members: model names, in member order.
        size: number of members.
        score: the objective's diversity metric.
        accuracy: accuracy with the objective's combiner (on the selection bundle).
        fitness: the objective's fitness.
        mask: boolean membership mask, shape ``(n_models,)``.
    """

    members: tuple[str, ...]
    size: int
    score: float
    accuracy: float
    fitness: float
    mask: np.ndarray = dataclasses.field(repr=False, compare=False)


@dataclasses.dataclass(frozen=True, eq=False)
class HQSearchResult:
    """Top teams among the HQ-selected ones, ranked by an :class:`focal.Objective`.

    Attributes:
        objective: the ranking objective.
        masks: ``(K, M)`` booleans, best first.
        members: model names per team.
        fitness, score, accuracy: objective fitness, its diversity score and its accuracy
            (objective's combiner), per team.
        n_candidates: distinct teams HQ selected (over all metrics and the requested sizes),
            all ranked.
        seconds: wall-clock time of the search.
        hq: the underlying :class:`HQResult`.
    """

    objective: Objective
    masks: np.ndarray
    members: tuple[tuple[str, ...], ...]
    fitness: np.ndarray
    score: np.ndarray
    accuracy: np.ndarray
    n_candidates: int
    seconds: float
    hq: HQResult

    @property
    def teams(self) -> tuple[HQTeam, ...]:
        """The teams, best first, as :class:`HQTeam` records."""
        return tuple(
            HQTeam(mem, len(mem), float(s), float(a), float(f), mask)
            for mem, s, a, f, mask in zip(
                self.members, self.score, self.accuracy, self.fitness, self.masks, strict=True
            )
        )

    @property
    def n_evaluated(self) -> int:
        """Teams scored: every team of sizes 2..target_size gets an FQ score per metric."""
        return self.hq.n_teams_scored

    def to_prune_result(self, bundle: Bundle) -> PruneResult:
        """The same teams as a :class:`focal.PruneResult` (CONTRACT §6 ``focal prune`` JSON:
        ``score`` = the objective metric, ``accuracy`` = plurality accuracy), best first."""
        from ._scoring import PruneResult, TeamScore

        plural = (
            ensembles.team_accuracy(bundle, self.masks, combiner="plurality")
            if len(self.masks)
            else np.zeros(0)
        )
        teams = tuple(
            TeamScore(
                members=mem,
                size=len(mem),
                score=float(s),
                accuracy=float(a),
                mask=mask,
            )
            for mem, s, a, mask in zip(self.members, self.score, plural, self.masks, strict=True)
        )
        return PruneResult(
            metric=self.objective.metric,
            direction=metric_spec(self.objective.metric).direction,
            n_models=bundle.n_models,
            n_samples=bundle.n_samples,
            n_teams_scored=self.hq.n_teams_scored,
            sizes=tuple(range(2, self.hq.target_size + 1)),
            teams=teams,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""

        def num(x: float) -> float | None:
            return float(x) if math.isfinite(float(x)) else None

        return {
            "method": f"hq_{self.hq.variant}",
            "objective": self.objective.name,
            "n_candidates": self.n_candidates,
            "teams": [
                {
                    "members": list(mem),
                    "size": len(mem),
                    "fitness": num(f),
                    "score": num(s),
                    "accuracy": num(a),
                }
                for mem, f, s, a in zip(
                    self.members, self.fitness, self.score, self.accuracy, strict=True
                )
            ],
            "hq": self.hq.to_dict(),
        }


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
) -> HQSearchResult:
    """HQ pruning as a search method: the best ``top_k`` HQ-selected teams by an objective.

    Runs :func:`hq_select` on ``bundle`` (the selection split), pools the teams selected under
    any of ``metrics``, and ranks them by ``objective`` fitness (default
    :class:`focal.Objective`: ``0.5·focal + 0.5·plurality accuracy``) on the same bundle;
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
        An :class:`HQSearchResult`; ``.to_prune_result(bundle)`` gives the ``focal prune``
        document.

    Example:
        >>> b = ensembles.Bundle.create(models=["a", "b", "c", "d", "e"], labels=[0] * 8,
        ...     preds=[[1, 1, 0, 0, 0, 0, 1, 0], [0, 1, 1, 0, 0, 0, 0, 1],
        ...            [0, 0, 1, 1, 0, 1, 0, 0], [1, 0, 0, 0, 1, 1, 0, 0],
        ...            [1, 1, 0, 0, 0, 0, 0, 1]])
        >>> res = hq_search(b, top_k=3)
        >>> len(res.members), bool(np.all(np.diff(res.fitness) <= 0))
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
    return HQSearchResult(
        objective=obj,
        masks=masks,
        members=tuple(
            tuple(m for m, k in zip(bundle.models, row, strict=True) if k) for row in masks
        ),
        fitness=comp["fitness"][order],
        score=comp["score"][order],
        accuracy=comp["accuracy"][order],
        n_candidates=int(len(cand)),
        seconds=time.perf_counter() - start,
        hq=hq,
    )
