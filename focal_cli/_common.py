"""What every subcommand shares: the error convention, argument helpers, output and progress.

The error convention of the ``focal`` command:

- bad input (a :class:`UsageError` raised here, or an :class:`ensembles.util.InputError` such as
  a malformed bundle, raised by a library) prints one line ``focal: error: ...`` on stderr and
  exits with status 2;
- a missing or unreadable input file is bad input too (status 2);
- any other exception is a bug: one line ``focal: internal error: ...`` and a hint to rerun with
  ``--debug`` for the traceback; exit status 1.

Output: :func:`emit` writes exactly one JSON document on stdout with ``--format json`` (NaN as
``null``), else the human-readable text. Progress bars go to stderr, and only when stderr is a
terminal and the work lasts long enough to be worth one (:class:`progress_bar`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from ensembles.util import InputError, jsonable

from ._progress import ProgressBar

__all__ = [
    "ProgressBar",
    "UsageError",
    "add_bundle",
    "add_format",
    "add_metric",
    "emit",
    "emit_json",
    "fmt",
    "formatter",
    "load_bundle_arg",
    "log",
    "parse_team",
    "progress_bar",
    "subcommand",
    "table",
]


class UsageError(InputError):
    """Bad command-line input: printed as one line ``focal: error: ...``, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump): bad flags give one line on stderr."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def formatter(prog: str) -> argparse.HelpFormatter:
    """The help formatter of every subcommand (keeps the examples' line breaks)."""
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def subcommand(
    subparsers: Any, name: str, *, help: str, description: str, run: Callable[..., int]
) -> argparse.ArgumentParser:
    """Add one subcommand whose handler is ``run(args) -> exit status``.

    ``description`` is dedented; end it with an ``examples:`` block.
    """
    p = subparsers.add_parser(
        name, help=help, description=textwrap.dedent(description), formatter_class=formatter
    )
    p.set_defaults(run=run)
    return p


def add_format(p: argparse.ArgumentParser) -> None:
    """Add ``--format {table,json}``."""
    p.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="output: human-readable text (default) or one JSON document on stdout",
    )


def add_bundle(p: argparse.ArgumentParser, *, split: bool = False) -> None:
    """Add the ``BUNDLE`` argument and ``--task`` (and ``--split`` when asked)."""
    p.add_argument("bundle", metavar="BUNDLE", help="cached-outputs bundle (.npz; docs/bundle.md)")
    p.add_argument("--task", metavar="T", help="task name inside a multi-task bundle")
    if split:
        p.add_argument(
            "--split",
            metavar="NAME",
            choices=("train", "val", "test", "all"),
            help="rows to use: train, val, test or all",
        )


def add_metric(p: argparse.ArgumentParser, *, what: str = "diversity metric") -> None:
    """Add ``--metric NAME`` (default ``focal``), choosing from :data:`focal.METRICS`."""
    from focal import METRICS

    p.add_argument(
        "--metric",
        default="focal",
        choices=METRICS,
        metavar="NAME",
        help=f"{what} (default focal); one of: " + ", ".join(METRICS),
    )


def load_bundle_arg(args: argparse.Namespace):
    """Load ``args.bundle`` (``args.task``), restricted to ``args.split`` when given."""
    import ensembles

    bundle = ensembles.load_bundle(args.bundle, task=getattr(args, "task", None))
    split = getattr(args, "split", None)
    if split and split != "all":
        bundle = bundle.select_split(split)
    return bundle


def parse_team(bundle, text: str, *, flag: str = "--team") -> list[str]:
    """Member names from ``A,B,C`` or ``all``; at least 2, each a model of ``bundle``."""
    if text.strip().lower() == "all":
        return list(bundle.models)
    names = [t.strip() for t in text.split(",") if t.strip()]
    if len(names) < 2:
        raise UsageError(f"{flag}: give at least 2 comma-separated model names, or 'all'")
    unknown = [n for n in names if n not in bundle.models]
    if unknown:
        raise UsageError(
            f"{flag}: unknown model {unknown[0]!r}; models are {', '.join(bundle.models)}"
        )
    return names


def log(message: str) -> None:
    """One line on stderr."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def emit_json(doc: dict[str, Any]) -> None:
    """Write ``doc`` on stdout as one strict JSON document (NaN as ``null``)."""
    sys.stdout.write(json.dumps(jsonable(doc), allow_nan=False, indent=2) + "\n")
    sys.stdout.flush()


def emit(args: argparse.Namespace, doc: dict[str, Any], text: Callable[[], str] | str) -> int:
    """Write ``doc`` as one JSON document (``--format json``) or ``text`` on stdout; return 0."""
    if getattr(args, "format", "table") == "json":
        emit_json(doc)
        return 0
    else:
        sys.stdout.write((text() if callable(text) else text).rstrip("\n") + "\n")
    sys.stdout.flush()
    return 0


def baseline_accuracies(base: dict[str, Any], *, oracle: bool = False) -> dict[str, Any]:
    """The baseline block every fuser's ``evaluate`` prints, from ``fusers.baselines(...)``;
    ``oracle`` adds the pool's oracle (some member right).

    Example:
        >>> base = {"best_single": {"name": "a", "accuracy": 0.7}, "plurality": 0.6,
        ...         "soft": 0.65, "stacking": 0.72, "pool_plurality": 0.61, "oracle_pool": 0.9}
        >>> sorted(baseline_accuracies(base, oracle=True))
        ['best_single', 'oracle', 'plurality', 'pool_plurality', 'soft', 'stacking']
    """
    block = {
        "best_single": base["best_single"]["accuracy"],
        "plurality": base["plurality"],
        "soft": base["soft"],
        "stacking": base["stacking"],
        "pool_plurality": base["pool_plurality"],
    }
    if oracle:
        block["oracle"] = base["oracle_pool"]
    return block


def fmt(x: Any, digits: int = 4) -> str:
    """A table cell: floats with ``digits`` decimals, ``-`` for missing or NaN."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _numeric(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: numbers right-aligned, the last column left-aligned."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(items: Sequence[str]) -> str:
        return "  ".join(
            s.ljust(w) if i == len(items) - 1 or not _numeric(s) else s.rjust(w)
            for i, (s, w) in enumerate(zip(items, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


def progress_bar(label: str, *, enabled: bool = True, delay: float = 1.0) -> ProgressBar:
    """A progress bar on stderr, drawn only on a terminal and after ``delay`` seconds."""
    return ProgressBar(label, delay=delay, enabled=enabled and sys.stderr.isatty())
