"""``equilens models`` and ``equilens check-equivariance``: thin wrappers over :mod:`equilens.models` and
:mod:`equilens.evaluation.equivariance`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from equilens.errors import ConfigError


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="list every registered model with parameter count and symmetry",
                              description="List every registered model name with its family, symmetry group, "
                                          "parameter count (1 input channel, 3 outputs) and description.")
    p.add_argument("--family", help="only this family (resnet, cnn, steerable, e2wrn, ...)")
    p.set_defaults(func=_cmd_models)

    q = subparsers.add_parser(
        "check-equivariance", help="relative output change against rotation angle, with the interpolation floor",
        description="Rotate test images by 0-360 degrees and print (and plot) the model's relative output "
                    "change ||f(Rx)-f(x)||, over the outputs' spread between the images and over their norm, "
                    "beside the interpolation floor (rotate forth and back). Untrained models get synthetic "
                    "lens-like images; a trained model (--checkpoint) gets images of its run's data set (or "
                    "--data) normalised as in training, and a warning when its outputs do not vary between "
                    "the images enough for the figures to mean anything.")
    q.add_argument("model", help="a name from `equilens models`")
    q.add_argument("--checkpoint", help="state_dict saved by torch.save, or a Lightning .ckpt from equilens train")
    q.add_argument("--data", help="equilens data set directory to take test images from (default with "
                                   "--checkpoint: the run's data set if it exists, else synthetic images)")
    q.add_argument("--image-size", type=int, default=65,
                   help="synthetic test image size in pixels (default 65; data-set images keep their size)")
    q.add_argument("--n-images", type=int, default=8, help="number of test images (default 8)")
    q.add_argument("--step", type=float, default=15.0, help="angle step in degrees (default 15)")
    q.add_argument("--seed", type=int, default=0, help="seed of the test images and untrained weights")
    q.add_argument("--out", help="save the plot here (PNG, PDF or any format matplotlib writes)")
    q.set_defaults(func=_cmd_check)


def _cmd_models(args: argparse.Namespace) -> int:
    from equilens.models import create_model, get_entry, list_models
    from equilens.models.registry import FAMILY_OPTIONS
    from equilens.models.steerable import skip_weight_init

    names = list_models(args.family)
    if not names:
        families = sorted({get_entry(n).family for n in list_models()})
        raise ConfigError(f"no models in family {args.family!r}; families: {', '.join(families)}")
    rows = []
    for name in names:
        entry = get_entry(name)
        with skip_weight_init():
            model = create_model(name, in_channels=1, num_outputs=3)
        rows.append((name, entry.family, entry.symmetry, f"{sum(p.numel() for p in model.parameters()):,}",
                     entry.description))
    header = ("name", "family", "symmetry", "params", "description")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        cells = [c.rjust(w) if i == 3 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=False))]
        print("  ".join(cells) + "  " + row[4])
    print("\noptions (create_model(name, **options), or model_kwargs in a training config):")
    for family in sorted({get_entry(n).family for n in names}):
        if family in FAMILY_OPTIONS:
            print(f"  {family}: {FAMILY_OPTIONS[family]}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    if args.out:
        from equilens.cli.common import check_figure_path

        check_figure_path(args.out)
    if args.step <= 0 or args.step > 360:
        raise ConfigError(f"--step must be in (0, 360] degrees, got {args.step}")
    if args.n_images < 1:
        raise ConfigError(f"--n-images must be >= 1, got {args.n_images}")
    import numpy as np
    import torch

    from equilens.evaluation.equivariance import (
        calibrate_batchnorm,
        checkpoint_test_images,
        dataset_images,
        equivariance_curve,
        plot_equivariance_curve,
        synthetic_lens_images,
    )
    from equilens.models import get_entry, load_model
    from equilens.models.symmetry import exact_grid_symmetries

    entry = get_entry(args.model)
    if args.checkpoint is None:
        torch.manual_seed(args.seed)  # untrained weights: third-party layers initialise from torch's RNG
    meta: dict[str, Any] = {}  # the checkpoint's run description, kept as load_model reads it (read once)
    model = load_model(args.model, args.checkpoint, check_meta=meta.update)
    if args.image_size < model.min_input_size:
        raise ConfigError(f"--image-size must be at least {model.min_input_size} for {args.model}, "
                          f"got {args.image_size}")
    gen = torch.Generator().manual_seed(args.seed)
    if args.checkpoint is None:
        if args.data:
            images = dataset_images(args.data, args.n_images, gen)
            source = f"{images.shape[0]} images of the data set {args.data} (raw units)"
        else:
            images = synthetic_lens_images(args.n_images, args.image_size, gen, channels=model.in_channels)
            source = f"{args.n_images} synthetic lens-like images of {args.image_size} px"
    else:
        images, source = checkpoint_test_images(args.checkpoint, args.n_images, args.image_size, gen,
                                                data=args.data, channels=model.in_channels, meta=meta)
    if images.shape[-1] != images.shape[-2] or images.shape[1] != model.in_channels:
        raise ConfigError(f"check-equivariance needs square images with {model.in_channels} channel(s), got "
                          f"{tuple(images.shape[1:])} from {source}")
    angles = [float(a) for a in np.arange(0.0, 360.0 + 1e-9, args.step)]
    if args.checkpoint is None:  # initial batch-norm statistics would dominate the measure
        model = calibrate_batchnorm(model, images)
    curve = equivariance_curve(model, images, angles)
    state = "trained (" + args.checkpoint + ")" if args.checkpoint else \
        f"untrained (seed {args.seed}, batch-norm statistics estimated on the test images)"
    if curve.spread_too_small:
        state += ", outputs hardly vary between images"
    print(f"{args.model}: symmetry {entry.symmetry}, {state}")
    print(f"test images: {source}")
    exact = exact_grid_symmetries(entry.symmetry)
    print(f"exact grid symmetries expected: {', '.join(exact) if exact else 'none'}")
    print(curve.table())
    if args.out:
        out = plot_equivariance_curve(curve, Path(args.out), title=f"{args.model} ({entry.symmetry}), {state}")
        print(f"plot: {out}")
    return 0
