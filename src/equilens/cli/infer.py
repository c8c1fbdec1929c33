"""``equilens infer``: posteriors of new images under a posterior run, and their population combination
(a thin wrapper over :func:`equilens.evaluation.posterior.infer_posterior`)."""

from __future__ import annotations

import argparse

from equilens.errors import ConfigError


def _indices(text: str) -> list[int]:
    """``"0,3,10-12"`` -> ``[0, 3, 10, 11, 12]``."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        a, sep, b = part.partition("-")
        try:
            out.extend(range(int(a), int(b) + 1) if sep else [int(a)])
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected indices like 0,3,10-12, got {text!r}") from None
    return out


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("infer", help="posterior of new images under a posterior run (and their combination)",
                       description="Draw posterior samples for images of DATA under RUN (made with --task "
                                   "posterior); with --combine, the population posterior of the one parameter "
                                   "the images share (product of the per-image posteriors, prior divided out).")
    p.add_argument("run", help="run directory made by `equilens train --task posterior`")
    p.add_argument("--data", required=True, help="data set directory (same image size as the run's)")
    p.add_argument("--index", type=_indices, help="data-set positions, e.g. 0,3,10-12 (default: all images)")
    p.add_argument("--samples", type=int, default=2000, help="posterior draws per image (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws")
    p.add_argument("--combine", action="store_true",
                   help="also the population posterior of the shared parameter (one-parameter runs)")
    p.add_argument("--grid-points", type=int, default=801, help="grid of the combination (default 801)")
    p.add_argument("--checkpoint", default="best", help="best (default), last, or a path")
    p.add_argument("--out", help="output directory (default RUN/infer-<data name>)")
    p.set_defaults(func=run_infer)


def run_infer(args: argparse.Namespace) -> int:
    from equilens.evaluation.posterior import infer_posterior

    if args.samples < 2:
        raise ConfigError(f"--samples must be >= 2, got {args.samples}")
    if args.grid_points < 2:
        raise ConfigError(f"--grid-points must be >= 2, got {args.grid_points}")
    infer_posterior(args.run, args.data, index=args.index, checkpoint=args.checkpoint, n_samples=args.samples,
                    seed=args.seed, combine=args.combine, grid_points=args.grid_points, out=args.out)
    return 0
