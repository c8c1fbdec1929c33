"""``equilens quickstart``: the README's main job (see :mod:`equilens.workflows.quickstart`)."""

from __future__ import annotations

import argparse
import json

from equilens.cli.common import DefaultsHelpFormatter
from equilens.data.choices import AUGMENTATIONS
from equilens.errors import ConfigError
from equilens.workflows.quickstart import QUICKSTART_PHYSICS, QuickstartConfig


def add_parsers(sub: argparse._SubParsersAction) -> None:
    d = QuickstartConfig()
    physics = " ".join(f"--set {k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in QUICKSTART_PHYSICS.items())
    p = sub.add_parser(
        "quickstart", help="the main job: simulate a small set, train the default equivariant model and "
                           "resnet18, evaluate both, write the report",
        description="The whole pipeline on a small default (about 1 minute on an idle 2-core machine): simulate "
                    f"{d.n_per_class} images per class of {', '.join(d.classes)} ({d.preset}, with {physics}: the "
                    "subhalo recipe of the DeepLense simulations, under which cdm is learnable at 64 px; with "
                    "slope -1.9 no_sub vs cdm sits at chance), train "
                    f"{' and '.join(d.models)} for {d.epochs} epochs, evaluate them on the test split, write "
                    "OUT/report/report.html and print the results with what they mean. Running it again "
                    "continues where it stopped; with changed training settings the affected runs are trained "
                    "again, with changed data settings (preset, size, images per class, --set) it is refused.",
        formatter_class=DefaultsHelpFormatter)
    p.add_argument("--out", default="quickstart", help="output directory")
    p.add_argument("--preset", default=d.preset, help="simulator preset (`equilens simulate --list-presets`)")
    p.add_argument("--image-size", type=int, default=None, help="override the preset's image size (px)")
    p.add_argument("--n-per-class", type=int, default=d.n_per_class, help="simulated images per class")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                   help=f"simulator config override on top of {physics}, repeatable "
                        "(e.g. --set subhalo_abundance=sigma_sub --set subhalo_mass_slope=-1.9 "
                        "--set subhalo_mass_sheet=true --set subhalo_render_mass_min=1e7 for the realistic "
                        "default of `equilens simulate`)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="training epochs of every run")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per training batch")
    p.add_argument("--models", default=",".join(d.models), help="comma-separated model names (`equilens models`)")
    p.add_argument("--seeds", default=",".join(str(s) for s in d.seeds), help="comma-separated training seeds")
    p.add_argument("--augmentation", default=d.augmentation, choices=AUGMENTATIONS,
                   help="training augmentation of every run")
    p.add_argument("--workers", type=int, default=d.workers, help="simulation worker processes")
    p.add_argument("--angle-step", type=float, default=d.angle_step,
                   help="continuous-angle step of the symmetry measurement (degrees)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from equilens.simulation.config import parse_set_overrides
    from equilens.workflows.quickstart import run_quickstart

    try:
        seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
    except ValueError as exc:
        raise ConfigError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from exc
    cfg = QuickstartConfig(preset=args.preset, image_size=args.image_size, n_per_class=args.n_per_class,
                           sim_overrides={**QUICKSTART_PHYSICS, **parse_set_overrides(args.overrides)},
                           epochs=args.epochs, batch_size=args.batch_size,
                           models=tuple(m.strip() for m in args.models.split(",") if m.strip()), seeds=seeds,
                           augmentation=args.augmentation, workers=args.workers, angle_step=args.angle_step)
    report = run_quickstart(cfg, args.out, progress=not args.no_progress)
    print(f"report: {report.resolve()}")
    return 0
