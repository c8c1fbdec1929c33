"""Speed of the model zoo: train and eval images/s, parameter count and peak memory, batch 32.

Every (model, image size) is measured in a fresh subprocess (so peak memory is that model's alone),
``--repeats`` times; the table reports the median images/s. Columns:

- train img/s: forward + cross-entropy + backward + Adam step, model in train mode;
- eval img/s: forward in eval mode under ``torch.no_grad``;
- compiled img/s: ``torch.compile(export_model(model))`` forward in eval mode (escnn layers exported to
  plain torch first; first-call compile time excluded);
- peak MiB: the subprocess's peak resident memory (``ru_maxrss``) during the run, minus its resident
  memory after building the model, i.e. the activations and gradients of training.

The machine is shared; figures can vary by up to 2x. Example::

    .venv/bin/python benchmarks/bench_models.py --models resnet18 steerable_d4 --sizes 150 64 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def _time_per_call(fn, steps: int) -> float:
    """Median seconds per call of ``fn`` over ``steps`` calls."""
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(name: str, size: int, batch: int, steps: int, compiled: bool, seed: int = 0) -> dict:
    """Measure one model at one size in this process. Returns a dict of figures."""
    import torch

    from equilens.models import create_model, export_model

    torch.manual_seed(seed)  # only for the weights' initialisation inside third-party layers
    gen = torch.Generator().manual_seed(seed)
    model = create_model(name, in_channels=1, num_outputs=3)
    n_params = sum(p.numel() for p in model.parameters())
    x = torch.randn(batch, 1, size, size, generator=gen)
    y = torch.randint(0, 3, (batch,), generator=gen)
    rss_base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    model.train()
    train_step()  # warm-up (escnn builds caches, allocator warms)
    t_train = _time_per_call(train_step, steps)
    rss_train = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    model.eval()
    with torch.no_grad():
        model(x)
        t_eval = _time_per_call(lambda: model(x), steps)

    t_comp = float("nan")
    if compiled:
        fast = torch.compile(export_model(model))
        with torch.no_grad():
            fast(x)
            fast(x)
            t_comp = _time_per_call(lambda: fast(x), steps)
    return {
        "model": name, "size": size, "params": n_params, "train": batch / t_train, "eval": batch / t_eval,
        "compiled": batch / t_comp, "peak_mib": max(0.0, (rss_train - rss_base) / 1024.0),
    }


def _run_child(name: str, size: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", name, str(size), "--batch", str(args.batch),
           "--steps", str(args.steps)] + ([] if args.compiled else ["--no-compiled"])
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{name}@{size} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "cnn_small", "steerable_d4", "steerable_c8",
                                                          "steerable_so2", "e2wrn10_2_d4", "harmonic_net", "etn"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[150, 64])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="timed calls per measurement (median)")
    parser.add_argument("--repeats", type=int, default=1, help="fresh-process runs per (model, size); median")
    parser.add_argument("--no-compiled", dest="compiled", action="store_false",
                        help="skip the exported + torch.compile measurement")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]), args.batch, args.steps, args.compiled)))
        return 0

    import torch

    print(f"# bench_models: batch {args.batch}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"median of {args.repeats} run(s) x {args.steps} steps")
    print(f"# command: {' '.join([sys.executable.split('/')[-1], *sys.argv])}")
    print()
    print("| model | size | params | train img/s | eval img/s | exported+compiled img/s | train x resnet18 "
          "| compiled x resnet18 | peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        reference: dict | None = None
        for name in args.models:
            runs = [_run_child(name, size, args) for _ in range(args.repeats)]
            row = {k: (statistics.median(r[k] for r in runs) if isinstance(runs[0][k], float) else runs[0][k])
                   for k in runs[0]}
            if name == "resnet18":
                reference = row
            rel_t = f"{row['train'] / reference['train']:.2f}" if reference else "-"
            rel_c = f"{row['compiled'] / reference['compiled']:.2f}" if reference and args.compiled else "-"
            print(f"| {name} | {size} | {row['params']:,} | {row['train']:.1f} | {row['eval']:.1f} | "
                  f"{row['compiled']:.1f} | {rel_t} | {rel_c} | {row['peak_mib']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
