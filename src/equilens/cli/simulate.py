"""Subcommands ``simulate``, ``show``, ``info`` and ``import-deeplense`` (thin: the work is in the library)."""

from __future__ import annotations

import argparse
from typing import Any

from equilens.errors import ConfigError


def add_parsers(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "simulate", help="simulate a lens data set (sharded HDF5 + manifest)",
        description="Simulate strong-lens images of each class into a data set directory. Re-running the same "
                    "command on an unfinished directory completes it; a directory holding anything else is refused.")
    p.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    p.add_argument("--preset", help="model_i, model_ii or model_iii (see --list-presets)")
    p.add_argument("--classes", help="comma-separated classes in label order (default: all of the preset's)")
    p.add_argument("--n-per-class", type=int, help="images per class")
    p.add_argument("--seed", type=int, default=0, help="non-negative integer seed (default 0)")
    p.add_argument("--out", help="output data set directory")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--scheduler", help="Dask scheduler address tcp://HOST:PORT (instead of local workers)")
    p.add_argument("--legacy", action="store_true", help="reproduce the published DeepLense recipe")
    p.add_argument("--fixed-orientation", action="store_true", default=None,
                   help="fix lens/shear/source position angles at DeepLense's values (on with --legacy)")
    p.add_argument("--config", metavar="YAML", help="YAML file of config overrides")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                   help="config override, repeatable (e.g. --set noise=none)")
    p.add_argument("--shard-size", type=int, default=500, help="images per shard file (default 500)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_simulate)

    p = subparsers.add_parser("show", help="write a preview grid of a data set",
                              description="A grid of example images per class, with colour bars and key parameters.")
    p.add_argument("dataset", help="data set directory")
    p.add_argument("--out", required=True, help="output image (e.g. preview.png; any format matplotlib writes)")
    p.add_argument("--per-class", type=int, default=4, help="examples per class (default 4)")
    p.add_argument("--mark-substructure", action="store_true", help="overlay subhalo and vortex positions")
    p.set_defaults(func=_show)

    p = subparsers.add_parser("info", help="counts, image size, parameter ranges and integrity of a data set",
                              description="Print a data set's classes and counts, image size, the min..max of "
                                          "every recorded parameter per class, the command that made it, and check "
                                          "the SHA-256 of every shard (exit code 2 if one does not match).")
    p.add_argument("dataset", help="data set directory")
    p.add_argument("--no-check", action="store_true", help="skip the SHA-256 check of every shard")
    p.set_defaults(func=_info)

    p = subparsers.add_parser("import-deeplense", help="convert a DeepLense class-folder .npy set",
                              description="Convert a DeepLense folder (one sub-folder of .npy files per class) to an "
                                          "equilens data set. The axion files are pickled [image, mass] arrays: they "
                                          "are read only with --allow-pickle, because unpickling can run code.")
    p.add_argument("directory", help="DeepLense folder with class sub-folders (e.g. axion/ cdm/ no_sub/)")
    p.add_argument("--out", required=True, help="output data set directory")
    p.add_argument("--allow-pickle", action="store_true",
                   help="read pickled object arrays (only for files you trust: unpickling can run code)")
    p.add_argument("--classes", help="comma-separated class folders in label order (default: no_sub,cdm,axion "
                                     "order for those present, then the others sorted)")
    p.add_argument("--shard-size", type=int, default=500, help="images per shard file (default 500)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_import)


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [c.strip() for c in text.split(",") if c.strip()]


def format_presets() -> str:
    """The table printed by ``equilens simulate --list-presets``."""
    from equilens.simulation.presets import list_presets

    lines = [f"{'preset':<10s} {'image':>9s} {'arcsec/px':>9s}  {'instrument':<20s} classes",]
    for p in list_presets():
        lines.append(f"{p.name:<10s} {p.image_size:>4d}x{p.image_size:<4d} {p.pixel_scale:>9.3f}  "
                     f"{p.instrument:<20s} {', '.join(p.classes)}")
        lines.append(f"{'':<10s} {p.description}")
    return "\n".join(lines)


def _simulate(args: argparse.Namespace) -> int:
    if args.list_presets:
        print(format_presets())
        return 0
    from equilens.simulation.presets import PRESET_NAMES, list_presets

    missing = [flag for flag, value in (("--preset", args.preset), ("--n-per-class", args.n_per_class),
                                        ("--out", args.out)) if value is None]
    if missing:
        raise ConfigError(f"equilens simulate needs {', '.join(missing)} (presets: {', '.join(PRESET_NAMES)}; "
                          f"or use --list-presets)")
    from equilens.simulation.config import load_overrides_file, parse_set_overrides, resolve_config
    from equilens.simulation.generate import generate_dataset

    overrides: dict[str, Any] = {}
    if args.config:
        overrides.update(load_overrides_file(args.config))
    overrides.update(parse_set_overrides(args.overrides))
    config = resolve_config(args.preset, overrides, legacy=args.legacy, fixed_orientation=args.fixed_orientation)
    classes = _split(args.classes)
    if classes is None:
        classes = list(next(p.classes for p in list_presets() if p.name == config.preset))
    out = generate_dataset(config, classes, args.n_per_class, args.seed, args.out, workers=args.workers,
                           scheduler=args.scheduler, shard_size=args.shard_size, progress=not args.no_progress)
    print(f"wrote {out} ({args.n_per_class} x {len(classes)} images: {', '.join(classes)})")
    return 0


def _show(args: argparse.Namespace) -> int:
    from equilens.cli.common import check_figure_path
    from equilens.evaluation.preview import preview_grid

    check_figure_path(args.out)
    out = preview_grid(args.dataset, args.out, per_class=args.per_class, mark_substructure=args.mark_substructure)
    print(f"wrote {out}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from equilens.data.store import describe_dataset

    summary = describe_dataset(args.dataset, check=not args.no_check)
    print(summary.format())
    if not args.no_check:
        print(f"\nintegrity     all {summary.n_shards} shards match their SHA-256")
    return 0


def _import(args: argparse.Namespace) -> int:
    from equilens.data.deeplense import import_deeplense

    out = import_deeplense(args.directory, args.out, allow_pickle=args.allow_pickle, classes=_split(args.classes),
                           shard_size=args.shard_size, progress=not args.no_progress)
    print(f"wrote {out}")
    return 0
