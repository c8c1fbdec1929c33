"""``equilens fields``: feature fields of a steerable and a conventional CNN while the input rotates (a thin
wrapper over :func:`equilens.evaluation.fields.compare_fields` and :mod:`equilens.evaluation.field_plots`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from equilens.cli.common import DefaultsHelpFormatter
from equilens.errors import ConfigError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fields", help="feature fields of a steerable CNN and a CNN while the input rotates (GIF)",
        formatter_class=DefaultsHelpFormatter,
        description="Rotate one image of DATA through 360 degrees and draw the feature fields after a few layers "
                    "of an equivariant network (a scalar field as colour, a frequency-1 vector field as arrows) "
                    "beside the same view of a conventional CNN: in the lab frame, and in the co-rotating frame "
                    "(the response rotated back by the input's angle), where the equivariant fields stand still. "
                    "Writes OUT (GIF), OUT's name with _strip.png (a few frames), _change.png (the co-rotating "
                    "frame's relative change against the angle, with the interpolation floor) and .json "
                    "(settings and curves). Untrained networks unless checkpoints are given.")
    p.add_argument("--data", required=True, help="equilens data set directory (square images)")
    p.add_argument("--index", type=int, default=0, help="position of the image in the data set")
    p.add_argument("--out", required=True, help="the animation, a .gif file")
    p.add_argument("--model", help="the equivariant network, steerable_c{N} or steerable_d{N} with N >= 4, or "
                                   "steerable_d8_smooth / steerable_d8_fine / steerable_so2_fourier / "
                                   "steerable_o2_fourier (default: the checkpoint's model, else steerable_c8)")
    p.add_argument("--checkpoint", help="trained weights of --model (a run's checkpoints/best.ckpt); its input "
                                        "is normalised as in that run")
    p.add_argument("--cnn", default="resnet18", help="the conventional network: resnet18 or cnn_small")
    p.add_argument("--cnn-checkpoint", help="trained weights of --cnn (otherwise untrained)")
    p.add_argument("--depth", type=int, default=3, help="layers of --model before the read-out")
    p.add_argument("--cnn-depth", type=int,
                   help="layers (ResNet: 1 = stem, then stages) of --cnn before the read-out (default: the "
                        "deepest whose feature grid is at least as fine as --model's)")
    p.add_argument("--frames", type=int, default=36, help="angles through the turn (36: every 10 degrees)")
    p.add_argument("--seed", type=int, default=0, help="seed of the untrained weights and calibration images")
    p.add_argument("--margin", type=float, default=0.25,
                   help="zero margin around the image before the networks, fraction of its side")
    p.add_argument("--fps", type=int, default=6, help="frames per second of the GIF")
    p.add_argument("--no-progress", action="store_true", help="no progress lines")
    p.set_defaults(func=run_fields)


def _check_out(path: str) -> Path:
    out = Path(path)
    if out.suffix.lower() != ".gif":
        raise ConfigError(f"--out {path}: the animation is written as a GIF; give a file name ending in .gif "
                          f"(e.g. {out.with_suffix('.gif').name})")
    if out.is_dir():
        raise ConfigError(f"--out {path} is a directory; give a file name such as {out / 'fields.gif'}")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"--out {path}: {parent} is a file, not a directory")
            break
    return out


def run_fields(args: argparse.Namespace) -> int:
    out = _check_out(args.out)
    if args.frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {args.frames}")
    if args.fps <= 0:
        raise ConfigError(f"--fps must be > 0, got {args.fps}")
    if args.margin < 0:
        raise ConfigError(f"--margin must be >= 0 (a fraction of the image side), got {args.margin}")
    if not Path(args.data).is_dir():
        raise ConfigError(f"--data {args.data} is not a directory (give an equilens data set)")
    from equilens.evaluation.field_plots import plot_field_change, plot_field_strip, write_field_animation
    from equilens.evaluation.fields import compare_fields

    def log(line: str) -> None:
        print(line, flush=True)

    def progress(what: str, done: int, total: int) -> None:
        if not args.no_progress and (done == total or done % max(1, total // 4) == 0):
            print(f"  {what}: {done}/{total} angles", file=sys.stderr, flush=True)

    comparison = compare_fields(args.data, args.index, model=args.model, cnn=args.cnn, checkpoint=args.checkpoint,
                                cnn_checkpoint=args.cnn_checkpoint, depth=args.depth, cnn_depth=args.cnn_depth,
                                frames=args.frames, seed=args.seed, margin=args.margin, log=log,
                                progress=progress)
    print(comparison.equivariant.table())
    print(comparison.conventional.table())
    stem = out.with_suffix("")
    write_field_animation(comparison, out, fps=args.fps,
                          progress=lambda done, total: progress("GIF", done, total))
    strip = plot_field_strip(comparison, f"{stem}_strip.png")
    change = plot_field_change(comparison, f"{stem}_change.png")
    summary = Path(f"{stem}.json")
    summary.write_text(json.dumps(comparison.to_dict(), indent=1), encoding="utf-8")
    print(f"wrote {out}, {strip}, {change}, {summary}")
    return 0
