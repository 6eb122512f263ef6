"""DESlib's static and dynamic selection on the scikit-learn pools of ``bench.recommend``.

DESlib 0.3.7 (its latest release) calls scikit-learn internals removed in scikit-learn 1.6, so
it runs in its own environment beside scikit-learn 1.5, which the project supports::

    python3.11 -m venv /tmp/venv-deslib
    /tmp/venv-deslib/bin/pip install . "scikit-learn==1.5.2" deslib
    /tmp/venv-deslib/bin/python -m bench.deslib_peers

Same datasets, seeds, 50/25/25 splits and 14 members (fitted on train) as
``python -m bench.recommend --only sklearn``; each DESlib method gets the members' val rows as
its dynamic-selection data (DSEL) and is scored once on test. The members are refitted under
scikit-learn 1.5, so they may differ slightly from the main run's; the best single model (by
val accuracy) is reported from this run for that reason. Writes bench/out/deslib_peers.json.
"""

from __future__ import annotations

import sys
import time
import warnings
from typing import Any

import numpy as np

from bench.recommend import OUT, SKLEARN_POOLS, _sklearn_pool
from ensembles.util import write_json_atomic


def _methods(pool: list[Any], seed: int) -> dict[str, Any]:
    from deslib.des import KNORAE, KNORAU, METADES
    from deslib.static import StaticSelection

    return {"static_selection": StaticSelection(pool, random_state=seed),
            "knora_u": KNORAU(pool, random_state=seed),
            "knora_e": KNORAE(pool, random_state=seed),
            "meta_des": METADES(pool, random_state=seed)}  # fmt: skip


def run(seeds: list[int]) -> dict[str, Any]:
    """Every DESlib method on every pool; test accuracies and the val-chosen best single."""
    import deslib
    import sklearn

    runs = []
    for name in SKLEARN_POOLS:
        for seed in seeds:
            _, _, models, x, y, (_, va, te) = _sklearn_pool(name, seed)
            pool = [m for m in models.values() if hasattr(m, "predict_proba")]
            row: dict[str, Any] = {"dataset": name, "seed": seed}
            val_acc = {n: (m.predict(x[va]) == y[va]).mean() for n, m in models.items()}
            best = max(val_acc, key=val_acc.get)
            row["best_single"] = float((models[best].predict(x[te]) == y[te]).mean())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for key, method in _methods(pool, seed).items():
                    row[key] = float(method.fit(x[va], y[va]).score(x[te], y[te]))
            runs.append(row)
            print(name, seed, {k: round(v, 4) for k, v in row.items() if k not in
                               ("dataset", "seed")}, file=sys.stderr)  # fmt: skip
    keys = [k for k in runs[0] if k not in ("dataset", "seed")]
    summary = {k: float(np.mean([r[k] for r in runs])) for k in keys}
    summary["beats_single"] = {k: int(sum(r[k] > r["best_single"] for r in runs)) for k in keys}
    return {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "deslib": deslib.__version__,
            "sklearn": sklearn.__version__, "runs": runs, "summary": summary}  # fmt: skip


def main() -> int:
    """Run, write bench/out/deslib_peers.json and print a Markdown line per method."""
    doc = run([0, 1, 2])
    write_json_atomic(OUT / "deslib_peers.json", doc)
    print(f"| method (DESlib {doc['deslib']}, scikit-learn {doc['sklearn']}) | mean test "
          "accuracy % | beats best single |\n|---|---|---|")  # fmt: skip
    for k, v in doc["summary"].items():
        if k != "beats_single":
            print(f"| {k} | {100 * v:.2f} | {doc['summary']['beats_single'][k]} / "
                  f"{len(doc['runs'])} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
