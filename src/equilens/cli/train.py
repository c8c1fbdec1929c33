"""``equilens train``, ``equilens evaluate`` and ``equilens report``: thin wrappers over
:func:`equilens.training.fit.train`, :func:`equilens.evaluation.evaluate.evaluate` and
:func:`equilens.evaluation.report.build_report`.
"""

from __future__ import annotations

import argparse
from typing import Any

from equilens.cli.common import DefaultsHelpFormatter
from equilens.data.choices import AUGMENTATIONS, NORMALISATIONS, TASKS
from equilens.errors import ConfigError
from equilens.training.config import TrainConfig

# command-line option -> TrainConfig key
_TRAIN_KEYS = ("data", "model", "task", "target", "predict_variance", "epochs", "batch_size", "lr", "weight_decay",
               "seed", "split_seed", "val_fraction", "test_fraction", "normalisation", "augmentation",
               "limit_per_class", "skip_nonfinite", "num_workers", "early_stopping_patience", "bn_batches",
               "accelerator",
               "devices", "num_nodes", "strategy")
_RUNTIME = ("num_workers", "devices", "num_nodes", "strategy", "accelerator")
_DEFAULTS = TrainConfig()


def _default(key: str, text: str = "") -> str:
    """``text`` followed by the TrainConfig default of ``key`` (the options' own defaults are None, so that
    only the options given override a --config file)."""
    value = getattr(_DEFAULTS, key)
    shown = "off" if value is None else value
    return f"{text} (default {shown})" if text else f"default {shown}"


def _devices(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def _model_arg(value: str) -> tuple[str, Any]:
    if "=" not in value:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    import yaml

    key, raw = value.split("=", 1)
    return key.strip(), yaml.safe_load(raw)


def _prior_arg(value: str) -> tuple[str, list[float]]:
    name, sep, raw = value.partition("=")
    try:
        low, high = (float(v) for v in raw.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=LOW,HIGH, got {value!r}") from None
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=LOW,HIGH, got {value!r}")
    return name.strip(), [low, high]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model on an equilens data set (Lightning)",
                       description="Train a registered model. Options override the YAML --config; the resolved "
                                   "config is saved as OUT/config.yaml. Defaults are those of a config without "
                                   "the key.")
    p.add_argument("--config", help="YAML file with training config keys (see OUT/config.yaml of any run)")
    p.add_argument("--data", help="data set directory (required, here or in --config)")
    p.add_argument("--model", help="registry model name (required; `equilens models` lists them)")
    p.add_argument("--model-arg", action="append", type=_model_arg, default=[], metavar="KEY=VALUE",
                   help="architecture option passed to create_model, repeatable (default: the model's own); an "
                        "unknown KEY is refused with the model's valid options")
    p.add_argument("--task", choices=(*TASKS, "posterior"),
                   help=_default("task", "posterior: neural posterior estimation (embedding + normalising flow)"))
    p.add_argument("--target", help="recorded parameter to regress, e.g. log10_m_a (--task regress; --task "
                                    "posterior: a comma-separated list)")
    p.add_argument("--predict-variance", action="store_true", default=None,
                   help="regression: also predict a variance (Gaussian negative log-likelihood; default off)")
    # --- task posterior ---
    p.add_argument("--prior", action="append", type=_prior_arg, default=[], metavar="NAME=LOW,HIGH",
                   help="posterior: prior range of a target (default: the simulator's documented range, else the "
                        "recorded range; repeatable)")
    p.add_argument("--flow-arg", action="append", type=_model_arg, default=[], metavar="KEY=VALUE",
                   help="posterior: flow option (context_features, transforms, hidden_features, bins; repeatable; "
                        "default: the flow's own)")
    p.add_argument("--epochs", type=int, help=_default("epochs"))
    p.add_argument("--batch-size", type=int, help=_default("batch_size", "images per batch and process"))
    p.add_argument("--lr", type=float, help=_default("lr", "AdamW learning rate (cosine schedule)"))
    p.add_argument("--weight-decay", type=float, help=_default("weight_decay", "AdamW weight decay"))
    p.add_argument("--seed", type=int, help=_default("seed", "seed of initialisation, data order and augmentation"))
    p.add_argument("--split-seed", type=int,
                   help=_default("split_seed", "seed of the train/val/test split, shared by every --seed"))
    p.add_argument("--val-fraction", type=float, help=_default("val_fraction", "validation fraction per class"))
    p.add_argument("--test-fraction", type=float, help=_default("test_fraction", "test fraction per class"))
    p.add_argument("--normalisation", choices=NORMALISATIONS,
                   help=_default("normalisation", "statistics from the training split"))
    p.add_argument("--augmentation", choices=AUGMENTATIONS, help=_default("augmentation", "of training batches"))
    p.add_argument("--limit-per-class", type=int,
                   help=_default("limit_per_class", "train on at most this many images per class"))
    p.add_argument("--skip-nonfinite", action="store_true", default=None,
                   help="leave images with NaN or inf pixels out of the split (default: refuse the data set)")
    p.add_argument("--num-workers", type=int, help=_default("num_workers", "data-loader worker processes"))
    p.add_argument("--early-stopping", dest="early_stopping_patience", type=int, metavar="PATIENCE",
                   help=_default("early_stopping_patience",
                                 "stop after PATIENCE epochs without a lower validation loss"))
    p.add_argument("--bn-batches", type=int, metavar="N",
                   help=_default("bn_batches", "training batches over which batch-norm statistics are recomputed "
                                               "for the current weights before every validation (0: off)"))
    p.add_argument("--accelerator", help=_default("accelerator", "Lightning accelerator (cpu, gpu, auto)"))
    p.add_argument("--devices", type=_devices, help=_default("devices", "Lightning devices (a count or 'auto')"))
    p.add_argument("--num-nodes", type=int, help=_default("num_nodes", "machines for a multi-node run"))
    p.add_argument("--strategy", help=_default("strategy", "Lightning strategy, e.g. ddp"))
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in OUT")
    p.add_argument("--stop-after-epochs", type=int, metavar="N",
                   help="end this session after N finished epochs (continue later with --resume; default: run "
                        "every epoch)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (one line per epoch instead; also when the output is not a terminal)")
    p.add_argument("--verbose", action="store_true",
                   help="also show Lightning's messages, model summary and library warnings")
    p.set_defaults(func=run_train)

    e = sub.add_parser("evaluate", help="evaluate a trained run on its held-out test split (or another data set)",
                       description="Evaluate a run's checkpoint (default: the one with the lowest validation "
                                   "loss) on its held-out test split, or on all of another data set with --data: "
                                   "accuracy, one-vs-rest and one-vs-one AUCs and the confusion matrix "
                                   "(classification) or MAE, RMSE, R^2 and calibration (regression), plus the "
                                   "trained model's symmetry. Writes metrics.json, predictions.npz and figures.",
                       formatter_class=DefaultsHelpFormatter)
    e.add_argument("run", help="run directory made by `equilens train`")
    e.add_argument("--data", help="evaluate on all of this data set instead of the run's test split")
    e.add_argument("--checkpoint", default="best", help="best (chosen on validation), last, or a path")
    e.add_argument("--tta", action="store_true", help="also report test-time augmentation over rot90 x flips")
    e.add_argument("--no-symmetry", action="store_true", help="skip the symmetry measurement")
    e.add_argument("--angle-step", type=float, default=30.0, help="continuous-angle step in degrees")
    e.add_argument("--symmetry-images", type=int, default=256,
                   help="images used for the continuous-angle measurement")
    e.add_argument("--batch-size", type=int, default=64, help="images per inference batch")
    e.add_argument("--out", help="output directory (default RUN/eval or RUN/eval-<data name>)")
    # --- posterior runs (--task posterior) ---
    e.add_argument("--samples", type=int, default=1000, help="posterior runs: draws per test image (default 1000)")
    e.add_argument("--sample-seed", type=int, default=0, help="posterior runs: seed of the draws")
    e.add_argument("--bins", type=int, default=8, help="posterior runs: bins of the true value for the per-bin MAE")
    e.add_argument("--compare", action="append", default=[], metavar="RUN",
                   help="posterior runs: a regression run of the same target and test split to compare with "
                        "(repeatable)")
    e.set_defaults(func=run_evaluate)

    r = sub.add_parser("report", help="one HTML page (and markdown) comparing evaluated runs",
                       description="Compare evaluated runs on one page: mean +/- sample std over seeds per (task, "
                                   "target, model, augmentation, data set), parameter counts, training time, "
                                   "symmetry columns and every run's figures. Writes OUT/report.html (figures "
                                   "embedded), OUT/report.md with OUT/figures/, and OUT/summary.json.",
                       formatter_class=DefaultsHelpFormatter)
    r.add_argument("runs", nargs="+", help="run directories (or directories holding runs)")
    r.add_argument("--out", required=True, help="output directory (created; must not be a file)")
    r.add_argument("--title", default="equilens runs", help="page title")
    r.set_defaults(func=run_report)


def config_from_args(args: argparse.Namespace) -> Any:
    """The TrainConfig from --config plus the options given (options win)."""
    from equilens.training.config import TrainConfig, load_config_file

    values: dict[str, Any] = load_config_file(args.config) if args.config else {}
    for key in _TRAIN_KEYS:
        v = getattr(args, key)
        if v is not None:
            values[key] = v
    if args.model_arg:
        values["model_kwargs"] = {**values.get("model_kwargs", {}), **dict(args.model_arg)}
    if getattr(args, "prior", None):
        values["prior"] = {**values.get("prior", {}), **dict(args.prior)}
    if getattr(args, "flow_arg", None):
        values["flow_kwargs"] = {**values.get("flow_kwargs", {}), **dict(args.flow_arg)}
    return TrainConfig.from_mapping(values)


def model_options(name: str) -> dict[str, Any] | None:
    """The architecture options of registered model ``name`` with their defaults (the keyword parameters of
    its factory other than ``in_channels`` / ``num_outputs``; for a factory that passes ``**kwargs`` on,
    those of the class it returns). None when they cannot be read from the signatures."""
    import inspect
    import typing

    from equilens.models import get_entry

    factory = get_entry(name).factory
    params = dict(inspect.signature(factory).parameters)
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        try:
            cls = typing.get_type_hints(factory).get("return")
        except Exception:  # unresolvable annotations: no list to give
            return None
        if not isinstance(cls, type):
            return None
        params = dict(inspect.signature(cls).parameters)
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return None
    return {k: (None if p.default is p.empty else p.default) for k, p in params.items()
            if k not in ("in_channels", "num_outputs") and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def check_model_args(name: str, kwargs: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` naming the valid options (with defaults) if ``kwargs`` holds an option
    model ``name`` does not take."""
    options = model_options(name)
    unknown = sorted(set(kwargs) - set(options)) if options is not None else []
    if unknown:
        valid = ", ".join(f"{k}={v!r}" for k, v in options.items()) if options else "none"
        raise ConfigError(f"{name} takes no option {', '.join(unknown)} (--model-arg / model_kwargs); "
                          f"valid options (defaults): {valid}")


def run_train(args: argparse.Namespace) -> int:
    from equilens.training.fit import train

    if args.resume and args.overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    given = args.config or any(getattr(args, k) is not None for k in _TRAIN_KEYS if k not in _RUNTIME)
    runtime = {k: getattr(args, k) for k in _RUNTIME if getattr(args, k) is not None}
    if args.resume:
        cfg = config_from_args(args) if args.config else None
        if cfg is None and given:
            # options on resume must agree with the saved config: compare them against it
            from equilens.training.config import read_run_config

            saved = read_run_config(args.out).to_dict()
            changed = {k: getattr(args, k) for k in _TRAIN_KEYS if k not in _RUNTIME
                       and getattr(args, k) is not None and getattr(args, k) != saved.get(k)}
            if changed:
                raise ConfigError(f"--resume continues the saved run; these options differ from it: {changed}")
        train(cfg, args.out, resume=True, progress=not args.no_progress, stop_after_epochs=args.stop_after_epochs,
              runtime_overrides=runtime, verbose=args.verbose)
    else:
        cfg = config_from_args(args).validate()
        check_model_args(cfg.model, cfg.model_kwargs)
        train(cfg, args.out, overwrite=args.overwrite, progress=not args.no_progress,
              stop_after_epochs=args.stop_after_epochs, verbose=args.verbose)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from equilens.evaluation.evaluate import evaluate

    if not 0 < args.angle_step <= 360:
        raise ConfigError(f"--angle-step must be in (0, 360], got {args.angle_step}")
    angles = tuple(float(a) for a in np.arange(0.0, 360.0 + 1e-9, args.angle_step))
    posterior = {"n_samples": args.samples, "seed": args.sample_seed, "bins": args.bins, "compare": args.compare}
    evaluate(args.run, data=args.data, checkpoint=args.checkpoint, tta=args.tta, symmetry=not args.no_symmetry,
             angles=angles, symmetry_images=args.symmetry_images, batch_size=args.batch_size, out=args.out,
             posterior_options=posterior)
    return 0


def run_report(args: argparse.Namespace) -> int:
    from equilens.cli.common import check_output_dir
    from equilens.evaluation.report import build_report

    check_output_dir(args.out, what="report.html, report.md, figures/ and summary.json")
    build_report(args.runs, args.out, title=args.title)
    return 0
