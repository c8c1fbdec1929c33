"""``equilens study data-efficiency`` and ``equilens study rotation-robustness``: thin wrappers over
:func:`equilens.workflows.study.run_study` (nothing heavy is imported to build the help)."""

from __future__ import annotations

import argparse
from typing import Any

from equilens.cli.common import DefaultsHelpFormatter, check_output_dir
from equilens.data.choices import AUGMENTATIONS
from equilens.errors import ConfigError
from equilens.workflows.study import StudyConfig


def _model_arg(value: str) -> tuple[str, Any]:
    if "=" not in value:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    import yaml

    key, raw = value.split("=", 1)
    return key.strip(), yaml.safe_load(raw)


def _common(p: argparse.ArgumentParser, d: StudyConfig, out: str) -> None:
    p.add_argument("--data", required=True, help="the data set directory (every cell trains and is tested on it)")
    p.add_argument("--out", default=out, help="the study directory (a run directory per cell, tables, plots)")
    p.add_argument("--models", default=",".join(d.models), help="comma-separated model names (`equilens models`)")
    p.add_argument("--augment", default=",".join(d.augment),
                   help=f"comma-separated training augmentations, of: {', '.join(AUGMENTATIONS)}")
    p.add_argument("--seeds", type=int, default=d.seeds, help="training seeds per combination (seeds 0..N-1)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="training epochs of every cell")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per training batch")
    p.add_argument("--lr", type=float, default=d.lr, help="AdamW learning rate (cosine schedule)")
    p.add_argument("--model-arg", action="append", type=_model_arg, default=[], metavar="KEY=VALUE",
                   help="architecture option given to every model, repeatable (e.g. width=0.5; default: the "
                        "models' own)")
    p.add_argument("--split-seed", type=int, default=d.split_seed,
                   help="seed of the one train/val/test split (default 0)")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction, help="validation fraction per class")
    p.add_argument("--test-fraction", type=float, default=d.test_fraction, help="test fraction per class")
    p.add_argument("--angle-step", type=float, default=d.angle_step,
                   help="continuous-angle step of every cell's symmetry measurement (degrees)")
    p.add_argument("--target-auc", type=float, default=d.target_auc,
                   help="validation macro AUC whose first crossing is counted in training images")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="run the cells as tasks on this Dask scheduler (workers need the same paths; default: "
                        "here, one after another)")
    p.add_argument("--accelerator", default=d.accelerator, help="Lightning accelerator of every cell")
    p.add_argument("--num-workers", type=int, default=d.num_workers,
                   help="data-loader processes per cell (default 0: in the training process)")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    d = StudyConfig()
    p = sub.add_parser("study", help="studies over many runs: data efficiency, rotation robustness",
                       description="Grids of ordinary training runs (one run directory per cell), trained and "
                                   "evaluated alike, summarised as CSV, markdown table and plot that `equilens "
                                   "report` shows. Running a study again continues it (finished cells are kept, "
                                   "an interrupted one resumes); other cell settings in the same --out are "
                                   "refused.")
    studies = p.add_subparsers(dest="study", metavar="STUDY")
    e = studies.add_parser(
        "data-efficiency", help="equivariance versus augmentation: metrics against the training-set size",
        description="Train every model x augmentation x size x seed on nested per-class subsets of one training "
                    "pool, evaluate all on one test split, and plot test macro AUC, accuracy and the hardest class "
                    "pair's one-vs-one AUC against the size (error bars over seeds); also the wall time per run "
                    "and the training images seen until the validation AUC first reached --target-auc. Writes "
                    "OUT/data_efficiency.{csv,md,png} and OUT/cells.csv.",
        formatter_class=DefaultsHelpFormatter)
    _common(e, d, "studies/eff")
    e.add_argument("--sizes", default=",".join(str(s) for s in d.sizes),
                   help="comma-separated training images per class")
    e.set_defaults(func=run, kind="data-efficiency")
    r = studies.add_parser(
        "rotation-robustness", help="accuracy and AUC against the rotation of the test images",
        description="Train every model x augmentation x seed on a data set of one fixed orientation (`equilens "
                    "simulate --legacy` or --fixed-orientation) and evaluate each on its test images rotated by "
                    "0..360 degrees (disk-masked): accuracy and macro AUC against the angle. Writes "
                    "OUT/rotation.{csv,md,png} and OUT/cells.csv.",
        formatter_class=DefaultsHelpFormatter)
    _common(r, d, "studies/rotation")
    r.add_argument("--size", type=int, default=None,
                   help="training images per class (default: all the training split holds)")
    r.add_argument("--rotation-step", type=float, default=d.rotation_step, help="angle step of the curve (degrees)")
    r.set_defaults(func=run, kind="rotation-robustness")
    p.set_defaults(func=lambda _args: _usage(p))


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def _list(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError(f"--{what} is empty; give a comma-separated list")
    return items


def config_from_args(args: argparse.Namespace) -> StudyConfig:
    """The :class:`StudyConfig` of parsed command-line options."""
    if args.kind == "data-efficiency":
        texts = _list(args.sizes, "sizes")
        try:
            sizes: list[int | None] = [int(s) for s in texts]
        except ValueError as exc:
            raise ConfigError(f"--sizes must be comma-separated integers (images per class), got {args.sizes!r}") \
                from exc
    else:
        sizes = [args.size]
    return StudyConfig(kind=args.kind, data=args.data, models=_list(args.models, "models"),
                       augment=_list(args.augment, "augment"), sizes=sizes, seeds=args.seeds, epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, model_kwargs=dict(args.model_arg),
                       split_seed=args.split_seed, val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                       angle_step=args.angle_step, rotation_step=getattr(args, "rotation_step", 15.0),
                       target_auc=args.target_auc, accelerator=args.accelerator, num_workers=args.num_workers)


def run(args: argparse.Namespace) -> int:
    from equilens.cli.train import check_model_args
    from equilens.workflows.study import run_study

    cfg = config_from_args(args).validate()
    check_output_dir(args.out, what="the study's run directories, tables and plots")
    for model in cfg.models:
        check_model_args(model, dict(cfg.model_kwargs))
    table = run_study(cfg, args.out, scheduler=args.scheduler)
    print(f"table: {table.resolve()}")
    return 0
