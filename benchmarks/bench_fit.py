"""How fast each model fits lens data in a short training: the training loss after every epoch and the test
accuracy, a quick check (minutes, not the 20 of ``bench_models.py --offgrid lens``) of whether an architecture
or option trains at all before measuring its symmetry.

The split is the one of ``bench_models.py --offgrid lens`` (seeded permutation, first ``--n-test`` images for
testing), with ``--n-train`` training images after them; images standardised with the training mean and
standard deviation and disk-masked; ``train_briefly`` (Adam, batch 32, batch-norm statistics recomputed at the
end); weights and minibatches from ``--seed``. A model is a registry name with options as in
``bench_models.py`` (``'steerable_so2_fourier:norm="iid"'``), optionally followed by ``@LR``. One thread per
process. Example (README, "The Fourier nonlinearity")::

    .venv/bin/python benchmarks/bench_fit.py --data DIR steerable_d8_fine steerable_so2_fourier \\
        'steerable_so2_fourier:norm="iid"' 'steerable_so2_fourier:norm="iid"@1e-2'
"""

from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="registry names with options, optionally NAME@LR")
    parser.add_argument("--data", required=True, help="an equilens data set (the off-grid benchmark's)")
    parser.add_argument("--n-train", type=int, default=800)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch
    from bench_models import lens_split, model_spec

    from equilens.evaluation.equivariance import train_briefly
    from equilens.models import create_model

    torch.set_num_threads(1)
    split = lens_split(args.data, args.n_train, args.n_test)
    ds, train_pos, test_pos = split.dataset, split.train_pos, split.test_pos
    x, y, x_test, y_test = split.x_train, split.y_train, split.x_test, split.y_test
    print(f"# {len(train_pos)} training / {len(test_pos)} test images of {args.data}, {args.epochs} epochs, "
          f"seed {args.seed}")
    for arg in args.models:
        name, _, lr = arg.partition("@")
        base, options = model_spec(name)
        torch.manual_seed(args.seed)
        model = create_model(base, in_channels=1, num_outputs=ds.num_classes, **options)
        t0 = time.perf_counter()
        losses = train_briefly(model, x, y, args.epochs, torch.Generator().manual_seed(args.seed),
                               lr=float(lr) if lr else 3e-3)
        model.eval()
        with torch.no_grad():
            accuracy = float(torch.cat([model(x_test[i:i + 64]) for i in range(0, len(x_test), 64)])
                             .argmax(1).eq(y_test).float().mean())
        print(f"{arg:60s} loss per epoch " + " ".join(f"{v:.3f}" for v in losses)
              + f"  test accuracy {accuracy:.3f}  {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
