"""Sample moments of the error matrix: one pass over the samples, then scoring is N-free.

See docs/metrics.md. All moments are integer counts stored as float64 (exact below 2^53).
"""

from __future__ import annotations

import functools

import numpy as np

from ensembles import Bundle

__all__ = ["Moments"]

# Elements per temporary block when a moment needs an (n_samples, M, M)-shaped intermediate.
_BLOCK_ELEMENTS = 1 << 22


class Moments:
    """Moment tensors of a bundle's error matrix, computed lazily and cached.

    ``G[j, l] = Σ_n E[j,n] E[l,n]`` (co-errors) and ``T[f, j, l] = Σ_n E[f,n] E[j,n] E[l,n]``
    (focal co-errors) drive the oracle-level metrics; ``AG`` (agreement counts) and ``U``
    (products of label marginals) drive the label-level ones (Cohen's and Fleiss' kappa), with
    abstention as its own category. Each label tensor has a focal version with a leading
    member axis, weighted by that member's errors.

    Args:
        preds: hard predictions, shape ``(n_models, n_samples)``, ``-1`` = abstain.
        labels: true classes, shape ``(n_samples,)``.
        n_classes: number of classes ``C``.

    Example:
        >>> import numpy as np
        >>> m = Moments(np.array([[0, 1], [1, 1]]), np.array([0, 0]), 2)
        >>> m.G.tolist()
        [[1.0, 1.0], [1.0, 2.0]]
    """

    def __init__(self, preds: np.ndarray, labels: np.ndarray, n_classes: int):
        self.preds = np.asarray(preds, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.n_classes = int(n_classes)
        self.errors = (self.preds != self.labels[None, :]).astype(np.float64)
        self.n_models, self.n_samples = self.errors.shape

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> Moments:
        """Moments of a bundle's predictions on all of its samples."""
        if bundle.labels is None:
            bundle.require_labels("diversity scores")
        return cls(bundle.preds, bundle.labels, bundle.n_classes)

    # ------------------------------------------------------------------ oracle level
    @functools.cached_property
    def G(self) -> np.ndarray:  # noqa: N802 - mathematical name
        """Co-error counts ``E Eᵀ``, shape ``(M, M)``; ``G[f, f] = |N_f|``."""
        return self.errors @ self.errors.T

    @functools.cached_property
    def T(self) -> np.ndarray:  # noqa: N802
        """Focal co-error counts ``T[f, j, l]``, shape ``(M, M, M)``, symmetric in all indices."""
        e = self.errors
        return np.stack([(e * e[f]) @ e.T for f in range(self.n_models)])

    # ------------------------------------------------------------------ label level
    def _sample_blocks(self):
        step = max(1, _BLOCK_ELEMENTS // (self.n_models * self.n_models))
        for start in range(0, self.n_samples, step):
            yield slice(start, min(start + step, self.n_samples))

    @functools.cached_property
    def _agreement(self) -> tuple[np.ndarray, np.ndarray]:
        m = self.n_models
        base = np.zeros((m, m))
        focal = np.zeros((m, m, m))
        for blk in self._sample_blocks():
            p = self.preds[:, blk]
            agree = (p[:, None, :] == p[None, :, :]).astype(np.float64)  # (M, M, n)
            base += agree.sum(axis=2)
            focal += np.einsum("fn,ijn->fij", self.errors[:, blk], agree, optimize=True)
        return base, focal

    @functools.cached_property
    def _marginals(self) -> tuple[np.ndarray, np.ndarray]:
        # One-hot over C + 1 categories; abstention (-1) is category C.
        cats = np.where(self.preds < 0, self.n_classes, self.preds)
        onehot = np.zeros((self.n_models, self.n_samples, self.n_classes + 1))
        np.put_along_axis(onehot, cats[:, :, None], 1.0, axis=2)
        base = onehot.sum(axis=1)  # (M, C+1)
        focal = np.einsum("fn,inc->fic", self.errors, onehot, optimize=True)  # (M, M, C+1)
        return base, focal

    @property
    def AG(self) -> np.ndarray:  # noqa: N802
        """Agreement counts ``AG[i, j] = #{n : P[i,n] = P[j,n]}``, shape ``(M, M)``."""
        return self._agreement[0]

    @property
    def AG_focal(self) -> np.ndarray:  # noqa: N802
        """Focal agreement counts ``Σ_n E[f,n] 1[P[i,n] = P[j,n]]``, shape ``(M, M, M)``."""
        return self._agreement[1]

    @functools.cached_property
    def U(self) -> np.ndarray:  # noqa: N802
        """``U[i, j] = Σ_c MG[i,c] MG[j,c]`` from the label marginals, shape ``(M, M)``."""
        mg = self._marginals[0]
        return mg @ mg.T

    @functools.cached_property
    def U_focal(self) -> np.ndarray:  # noqa: N802
        """Focal version of :attr:`U`, shape ``(M, M, M)``."""
        mg = self._marginals[1]
        return np.einsum("fic,fjc->fij", mg, mg)

    # ------------------------------------------------------------------ weighted views
    def weighted(self, focal: bool, label_level: bool = False) -> dict[str, np.ndarray]:
        """Moments under sample weights ``w`` (docs/metrics.md), stacked over weights.

        ``focal=False`` gives one weight vector (all ones); ``focal=True`` gives one per
        member f, ``w = E[f, :]``. Returns ``n`` (W,), ``g`` (W, M), ``G`` (W, M, M) and,
        with ``label_level``, ``AG`` and ``U`` (W, M, M).
        """
        if focal:
            out = {"n": np.diag(self.G).copy(), "g": self.G, "G": self.T}
            if label_level:
                out.update(AG=self.AG_focal, U=self.U_focal)
        else:
            out = {
                "n": np.array([float(self.n_samples)]),
                "g": np.diag(self.G)[None, :],
                "G": self.G[None],
            }
            if label_level:
                out.update(AG=self.AG[None], U=self.U[None])
        return out
