"""Pieces shared by the science benchmark scripts (``bench_dm_classes.py``, ``bench_ideal_observer.py``,
``bench_posterior.py``, ``bench_science.py``, ``bench_sensitivity.py``).

The scripts run as ``python benchmarks/bench_x.py``, so this folder is on ``sys.path`` and they import
``from _common import ...``. Nothing here changes what a script computes or prints: these are the command
line options, output folder, simulation timing, training call, metrics reading, figure saving and
``figures.txt`` writing that every script used to spell out itself.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

#: Options the scripts share: name (as a keyword of :func:`add_options`) -> (type, help used when the
#: script gives none). A script gives each option its own default and, where it differs, its own help.
SHARED_OPTIONS: dict[str, tuple[type, str | None]] = {
    "out": (str, None),
    "preset": (str, None),
    "presets": (str, None),
    "n_per_class": (int, None),
    "models": (str, None),
    "seeds": (str, None),
    "epochs": (int, None),
    "batch_size": (int, None),
    "regress_n": (int, None),
    "regress_models": (str, None),
    "regress_epochs": (int, None),
    "workers": (int, "simulation processes"),
    "image_size": (int, None),
}


def add_options(parser: argparse.ArgumentParser, **options: Any) -> None:
    """Add shared ``--name`` options to ``parser`` in the order given (``batch_size`` -> ``--batch-size``).

    Each value is the option's default, or a ``(default, help)`` pair for a script-specific help text. The
    option's type comes from :data:`SHARED_OPTIONS` (a string option is parsed as text, as argparse's own
    default).

    Raises:
        ValueError: a name not in :data:`SHARED_OPTIONS` (the message lists the valid names).
    """
    for name, value in options.items():
        if name not in SHARED_OPTIONS:
            raise ValueError(f"unknown shared option {name!r}; valid: {', '.join(SHARED_OPTIONS)}")
        kind, help_text = SHARED_OPTIONS[name]
        default = value
        if isinstance(value, tuple):
            default, help_text = value
        flag = "--" + name.replace("_", "-")
        if kind is str:
            parser.add_argument(flag, default=default, help=help_text)
        else:
            parser.add_argument(flag, type=kind, default=default, help=help_text)


def add_set_option(parser: argparse.ArgumentParser, help_text: str | None = None) -> None:
    """Add the repeatable ``--set KEY=VALUE`` simulator override (stored as ``args.overrides``, a list)."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help_text)


def csv_list(text: str) -> list[str]:
    """Split a comma-separated option value into its non-empty, stripped items (``""`` -> ``[]``)."""
    return [t.strip() for t in text.split(",") if t.strip()]


def command_line(script: str, argv: list[str] | None) -> str:
    """The command that reproduces this invocation: ``python benchmarks/<script> <arguments>``.

    ``argv`` is what ``main`` received (``None``: the process's own ``sys.argv[1:]``), shell-quoted.
    """
    return f"python benchmarks/{script} " + shlex.join(sys.argv[1:] if argv is None else argv)


def output_dir(path: str) -> Path:
    """The ``--out`` folder as a :class:`~pathlib.Path`, created (with parents) if missing."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def sim_overrides(items: list[str], image_size: int | None) -> dict[str, Any]:
    """Simulator config overrides from ``--set`` items (checked by ``parse_set_overrides``) and ``--image-size``
    (px; ``None`` or 0 keeps the preset's size)."""
    from equilens.simulation.config import parse_set_overrides

    overrides = parse_set_overrides(items)
    if image_size:
        overrides["image_size"] = image_size
    return overrides


def simulate(config: Any, classes: list[str], n: int, seed: int, data: Path, workers: int, **kwargs: Any) -> float:
    """Generate (or resume) the data set ``data`` with ``generate_dataset``; returns the wall time in seconds.

    ``config`` is a resolved ``SimConfig``, ``n`` images per class, ``seed`` the data set seed; ``kwargs`` go
    to ``generate_dataset`` (e.g. ``progress=False``).
    """
    from equilens.simulation.generate import generate_dataset

    t = time.perf_counter()
    generate_dataset(config, classes, n, seed, data, workers=workers, **kwargs)
    return time.perf_counter() - t


def train_on_cpu(run: Path, angles: list[float], **config: Any) -> Path:
    """Train and evaluate one run in this process on the CPU (``num_workers=0``), resuming a finished or
    interrupted run as ``train_and_evaluate`` does; ``config`` are ``TrainConfig`` fields, ``angles`` the
    evaluation rotation angles (degrees). Returns ``run``."""
    from equilens.training.config import TrainConfig
    from equilens.workflows.quickstart import train_and_evaluate

    train_and_evaluate(TrainConfig(num_workers=0, accelerator="cpu", **config), run, angles=angles)
    return run


def training_seconds(run: Path) -> float:
    """A run's training wall time in seconds, from its ``train_summary.json``."""
    return float(json.loads((run / "train_summary.json").read_text(encoding="utf-8"))["training_seconds"])


def run_metrics(run: Path) -> dict[str, Any]:
    """The test-split metrics a run's evaluation wrote (``eval/metrics.json``) with ``train_s``, its training
    wall time in seconds (:func:`training_seconds`), added."""
    m: dict[str, Any] = json.loads((run / "eval" / "metrics.json").read_text(encoding="utf-8"))
    m["train_s"] = training_seconds(run)
    return m


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (the scripts only write PNG files)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, dpi: int) -> None:
    """Lay out ``fig`` tightly, write it to ``path`` at ``dpi`` dots per inch and close it."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)


def write_figures(out: Path, lines: list[str]) -> int:
    """Print the result lines and write them to ``out / "figures.txt"``; returns 0, the script's exit code."""
    text = "\n".join(lines)
    print(text)
    (out / "figures.txt").write_text(text + "\n", encoding="utf-8")
    return 0
