"""The ``equilens`` command: a thin layer of subcommands over library functions.

Each submodule of :mod:`equilens.cli` defines ``add_parsers(subparsers)``; every subcommand sets
``func`` to a callable taking the parsed ``argparse.Namespace`` and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from equilens.errors import EquilensError

# Submodules that contribute subcommands, in the order they appear in --help.
_COMMAND_MODULES = ("simulate", "models", "fields", "train", "infer", "pipeline", "study")


class _VersionAction(argparse.Action):
    """``--version``: reads the version only when asked (the package metadata is slow to import)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        import equilens

        print(f"equilens {equilens.__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="equilens",
        description="Simulate strong lenses with dark-matter substructure and train equivariant networks.",
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"equilens.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"equilens.cli.{name}":
                continue  # that part of the CLI is not there yet
            raise
        module.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EquilensError as exc:
        print(f"equilens {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"equilens {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
