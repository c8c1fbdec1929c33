"""Speed of the model zoo: train and eval images/s, parameter count and peak memory, batch 32.

All models of one image size are built in one process and timed in interleaved rounds (each round
runs every model once), so load from other processes on a shared machine hits them alike; the table
reports the median over rounds. Columns:

- train img/s: forward + cross-entropy + backward + Adam step, model in train mode;
- eval img/s: forward in eval mode under ``torch.no_grad``;
- compiled img/s: ``torch.compile(export_model(model))`` forward in eval mode (escnn layers exported to
  plain torch first; first-call compile time excluded);
- peak MiB: in a fresh subprocess per model, the peak resident memory (``ru_maxrss``) during two
  training steps minus that after building the model, i.e. activations, gradients and optimiser state.

The machine is shared; figures can vary by up to 2x. Example::

    .venv/bin/python benchmarks/bench_models.py --models resnet18 steerable_d4 --sizes 150 64 --rounds 5
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time


class _Bench:
    """One model at one size: its train step, eval forward and (optionally) compiled exported forward."""

    def __init__(self, name: str, size: int, batch: int, compiled: bool, seed: int = 0) -> None:
        import torch

        from equilens.models import create_model, export_model

        with torch.random.fork_rng():
            torch.manual_seed(seed)  # weights of third-party layers are initialised from torch's RNG
            self.model = create_model(name, in_channels=1, num_outputs=3)
        gen = torch.Generator().manual_seed(seed)
        self.x = torch.randn(batch, 1, size, size, generator=gen)
        self.y = torch.randint(0, 3, (batch,), generator=gen)
        self.params = sum(p.numel() for p in self.model.parameters())
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.fast = None
        if compiled:
            self.model.eval()
            self.fast = torch.compile(export_model(self.model))
        self.times: dict[str, list[float]] = {"train": [], "eval": [], "compiled": []}

    def train_step(self) -> None:
        import torch.nn.functional as F

        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        F.cross_entropy(self.model(self.x), self.y).backward()
        self.opt.step()

    def eval_step(self) -> None:
        import torch

        self.model.eval()
        with torch.no_grad():
            self.model(self.x)

    def compiled_step(self) -> None:
        import torch

        with torch.no_grad():
            self.fast(self.x)

    def timed(self, kind: str) -> None:
        fn = {"train": self.train_step, "eval": self.eval_step, "compiled": self.compiled_step}[kind]
        t0 = time.perf_counter()
        fn()
        self.times[kind].append(time.perf_counter() - t0)


def peak_memory_mib(name: str, size: int, batch: int) -> float:
    """Peak resident memory (MiB) of one training step of ``name``, in a fresh subprocess, minus the
    resident memory after building the model and data (i.e. activations, gradients, optimiser state)."""
    cmd = [sys.executable, __file__, "--memory-child", name, str(size), "--batch", str(batch)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{name}@{size} failed:\n{proc.stderr[-2000:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _memory_child(name: str, size: int, batch: int) -> float:
    bench = _Bench(name, size, batch, compiled=False)
    try:  # Linux: writing 5 to clear_refs resets the peak-RSS counter VmHWM to the current RSS
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        base = _status_kib("VmRSS")
        bench.train_step()
        bench.train_step()
        return (_status_kib("VmHWM") - base) / 1024.0
    except OSError:  # elsewhere: whole-process peak
        bench.train_step()
        bench.train_step()
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "cnn_small", "steerable_d4", "steerable_c8",
                                                          "steerable_so2", "e2wrn10_2_d4", "harmonic_net", "etn"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[150, 64])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5,
                        help="timed rounds; each round times every model once (interleaved), median reported")
    parser.add_argument("--no-compiled", dest="compiled", action="store_false",
                        help="skip the exported + torch.compile measurement")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory runs")
    parser.add_argument("--memory-child", nargs=2, metavar=("MODEL", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_child:
        print(_memory_child(args.memory_child[0], int(args.memory_child[1]), args.batch))
        return 0

    import torch
    import torch._dynamo

    from equilens.cpu import flush_denormals

    flush_denormals()  # see equilens.cpu: without it ResNet-18 at 150 px trains ~4x slower here

    # every LensModel shares one forward(); each model and size compiles it anew, so lift dynamo's
    # per-function recompile limit (default 8) or later models would silently run uncompiled
    torch._dynamo.config.recompile_limit = 1024
    torch._dynamo.config.accumulated_recompile_limit = 4096

    print(f"# bench_models: batch {args.batch}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"median of {args.rounds} interleaved rounds")
    print(f"# command: {' '.join(['python', *sys.argv])}")
    print()
    print("| model | size | params | train img/s | eval img/s | exported+compiled img/s | train / resnet18 "
          "| compiled / resnet18 | peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    kinds = ["train", "eval"] + (["compiled"] if args.compiled else [])
    for size in args.sizes:
        benches = {name: _Bench(name, size, args.batch, args.compiled) for name in args.models}
        for bench in benches.values():  # warm-up: escnn caches, allocator, torch.compile
            for kind in kinds:
                bench.timed(kind)
                bench.times[kind].clear()
        for _ in range(args.rounds):  # interleaved, so load from other processes hits every model alike
            for kind in kinds:
                for bench in benches.values():
                    bench.timed(kind)
        rate = {name: {k: args.batch / statistics.median(b.times[k]) if b.times[k] else float("nan")
                       for k in ("train", "eval", "compiled")} for name, b in benches.items()}
        ref = rate.get("resnet18")
        for name, bench in benches.items():
            r = rate[name]
            rel_t = f"{r['train'] / ref['train']:.2f}" if ref else "-"
            rel_c = f"{r['compiled'] / ref['compiled']:.2f}" if ref and args.compiled else "-"
            mem = f"{peak_memory_mib(name, size, args.batch):.0f}" if args.memory else "-"
            print(f"| {name} | {size} | {bench.params:,} | {r['train']:.1f} | {r['eval']:.1f} | "
                  f"{r['compiled']:.1f} | {rel_t} | {rel_c} | {mem} |", flush=True)
        del benches
    return 0


if __name__ == "__main__":
    sys.exit(main())
