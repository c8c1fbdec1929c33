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

Off-grid rotation invariance after a short training (``--offgrid``). Each model is trained from scratch
(Adam, cross-entropy, ``--epochs`` epochs, ``--seeds``), its batch-norm statistics are recomputed for the
final weights (``train_briefly``; records of older runs, evaluated with the moving averages of training,
lack ``bn_recomputed`` and are not reused), and it is then measured at 15, 30 and 45 degrees:

- ``--offgrid synthetic``: a rotation-invariant 3-class task (ring-radius terciles of analytic lens-like
  images, ``equilens.evaluation.equivariance.rotation_task``); the test images are rendered exactly at the
  rotated angle (no interpolation), so the change is the model's alone;
- ``--offgrid lens --data DIR``: an equilens data set (its classes; the first ``--n-test`` images of a fixed
  shuffle are the test set, the next ``--n-train`` the training set), standardised with the training part's
  statistics and disk-masked (for training and testing). When the data set was simulated by equilens, its
  test images are re-rendered from their records at each angle
  (``equilens.evaluation.equivariance.render_rotations``: lens, shear, source and substructure turned
  about the image centre, no interpolation): (A) the change between noiseless images at 0 degrees and at
  the angle, the headline figure; (B) fresh noise at the angle against the stored noisy images, beside the
  noise floor (two noise realisations of the same image at the same angle: what an exactly invariant
  model would still show); (C) the stored images rotated bilinearly, with the interpolation floor (rotate
  forth and back), the only figure for data sets that cannot be re-rendered (or with ``--bilinear-only``).
  For models with feature depths (steerable C_N / D_N, ResNet-18, cnn_small) the change of the pooled
  features after every depth is recorded too (``layer_change``: depth x angle, ``layer_shift``: per depth;
  ``equilens.evaluation.equivariance.layer_off_grid_change``) and printed for the last angle: where in the
  network the change arises.

A model may carry options as ``NAME:key=value,key=value`` (values in JSON), e.g.
``'steerable_d4:pool="max"'`` (the former layout) or ``steerable_c8:kernel_size=5``. The figure is the
output change over the outputs' spread between test images (1: as much as swapping images), mean over
seeds, and its ratio to resnet18's. Every finished (mode, model, seed) is appended to ``--results``
(JSON lines) and skipped when the command is rerun, so a longer run can be resumed::

    .venv/bin/python benchmarks/bench_models.py --offgrid synthetic --models resnet18 steerable_d4 \
        steerable_c8 --seeds 0 1 2 --results offgrid.jsonl
    .venv/bin/python benchmarks/bench_models.py --offgrid lens --data DIR --n-train 2700 --n-test 300 \
        --epochs 8 --models resnet18 steerable_d4 steerable_c8 --seeds 0 1 --results offgrid_lens.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any


def model_spec(name: str) -> tuple[str, dict[str, object]]:
    """``"steerable_d4:pool=\"max\",kernel_size=5"`` -> ``("steerable_d4", {"pool": "max", "kernel_size": 5})``
    (option values in JSON, which may hold commas inside brackets: ``layout=[[16,5,true],[32,3,false]]``)."""
    base, _, spec = name.partition(":")
    items, depth, start = [], 0, 0
    for i, ch in enumerate(spec + ","):  # split at the commas outside JSON brackets: layout=[[16,5,true],...]
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            items.append(spec[start:i])
            start = i + 1
    return base, {k: json.loads(v) for k, v in (item.split("=", 1) for item in items if item)}


class _Bench:
    """One model at one size: its train step, eval forward and (optionally) compiled exported forward."""

    def __init__(self, name: str, size: int, batch: int, compiled: bool, seed: int = 0) -> None:
        import torch

        from equilens.models import create_model, export_model

        with torch.random.fork_rng():
            torch.manual_seed(seed)  # weights of third-party layers are initialised from torch's RNG
            base, options = model_spec(name)
            self.model = create_model(base, in_channels=1, num_outputs=3, **options)
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


OFFGRID_ANGLES: tuple[float, ...] = (15.0, 30.0, 45.0)


@functools.lru_cache(maxsize=2)
def _rendered(data: str, positions: tuple[int, ...], angles: tuple[float, ...], cache_dir: str) -> object:
    """The test images of ``data`` re-rendered at each angle, cached in memory (every model and seed of a
    run shares them) and in ``cache_dir`` (processes run side by side, or a resumed run, share them)."""
    import hashlib
    from pathlib import Path

    import torch

    from equilens.evaluation.equivariance import RenderedRotations, render_rotations

    # "shifted": the renderings include the sub-pixel-shifted set (caches written before it lack it)
    key = [str(Path(data).resolve()), positions, angles, "shifted"]
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"offgrid_render_{digest}.pt"
    if path.is_file():
        return RenderedRotations(**torch.load(path, weights_only=False))
    t0 = time.perf_counter()
    out = render_rotations(data, list(positions), angles)
    print(f"#   rendered {len(positions)} test images at 0 and {', '.join(f'{a:g}' for a in angles)} degrees "
          f"in {time.perf_counter() - t0:.0f} s", flush=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({f.name: getattr(out, f.name) for f in dataclasses.fields(out)}, tmp)
    os.replace(tmp, path)
    return out


@dataclasses.dataclass
class LensSplit:
    """The off-grid benchmark's split of a data set (see :func:`lens_split`)."""

    dataset: Any
    train_pos: Any
    test_pos: Any
    shift: float
    scale: float
    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any


def lens_split(data: str, n_train: int, n_test: int) -> LensSplit:
    """A seeded permutation of the data set (seed 0): its first ``n_test`` images for testing, the next
    ``n_train`` for training; images standardised with the training mean and standard deviation, then
    disk-masked (trained as tested)."""
    import numpy as np
    import torch

    from equilens.data.store import LensDataset
    from equilens.evaluation.equivariance import disk_mask

    ds = LensDataset(data)
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0)).numpy()
    test_pos, train_pos = np.sort(order[:n_test]), np.sort(order[n_test:n_test + n_train])
    raw_train = torch.from_numpy(ds.get_images(train_pos))
    shift, scale = float(raw_train.mean()), float(raw_train.std())
    disk = disk_mask(*ds.image_shape[-2:])
    return LensSplit(ds, train_pos, test_pos, shift, scale, (raw_train - shift) / scale * disk,
                     torch.from_numpy(ds.labels[train_pos]),
                     (torch.from_numpy(ds.get_images(test_pos)) - shift) / scale * disk,
                     torch.from_numpy(ds.labels[test_pos]))


def _offgrid_one(mode: str, name: str, seed: int, size: int, n_train: int, n_test: int, epochs: int,
                 data: str | None, bilinear_only: bool = False, cache_dir: str = ".",
                 augmentation: str = "none") -> dict[str, object]:
    """Train ``name`` briefly (seed ``seed``) and measure its off-grid change; a JSON-able record."""
    import numpy as np
    import torch

    from equilens.evaluation.equivariance import (
        equivariance_curve,
        layer_off_grid_change,
        lens_off_grid_change,
        off_grid_change,
        render_lens_images,
        rotation_task,
        train_briefly,
    )
    from equilens.models import create_model

    base, options = model_spec(name)
    n_classes = 3
    shift, scale = 0.0, 1.0
    test_pos = np.zeros(0, dtype=np.int64)
    rendered = False
    if mode == "synthetic":
        params, labels = rotation_task(n_train, torch.Generator().manual_seed(seed))
        x_train = render_lens_images(params, size)
        test_params, test_labels = rotation_task(n_test, torch.Generator().manual_seed(100 + seed))
        x_test = render_lens_images(test_params, size)
    else:
        if data is None:
            raise SystemExit("--offgrid lens needs --data DIR")
        split = lens_split(data, n_train, n_test)
        rendered = not bilinear_only and split.dataset.manifest.get("config") is not None
        test_pos, shift, scale = split.test_pos, split.shift, split.scale
        x_train, labels, x_test, test_labels = split.x_train, split.y_train, split.x_test, split.y_test
        size = int(split.dataset.image_shape[-1])
        n_classes = split.dataset.num_classes
    torch.manual_seed(seed)
    model = create_model(base, in_channels=1, num_outputs=n_classes, **options)
    t0 = time.perf_counter()
    losses = train_briefly(model, x_train, labels, epochs, torch.Generator().manual_seed(seed),
                           augmentation=augmentation)
    train_s = time.perf_counter() - t0
    with torch.no_grad():
        accuracy = float(torch.cat([model(x_test[i:i + 64]) for i in range(0, len(x_test), 64)]).argmax(1)
                         .eq(test_labels).float().mean())
    rec: dict[str, object] = {"mode": mode, "model": name, "seed": seed, "size": size, "data": data,
                              "n_train": int(x_train.shape[0]), "n_test": int(x_test.shape[0]), "epochs": epochs,
                              "angles": list(OFFGRID_ANGLES), "accuracy": accuracy, "final_loss": losses[-1],
                              "train_img_per_s": epochs * x_train.shape[0] / train_s, "rendered": rendered,
                              "bn_recomputed": True, "augmentation": augmentation}
    if mode == "synthetic":
        change = off_grid_change(model, test_params, size, OFFGRID_ANGLES)
        rec.update(change=change.vs_spread.tolist(), floor=[0.0] * len(OFFGRID_ANGLES),
                   spread_ratio=change.spread_ratio)
        return rec
    curve = equivariance_curve(model, x_test, OFFGRID_ANGLES, flips=False)
    rec.update(bilinear_change=curve.model_error.tolist(), bilinear_floor=curve.floor.tolist(),
               bilinear_spread_ratio=curve.spread_ratio)
    if not rendered:  # the bilinear figure is the only one
        rec.update(change=curve.model_error.tolist(), floor=curve.floor.tolist(), spread_ratio=curve.spread_ratio)
        return rec
    assert data is not None
    rotations = _rendered(data, tuple(int(p) for p in test_pos), OFFGRID_ANGLES, cache_dir)
    lens = lens_off_grid_change(model, rotations, lambda x: (x - shift) / scale)  # type: ignore[arg-type]
    rec.update(change=lens.noiseless.tolist(), noisy_change=lens.noisy.tolist(), floor=lens.noise_floor.tolist(),
               spread_ratio=lens.noiseless_spread_ratio, noisy_spread_ratio=lens.noisy_spread_ratio,
               shift_floor=lens.shift_floor)
    if getattr(model, "feature_depths", 0):  # where in the network the change arises
        layers = layer_off_grid_change(model, rotations, lambda x: (x - shift) / scale)  # type: ignore[arg-type]
        rec.update(layer_change=layers.rotation.tolist(), layer_shift=layers.shift.tolist())
    return rec


def _key(r: dict[str, object]) -> tuple[object, ...]:
    """What makes two ``--offgrid`` runs the same run (records of older versions lack some fields)."""
    return (r["mode"], r["model"], r["seed"], r.get("data"), r.get("n_train"), r.get("n_test"), r["epochs"],
            r.get("rendered", False), r["size"] if r["mode"] == "synthetic" else None,
            bool(r.get("rendered", False)) and "shift_floor" not in r,  # rendered before the shift floor
            bool(r.get("bn_recomputed", False)),  # older runs evaluated with the moving-average statistics
            r.get("augmentation", "none"))


def _requested(args: argparse.Namespace, model: str, seed: int, rendered: bool) -> dict[str, object]:
    """The fields of :func:`_key` of the run that ``args`` asks for with ``model`` and ``seed``."""
    return {"mode": args.offgrid, "model": model, "seed": seed, "size": args.size, "epochs": args.epochs,
            "data": args.data if args.offgrid == "lens" else None, "rendered": rendered, "shift_floor": None,
            "n_train": args.n_train, "n_test": args.n_test, "bn_recomputed": True,
            "augmentation": args.augmentation}


def _mean(rows: list[dict[str, object]], field: str) -> list[float]:
    """Mean over ``rows`` of a per-angle list ``field``."""
    vals = [r[field] for r in rows]
    return [sum(v[i] for v in vals) / len(vals) for i in range(len(OFFGRID_ANGLES))]  # type: ignore[index]


def _angles(values: list[float]) -> str:
    return " / ".join(f"{v:.3f}" for v in values)


def offgrid(args: argparse.Namespace) -> int:
    """The ``--offgrid`` benchmark: run what is missing from ``--results``, then print the table."""
    from pathlib import Path

    from equilens.cpu import flush_denormals

    flush_denormals()
    results_path = Path(args.results)
    done = [json.loads(line) for line in results_path.read_text().splitlines() if line.strip()] \
        if results_path.is_file() else []
    have = {_key(r) for r in done}
    rendered = False
    if args.offgrid == "lens":
        if args.data is None:
            raise SystemExit("--offgrid lens needs --data DIR")
        from equilens.data.store import LensDataset

        rendered = not args.bilinear_only and LensDataset(args.data).manifest.get("config") is not None
    what = f"{args.size} px" if args.offgrid == "synthetic" else f"data {args.data}, {args.n_test} test images"
    print(f"# bench_models --offgrid {args.offgrid}: {what}, {args.n_train} training images, "
          f"{args.epochs} epochs, augmentation {args.augmentation}, seeds {args.seeds}; results in {results_path}")
    print(f"# command: {' '.join(['python', *sys.argv])}")
    print(f"# load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for name in args.models:
        for seed in args.seeds:
            probe = _requested(args, name, seed, rendered)
            if _key(probe) in have:
                continue
            rec = _offgrid_one(args.offgrid, name, seed, args.size, args.n_train, args.n_test, args.epochs,
                               args.data, bilinear_only=args.bilinear_only,
                               cache_dir=str(results_path.resolve().parent), augmentation=args.augmentation)
            rec["load_average"] = os.getloadavg()[0]
            if _key(rec) != _key(probe):  # e.g. fewer images in the data set than asked for
                rec.update(n_train=args.n_train, n_test=args.n_test, requested_size_differs=True)
            with results_path.open("a") as fh:
                fh.write(json.dumps(rec) + "\n")
            done.append(rec)
            shift = f", sub-pixel shift {rec['shift_floor']:.3f}" if "shift_floor" in rec else ""
            print(f"#   {name} seed {seed}: change {_angles(rec['change'])}{shift}, accuracy {rec['accuracy']:.2f}, "
                  f"{rec['train_img_per_s']:.0f} train img/s", flush=True)
            if "layer_change" in rec:
                layer_change: list[list[float]] = rec["layer_change"]  # type: ignore[assignment]
                layer_shift: list[float] = rec["layer_shift"]  # type: ignore[assignment]
                per_depth = " ".join(f"{r[-1]:.3f}/{d:.3f}" for r, d in zip(layer_change, layer_shift, strict=True))
                print(f"#     pooled features after each depth, change at {OFFGRID_ANGLES[-1]:g} deg / sub-pixel "
                      f"shift: {per_depth}", flush=True)
    wanted = {_key(_requested(args, m, s, rendered)) for m in args.models for s in args.seeds}
    rows = [r for r in done if _key(r) in wanted]
    table: dict[str, dict[str, object]] = {}
    for name in args.models:
        mine = [r for r in rows if r["model"] == name]
        if not mine:
            continue
        n = len(mine)
        table[name] = {"change": _mean(mine, "change"), "floor": _mean(mine, "floor"), "seeds": n,
                       "accuracy": sum(r["accuracy"] for r in mine) / n,
                       "speed": sum(r["train_img_per_s"] for r in mine) / n}
        if rendered:
            table[name].update(noisy=_mean(mine, "noisy_change"), bilinear=_mean(mine, "bilinear_change"),
                               bilinear_floor=_mean(mine, "bilinear_floor"),
                               shift=sum(float(r["shift_floor"]) for r in mine) / n)  # type: ignore[arg-type]
    ref = table.get("resnet18")

    def ratio(m: dict[str, object]) -> str:
        if not ref:
            return "-"
        return " / ".join(f"{a / b:.2f}" for a, b in zip(m["change"], ref["change"], strict=True))  # type: ignore

    print()
    if rendered:
        print("Noiseless test images rendered at each angle (A); the same noiseless images, unrotated, on a grid "
              "moved by up to half a pixel per axis (D: the sampling floor, what a network exactly equivariant "
              "in the continuum but computing on pixels still shows); fresh noise at each angle against the "
              "stored noisy images (B), beside the noise floor (two noise realisations at the same angle); "
              "bilinear rotation of the stored images (C) with its interpolation floor. Changes over the "
              "outputs' spread, mean over seeds.")
        print()
        print("| model | seeds | (A) noiseless 15 / 30 / 45 deg | (A) x resnet18 | (D) sub-pixel shift | (A) 45 / (D) "
              "| (B) fresh noise 15 / 30 / 45 | noise floor 45 | (C) bilinear 45 | bilinear floor 45 "
              "| test accuracy | train img/s |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for name, m in table.items():
            d = float(m["shift"])  # type: ignore[arg-type]
            print(f"| {name} | {m['seeds']} | {_angles(m['change'])} | {ratio(m)} | "  # type: ignore[arg-type]
                  f"{d:.3f} | {m['change'][-1] / d:.2f} | "  # type: ignore[index]
                  f"{_angles(m['noisy'])} | {m['floor'][-1]:.3f} | "  # type: ignore[arg-type, index]
                  f"{m['bilinear'][-1]:.3f} | {m['bilinear_floor'][-1]:.3f} | "  # type: ignore[index]
                  f"{m['accuracy']:.2f} | {m['speed']:.0f} |")
        return 0
    floor_name = "floor 45" if args.offgrid == "lens" else "floor 45 (none: rendered)"
    print(f"| model | seeds | change 15 / 30 / 45 deg | x resnet18 | {floor_name} | test accuracy | train img/s |")
    print("|---|---|---|---|---|---|---|")
    for name, m in table.items():
        print(f"| {name} | {m['seeds']} | {_angles(m['change'])} | {ratio(m)} | "  # type: ignore[arg-type]
              f"{m['floor'][-1]:.3f} | {m['accuracy']:.2f} | {m['speed']:.0f} |")  # type: ignore[index]
    return 0


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
    parser.add_argument("--offgrid", choices=("synthetic", "lens"),
                        help="measure off-grid rotation invariance after a short training instead of speed")
    parser.add_argument("--data", help="--offgrid lens: an equilens data set directory")
    parser.add_argument("--bilinear-only", action="store_true",
                        help="--offgrid lens: only the bilinear rotation, even when the data set can be re-rendered")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="--offgrid: training seeds")
    parser.add_argument("--size", type=int, default=64, help="--offgrid synthetic: image size (px)")
    parser.add_argument("--n-train", type=int, default=384, help="--offgrid: training images")
    parser.add_argument("--n-test", type=int, default=64, help="--offgrid: test images")
    parser.add_argument("--epochs", type=int, default=6, help="--offgrid: training epochs")
    from equilens.data.choices import AUGMENTATIONS  # names only: no torch

    parser.add_argument("--augmentation", default="none", choices=AUGMENTATIONS,
                        help="--offgrid: random transform of every training batch, for every model alike "
                             "(rotate: any angle, bilinear)")
    parser.add_argument("--results", default="bench_offgrid.jsonl",
                        help="--offgrid: JSON-lines file of finished runs (appended; reruns skip them)")
    args = parser.parse_args(argv)

    if args.offgrid:
        return offgrid(args)

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
