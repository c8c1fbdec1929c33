"""Shared pieces of the subcommands: a help formatter that shows meaningful defaults, and checks of output
paths made before any work starts, so that a bad ``--out`` is one line and exit code 2 instead of a
traceback after minutes of computing. Imports nothing heavy (``--help`` must stay fast)."""

from __future__ import annotations

import argparse
from pathlib import Path

from equilens.errors import ConfigError


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` to an option's help unless the help already states a default or X says
    nothing (None, False, an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


#: Suffixes that name a single file, refused where ``--out`` must be a directory.
FILE_SUFFIXES: tuple[str, ...] = (".html", ".htm", ".md", ".json", ".png", ".pdf", ".svg", ".txt")


def figure_formats() -> list[str]:
    """File extensions matplotlib can save a figure as (without the dot, sorted)."""
    from matplotlib.backend_bases import FigureCanvasBase

    return sorted(FigureCanvasBase.get_supported_filetypes())


def check_figure_path(path: str, option: str = "--out") -> Path:
    """Return ``path`` if a figure can be written there: its extension is a format matplotlib writes
    and no part of its folder is an existing file; else raise :class:`ConfigError` listing the formats."""
    out = Path(path)
    formats = figure_formats()
    ext = out.suffix.lower().lstrip(".")
    if not ext:
        raise ConfigError(f"{option} {path} has no file extension; give one of: {', '.join(formats)}")
    if ext not in formats:
        raise ConfigError(f"{option} {path}: unsupported figure format {out.suffix!r}; supported: "
                          f"{', '.join(formats)}")
    if out.is_dir():
        raise ConfigError(f"{option} {path} is a directory; give a file name such as {out / 'figure.png'}")
    _check_parents(out, option)
    return out


def check_output_dir(path: str, option: str = "--out", what: str = "the output files") -> Path:
    """Return ``path`` if it can be used (or created) as an output directory; else raise
    :class:`ConfigError`: it is an existing file, lies under a file, or names a file (``.html``, ...)."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{option} {path} is a file; give a directory (it will hold {what})")
    if not out.exists() and out.suffix.lower() in FILE_SUFFIXES:
        raise ConfigError(f"{option} {path} names a file; give a directory (it will hold {what})")
    _check_parents(out, option)
    return out


def _check_parents(out: Path, option: str) -> None:
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{option} {out}: {parent} is a file, not a directory")
            return
