"""Import a DeepLense class-folder ``.npy`` data set into the equilens format.

The public DeepLense data sets (Model I/II/III, see ``docs`` and the physics reference) are a
directory with one sub-folder per class (``axion/``, ``cdm/``, ``no_sub/``); every file holds one
image, ``[H, W]`` or ``[1, H, W]``. The ``axion`` files are *pickled object arrays*
``[image, m_a]`` where ``m_a`` is the axion mass in eV (``DeepLenseSim/Model_I/sim_axion.py`` saves
``np.array([image, mass])``). numpy can only read such files by unpickling them, and unpickling a
file can run arbitrary code, so :func:`import_deeplense` reads them only with ``allow_pickle=True``.

The imported set has the same layout as a simulated one (:mod:`equilens.data.store`): classes
interleaved (global image ``i`` takes the next file of class ``i mod n_classes`` while that class has
files left), parameter columns ``m_a`` [eV] and ``log10_m_a`` (NaN outside the axion class), and a
JSON record per image naming its source file. The manifest's ``source`` names the directory, the
number of files and a SHA-256 of the file listing (names and sizes); re-running the same import into
the same directory resumes it, a different listing is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from equilens.data.store import DatasetWriter, equilens_version, library_versions, plan_shards
from equilens.errors import DataError

#: Class order used when the folder names are the DeepLense ones, so that labels agree with
#: ``equilens simulate --classes no_sub,cdm,axion``; other folder names follow in sorted order.
KNOWN_CLASS_ORDER = ("no_sub", "cdm", "axion", "wdm", "sidm")

PARAMETER_COLUMNS = ["log10_m_a", "m_a"]

_PICKLE_HINT = ("numpy can read it only by unpickling, and unpickling a file can run arbitrary code. "
                "If you trust where the data set comes from (e.g. the DeepLense axion files, which are "
                "pickled [image, mass] arrays), pass --allow-pickle (allow_pickle=True)")


@dataclass(frozen=True)
class _Item:
    class_index: int
    path: Path


def _natural_key(name: str) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _scan(directory: Path, classes: Sequence[str] | None) -> tuple[list[str], dict[str, list[Path]]]:
    if not directory.is_dir():
        raise DataError(f"{directory} is not a directory; expected a DeepLense folder with one sub-folder "
                        f"of .npy files per class (e.g. axion/, cdm/, no_sub/)")
    found = {p.name: sorted(p.glob("*.npy"), key=lambda f: _natural_key(f.name))
             for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")}
    found = {k: v for k, v in found.items() if v}
    if not found:
        raise DataError(f"{directory} has no class sub-folders holding .npy files; expected e.g. "
                        f"{directory}/no_sub/*.npy, {directory}/cdm/*.npy, {directory}/axion/*.npy")
    if classes is None:
        known = [c for c in KNOWN_CLASS_ORDER if c in found]
        names = known + sorted(c for c in found if c not in known)
    else:
        names = list(classes)
        unknown = [c for c in names if c not in found]
        if unknown or len(set(names)) != len(names):
            raise DataError(f"class folders {names} do not match {directory}: it has {sorted(found)}")
    return names, {c: found[c] for c in names}


def _peek_shape(path: Path, allow_pickle: bool) -> tuple[int, int]:
    """Image shape [H, W] of one file, from the .npy header alone when it is a plain array."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable .npy file: {exc}") from exc
    if not dtype.hasobject:
        shape = tuple(int(s) for s in shape)
        if len(shape) == 3 and shape[0] == 1:
            shape = shape[1:]
        if len(shape) != 2:
            raise DataError(f"{path} holds an array of shape {shape}; expected one image [H, W] or [1, H, W]")
        return shape[0], shape[1]
    image, _ = _decode(path, allow_pickle)
    return int(image.shape[0]), int(image.shape[1])


def _decode(path: Path, allow_pickle: bool) -> tuple[np.ndarray, float | None]:
    """One DeepLense file -> (image [H, W] float32, axion mass in eV or None)."""
    try:
        arr = np.load(path, allow_pickle=allow_pickle)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(f"{path} is a pickled object array: {_PICKLE_HINT}") from exc
        raise DataError(f"{path} is not a readable .npy file: {exc}") from exc
    except (OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npy file: {exc}") from exc
    except Exception as exc:  # unpickling errors of many kinds
        raise DataError(f"{path} could not be read: {type(exc).__name__}: {exc}") from exc
    mass: float | None = None
    if arr.dtype == object:
        items = list(np.asarray(arr, dtype=object).ravel())
        images = [x for x in items if isinstance(x, np.ndarray) and x.ndim >= 2]
        scalars = [x for x in items if not isinstance(x, np.ndarray) or x.ndim == 0]
        if len(images) != 1 or len(scalars) != 1:
            raise DataError(f"{path} is an object array of {len(items)} items; expected the DeepLense axion "
                            f"layout [image, mass]")
        try:
            mass = float(scalars[0])
        except (TypeError, ValueError) as exc:
            raise DataError(f"{path}: the second item {scalars[0]!r} is not a number (axion mass in eV)") from exc
        if not (math.isfinite(mass) and mass > 0):
            raise DataError(f"{path}: axion mass {mass!r} must be a positive number of eV (e.g. 1e-23)")
        arr = images[0]
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise DataError(f"{path} holds an array of shape {tuple(arr.shape)}; expected one image [H, W] or [1, H, W]")
    image = np.asarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(image)):
        raise DataError(f"{path} contains NaN or inf pixels")
    return image, mass


def _interleave(names: list[str], files: dict[str, list[Path]]) -> list[_Item]:
    order: list[_Item] = []
    longest = max(len(v) for v in files.values())
    for j in range(longest):
        for k, name in enumerate(names):
            if j < len(files[name]):
                order.append(_Item(k, files[name][j]))
    return order


def import_deeplense(directory: str | os.PathLike[str], out: str | os.PathLike[str], *,
                     allow_pickle: bool = False, classes: Sequence[str] | None = None, shard_size: int = 500,
                     progress: bool = True) -> Path:
    """Convert a DeepLense class-folder ``.npy`` set to an equilens data set at ``out``.

    Args:
        directory: folder with one sub-folder of ``.npy`` files per class.
        out: output data set directory (new, empty, or an unfinished import of the same folder).
        allow_pickle: read pickled object arrays (the DeepLense axion files). Unpickling can run code:
            only for files you trust.
        classes: class folder names in label order; default: no_sub, cdm, axion (those present),
            then any other folders in sorted order.
        shard_size: images per shard.
        progress: show a progress bar.

    Returns:
        The output directory.

    Raises:
        DataError: no class folders, a pickled file without ``allow_pickle``, a file that is not one
            image, images of different shapes (naming two files), or an output directory holding
            something else.
    """
    directory = Path(directory).resolve()
    names, files = _scan(directory, classes)
    order = _interleave(names, files)

    # pass 1: shapes (and that every file is readable) before anything is written
    first_of_shape: dict[tuple[int, ...], Path] = {}
    listing = hashlib.sha256()
    for item in order:
        shape = _peek_shape(item.path, allow_pickle)
        if shape not in first_of_shape:
            first_of_shape[shape] = item.path
            if len(first_of_shape) > 1:
                (s0, p0), (s1, p1) = list(first_of_shape.items())[:2]
                raise DataError(f"images of different shapes: {p0} is {s0[0]}x{s0[1]} but {p1} is "
                                f"{s1[0]}x{s1[1]}; a data set needs one image shape")
        listing.update(f"{item.path.relative_to(directory)}\t{item.path.stat().st_size}\n".encode())
    (height, width), = first_of_shape

    counts = {name: len(files[name]) for name in names}
    equal = len(set(counts.values())) == 1
    spec = {
        "class_names": names,
        "image_shape": [1, height, width],
        "parameter_columns": PARAMETER_COLUMNS,
        "shard_size": shard_size,
        "n_images": len(order),
        "source": {"kind": "deeplense-npy", "directory": str(directory), "n_files": len(order),
                   "listing_sha256": listing.hexdigest()},
    }
    extra = {"config": None, "seed": None, "n_per_class": next(iter(counts.values())) if equal else None,
             "class_counts": counts, "allow_pickle": allow_pickle,
             "library_versions": library_versions(), "equilens_version": equilens_version(),
             "index_rule": "classes interleaved: image i is the next file of class i mod n_classes "
                           "(while that class has files left); files in natural name order"}
    writer = DatasetWriter(out, spec, plan_shards(len(order), shard_size), extra)
    bar = None
    try:
        pending = writer.pending()
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=sum(writer.shards[k].n for k in pending), desc="importing", unit="img")
        for k in pending:
            shard = writer.shards[k]
            images = np.empty((shard.n, 1, height, width), dtype=np.float32)
            labels = np.empty(shard.n, dtype=np.int64)
            masses = np.full(shard.n, np.nan)
            records = []
            for j, item in enumerate(order[shard.start:shard.stop]):
                image, mass = _decode(item.path, allow_pickle)
                images[j, 0] = image
                labels[j] = item.class_index
                record: dict[str, object] = {"class": names[item.class_index],
                                             "source_file": str(item.path.relative_to(directory))}
                if mass is not None:
                    masses[j] = mass
                    record["axion"] = {"m_a": mass, "log10_m_a": math.log10(mass)}
                records.append(json.dumps(record))
            with np.errstate(divide="ignore", invalid="ignore"):
                log_masses = np.log10(masses)
            writer.write(k, images, labels, np.arange(shard.start, shard.stop),
                         {"m_a": masses, "log10_m_a": log_masses}, records)
            if bar is not None:
                bar.update(shard.n)
    finally:
        if bar is not None:
            bar.close()
        writer.close()
    return Path(out)
