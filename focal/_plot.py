"""Scatter plot of team diversity against team accuracy (scikit-learn Display API).

matplotlib is optional: it is imported only inside the methods that draw. Without a figure from
the caller, a display draws on a new :class:`matplotlib.figure.Figure` with an Agg canvas, so it
works on headless machines and never changes the global backend; once ``matplotlib.pyplot`` is
imported (notebooks, scripts), new figures come from ``pyplot`` so they show as usual.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ensembles.util import InputError, write_atomic

__all__ = ["DiversityAccuracyDisplay"]

#: Marker size of ordinary teams and of highlighted (recommended) teams.
_POINT_SIZE = 9.0
_HIGHLIGHT_SIZE = 170.0


def require_matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "plotting needs matplotlib; install it with `pip install matplotlib`"
        ) from None
    return matplotlib


def _new_axes() -> Any:
    """A fresh axes: from pyplot when the caller uses pyplot, else on a standalone Agg figure."""
    require_matplotlib()
    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7.5, 5.5))
        return ax
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 5.5))
    FigureCanvasAgg(fig)
    return fig.add_subplot()


class DiversityAccuracyDisplay:
    """Scatter of every team's diversity against its accuracy, recommended teams marked.

    Follows scikit-learn's Display API: build it from arrays (or with :meth:`from_scores`),
    then call :meth:`plot`, which returns the display and stores the matplotlib objects in
    ``ax_``, ``figure_``, ``scatter_`` (one collection per team size) and ``highlight_``.
    Points are coloured by team size; highlighted teams are drawn as large stars labelled with
    their rank (1 = first in ``highlight``). Teams whose diversity or accuracy is NaN (e.g.
    focal diversity of a team that is never wrong) are not drawn.

    Args:
        diversity: the diversity score of each team, shape ``(n_teams,)``.
        accuracy: the accuracy of each team (e.g. plurality vote), shape ``(n_teams,)``.
        sizes: the size of each team, shape ``(n_teams,)``, or ``None`` (one colour).
        highlight: indices into the teams of the points to mark, in rank order, or ``None``.
        metric: name of the diversity metric, used in the x-axis label.
        split: name of the samples the values were computed on (e.g. ``"val"``), appended to the
            axis labels, or ``None``.
        references: accuracies to draw as labelled horizontal lines, e.g.
            ``{"best single model": 0.95, "whole pool": 0.97}``, or ``None``.

    Attributes:
        ax_: the matplotlib ``Axes`` drawn on (after :meth:`plot`).
        figure_: the matplotlib ``Figure`` of ``ax_``.
        scatter_: list of ``PathCollection``, one per team size.
        highlight_: the ``PathCollection`` of the highlighted teams, or ``None``.
        references_: the ``Line2D`` of each reference line.

    Example:
        >>> import numpy as np
        >>> disp = DiversityAccuracyDisplay(
        ...     np.array([0.2, 0.5, 0.7]), np.array([0.90, 0.93, 0.95]),
        ...     sizes=np.array([3, 3, 4]), highlight=[2, 1])
        >>> disp = disp.plot()
        >>> disp.ax_.get_xlabel()
        'focal diversity'
    """

    def __init__(
        self,
        diversity: Any,
        accuracy: Any,
        *,
        sizes: Any = None,
        highlight: Sequence[int] | None = None,
        metric: str = "focal",
        split: str | None = None,
        references: Mapping[str, float] | None = None,
    ) -> None:
        self.references = dict(references or {})
        self.diversity = np.asarray(diversity, dtype=np.float64).reshape(-1)
        self.accuracy = np.asarray(accuracy, dtype=np.float64).reshape(-1)
        if self.diversity.shape != self.accuracy.shape:
            raise InputError(
                f"accuracy: shape {self.accuracy.shape} != diversity shape {self.diversity.shape}"
            )
        self.sizes = None if sizes is None else np.asarray(sizes, dtype=np.int64).reshape(-1)
        if self.sizes is not None and self.sizes.shape != self.diversity.shape:
            raise InputError(
                f"sizes: shape {self.sizes.shape} != diversity shape {self.diversity.shape}"
            )
        self.highlight = None if highlight is None else [int(i) for i in highlight]
        n = self.diversity.shape[0]
        if self.highlight is not None and any(not 0 <= i < n for i in self.highlight):
            raise InputError(f"highlight: indices must be in [0, {n})")
        self.metric = metric
        self.split = split

    @classmethod
    def from_scores(
        cls,
        masks: Any,
        scores: Any = None,
        accuracy: Any = None,
        *,
        highlight: Sequence[int] | None = None,
        metric: str = "focal",
        split: str | None = None,
        references: Mapping[str, float] | None = None,
    ) -> DiversityAccuracyDisplay:
        """A display from team masks and their scores (e.g. from :func:`focal.score_all`).

        Args:
            masks: boolean team masks, shape ``(n_teams, n_models)``; team sizes come from
                their row sums. A :class:`focal.Selection` is accepted too (with ``scores``
                and ``accuracy`` omitted): its teams, their scores and plurality accuracies
                are used, and its metric names the axis.
            scores: diversity score of each team, shape ``(n_teams,)``.
            accuracy: accuracy of each team, shape ``(n_teams,)``.
            highlight: indices of the teams to mark, in rank order.
            metric: name of the diversity metric (axis label).
            split: name of the samples the values come from (axis labels), or ``None``.
            references: labelled reference accuracies (horizontal lines).

        Returns:
            An unplotted display; call :meth:`plot` next.

        Example:
            >>> import ensembles, focal
            >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 0, 0, 0],
            ...                             preds=[[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]])
            >>> masks, scores = focal.score_all(b, sizes=(2, 3))
            >>> acc = ensembles.team_accuracy(b, masks)
            >>> disp = DiversityAccuracyDisplay.from_scores(masks, scores, acc, highlight=[0])
            >>> disp.sizes.tolist()
            [2, 2, 2, 3]
        """
        teams = getattr(masks, "teams", None)
        if teams is not None and scores is None and accuracy is None:  # a focal.Selection
            metric = getattr(masks, "metric", None) or metric
            masks = np.array([t.mask for t in teams], dtype=bool).reshape(len(teams), -1)
            scores = [t.score for t in teams]
            accuracy = [t.accuracy for t in teams]
        if scores is None or accuracy is None:
            raise InputError("from_scores: give masks, scores and accuracy (or a focal.Selection)")
        masks_arr = np.asarray(masks, dtype=bool)
        if masks_arr.ndim != 2:
            raise InputError(f"masks: expected (n_teams, n_models), got shape {masks_arr.shape}")
        return cls(
            scores,
            accuracy,
            sizes=masks_arr.sum(axis=1),
            highlight=highlight,
            metric=metric,
            split=split,
            references=references,
        )

    def _label(self, text: str) -> str:
        return f"{text} ({self.split})" if self.split else text

    def plot(
        self,
        ax: Any = None,
        *,
        title: str | None = None,
        xlabel: str | None = None,
        ylabel: str | None = None,
        annotate: bool = True,
        **kwargs: Any,
    ) -> DiversityAccuracyDisplay:
        """Draw the scatter.

        Args:
            ax: matplotlib ``Axes`` to draw on; ``None`` creates a new figure.
            title: axes title, or ``None`` for none.
            xlabel: x-axis label; default ``"<metric> diversity (<split>)"``.
            ylabel: y-axis label; default ``"plurality accuracy (<split>)"``.
            annotate: write each highlighted team's rank next to its marker.
            **kwargs: passed to ``Axes.scatter`` for the ordinary points (e.g. ``alpha``,
                ``s``).

        Returns:
            ``self``, with ``ax_``, ``figure_``, ``scatter_`` and ``highlight_`` set.

        Example:
            >>> disp = DiversityAccuracyDisplay([0.1, 0.4], [0.8, 0.9]).plot(title="teams")
            >>> disp.ax_.get_title()
            'teams'
        """
        if ax is None:
            ax = _new_axes()
        else:
            require_matplotlib()
        finite = np.isfinite(self.diversity) & np.isfinite(self.accuracy)
        sizes = self.sizes if self.sizes is not None else np.zeros(self.diversity.shape, np.int64)
        distinct = [int(s) for s in np.unique(sizes[finite])]
        cmap = _size_colours(len(distinct))
        point_kw = {"s": _POINT_SIZE, "alpha": 0.55, "linewidths": 0}
        point_kw.update(kwargs)
        # Larger sizes (usually more numerous) first, so smaller teams stay visible on top.
        by_size: dict[int, Any] = {}
        for colour, size in reversed(list(zip(cmap, distinct, strict=True))):
            sel = finite & (sizes == size)
            label = f"size {size}" if self.sizes is not None else "teams"
            by_size[size] = ax.scatter(
                self.diversity[sel],
                self.accuracy[sel],
                color=colour,
                label=f"{label} ({int(sel.sum()):,})",
                **point_kw,
            )
        self.scatter_ = [by_size[size] for size in distinct]
        self.highlight_ = None
        if self.highlight:
            idx = np.array([i for i in self.highlight if finite[i]], dtype=np.int64)
            if idx.size:
                self.highlight_ = ax.scatter(
                    self.diversity[idx],
                    self.accuracy[idx],
                    s=_HIGHLIGHT_SIZE,
                    marker="*",
                    facecolor="gold",
                    edgecolor="black",
                    linewidths=0.9,
                    zorder=5,
                    label=f"top {len(self.highlight)} by {self.metric.replace('_', ' ')}",
                )
            if annotate:
                for rank, i in enumerate(self.highlight, start=1):
                    if finite[i]:
                        ax.annotate(
                            str(rank),
                            (self.diversity[i], self.accuracy[i]),
                            xytext=(9, 7),
                            textcoords="offset points",
                            fontsize=9,
                            fontweight="bold",
                            zorder=7,
                            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                                  "alpha": 0.85},
                        )  # fmt: skip
        self.references_ = []
        for (name, value), style in zip(self.references.items(), _REFERENCE_STYLES, strict=False):
            if value is not None and np.isfinite(value):
                self.references_.append(
                    ax.axhline(float(value), label=f"{name} ({value:.3f})", zorder=4, **style)
                )
        ax.set_xlabel(xlabel or self._label(f"{self.metric.replace('_', ' ')} diversity"))
        ax.set_ylabel(ylabel or self._label("plurality accuracy"))
        if title:
            ax.set_title(title)
        ax.grid(True, alpha=0.3)
        handles = list(self.scatter_) + ([self.highlight_] if self.highlight_ is not None else [])
        handles += self.references_
        if handles:
            # Outside the axes, so no point or rank label is ever hidden under it.
            legend = ax.legend(
                handles=handles,
                loc="upper left",
                bbox_to_anchor=(1.01, 1.0),
                fontsize=8,
                framealpha=0.85,
            )
            marks = getattr(legend, "legend_handles", None)
            if marks is None:  # matplotlib < 3.7
                marks = getattr(legend, "legendHandles", [])
            for mark in marks[: len(self.scatter_)]:
                mark.set_sizes([25.0])
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    def savefig(self, path: str | os.PathLike[str], *, dpi: int = 120, **kwargs: Any) -> Path:
        """Write the figure to ``path`` atomically (temporary file, then rename).

        Plots first if :meth:`plot` has not been called. Missing parent folders are created.
        The format follows the file suffix (``.png`` when there is none).

        Args:
            path: destination file.
            dpi: resolution of raster formats.
            **kwargs: passed to ``Figure.savefig``.

        Returns:
            The destination path.

        Example:
            >>> import tempfile, pathlib
            >>> out = pathlib.Path(tempfile.mkdtemp()) / "teams.png"
            >>> DiversityAccuracyDisplay([0.1, 0.4], [0.8, 0.9]).savefig(out).read_bytes()[:4]
            b'\\x89PNG'
        """
        if not hasattr(self, "figure_"):
            self.plot()
        dest = Path(path)
        fmt = dest.suffix.lstrip(".").lower() or "png"
        write_atomic(
            dest,
            lambda fh: self.figure_.savefig(fh, format=fmt, dpi=dpi, bbox_inches="tight", **kwargs),
        )
        return dest


_REFERENCE_STYLES = (
    {"color": "black", "linestyle": "--", "linewidth": 1.2},
    {"color": "tab:red", "linestyle": ":", "linewidth": 1.4},
    {"color": "tab:green", "linestyle": "-.", "linewidth": 1.2},
)


def _size_colours(n: int) -> list[Any]:
    """``n`` distinct colours (tab10, then evenly spaced viridis for more sizes)."""
    from matplotlib import colormaps

    if n <= 10:
        cmap = colormaps["tab10"]
        return [cmap(i) for i in range(n)]
    cmap = colormaps["viridis"]
    return [cmap(i / max(n - 1, 1)) for i in range(n)]
