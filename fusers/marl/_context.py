"""Query features for the contextual decider / router: TF-IDF + truncated SVD, fitted on
training rows only (cheap, no model download)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ensembles.util import InputError

__all__ = ["read_texts", "text_features"]


def text_features(
    texts: Sequence[str], fit_rows: Any, *, dim: int = 32, seed: int = 0
) -> np.ndarray:
    """A ``(n, dim)`` float32 feature vector per text, learned from the ``fit_rows`` texts only.

    TF-IDF (word 1–2-grams, sublinear term frequency, English stop words removed) and a
    truncated SVD to ``dim`` components are fitted on ``texts[fit_rows]``; every text is then
    projected, and each component is standardised with the mean and standard deviation of the
    fit rows. The other rows (validation, test) never influence the vocabulary, the weights,
    the projection or the scaling.

    Args:
        texts: one string per row.
        fit_rows: indices of the rows the features may learn from (the training rows).
        dim: number of SVD components (at most the fit rows' rank).
        seed: seed of the randomised SVD.

    Raises:
        InputError: empty fit rows, a row index out of range, or ``dim < 1``.

    Example:
        >>> t = ["red apple pie", "green apple tart", "fast red car", "slow green car",
        ...      "apple car"]
        >>> f = text_features(t, [0, 1, 2, 3], dim=2)
        >>> f.shape, f.dtype.name, bool(np.allclose(f[:4].mean(axis=0), 0, atol=1e-5))
        ((5, 2), 'float32', True)
    """
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = ["" if t is None else str(t) for t in texts]
    rows = np.asarray(fit_rows, dtype=np.int64).reshape(-1)
    if rows.size == 0:
        raise InputError("context: no training rows to fit the text features on")
    if rows.min() < 0 or rows.max() >= len(texts):
        raise InputError(f"context: fit row out of range for {len(texts)} texts")
    if dim < 1:
        raise InputError(f"context: dim must be >= 1, got {dim}")
    vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), stop_words="english", min_df=1)
    fit_texts = [texts[i] for i in rows]
    try:
        x_fit = vec.fit_transform(fit_texts)
    except ValueError:  # empty vocabulary
        raise InputError("context: the training texts have no usable words") from None
    k = int(min(dim, x_fit.shape[0] - 1, x_fit.shape[1] - 1))
    if k < 1:
        raise InputError("context: too few training texts or words for the SVD")
    svd = TruncatedSVD(n_components=k, random_state=int(seed))
    svd.fit(x_fit)
    z_fit = svd.transform(x_fit)
    z = svd.transform(vec.transform(texts))
    mean, std = z_fit.mean(axis=0), z_fit.std(axis=0)
    live = std > 1e-6 * max(float(std.max()), 1e-12)  # a constant component carries nothing
    z = np.where(live, (z - mean) / np.where(live, std, 1.0), 0.0)
    out = np.zeros((len(texts), dim), np.float32)
    out[:, :k] = z
    return out


def read_texts(
    path: Any,
    sample_ids: Any,
    *,
    text_field: str = "text",
    id_field: str = "id",
) -> list[str]:
    """The text of each bundle row from a JSON-lines file (optionally gzipped).

    Each line is an object with an id (``id_field``, matched to the bundle's sample ids) and
    one or more text fields (``text_field``: a name, or names separated by commas; a list value
    is joined with spaces, several fields are joined with a space).

    Raises:
        InputError: unreadable file, a missing field, no sample ids, or a bundle row without
            text (one line naming the first missing id).

    Example:
        >>> import json, os, tempfile
        >>> p = os.path.join(tempfile.mkdtemp(), "t.jsonl")
        >>> _ = open(p, "w").write(json.dumps({"id": 7, "q": "why", "o": ["a", "b"]}) + "\\n")
        >>> read_texts(p, [7], text_field="q,o")
        ['why a b']
    """
    import gzip
    import json
    from pathlib import Path

    if sample_ids is None:
        raise InputError("texts: the bundle has no sample ids to match the texts to")
    fields = [f.strip() for f in str(text_field).split(",") if f.strip()]
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    by_id: dict[Any, str] = {}
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for k, line in enumerate(f, 1):
                if not line.strip():
                    continue
                rec = json.loads(line)
                if id_field not in rec:
                    raise InputError(f"{path}: line {k} has no {id_field!r} field")
                parts = []
                for name in fields:
                    if name not in rec:
                        raise InputError(f"{path}: line {k} has no {name!r} field")
                    v = rec[name]
                    parts.append(" ".join(map(str, v)) if isinstance(v, list) else str(v))
                by_id[_key(rec[id_field])] = " ".join(parts)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: unreadable texts ({exc})") from None
    out = []
    for sid in np.asarray(sample_ids).tolist():
        if _key(sid) not in by_id:
            raise InputError(f"{path}: no text for sample id {sid!r}")
        out.append(by_id[_key(sid)])
    return out


def _key(v: Any) -> str:
    return str(v)
