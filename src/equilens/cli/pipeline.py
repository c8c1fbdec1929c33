"""``equilens quickstart``: the README's main job (see :mod:`equilens.training.pipeline`)."""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from equilens.training.pipeline import QuickstartConfig

    d = QuickstartConfig()
    p = sub.add_parser("quickstart", help="simulate a small set, train the default equivariant model and resnet18, "
                                          "evaluate both, write the report",
                       description="The whole pipeline on a small default (about 1 minute on an idle 2-core "
                                   "machine). Running it again continues where it stopped.")
    p.add_argument("--out", default="quickstart", help="output directory (default: quickstart)")
    p.add_argument("--preset", default=d.preset)
    p.add_argument("--image-size", type=int, default=None, help="override the preset's image size (px)")
    p.add_argument("--n-per-class", type=int, default=d.n_per_class, help=f"default {d.n_per_class}")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--models", default=",".join(d.models), help=f"comma-separated (default {','.join(d.models)})")
    p.add_argument("--seeds", default=",".join(str(s) for s in d.seeds), help="comma-separated training seeds")
    p.add_argument("--augmentation", default=d.augmentation)
    p.add_argument("--workers", type=int, default=d.workers, help="simulation worker processes")
    p.add_argument("--angle-step", type=float, default=d.angle_step,
                   help="continuous-angle step of the symmetry measurement (degrees)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from equilens.errors import ConfigError
    from equilens.training.pipeline import QuickstartConfig, run_quickstart

    try:
        seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
    except ValueError as exc:
        raise ConfigError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from exc
    cfg = QuickstartConfig(preset=args.preset, image_size=args.image_size, n_per_class=args.n_per_class,
                           epochs=args.epochs, batch_size=args.batch_size,
                           models=tuple(m.strip() for m in args.models.split(",") if m.strip()), seeds=seeds,
                           augmentation=args.augmentation, workers=args.workers, angle_step=args.angle_step)
    report = run_quickstart(cfg, args.out, progress=not args.no_progress)
    print(f"report: {report.resolve()}")
    return 0
