"""The equilens data-set format: a directory of sharded HDF5 files and a ``manifest.json``.

Layout of a data set directory::

    manifest.json         format version, resolved simulation config, seed, class names,
                          parameter column names, the shard list (file, global index range,
                          number of images, SHA-256), library versions, equilens version
    shard-00000.h5        images   float32 [N, 1, H, W]   (chunked one image per chunk)
    shard-00001.h5        labels   int64   [N]            index into manifest["class_names"]
    ...                   index    int64   [N]            global image index (the seed stream id)
                          params/<column>  float64 [N]    one scalar parameter per dataset,
                                                          NaN where it does not apply to a class
                          records  variable-length UTF-8 [N]  full JSON parameter record per image
                                                          (subhalo lists etc.), enough to re-render

Shards and the manifest are written atomically (a temporary file in the same directory, then
``os.replace``), so an interrupted writer leaves either the old file or the new one, never half of one.
A shard is *complete* when the manifest records its SHA-256; :meth:`LensDataset.verify` recomputes
every checksum and names the first shard that does not match.

Manifest keys: ``format``, ``format_version``, ``class_names``, ``image_shape`` [1, H, W], ``shards``
(``file``, ``start``, ``stop``, ``n``, ``sha256`` or null while unfinished, ``nonfinite``: global indices of
its images with a NaN or inf pixel, recorded when it is written), ``n_images``, ``shard_size``,
``parameter_columns``, ``config`` (the simulator's ``SimConfig.to_dict()``, null for imports), ``seed``,
``n_per_class``, ``source`` (null for simulations, the origin of an import), ``index_rule``,
``seeding_rule`` (simulations), ``library_versions`` (python, numpy, lenstronomy, astropy, h5py, scipy),
``equilens_version``, ``created``, ``updated``, ``complete``.

:class:`DatasetWriter` writes the manifest first with every planned shard unfinished, then each shard
and the updated manifest; :func:`describe_dataset` is ``equilens info``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from equilens.errors import DataError

FORMAT_NAME = "equilens-dataset"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


def shard_file_name(shard_index: int) -> str:
    """File name of shard number ``shard_index`` (``shard-00000.h5``)."""
    return f"shard-{shard_index:05d}.h5"


def sha256_file(path: str | os.PathLike[str], chunk_bytes: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def current_umask() -> int:
    """The process's file-creation mask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_tmp(directory: Path, name: str) -> Path:
    """A new temporary file beside ``name``, with the mode a plain ``open(..., "w")`` would give it.

    ``mkstemp`` creates files with mode 0600; the renamed file would then be unreadable to colleagues on
    shared storage, unlike every other file equilens writes. The mode is set to ``0666 & ~umask``.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    return Path(tmp)


def write_json_atomic(path: str | os.PathLike[str], data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    path = Path(path)
    tmp = _atomic_tmp(path.parent, path.name)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=False, allow_nan=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_shard(
    path: str | os.PathLike[str],
    images: np.ndarray,
    labels: np.ndarray,
    indices: np.ndarray,
    columns: Mapping[str, np.ndarray],
    records: Sequence[str],
) -> str:
    """Write one shard atomically and return its SHA-256.

    Args:
        path: destination file (``<dir>/shard-XXXXX.h5``).
        images: float32 [N, 1, H, W] (or [N, H, W], which gets the channel axis).
        labels: integer class labels [N].
        indices: global image indices [N].
        columns: scalar parameter columns, each float [N].
        records: N JSON strings, the full parameter record of each image.
    """
    path = Path(path)
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[:, None]
    n = images.shape[0]
    if images.ndim != 4:
        raise DataError(f"images must be [N, 1, H, W], got shape {images.shape}")
    for name, arr in (("labels", labels), ("indices", indices)):
        if np.shape(arr) != (n,):
            raise DataError(f"{name} must have shape ({n},), got {np.shape(arr)}")
    if len(records) != n:
        raise DataError(f"records must have {n} entries, got {len(records)}")
    tmp = _atomic_tmp(path.parent, path.name)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT_NAME
            f.attrs["format_version"] = FORMAT_VERSION
            f.create_dataset("images", data=images, chunks=(1, *images.shape[1:]))
            f.create_dataset("labels", data=np.asarray(labels, dtype=np.int64))
            f.create_dataset("index", data=np.asarray(indices, dtype=np.int64))
            grp = f.create_group("params")
            for name, values in columns.items():
                values = np.asarray(values, dtype=np.float64)
                if values.shape != (n,):
                    raise DataError(f"parameter column {name!r} must have shape ({n},), got {values.shape}")
                grp.create_dataset(name, data=values)
            f.create_dataset("records", data=list(records), dtype=h5py.string_dtype("utf-8"))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        digest = sha256_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return digest


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check ``<directory>/manifest.json``; :class:`DataError` says what is wrong."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory} is not a directory; expected an equilens data set directory "
                        f"(made by `equilens simulate` or `equilens import-deeplense`)")
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise DataError(f"{directory} has no {MANIFEST_NAME}: not an equilens data set "
                        f"(make one with `equilens simulate` or `equilens import-deeplense`)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON ({exc}); the data set is damaged") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise DataError(f"{path} is not an equilens manifest (expected format {FORMAT_NAME!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{path} has format version {manifest.get('format_version')!r}; this equilens "
                        f"reads version {FORMAT_VERSION}")
    for key in ("class_names", "shards", "image_shape"):
        if key not in manifest:
            raise DataError(f"{path} lacks the key {key!r}")
    return manifest


@dataclass(frozen=True)
class ShardInfo:
    """One shard of a data set: ``file`` holds global images ``start`` .. ``stop - 1`` (in file order).

    ``nonfinite`` lists the global indices of the shard's images holding a NaN or inf pixel, recorded
    when the shard was written (``()`` when all are finite); None for manifests written before equilens
    recorded it (see :meth:`LensDataset.nonfinite_images`).
    """

    file: str
    start: int
    stop: int
    sha256: str | None
    nonfinite: tuple[int, ...] | None = None

    @property
    def n(self) -> int:
        return self.stop - self.start

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ShardInfo:
        bad = d.get("nonfinite")
        return cls(str(d["file"]), int(d["start"]), int(d["stop"]), d.get("sha256"),
                   None if bad is None else tuple(int(i) for i in bad))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file, "start": self.start, "stop": self.stop, "n": self.n,
                               "sha256": self.sha256}
        if self.nonfinite is not None:
            out["nonfinite"] = list(self.nonfinite)
        return out


def nonfinite_rows(images: np.ndarray) -> np.ndarray:
    """Row numbers (int64) of the images in a [N, ...] array that hold any NaN or inf value."""
    images = np.asarray(images)
    if images.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    return np.nonzero(~np.isfinite(images.reshape(images.shape[0], -1)).all(axis=1))[0].astype(np.int64)


#: Images read at a time when scanning a shard for non-finite pixels.
SCAN_CHUNK = 256


def scan_shard_nonfinite(directory: str | os.PathLike[str], shard: ShardInfo) -> tuple[int, ...]:
    """Global indices of the images of ``shard`` with a NaN or inf pixel, read from the file."""
    path = Path(directory) / shard.file
    try:
        with h5py.File(path, "r") as f:
            images = f["images"]
            bad = [shard.start + a + int(r) for a in range(0, shard.n, SCAN_CHUNK)
                   for r in nonfinite_rows(images[a:min(a + SCAN_CHUNK, shard.n)])]
    except (OSError, KeyError) as exc:
        raise DataError(f"cannot read the images of shard {path}: {exc}") from exc
    return tuple(bad)


def describe_nonfinite(bad: Mapping[int, str], limit: int = 5) -> str:
    """'image 12 (shard-00000.h5), image 40 (shard-00001.h5)' for {global index: shard file}."""
    items = sorted(bad.items())
    text = ", ".join(f"image {i} ({f})" for i, f in items[:limit])
    return text + (f" and {len(items) - limit} more" if len(items) > limit else "")


class LensDataset:
    """Read access to an equilens data set directory.

    Labels and scalar parameter columns are small and read eagerly; images are read on demand, so the
    object is cheap to create and safe to use from several DataLoader worker processes (each process
    opens its own HDF5 handles).

    Args:
        directory: the data set directory.
        require_complete: refuse a data set whose writer has not finished (missing shard checksums).
    """

    def __init__(self, directory: str | os.PathLike[str], require_complete: bool = True) -> None:
        self.path = Path(directory)
        self.manifest = read_manifest(self.path)
        self.class_names: list[str] = list(self.manifest["class_names"])
        self.image_shape: tuple[int, int, int] = tuple(self.manifest["image_shape"])  # type: ignore[assignment]
        self.shards = [ShardInfo.from_dict(s) for s in self.manifest["shards"]]
        missing = [s.file for s in self.shards if s.sha256 is None]
        if require_complete and missing:
            raise DataError(f"{self.path} is incomplete: {len(missing)} of {len(self.shards)} shards were "
                            f"never finished (first: {missing[0]}); run the same `equilens simulate` "
                            f"command again to complete it")
        self._starts = np.array([s.start for s in self.shards], dtype=np.int64)
        self._offsets = np.cumsum([0] + [s.n for s in self.shards])
        self._handles: dict[int, h5py.File] = {}
        self._pid = os.getpid()
        self.labels = self._read_concat("labels", np.int64)
        self.indices = self._read_concat("index", np.int64)

    # -- basic facts -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def parameter_names(self) -> list[str]:
        """Names of the scalar parameter columns (same in every shard)."""
        if not self.shards:
            return []
        return sorted(self._file(0)["params"].keys())

    def class_counts(self) -> dict[str, int]:
        """Number of images of each class."""
        counts = np.bincount(self.labels, minlength=self.num_classes)
        return {name: int(c) for name, c in zip(self.class_names, counts, strict=True)}

    # -- reading -----------------------------------------------------------------------------------
    def _file(self, shard: int) -> h5py.File:
        if os.getpid() != self._pid:  # forked into a worker: never reuse the parent's handles
            self._handles = {}
            self._pid = os.getpid()
        handle = self._handles.get(shard)
        if handle is None:
            path = self.path / self.shards[shard].file
            try:
                handle = h5py.File(path, "r")
            except (OSError, FileNotFoundError) as exc:
                raise DataError(f"cannot read shard {path}: {exc}. Run `equilens info {self.path}` to check "
                                f"every shard") from exc
            self._handles[shard] = handle
        return handle

    def _read_concat(self, name: str, dtype: Any) -> np.ndarray:
        parts = []
        for i, shard in enumerate(self.shards):
            try:
                arr = np.asarray(self._file(i)[name][...], dtype=dtype)
            except KeyError as exc:
                raise DataError(f"shard {shard.file} of {self.path} has no dataset {name!r}") from exc
            if arr.shape[0] != shard.n:
                raise DataError(f"shard {shard.file} of {self.path} holds {arr.shape[0]} entries of {name!r}, "
                                f"the manifest says {shard.n}")
            parts.append(arr)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    def _locate(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        positions = np.asarray(positions, dtype=np.int64)
        if positions.size and (positions.min() < 0 or positions.max() >= len(self)):
            raise IndexError(f"image positions must be in [0, {len(self)}), got {positions.min()}..{positions.max()}")
        shard = np.searchsorted(self._offsets, positions, side="right") - 1
        return shard, positions - self._offsets[shard]

    def get_images(self, positions: Iterable[int] | np.ndarray) -> np.ndarray:
        """Images at data-set positions (0 .. len-1, in shard order) as float32 [k, 1, H, W]."""
        positions = np.atleast_1d(np.asarray(positions if isinstance(positions, np.ndarray) else list(positions),
                                             dtype=np.int64))
        out = np.empty((positions.size, *self.image_shape), dtype=np.float32)
        shard, local = self._locate(positions)
        for s in np.unique(shard):
            sel = np.nonzero(shard == s)[0]
            # h5py reads a strictly increasing list of rows in one call; map duplicates back afterwards
            rows, inverse = np.unique(local[sel], return_inverse=True)
            out[sel] = self._file(int(s))["images"][rows.tolist()][inverse]
        return out

    def get_image(self, position: int) -> np.ndarray:
        """One image, float32 [1, H, W]."""
        shard, local = self._locate(np.array([position]))
        return np.asarray(self._file(int(shard[0]))["images"][int(local[0])], dtype=np.float32)

    def parameters(self, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Scalar parameter columns over the whole data set, each float64 [N]."""
        valid = self.parameter_names
        names = list(valid if names is None else names)
        unknown = [n for n in names if n not in valid]
        if unknown:
            raise DataError(f"{self.path} records no parameter {unknown[0]!r}; it records: {', '.join(valid)}")
        return {n: np.concatenate([np.asarray(self._file(i)["params"][n][...], dtype=np.float64)
                                   for i in range(len(self.shards))]) for n in names}

    def record(self, position: int) -> dict[str, Any]:
        """The full parameter record (decoded JSON) of the image at ``position``."""
        shard, local = self._locate(np.array([position]))
        raw = self._file(int(shard[0]))["records"][int(local[0])]
        return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)

    # -- integrity ---------------------------------------------------------------------------------
    def nonfinite_images(self, log: Any = None) -> dict[int, str]:
        """Data-set positions of every image with a NaN or inf pixel -> the shard file holding it.

        Design: the writer records each shard's non-finite images in the manifest when it writes the
        shard (the images are in memory then, so it costs nothing), and ``equilens info`` checks the record
        against the file. Reading it here is free, which matters because this runs at every training and
        evaluation start: scanning a 30,000 x 150 x 150 set means decoding 2.7 GB of HDF5. Only shards of
        manifests written before the record existed are scanned (with a message through ``log``).
        """
        out: dict[int, str] = {}
        old = [k for k, s in enumerate(self.shards) if s.nonfinite is None]
        if old and log is not None:
            log(f"{self.path}: the manifest does not record non-finite images for {len(old)} shard(s) "
                f"(written by an older equilens); scanning them")
        for k, shard in enumerate(self.shards):
            bad = shard.nonfinite if shard.nonfinite is not None else scan_shard_nonfinite(self.path, shard)
            for index in bad:
                out[int(self._offsets[k]) + int(index) - shard.start] = shard.file
        return out

    def verify(self, progress: bool = False) -> None:
        """Recompute every shard's SHA-256 and compare with the manifest.

        Raises:
            DataError: naming the first shard that is missing, unfinished or does not match.
        """
        shards: Iterable[ShardInfo] = self.shards
        if progress:
            from tqdm.auto import tqdm

            shards = tqdm(self.shards, desc="checking shards", unit="shard")
        for shard in shards:
            verify_shard(self.path, shard)

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles = {}

    def __getstate__(self) -> dict[str, Any]:  # picklable for spawn-based DataLoader workers
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state

    def __repr__(self) -> str:
        return f"LensDataset({str(self.path)!r}, n={len(self)}, classes={self.class_names})"


def verify_shard(directory: Path, shard: ShardInfo) -> None:
    """Check one shard's existence and checksum; :class:`DataError` names the shard on failure."""
    path = Path(directory) / shard.file
    if not path.is_file():
        raise DataError(f"shard {path} is missing")
    if shard.sha256 is None:
        raise DataError(f"shard {path} was never finished (no checksum in the manifest)")
    actual = sha256_file(path)
    if actual != shard.sha256:
        raise DataError(f"shard {path} is corrupt or truncated: SHA-256 {actual[:16]}... does not match the "
                        f"manifest's {shard.sha256[:16]}...; delete it and run the same `equilens simulate` "
                        f"command again to regenerate it")


# ------------------------------------------------------------------------------------------------
# Writing a data set: planned shards, resume, refusal of a different spec
# ------------------------------------------------------------------------------------------------

#: Manifest keys that describe *what* a data set is. A writer opening an existing directory compares
#: the ones it is given and refuses the directory when any differs (the set would otherwise mix).
SPEC_KEYS = ("config", "seed", "class_names", "n_per_class", "shard_size", "image_shape",
             "parameter_columns", "source", "n_images")


def library_versions() -> dict[str, str]:
    """Versions of the libraries that decide the bytes of a data set (recorded in the manifest)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("numpy", "lenstronomy", "astropy", "h5py", "scipy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def equilens_version() -> str:
    from equilens import __version__

    return __version__


def _normalise(value: Any) -> Any:
    """JSON round trip, so that tuples/lists and int/float spellings compare as they are stored."""
    return json.loads(json.dumps(value, allow_nan=True))


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def plan_shards(n_images: int, shard_size: int) -> list[tuple[int, int]]:
    """Global index ranges ``[(start, stop), ...]`` of the shards of an ``n_images`` data set."""
    if n_images <= 0:
        raise DataError(f"a data set needs at least one image, got {n_images}")
    if shard_size <= 0:
        raise DataError(f"shard size must be a positive number of images, got {shard_size}")
    return [(s, min(s + shard_size, n_images)) for s in range(0, n_images, shard_size)]


class DatasetWriter:
    """Writes (or resumes writing) a data set directory, one shard at a time.

    The manifest is written first, with every planned shard and no checksums (``complete: false``);
    each :meth:`write` writes a shard atomically and then rewrites the manifest atomically with that
    shard's SHA-256. A shard therefore counts as done only when its checksum is in the manifest, and
    a run killed at any moment loses at most the shards that were being written.

    Opening a directory that already holds a manifest *resumes* it when every spec key given (see
    :data:`SPEC_KEYS`) is equal to the stored one; a different spec, a non-empty directory without a
    manifest, or another process holding the directory's lock is refused with :class:`DataError`.

    Args:
        directory: the data set directory (created if missing).
        spec: the keys that define the data set (class_names, image_shape, config, seed, ...);
            written to the manifest and compared on resume.
        shard_ranges: ``[(start, stop), ...]`` global index range of each shard, see :func:`plan_shards`.
        extra: other manifest keys, written but not compared (library versions, notes, ...).
        verify_existing: on resume, recompute the checksum of every finished shard and redo the ones
            that are missing or do not match (costs one read of the finished shards).
    """

    def __init__(self, directory: str | os.PathLike[str], spec: Mapping[str, Any],
                 shard_ranges: Sequence[tuple[int, int]], extra: Mapping[str, Any] | None = None,
                 *, verify_existing: bool = True) -> None:
        self.path = Path(directory)
        for key in ("class_names", "image_shape"):
            if key not in spec:
                raise DataError(f"a data set spec needs {key!r}")
        self.spec = _normalise(dict(spec))
        self.shard_ranges = [(int(a), int(b)) for a, b in shard_ranges]
        self.extra = dict(extra or {})
        self.notes: list[str] = []  # human-readable remarks about the resume (redone shards, ...)
        self._lock_fh: Any = None
        self._open(verify_existing)

    # -- opening -----------------------------------------------------------------------------------
    def _planned(self) -> list[ShardInfo]:
        return [ShardInfo(shard_file_name(k), a, b, None) for k, (a, b) in enumerate(self.shard_ranges)]

    def _acquire_lock(self) -> None:
        import fcntl

        fh = open(self.path / ".lock", "a+")  # noqa: SIM115 - held for the writer's lifetime
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            fh.close()
            raise DataError(f"another equilens process is writing {self.path} (its lock file .lock is held); "
                            f"wait for it to finish or stop it first") from exc
        self._lock_fh = fh

    def _open(self, verify_existing: bool) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise DataError(f"{self.path} exists and is not a directory; give a new or empty directory as --out")
        self.path.mkdir(parents=True, exist_ok=True)
        manifest_path = self.path / MANIFEST_NAME
        if not manifest_path.is_file():
            foreign = [p.name for p in self.path.iterdir() if not p.name.startswith(".")]
            if foreign:
                raise DataError(f"{self.path} is not empty and holds no {MANIFEST_NAME} (found e.g. {foreign[0]!r}): "
                                f"it is not an equilens data set; give a new or empty directory as --out")
        self._acquire_lock()
        self._remove_stale_temporaries()
        if not manifest_path.is_file():
            self.manifest = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "command": current_command(),
                             **self.spec, **self.extra,
                             "shards": [s.to_dict() for s in self._planned()], "created": _now(),
                             "complete": False}
            write_json_atomic(manifest_path, self.manifest)
            self.shards = self._planned()
            return
        old = read_manifest(self.path)
        differing = [k for k in self.spec if _normalise(old.get(k)) != self.spec[k]]
        if differing:
            diffs = [d for k in differing for d in value_differences(_normalise(old.get(k)), self.spec[k], k)]
            details = "; ".join(f"{path}: stored {_short(a, 60)}, requested {_short(b, 60)}"
                                for path, a, b in diffs[:8])
            if len(diffs) > 8:
                details += f"; and {len(diffs) - 8} more"
            raise DataError(f"{self.path} already holds a different data set ({details}). Refusing to mix them: "
                            f"give another --out directory, or repeat the original command to complete it")
        old_shards = [ShardInfo.from_dict(s) for s in old["shards"]]
        if [(s.start, s.stop) for s in old_shards] != self.shard_ranges:
            raise DataError(f"{self.path} was planned with different shard boundaries; give another --out directory")
        self.shards = []
        for shard in old_shards:
            sha = shard.sha256
            if sha is not None:
                file = self.path / shard.file
                if not file.is_file():
                    self.notes.append(f"{shard.file} was finished but is missing: it will be made again")
                    sha = None
                elif verify_existing and sha256_file(file) != sha:
                    self.notes.append(f"{shard.file} does not match its checksum (corrupt or truncated): "
                                      f"it will be made again")
                    sha = None
            self.shards.append(ShardInfo(shard.file, shard.start, shard.stop, sha,
                                         shard.nonfinite if sha is not None else None))
        self.manifest = {**old, **self.extra, "created": old.get("created", _now()),
                         "shards": [s.to_dict() for s in self.shards]}
        if self.notes or self.manifest.get("complete") != self.is_complete:
            self.manifest["complete"] = self.is_complete
            write_json_atomic(manifest_path, self.manifest)

    def _remove_stale_temporaries(self) -> None:
        """Temporary files left by a writer that was killed mid-write (``.shard-00003.h5.xyz.tmp``)."""
        for p in self.path.glob(".*.tmp"):
            p.unlink(missing_ok=True)

    # -- state -------------------------------------------------------------------------------------
    @property
    def is_complete(self) -> bool:
        return all(s.sha256 is not None for s in self.shards)

    def pending(self) -> list[int]:
        """Shard numbers that still have to be written."""
        return [k for k, s in enumerate(self.shards) if s.sha256 is None]

    def done(self) -> list[int]:
        return [k for k, s in enumerate(self.shards) if s.sha256 is not None]

    # -- writing -----------------------------------------------------------------------------------
    def write(self, shard_index: int, images: np.ndarray, labels: np.ndarray, indices: np.ndarray,
              columns: Mapping[str, np.ndarray], records: Sequence[str]) -> str:
        """Write shard ``shard_index`` atomically, record its checksum in the manifest, return the checksum."""
        shard = self.shards[shard_index]
        indices = np.asarray(indices, dtype=np.int64)
        expected = np.arange(shard.start, shard.stop)
        if indices.shape != expected.shape or not np.array_equal(indices, expected):
            raise DataError(f"{shard.file} must hold global images {shard.start}..{shard.stop - 1} in order")
        expected_cols = self.spec.get("parameter_columns")
        if expected_cols is not None and sorted(columns) != sorted(expected_cols):
            raise DataError(f"{shard.file}: parameter columns {sorted(columns)} differ from the manifest's "
                            f"{sorted(expected_cols)}")
        shape = tuple(np.shape(images)[-2:])
        if shape != tuple(self.spec["image_shape"][-2:]):
            raise DataError(f"{shard.file}: images are {shape}, the data set's image shape is "
                            f"{tuple(self.spec['image_shape'])}")
        bad = tuple(int(shard.start + r) for r in nonfinite_rows(np.asarray(images)))
        digest = write_shard(self.path / shard.file, images, labels, indices, columns, records)
        self.shards[shard_index] = ShardInfo(shard.file, shard.start, shard.stop, digest, bad)
        self.manifest["shards"] = [s.to_dict() for s in self.shards]
        self.manifest["complete"] = self.is_complete
        self.manifest["updated"] = _now()
        write_json_atomic(self.path / MANIFEST_NAME, self.manifest)
        return digest

    def close(self) -> None:
        """Release the directory lock (the manifest is always up to date after :meth:`write`)."""
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_MISSING = "<absent>"


def value_differences(stored: Any, requested: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """Dotted key paths where two JSON-like values differ, with both values (``<absent>`` for a missing key).

    Dicts are compared key by key and equal-length lists item by item (``config.classes[1]``), so a
    clash names ``config.noise`` rather than printing two whole configs.
    """
    if isinstance(stored, dict) and isinstance(requested, dict):
        out: list[tuple[str, Any, Any]] = []
        for key in list(stored) + [k for k in requested if k not in stored]:
            sub = f"{path}.{key}" if path else str(key)
            out += value_differences(stored.get(key, _MISSING), requested.get(key, _MISSING), sub)
        return out
    if isinstance(stored, list) and isinstance(requested, list) and len(stored) == len(requested):
        return [d for i, (a, b) in enumerate(zip(stored, requested, strict=True))
                for d in value_differences(a, b, f"{path}[{i}]")]
    return [] if stored == requested else [(path, stored, requested)]


def current_command() -> str:
    """The command line of this process, shell-quoted (``equilens simulate --preset model_i ...``), recorded in
    a new data set's manifest as ``command``; ``python -m equilens`` shows as ``equilens``."""
    import shlex
    import sys

    argv = list(sys.argv) or [""]
    program = Path(argv[0]).name
    if program == "__main__.py" and Path(argv[0]).parent.name == "equilens":
        program = "equilens"
    return shlex.join([program, *argv[1:]])


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------------------------------
# Checking and describing a data set (`equilens info`)
# ------------------------------------------------------------------------------------------------

def check_shards(directory: str | os.PathLike[str], progress: bool = False) -> list[str]:
    """Check every shard listed in the manifest; return one message per bad shard (empty if all good).

    Unlike :meth:`LensDataset.verify` this does not stop at the first problem and does not need the
    data set to be complete.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    shards: Iterable[ShardInfo] = [ShardInfo.from_dict(s) for s in manifest["shards"]]
    if progress:
        from tqdm.auto import tqdm

        shards = tqdm(list(shards), desc="checking shards", unit="shard")
    problems = []
    for shard in shards:
        try:
            verify_shard(directory, shard)
            if shard.nonfinite is not None:
                found = scan_shard_nonfinite(directory, shard)
                if found != shard.nonfinite:
                    problems.append(f"shard {directory / shard.file}: the manifest records non-finite images "
                                    f"{list(shard.nonfinite)} but the file holds {list(found)}")
        except DataError as exc:
            problems.append(str(exc))
    return problems


@dataclass
class DatasetSummary:
    """What `equilens info` prints: counts, shape, parameter ranges per class."""

    path: Path
    n_images: int
    image_shape: tuple[int, ...]
    class_counts: dict[str, int]
    #: column -> class -> (min, max), NaN-free; a class where the column does not apply is absent.
    ranges: dict[str, dict[str, tuple[float, float]]]
    n_shards: int
    manifest: dict[str, Any]
    #: data-set position -> shard file of every image with a NaN or inf pixel.
    nonfinite: dict[int, str] = dataclasses.field(default_factory=dict)

    def format(self) -> str:
        m = self.manifest
        lines = [f"data set      {self.path}",
                 f"images        {self.n_images} in {self.n_shards} shards, each {'x'.join(map(str, self.image_shape))}"
                 f" float32",
                 "classes       " + ", ".join(f"{k} {v}" for k, v in self.class_counts.items())]
        if m.get("config") is not None:
            cfg = m["config"]
            preset = cfg.get("preset", cfg.get("name", "?")) if isinstance(cfg, dict) else "?"
            lines.append(f"simulated     preset {preset}, seed {m.get('seed')}, {m.get('n_per_class')} per class")
        if m.get("command"):
            lines.append(f"command       {m['command']}")
        if m.get("source") is not None:
            lines.append(f"imported from {_short(m['source'], 200)}")
        versions = m.get("library_versions") or {}
        if versions:
            lines.append("made with     equilens " + str(m.get("equilens_version")) + ", "
                         + ", ".join(f"{k} {v}" for k, v in versions.items()))
        if self.nonfinite:
            lines.append(f"NON-FINITE    {len(self.nonfinite)} image(s) hold NaN or inf pixels: "
                         f"{describe_nonfinite(self.nonfinite)}; training and evaluation refuse this data set "
                         f"(or skip them with `equilens train --skip-nonfinite`)")
        else:
            lines.append("non-finite    none (every pixel is finite)")
        if self.ranges:
            classes = list(self.class_counts)
            width = max(len(c) for c in self.ranges)
            lines.append("")
            lines.append("parameter ranges (min .. max per class; - where it does not apply)")
            lines.append(" " * (width + 2) + "".join(f"{c:>28s}" for c in classes))
            for col, per in self.ranges.items():
                cells = []
                for c in classes:
                    if c in per:
                        lo, hi = per[c]
                        cells.append(f"{_fmt(lo):>13s} .. {_fmt(hi):<11s}")
                    else:
                        cells.append(f"{'-':>28s}")
                lines.append(f"{col:<{width}s}  " + "".join(cells))
        return "\n".join(lines)


def _fmt(x: float) -> str:
    if x == 0 or 1e-3 <= abs(x) < 1e5:
        return f"{x:.4g}"
    return f"{x:.3e}"


def describe_dataset(directory: str | os.PathLike[str], *, check: bool = True,
                     progress: bool = False) -> DatasetSummary:
    """Counts per class, image shape and per-class parameter ranges of a data set.

    Args:
        check: first recompute every shard's SHA-256 (integrity check).

    Raises:
        DataError: the data set is incomplete, or (with ``check``) names every missing, corrupt or
            truncated shard.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    unfinished = [s["file"] for s in manifest["shards"] if s.get("sha256") is None]
    if unfinished:
        raise DataError(f"{directory} is incomplete: {len(unfinished)} of {len(manifest['shards'])} shards are not "
                        f"finished (first: {unfinished[0]}); run the same command again to complete it")
    if check:
        problems = check_shards(directory, progress=progress)
        if problems:
            raise DataError(f"{len(problems)} of {len(manifest['shards'])} shards failed the integrity check:\n  "
                            + "\n  ".join(problems))
    ds = LensDataset(directory)
    try:
        params = ds.parameters()
        ranges: dict[str, dict[str, tuple[float, float]]] = {}
        for col, values in params.items():
            per: dict[str, tuple[float, float]] = {}
            for k, name in enumerate(ds.class_names):
                v = values[(ds.labels == k) & np.isfinite(values)]
                if v.size:
                    per[name] = (float(v.min()), float(v.max()))
            ranges[col] = per
        return DatasetSummary(directory, len(ds), ds.image_shape, ds.class_counts(), ranges, len(ds.shards),
                              manifest, ds.nonfinite_images())
    finally:
        ds.close()
