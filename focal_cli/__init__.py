"""The ``focal`` command line: a thin layer above the ``ensembles``, ``focal`` and ``fusers``
packages.

Every subcommand lives in one module of this package that defines ``register(subparsers)``;
its handler parses flags, builds library objects, makes one library call and prints the
result (:mod:`focal_cli._common` holds the shared output and error helpers). No library module
imports this package.

Example:
    >>> main(["--version"])  # doctest: +SKIP
    focal-fusion 0.1.0
"""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap
import warnings
from collections.abc import Sequence

from ._common import Parser, UsageError, formatter, log

__all__ = ["build_parser", "main"]

#: Modules of this package that add subcommands, in the order ``focal --help`` lists them.
COMMAND_MODULES = (
    "_core",
    "_graph",
    "_import",
    "_fuse",
    "_marl",
    "_lm",
    "_judge",
    "_demo",
    "_h3",
    "_summary",
)

EXIT_BUG = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``focal`` command, with every registered subcommand."""
    parser = Parser(
        prog="focal",
        formatter_class=formatter,
        description=textwrap.dedent(
            """\
            Choose and fuse ensembles of models from their cached outputs.

            examples:
              focal demo                                   # built-in default, no files needed
              focal info outputs.npz
              focal recommend outputs.npz                  # which team and combiner to use
              focal prune outputs.npz --sizes 2-5 --top-k 10
              focal score outputs.npz --team modelA,modelB,modelC --format json
              focal graph outputs.npz --png pool.png --out pool.graphml
            """
        ),
    )
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("focal-fusion")
    except PackageNotFoundError:  # running from a source tree
        ver = "unknown"
    parser.add_argument("--version", action="version", version=f"focal-fusion {ver}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an internal error"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``focal`` command; returns the exit status (0 ok, 1 bug, 2 bad input).

    Warnings raised during a successful command are printed afterwards as one line each; on
    failure the one error line stands alone.
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = _run(parser, argv, debug=debug)
    if status == 0:
        for w in caught:
            log(f"focal: warning: {' '.join(str(w.message).split())}")
    return status


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _run(parser: argparse.ArgumentParser, argv: list[str], *, debug: bool) -> int:
    try:
        args = parser.parse_args(argv)
        if getattr(args, "run", None) is None:
            raise UsageError("missing command; try 'focal --help'")
        return int(args.run(args) or 0)
    except (UsageError, ValueError) as exc:
        from ensembles.util import InputError

        if not isinstance(exc, InputError):
            return _bug(exc, debug)
        log(f"focal: error: {_one_line(exc)}")
        return EXIT_USAGE
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        log(f"focal: error: {where}{exc.strerror or _one_line(exc)}")
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader went away (`focal prune ... | head`): stop quietly, as Unix tools do.
        _silence_stdout()
        return 0
    except KeyboardInterrupt:
        log("focal: interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:
        return _bug(exc, debug)


def _bug(exc: BaseException, debug: bool) -> int:
    if debug:
        import traceback

        traceback.print_exception(exc)
    else:
        log(
            f"focal: internal error: {type(exc).__name__}: {_one_line(exc)} "
            "(this is a bug; rerun with --debug for the traceback)"
        )
    return EXIT_BUG


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
