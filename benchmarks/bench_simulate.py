"""Simulation speed: equilens vs a plain lenstronomy loop, 1 vs 2 workers, and a 3 x 30k Model-I estimate.

For each preset and class the script measures images per second of

- ``baseline``: a plain lenstronomy loop as the public DeepLense code renders images: for every image
  a new ``ImageData``, ``PSF``, ``LensModel``, ``LightModel`` and ``ImageModel`` are built and
  ``ImageModel.image`` is called, then the same noise recipe as equilens (numpy). The lenstronomy
  keyword arguments of the images are prepared *before* the clock starts, so the baseline does no
  parameter drawing at all (conservative for equilens, which draws inside its timing);
- ``equilens w1``: ``generate_dataset(..., workers=1)`` into a fresh directory: draws, renders, noise,
  records, HDF5 shards, checksums, manifest; everything in one process;
- ``equilens w2``: the same with ``workers=2`` (two local processes; the main process writes shards).
  The forkserver that starts the workers is started once per process (measured separately and
  printed; a few seconds) and is warm in this column; each run still starts its two workers.

``ratio`` is ``equilens w1 / baseline`` (goal >= 0.9: the layers add no overhead); ``ratio by CPU
time`` is the same from the CPU seconds of the process (``time.process_time``), which other jobs on a
shared machine disturb much less than wall time. ``scaling`` is ``w2 / w1`` (goal >= 1.8 on 2 free
cores). The ``steady`` columns count only the images of the shards written after the first one, over
the time from the first shard written to the last (each set is cut into about 8 shards for this): the
rate once the workers are running, without their start-up. The same images (same seed, same class)
are timed in every column. The final line times a mixed 3-class Model-I run with 2 workers and
extrapolates it linearly to 3 x 30k images (it is an extrapolation: the run itself is smaller). With
``--repeats k`` every column is timed k times, alternating, and the fastest time is kept (the least
disturbed by other jobs).

``ms/img CPU`` is the CPU time per image of the 1-worker run (draw, render, noise, records, HDF5): the
per-core cost the ``cdm_tnfw`` speed goals refer to (<= 10 ms at 64 px, <= 50 ms at 150 px). A class that a
preset does not have is skipped (``*_dm`` presets: no_sub, cdm_tnfw, wdm, sidm, axion; DeepLense: no_sub, cdm,
axion). The baseline column of ``sidm`` leaves out its halos (lenstronomy has no truncated CNFW) and that of
the ``*_dm`` classes leaves out the mass sheet: compare ms/img CPU there, not the ratio.
``--skip-w2`` leaves out the 2-worker and steady-state columns (a quicker run; they are not printed).

The machine is shared with other jobs; expect noise of tens of percent, more in the 2-worker column.
The load average at the start and end of the run is printed with the table.

Example (the figures in the README)::

    .venv/bin/python benchmarks/bench_simulate.py --seconds 8 --n-90k 1000
    .venv/bin/python benchmarks/bench_simulate.py --presets model_ii euclid_dm hst_dm hst_dm_150 --seconds 3 \
        --n-90k 0 --skip-w2                                     # cdm_tnfw beside the DeepLense classes
    .venv/bin/python benchmarks/bench_simulate.py --presets euclid_dm hst_dm hst_dm_150 \
        --classes cdm_tnfw wdm sidm axion --seconds 3 --n-90k 0 --skip-w2      # the issue-#10 classes
    .venv/bin/python benchmarks/bench_simulate.py --presets model_i --classes cdm --n 100   # quick look
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from equilens.simulation.config import SimConfig, resolve_config
from equilens.simulation.generate import class_index, generate_dataset, image_streams
from equilens.simulation.populations import draw_parameters
from equilens.simulation.presets import list_presets
from equilens.simulation.render import add_noise, lenstronomy_kwargs


def baseline_loop(config: SimConfig, records: list[dict], noise_seeds: list[int]) -> tuple[float, float]:
    """(wall, CPU) seconds to render ``records`` the DeepLense way (one ImageModel built per image)."""
    import lenstronomy.Util.util as lutil
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel

    prepared = [lenstronomy_kwargs(config, r) for r in records]
    n = config.image_size
    t0, c0 = time.perf_counter(), time.process_time()
    for (model_list, kwargs_lens, kwargs_source), record, noise_seed in zip(prepared, records, noise_seeds,
                                                                            strict=True):
        _, _, ra0, dec0, _, _, pix2angle, _ = lutil.make_grid_with_coordtransform(
            num_pix=n, delta_pix=config.pixel_scale, subgrid_res=1, left_lower=False, inverse=False)
        data = ImageData(image_data=np.zeros((n, n)), ra_at_xy_0=ra0, dec_at_xy_0=dec0,
                         transform_pix2angle=pix2angle)
        psf = PSF(psf_type="GAUSSIAN", fwhm=config.psf_fwhm, truncation=config.psf_truncation,
                  pixel_size=config.pixel_scale)
        image_model = ImageModel(data, psf, lens_model_class=LensModel(model_list),
                                 source_model_class=LightModel(["SERSIC_ELLIPSE"]),
                                 kwargs_numerics={"supersampling_factor": config.supersampling_factor,
                                                  "supersampling_convolution": False})
        image = image_model.image(kwargs_lens=kwargs_lens, kwargs_source=[kwargs_source])
        scale = config.flux_scale * (record["exposure_time"] if config.flux_unit == "counts" else 1.0)
        image = image * scale
        if config.noise != "none":
            image = add_noise(config, image, record, np.random.default_rng(noise_seed))
        image.astype(np.float32)
    return time.perf_counter() - t0, time.process_time() - c0


last_cpu = [0.0]
last_steady = [0.0]


def timed_generate(config: SimConfig, classes: list[str], n_per_class: int, workers: int, seed: int,
                   shard_size: int = 500) -> float:
    """Wall seconds of one ``generate_dataset`` run.

    Also sets ``last_cpu[0]`` (CPU seconds of this process) and ``last_steady[0]``: images per second
    between the first and the last shard written (start-up excluded; 0 with fewer than 2 shards).
    """
    out = Path(tempfile.mkdtemp(prefix="bench-sim-"))
    written: list[tuple[float, int]] = []
    total = n_per_class * len(classes)

    def note(k: int) -> None:
        written.append((time.perf_counter(), min(shard_size, total - k * shard_size)))

    try:
        t0, c0 = time.perf_counter(), time.process_time()
        generate_dataset(config, classes, n_per_class, seed, out / "d", workers=workers, progress=False,
                         shard_size=shard_size, on_shard_written=note)
        last_cpu[0] = time.process_time() - c0
        if len(written) >= 2:
            last_steady[0] = sum(n for _, n in written[1:]) / (written[-1][0] - written[0][0])
        else:
            last_steady[0] = 0.0
        return time.perf_counter() - t0
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["model_i", "model_ii", "model_iii"])
    parser.add_argument("--classes", nargs="+", default=["no_sub", "cdm", "axion", "cdm_tnfw", "wdm", "sidm"],
                        help="classes to time (each preset times those it has)")
    parser.add_argument("--skip-w2", action="store_true", help="leave out the 2-worker column")
    parser.add_argument("--n", type=int, default=0,
                        help="images per (preset, class) and column; 0: enough for about --seconds of 1-worker time")
    parser.add_argument("--seconds", type=float, default=8.0, help="target 1-worker time per cell when --n is 0")
    parser.add_argument("--n-90k", type=int, default=1000,
                        help="images per class of the mixed Model-I run used for the 3 x 30k estimate (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1,
                        help="time each column this many times, alternating, and keep the fastest")
    args = parser.parse_args()

    print(f"# {' '.join([os.path.basename(sys.argv[0])] + sys.argv[1:])}")
    print(f"# cores: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.2f}")
    w2_head = "" if args.skip_w2 else (" equilens w2 img/s | scaling | steady w1 img/s | steady w2 img/s "
                                       "| steady scaling |")
    print("| preset | class | n | baseline img/s | equilens w1 img/s | ms/img CPU | ratio | ratio by CPU time |"
          + w2_head)
    print("|---" * (8 if args.skip_w2 else 13) + "|")
    t_start = timed_generate(resolve_config(args.presets[0]), ["no_sub"], 2, 2, args.seed)
    start_line = (f"# start-up of the local worker pool (forkserver + imports + first images, once per process, "
                  f"excluded from the w2 column): {t_start:.1f} s")
    classes_of = {p.name: p.classes for p in list_presets()}
    for preset in args.presets:
        config = resolve_config(preset)
        for cls in [c for c in args.classes if c in classes_of[preset]]:
            n = args.n
            if n <= 0:  # calibrate on 20 images (after a warm-up)
                timed_generate(config, [cls], 3, 1, args.seed)
                n = int(min(5000, max(60, args.seconds * 20 / timed_generate(config, [cls], 20, 1, args.seed))))
            # the images equilens makes for a single-class set [cls] with this seed
            records, seeds = [], []
            for i in range(n):
                rng, noise_seed = image_streams(args.seed, i)
                record = draw_parameters(config, [cls][int(class_index(i, 1))], rng)
                records.append(record)
                seeds.append(noise_seed)
            baseline_loop(config, records[:3], seeds[:3])  # warm-up (imports, caches)
            timed_generate(config, [cls], 3, 1, args.seed)  # warm-up of the in-process renderer
            t_base = c_base = t1 = c1 = t2 = float("inf")
            s1 = s2 = 0.0
            shard = max(10, n // 8)
            for _ in range(max(1, args.repeats)):
                tb, cb = baseline_loop(config, records, seeds)
                t_base, c_base = min(t_base, tb), min(c_base, cb)
                t1 = min(t1, timed_generate(config, [cls], n, 1, args.seed, shard))
                c1, s1 = min(c1, last_cpu[0]), max(s1, last_steady[0])
                if not args.skip_w2:
                    t2 = min(t2, timed_generate(config, [cls], n, 2, args.seed, shard))
                    s2 = max(s2, last_steady[0])
            b, r1, r2 = n / t_base, n / t1, n / t2
            w2_cells = "" if args.skip_w2 else (
                f" {r2:.1f} | {r2 / r1:.2f} | {s1:.1f} | {s2:.1f} | {s2 / s1 if s1 else float('nan'):.2f} |")
            print(f"| {preset} | {cls} | {n} | {b:.1f} | {r1:.1f} | {1000 * c1 / n:.1f} | {r1 / b:.2f} "
                  f"| {c_base / c1:.2f} |" + w2_cells, flush=True)
    if args.n_90k > 0:
        config = resolve_config("model_i")
        n_total = 3 * args.n_90k
        t = timed_generate(config, ["no_sub", "cdm", "axion"], args.n_90k, 2, args.seed)
        print(f"\n# Model I, 3 classes x {args.n_90k} = {n_total} images, 2 workers: {t:.1f} s "
              f"({n_total / t:.1f} img/s); linear extrapolation to 3 x 30000 = 90000 images: "
              f"{90000 / (n_total / t) / 60:.1f} min")
    print(start_line)
    print(f"# load average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
