"""``DiversityAccuracyDisplay``: the scikit-learn style Display for diversity vs accuracy."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import ensembles  # noqa: E402
import focal  # noqa: E402
from focal._plot import DiversityAccuracyDisplay  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def bundle() -> ensembles.Bundle:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=60)
    preds = np.where(rng.random((6, 60)) < 0.7, labels[None, :], rng.integers(0, 3, (6, 60)))
    return ensembles.Bundle.create(
        models=[f"m{i}" for i in range(6)], labels=labels, preds=preds, n_classes=3
    )


def _close(disp: DiversityAccuracyDisplay) -> None:
    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        plt.close(disp.figure_)


def test_constructor_stores_arrays() -> None:
    disp = DiversityAccuracyDisplay(
        [0.1, 0.2, 0.3], [0.8, 0.9, 0.7], sizes=[2, 2, 3], highlight=[2, 0], metric="focal"
    )
    np.testing.assert_array_equal(disp.diversity, [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(disp.accuracy, [0.8, 0.9, 0.7])
    assert disp.sizes.tolist() == [2, 2, 3]
    assert disp.highlight == [2, 0] and disp.metric == "focal"
    assert not hasattr(disp, "ax_") and not hasattr(disp, "figure_")


def test_plot_sets_attributes(bundle: ensembles.Bundle) -> None:
    masks, scores = focal.score_all(bundle, sizes=(2, 4))
    acc = ensembles.team_accuracy(bundle, masks)
    top = focal.prune(bundle, sizes=(2, 4), top_k=3)
    rows = [int(np.flatnonzero((masks == t.mask).all(axis=1))[0]) for t in top.teams]
    disp = DiversityAccuracyDisplay.from_scores(masks, scores, acc, highlight=rows, split="val")
    assert disp.sizes.tolist() == masks.sum(axis=1).tolist()
    out = disp.plot(title="teams")
    assert out is disp
    assert disp.ax_.figure is disp.figure_
    assert disp.ax_.get_xlabel() == "focal diversity (val)"
    assert disp.ax_.get_ylabel() == "plurality accuracy (val)"
    assert disp.ax_.get_title() == "teams"
    assert len(disp.scatter_) == 3  # sizes 2, 3, 4
    assert sum(len(c.get_offsets()) for c in disp.scatter_) == len(masks)
    np.testing.assert_allclose(disp.highlight_.get_offsets(), np.c_[scores[rows], acc[rows]])
    labels = [t.get_text() for t in disp.ax_.texts]
    assert labels == ["1", "2", "3"]
    legend = [t.get_text() for t in disp.ax_.get_legend().get_texts()]
    assert legend[0].startswith("size 2") and legend[-1] == "top 3 by focal"
    _close(disp)


def test_from_prune_result(bundle: ensembles.Bundle) -> None:
    result = focal.prune(bundle, metric="q_statistic", sizes=2, top_k=4)
    disp = DiversityAccuracyDisplay.from_scores(result)
    assert disp.metric == "q_statistic"
    np.testing.assert_allclose(disp.diversity, [t.score for t in result.teams])
    np.testing.assert_allclose(disp.accuracy, [t.accuracy for t in result.teams])
    assert disp.sizes.tolist() == [2, 2, 2, 2]
    disp.plot()
    assert disp.ax_.get_xlabel() == "q statistic diversity"
    _close(disp)


def test_plot_on_given_axes_and_nan_dropped() -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    disp = DiversityAccuracyDisplay([0.1, np.nan, 0.3], [0.8, 0.9, 0.7], highlight=[1, 2]).plot(
        ax=ax, alpha=0.9, xlabel="x", ylabel="y"
    )
    assert disp.ax_ is ax and disp.figure_ is fig
    assert len(disp.scatter_) == 1 and len(disp.scatter_[0].get_offsets()) == 2
    assert len(disp.highlight_.get_offsets()) == 1  # the NaN team is not drawn
    assert [t.get_text() for t in ax.texts] == ["2"]  # ranks follow highlight order
    assert ax.get_xlabel() == "x" and ax.get_ylabel() == "y"


def test_savefig_png_and_svg(tmp_path: Path) -> None:
    disp = DiversityAccuracyDisplay([0.1, 0.4, 0.5], [0.8, 0.9, 0.85], highlight=[1])
    png = disp.savefig(tmp_path / "a" / "teams.png")  # plots first, creates the folder
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert hasattr(disp, "ax_") and hasattr(disp, "figure_")
    svg = disp.savefig(tmp_path / "teams.svg")
    assert b"<svg" in svg.read_bytes()[:2000]
    png.write_bytes(b"old")
    disp.savefig(png)  # overwrites in place
    assert png.read_bytes()[:8] == PNG_MAGIC
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_savefig_failure_leaves_no_temp_file(tmp_path: Path) -> None:
    disp = DiversityAccuracyDisplay([0.1], [0.8])
    with pytest.raises(ValueError):
        disp.savefig(tmp_path / "teams.notaformat")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (([0.1, 0.2], [0.5]), {}, "accuracy"),
        (([0.1, 0.2], [0.5, 0.6]), {"sizes": [2]}, "sizes"),
        (([0.1, 0.2], [0.5, 0.6]), {"highlight": [2]}, "highlight"),
    ],
)
def test_bad_input(args: tuple, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DiversityAccuracyDisplay(*args, **kwargs)


def test_from_scores_needs_arrays() -> None:
    with pytest.raises(ValueError, match="from_scores"):
        DiversityAccuracyDisplay.from_scores(np.ones((2, 3), dtype=bool))
    with pytest.raises(ValueError, match="masks"):
        DiversityAccuracyDisplay.from_scores(np.ones(3, dtype=bool), [0.1], [0.2])


def test_headless_without_pyplot(tmp_path: Path) -> None:
    """No display and no backend chosen: draws on Agg without importing pyplot."""
    script = textwrap.dedent(
        f"""
        import sys
        from focal._plot import DiversityAccuracyDisplay
        d = DiversityAccuracyDisplay([0.1, 0.4], [0.8, 0.9], sizes=[2, 3], highlight=[0])
        d.plot().savefig({str(tmp_path / "h.png")!r})
        assert "matplotlib.pyplot" not in sys.modules
        assert type(d.figure_.canvas).__name__ == "FigureCanvasAgg"
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "h.png").read_bytes()[:8] == PNG_MAGIC
