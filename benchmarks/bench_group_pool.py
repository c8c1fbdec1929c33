"""Off-grid change of ``steerable_d8`` with each ``group_pool`` (max, mean, fourier) on the toy task of
``tests/models/test_trained_invariance.py``, over several seeds, as a ratio to ResNet-18 trained the same way.

Seed s: training data, weights and minibatches from s; test images from 1 + 1000 s (seed 0 is the test's own
setting: 40 px, 96 training images, 4 epochs, widths 0.5 / 0.25). Prints one line per seed with the ratio at
30 / 45 degrees, images rendered at the angle. About a minute per seed on 2 cores.

    .venv/bin/python benchmarks/bench_group_pool.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--model", default="steerable_d8", help="a steerable C_N / D_N model")
    args = parser.parse_args(argv)

    import torch

    from equilens.evaluation.equivariance import off_grid_change, render_lens_images, rotation_task, train_briefly
    from equilens.models import create_model
    from equilens.models.steerable import GROUP_POOLS

    size, n_train, n_test, epochs, angles = 40, 96, 24, 4, (30.0, 45.0)

    def change(name: str, seed: int, **options: object) -> list[float]:
        params, labels = rotation_task(n_train, torch.Generator().manual_seed(seed))
        test_params, _ = rotation_task(n_test, torch.Generator().manual_seed(1 + 1000 * seed))
        torch.manual_seed(seed)
        model = create_model(name, in_channels=1, num_outputs=3, **options)
        train_briefly(model, render_lens_images(params, size), labels, epochs, torch.Generator().manual_seed(seed))
        return off_grid_change(model, test_params, size, angles).vs_spread.tolist()

    print(f"# {args.model} on the toy task; ratio to resnet18 at {' / '.join(f'{a:g}' for a in angles)} degrees")
    for seed in args.seeds:
        control = change("resnet18", seed, width=0.25)
        ratios = {pool: [o / c for o, c in zip(change(args.model, seed, width=0.5, group_pool=pool), control,
                                                strict=True)] for pool in GROUP_POOLS}
        print(f"seed {seed}: resnet18 " + " / ".join(f"{c:.3f}" for c in control) + "; "
              + "; ".join(f"{pool} " + " / ".join(f"{r:.2f}" for r in rs) for pool, rs in ratios.items()),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
