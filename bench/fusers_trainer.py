"""Cost of the fusers' training loop and of its checkpoints, side by side in one run.

    python -m bench.fusers_trainer [--rows 12000] [--epochs 30] [--previous GIT_REV]

On synthetic cached outputs shaped like the MMLU-Pro pool (5 members, 10 classes, 12,000 rows,
70 % train / 10 % val), it times :func:`fusers.fit_classifier` (the MLP fuser's trainer):

* without checkpoints;
* with a checkpoint every 10 epochs, and every epoch (the worst case);
* resuming a finished run from its checkpoint (the cost of reading it back).

With ``--previous REV`` it also times the trainer of an earlier commit of this repository
(its ``fusers/_train.py`` and helpers, taken with ``git show``) on the same data in the same
run, and checks that both give the same losses and parameters. Prints a Markdown table of
median seconds over ``--repeats`` runs and the ratios to the first row.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OLD_FILES = ("_train.py", "_checkpoint.py", "_mlp.py", "_util.py")


def _data(rows: int, seed: int = 0):
    from fusers._train import ClassifierData

    rng = np.random.default_rng(seed)
    members, classes = 5, 10
    y = rng.integers(0, classes, rows)
    p = rng.random((members, rows, classes))
    for m, boost in enumerate((0.8, 0.6, 0.5, 0.4, 0.2)):
        p[m, np.arange(rows), y] += boost * rng.random(rows)
    x = np.transpose(p, (1, 0, 2)).reshape(rows, members * classes).astype(np.float32)
    mask = np.ones((rows, classes), bool)
    n_tr, n_va = int(0.7 * rows), int(0.1 * rows)
    return ClassifierData.create(
        x[:n_tr], y[:n_tr], mask[:n_tr], x[n_tr : n_tr + n_va], y[n_tr : n_tr + n_va],
        mask[n_tr : n_tr + n_va],
    )  # fmt: skip


def _previous_trainer(rev: str):
    """Import ``fusers/_train.py`` (and helpers) of commit ``rev`` as package ``fusers_prev``."""
    root = Path(tempfile.mkdtemp()) / "fusers_prev"
    root.mkdir()
    (root / "__init__.py").write_text("")
    for name in OLD_FILES:
        text = subprocess.run(
            ["git", "show", f"{rev}:fusers/{name}"], capture_output=True, text=True, check=True
        ).stdout
        (root / name).write_text(text)
    sys.path.insert(0, str(root.parent))
    return importlib.import_module("fusers_prev._train"), importlib.import_module(
        "fusers_prev._mlp"
    )


def _fit(train_mod, mlp_mod, data, epochs: int, ckpt: Path | None, every: int):
    from flax import nnx

    config = train_mod.TrainConfig(epochs=epochs, checkpoint_every=every, seed=0)
    model = mlp_mod.MLP(data.x_train.shape[1], data.n_classes, rngs=nnx.Rngs(0))
    start = time.perf_counter()
    history = train_mod.fit_classifier(model, data, config, checkpoint_dir=ckpt)
    seconds = time.perf_counter() - start
    params = nnx.state(model, nnx.Param)
    return seconds, history, params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--previous", metavar="REV", help="also time this commit's trainer")
    args = parser.parse_args(argv)

    import jax

    from fusers import _mlp, _train

    data = _data(args.rows)
    cases = [("no checkpoints", _train, _mlp, None)]
    cases += [("checkpoint every 10 epochs", _train, _mlp, 10), ("every epoch", _train, _mlp, 1)]
    if args.previous:
        old_train, old_mlp = _previous_trainer(args.previous)
        cases.insert(1, (f"previous trainer ({args.previous}), no checkpoints", old_train,
                         old_mlp, None))  # fmt: skip
        cases.append((f"previous trainer ({args.previous}), every epoch", old_train, old_mlp, 1))
    times: dict[str, list[float]] = {name: [] for name, *_ in cases}
    times["resume a finished run"] = []
    reference = None
    for _name, mod, mlp, _every in cases:  # warm-up: compile once per trainer
        _fit(mod, mlp, data, 1, None, 1)
    for _ in range(args.repeats):
        for name, mod, mlp, every in cases:
            with tempfile.TemporaryDirectory() as d:
                ckpt = None if every is None else Path(d)
                seconds, history, params = _fit(mod, mlp, data, args.epochs, ckpt, every or 10)
                times[name].append(seconds)
                leaves = [np.asarray(v) for v in jax.tree.leaves(params)]
                if reference is None:
                    reference = (history.loss, leaves)
                same = history.loss == reference[0] and all(
                    np.array_equal(a, b) for a, b in zip(leaves, reference[1], strict=True)
                )
                if not same:
                    print(f"warning: {name} differs from the first row's losses or parameters")
                if ckpt is not None and mod is _train:
                    t, _, _ = _fit(mod, mlp, data, args.epochs, ckpt, every)
                    if name == "every epoch":
                        times["resume a finished run"].append(t)
    base = statistics.median(times["no checkpoints"])
    print(f"{args.rows} rows ({len(data.y_train)} train), {args.epochs} epochs, "
          f"median of {args.repeats}, jax {jax.__version__}\n")  # fmt: skip
    print("| trainer | seconds | ratio to 'no checkpoints' |\n|---|---:|---:|")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.3f} | {med / base:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
