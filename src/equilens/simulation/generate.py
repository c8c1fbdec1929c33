"""Generation layer: per-image seeds, chunks, shards, workers (local processes or Dask), resume.

This layer never draws physics itself and never calls lenstronomy: it asks
:func:`equilens.simulation.populations.draw_parameters` for each image's parameters and
:func:`equilens.simulation.render.render_image` for its pixels, and writes the results with
:class:`equilens.data.store.DatasetWriter`.

Global image index -> class
    A data set of ``n_per_class`` images of each of ``classes = [c_0, ..., c_{K-1}]`` has
    ``N = K * n_per_class`` images; image ``i`` (0-based) is of class ``c_{i mod K}`` (label ``i mod K``).
    Classes are therefore interleaved, every shard holds all classes in equal shares (to within one
    image) and any prefix of the set is class balanced.

Seeding rule
    Image ``i`` of a data set with seed ``s`` uses ``numpy.random.SeedSequence(s, spawn_key=(i,))``,
    split with ``.spawn(2)`` into a *parameter* stream (``numpy.random.default_rng(child_0)``, passed
    to ``draw_parameters``) and a *noise* stream: ``noise_seed = child_1.generate_state(2, uint32)``
    packed into one integer below 2**53 (exact in the float64 ``noise_seed`` column), and the noise
    generator is ``numpy.random.default_rng(noise_seed)``. An image depends only on (config, seed, i):
    not on the worker count, the shard size, the scheduler or which images were made before. The
    noise seed is stored in every image's record, so :func:`reproduce_image` re-renders any stored
    image exactly, or its noiseless model.

Work units
    Shards (``shard_size`` images, the unit of atomic writing and resume) are cut into chunks of at
    most :data:`CHUNK_SIZE` images, the unit of work sent to a worker. The main process gathers the
    chunks of a shard and writes the shard as soon as all of them are back, so at most the shards in
    flight are lost when a run is killed.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from equilens.data.store import (
    MANIFEST_NAME,
    DatasetWriter,
    LensDataset,
    equilens_version,
    library_versions,
    plan_shards,
    read_manifest,
)
from equilens.errors import ConfigError, DataError
from equilens.simulation.config import SimConfig
from equilens.simulation.populations import draw_parameters, flatten_parameters, parameter_columns
from equilens.simulation.presets import list_presets
from equilens.simulation.render import render_image, render_noiseless

__all__ = [
    "CHUNK_SIZE",
    "INDEX_RULE",
    "SEEDING_RULE",
    "ChunkResult",
    "class_index",
    "dataset_columns",
    "generate_dataset",
    "image_streams",
    "reproduce_image",
    "simulate_chunk",
]

#: Largest number of images in one work unit (a chunk of a shard).
CHUNK_SIZE = 100

INDEX_RULE = "image i has label i mod n_classes (classes interleaved, n_per_class images of each)"
SEEDING_RULE = ("image i: SeedSequence(seed, spawn_key=(i,)).spawn(2) -> [parameter stream, noise stream]; "
                "noise_seed = the noise stream's generate_state(2, uint32) packed as (a << 21) ^ b masked to 53 bits; "
                "noise generator = default_rng(noise_seed)")

_NOISE_SEED_BITS = 53  # the noise seed is stored exactly in a float64 column


# ------------------------------------------------------------------------------------------------
# Seeds and classes
# ------------------------------------------------------------------------------------------------

def image_streams(seed: int, index: int) -> tuple[np.random.Generator, int]:
    """The parameter generator and the noise seed of global image ``index`` (see the module docstring)."""
    param_ss, noise_ss = np.random.SeedSequence(seed, spawn_key=(index,)).spawn(2)
    a, b = (int(x) for x in noise_ss.generate_state(2, dtype=np.uint32))
    noise_seed = ((a << 21) ^ b) & ((1 << _NOISE_SEED_BITS) - 1)
    return np.random.default_rng(param_ss), noise_seed


def class_index(index: int | np.ndarray, n_classes: int) -> int | np.ndarray:
    """Label of global image ``index``: classes are interleaved."""
    return index % n_classes


def dataset_columns(config: SimConfig) -> list[str]:
    """Scalar parameter columns of a simulated data set: the population's columns plus ``noise_seed``."""
    cols = list(parameter_columns(config))
    if "noise_seed" not in cols:
        cols.append("noise_seed")
    return cols


# ------------------------------------------------------------------------------------------------
# The work unit (must stay a module-level function: it is pickled to processes and Dask workers)
# ------------------------------------------------------------------------------------------------

@dataclass
class ChunkResult:
    """Images ``start .. stop-1`` of a data set, ready to be written into their shard."""

    start: int
    stop: int
    images: np.ndarray  # float32 [n, H, W]
    labels: np.ndarray  # int64 [n]
    columns: dict[str, np.ndarray]  # float64 [n] each
    records: list[str]  # JSON, one per image


def _simulate_one(config: SimConfig, classes: Sequence[str], seed: int, index: int) -> tuple[np.ndarray, dict]:
    label = int(class_index(index, len(classes)))
    param_rng, noise_seed = image_streams(seed, index)
    record = draw_parameters(config, classes[label], param_rng)
    record["index"] = index
    record["class"] = classes[label]
    record["noise_seed"] = noise_seed
    image = render_image(config, record, np.random.default_rng(noise_seed))
    if not np.all(np.isfinite(image)):
        bad = int(np.size(image) - np.count_nonzero(np.isfinite(image)))
        flat = {k: v for k, v in flatten_parameters(record).items() if not (isinstance(v, float) and math.isnan(v))}
        raise DataError(f"image {index} (class {classes[label]}) rendered with {bad} NaN or inf pixels; "
                        f"its parameters: {json.dumps(flat, default=float)}. Nothing was written for its shard; "
                        f"shards already finished are kept")
    return image, record


def simulate_chunk(config: SimConfig, classes: Sequence[str], seed: int, start: int, stop: int) -> ChunkResult:
    """Draw and render global images ``start .. stop-1``: a pure function of its arguments."""
    n = stop - start
    size = config.image_size
    images = np.empty((n, size, size), dtype=np.float32)
    labels = np.empty(n, dtype=np.int64)
    cols = dataset_columns(config)
    columns = {c: np.full(n, np.nan) for c in cols}
    records = []
    for j, index in enumerate(range(start, stop)):
        image, record = _simulate_one(config, classes, seed, index)
        if image.shape != (size, size):
            raise DataError(f"image {index} has shape {image.shape}, the config says {size}x{size}")
        images[j] = image
        labels[j] = class_index(index, len(classes))
        flat = flatten_parameters(record)
        flat["noise_seed"] = record["noise_seed"]
        for c in cols:
            columns[c][j] = flat.get(c, np.nan)
        records.append(json.dumps(record, allow_nan=True))
    return ChunkResult(start, stop, images, labels, columns, records)


# ------------------------------------------------------------------------------------------------
# Executors: in process, local processes, Dask
# ------------------------------------------------------------------------------------------------

_Task = tuple[int, int]  # (start, stop)


def _run_serial(tasks: list[_Task], fn: Callable[[int, int], ChunkResult]) -> Iterator[ChunkResult]:
    for start, stop in tasks:
        yield fn(start, stop)


#: Modules imported once by the forkserver, so that each worker forked from it starts with them loaded
#: (lenstronomy and astropy.cosmology take about 2 s to import here).
_PRELOAD = ("equilens.simulation.generate", "lenstronomy.ImSim.image_model", "lenstronomy.LensModel.lens_model",
            "lenstronomy.LightModel.light_model", "lenstronomy.Data.imaging_data", "lenstronomy.Data.psf",
            "astropy.cosmology")


#: Seconds between a worker's checks that the main process is still there.
PARENT_POLL_SECONDS = 0.5


def _exit_with_main(main_pid: int, parent_pid: int) -> None:
    """Worker initializer: end this worker when the main process is gone.

    Killing the main process (kill -9, or a signal without cleanup) would otherwise leave the workers
    running their queued chunks, or blocked forever on the task queue. A daemon thread polls: when the
    worker's parent changes (the forkserver exits when the main process dies, and workers are then
    re-parented) or the main process no longer exists, the worker exits at once.
    """
    import threading
    import time

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_SECONDS)
            gone = os.getppid() != parent_pid
            try:
                os.kill(main_pid, 0)
            except ProcessLookupError:
                gone = True
            except PermissionError:
                pass
            if gone:
                os._exit(1)

    threading.Thread(target=watch, name="equilens-exit-with-main", daemon=True).start()


def _start_watch(main_pid: int) -> None:
    """Initializer of every local worker: :func:`_exit_with_main` with this worker's current parent."""
    _exit_with_main(main_pid, os.getppid())


class _Pool:
    """Local worker processes.

    The start method is ``forkserver`` (``spawn`` where there is none): workers are forked from a clean
    server process, never from the caller, which may hold threads (a progress bar, torch) whose locks a
    plain ``fork`` would copy. Each worker exits by itself when the main process disappears
    (:func:`_exit_with_main`). As with any multiprocessing code, a script that calls
    :func:`generate_dataset` with ``workers > 1`` must do so under ``if __name__ == "__main__":``.
    """

    def __init__(self, workers: int) -> None:
        methods = multiprocessing.get_all_start_methods()
        method = "forkserver" if "forkserver" in methods else "spawn"
        ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload(list(_PRELOAD))
        self.executor = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_start_watch,
                                            initargs=(os.getpid(),))

    def submit(self, fn: Callable[..., ChunkResult], *args: Any) -> Future:
        return self.executor.submit(fn, *args)

    def close(self, cancel: bool) -> None:
        self.executor.shutdown(wait=True, cancel_futures=cancel)


def _drain(futures: list[Any], on_result: Callable[[ChunkResult], None], cancel: Callable[[list[Any]], None],
           dask: bool) -> None:
    """Collect futures as they finish; on the first failure cancel the rest but keep finished work."""
    error: BaseException | None = None
    if dask:
        from distributed import as_completed as dask_as_completed

        iterator = dask_as_completed(futures)
        for fut in iterator:
            try:
                result = fut.result()
            except Exception as exc:  # noqa: BLE001 - re-raised below after the cleanup
                if error is None:
                    error = exc
                    cancel([f for f in futures if not f.done()])
                continue
            finally:
                fut.release()
            if result is not None:
                on_result(result)
    else:
        pending = set(futures)
        futures.clear()  # a finished Future keeps its result: hold each only until it is written
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                if fut.cancelled():
                    continue
                failure = fut.exception()
                if failure is not None:
                    if error is None:
                        error = failure
                        cancel(list(pending))
                    continue
                on_result(fut.result())
            del done
    if error is not None:
        raise error


# ------------------------------------------------------------------------------------------------
# The public entry point
# ------------------------------------------------------------------------------------------------

def preset_classes(config: SimConfig) -> list[str]:
    """The classes of ``config``'s preset (empty for a preset that is not registered)."""
    presets = {p.name: p for p in list_presets()}
    return list(presets[config.preset].classes) if config.preset in presets else []


def check_classes(config: SimConfig, classes: Sequence[str], what: str = "class") -> None:
    """Raise ConfigError naming the first of ``classes`` that ``config``'s preset does not have, and the valid ones
    (``what``: the role in the message, e.g. ``reference``)."""
    valid = preset_classes(config)
    unknown = [c for c in classes if c not in valid]
    if unknown:
        raise ConfigError(f"unknown {what} {unknown[0]!r} for preset {config.preset}; "
                          f"valid classes: {', '.join(valid)}")


def _validate(config: SimConfig, classes: Sequence[str], n_per_class: int, seed: int, workers: int,
              shard_size: int, scheduler: str | None) -> list[str]:
    if not isinstance(config, SimConfig):
        raise ConfigError(f"config must be a SimConfig (from resolve_config), got {type(config).__name__}")
    classes = list(classes)
    if not classes:
        raise ConfigError(f"give at least one class; valid classes: {', '.join(preset_classes(config))}")
    check_classes(config, classes)
    if len(set(classes)) != len(classes):
        raise ConfigError(f"classes must not repeat, got {', '.join(classes)}")
    for name, value in (("n_per_class", n_per_class), ("workers", workers), ("shard_size", shard_size)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if scheduler is not None and not isinstance(scheduler, str):
        raise ConfigError(f"scheduler must be an address like tcp://HOST:PORT, got {scheduler!r}")
    return classes


def generate_dataset(config: SimConfig, classes: Sequence[str], n_per_class: int, seed: int,
                     out: str | os.PathLike[str], *, workers: int = 1, scheduler: str | None = None,
                     shard_size: int = 500, progress: bool = True,
                     on_shard_written: Callable[[int], None] | None = None) -> Path:
    """Simulate ``n_per_class`` images of each class into the data set directory ``out``.

    Re-running the same call on an unfinished directory completes it (finished shards are checked
    against their SHA-256 and kept; missing or damaged ones are made again); the result is byte for
    byte the same as an uninterrupted run, whatever ``workers`` or ``scheduler``.

    Args:
        config: validated simulator config (:func:`equilens.simulation.config.resolve_config`).
        classes: class names, in label order (label ``k`` is ``classes[k]``).
        n_per_class: images per class (> 0).
        seed: non-negative integer; with ``config`` it fixes every image.
        out: data set directory: new, empty, or an unfinished run of the same command.
        workers: local worker processes (1: in this process). Ignored when ``scheduler`` is given.
        scheduler: address of a Dask distributed scheduler (``tcp://HOST:PORT``); its workers must be
            able to import equilens. Shards are written by this process, so workers need no shared disk.
        shard_size: images per shard file.
        progress: show a tqdm bar over images.
        on_shard_written: called with the shard number after each shard is written and recorded.

    Returns:
        ``Path(out)``.

    Raises:
        ConfigError: invalid classes, counts, seed or workers (listing what is valid).
        DataError: ``out`` holds something else (a different data set or non-data-set files), an image
            rendered with NaN/inf (naming its index and parameters), or another process is writing ``out``.
    """
    classes = _validate(config, classes, n_per_class, seed, workers, shard_size, scheduler)
    seed, n_per_class = int(seed), int(n_per_class)
    n_images = n_per_class * len(classes)
    size = config.image_size
    columns = dataset_columns(config)
    spec = {
        "config": config.to_dict(), "seed": seed, "class_names": classes, "n_per_class": n_per_class,
        "shard_size": shard_size, "n_images": n_images, "image_shape": [1, size, size],
        "parameter_columns": columns,
    }
    versions = library_versions()
    extra = {"source": None, "index_rule": INDEX_RULE, "seeding_rule": SEEDING_RULE,
             "library_versions": versions, "equilens_version": equilens_version()}
    out = Path(out)
    previous = _previous_versions(out)
    writer = DatasetWriter(out, spec, plan_shards(n_images, shard_size), extra)
    bar = None
    try:
        if previous is not None and previous != {"library_versions": versions, "equilens_version": equilens_version()}:
            warnings.warn(f"{out} was started with {previous}; resuming with {extra['library_versions']} and equilens "
                          f"{extra['equilens_version']}: images made by different versions may differ", stacklevel=2)
        for note in writer.notes:
            warnings.warn(f"{out}: {note}", stacklevel=2)
        pending = writer.pending()
        if progress and len(pending) < len(writer.shards):
            print(f"{out}: {len(writer.shards) - len(pending)} of {len(writer.shards)} shards already finished"
                  + ("; nothing to do" if not pending else f", making the other {len(pending)}"), file=sys.stderr)
        if not pending:
            return out
        chunk = min(shard_size, CHUNK_SIZE)
        tasks: list[_Task] = []
        waiting: dict[int, dict[int, ChunkResult]] = {}  # shard -> start -> result
        for k in pending:
            s = writer.shards[k]
            tasks.extend((a, min(a + chunk, s.stop)) for a in range(s.start, s.stop, chunk))
            waiting[k] = {}
        if progress:
            from tqdm.auto import tqdm

            done_images = n_images - sum(writer.shards[k].n for k in pending)
            bar = tqdm(total=n_images, initial=done_images, desc="simulating", unit="img", smoothing=0.05)

        def on_result(result: ChunkResult) -> None:
            k = result.start // shard_size
            parts = waiting[k]
            parts[result.start] = result
            if bar is not None:
                bar.update(result.stop - result.start)
            s = writer.shards[k]
            if sum(p.stop - p.start for p in parts.values()) < s.n:
                return
            ordered = [parts[a] for a in sorted(parts)]
            writer.write(k, np.concatenate([p.images for p in ordered])[:, None],
                         np.concatenate([p.labels for p in ordered]), np.arange(s.start, s.stop),
                         {c: np.concatenate([p.columns[c] for p in ordered]) for c in columns},
                         [r for p in ordered for r in p.records])
            del waiting[k]
            if on_shard_written is not None:
                on_shard_written(k)

        if scheduler is not None:
            _run_dask(scheduler, config, classes, seed, tasks, on_result)
        elif workers == 1:
            for result in _run_serial(tasks, lambda a, b: simulate_chunk(config, classes, seed, a, b)):
                on_result(result)
        else:
            pool = _Pool(workers)
            cancelled = False
            try:
                futures = [pool.submit(simulate_chunk, config, classes, seed, a, b) for a, b in tasks]

                def cancel(fs: list[Any]) -> None:
                    nonlocal cancelled
                    cancelled = True
                    for f in fs:
                        f.cancel()

                _drain(futures, on_result, cancel, dask=False)
            except BaseException:
                cancelled = True
                raise
            finally:
                pool.close(cancel=cancelled)
    finally:
        if bar is not None:
            bar.close()
        writer.close()
    return out


def _run_dask(address: str, config: SimConfig, classes: list[str], seed: int, tasks: list[_Task],
              on_result: Callable[[ChunkResult], None]) -> None:
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - dask[distributed] is a dependency
        raise ConfigError("--scheduler needs dask[distributed]: pip install 'dask[distributed]'") from exc
    try:
        client = Client(address, timeout="20s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise DataError(f"cannot reach the Dask scheduler at {address!r} ({exc}); start one with "
                        f"`dask scheduler` and workers with `dask worker {address}`, or drop --scheduler") from exc
    run_id = uuid.uuid4().hex[:12]  # keys unique per run: never reuse another run's result on the cluster
    try:
        futures = [client.submit(simulate_chunk, config, classes, seed, a, b, pure=False,
                                 key=f"equilens-chunk-{run_id}-{a}-{b}") for a, b in tasks]
        try:
            _drain(futures, on_result, lambda fs: client.cancel(fs), dask=True)
        except ImportError as exc:
            raise DataError(f"a worker of the Dask cluster at {address} cannot import what equilens needs ({exc}); "
                            f"install equilens and its dependencies in every worker's environment") from exc
    finally:
        client.close()


def _previous_versions(out: Path) -> dict[str, Any] | None:
    if not (out / MANIFEST_NAME).is_file():
        return None
    try:
        old = read_manifest(out)
    except DataError:
        return None  # DatasetWriter reports it
    return {"library_versions": old.get("library_versions"), "equilens_version": old.get("equilens_version")}


# ------------------------------------------------------------------------------------------------
# Re-rendering stored images
# ------------------------------------------------------------------------------------------------

def reproduce_image(dataset: str | os.PathLike[str] | LensDataset, position: int, *,
                    noiseless: bool = False) -> np.ndarray:
    """Re-render the image at ``position`` of a simulated data set from its recorded parameters.

    Args:
        dataset: the data set (directory or open :class:`LensDataset`).
        position: image position in the data set (0 .. len-1).
        noiseless: render the noiseless model instead of the stored noisy image.

    Returns:
        float32 [H, W] equal to the stored image (``noiseless=False``), or the float64 [H, W]
        noiseless model.
    """
    ds = dataset if isinstance(dataset, LensDataset) else LensDataset(dataset)
    if ds.manifest.get("config") is None:
        raise DataError(f"{ds.path} was not simulated by equilens (no config in its manifest): nothing to re-render")
    config = SimConfig.from_dict(ds.manifest["config"])
    record = ds.record(position)
    if noiseless:
        return render_noiseless(config, record)
    return render_image(config, record, np.random.default_rng(record["noise_seed"]))
