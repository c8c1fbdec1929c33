"""Lightning data module over an equilens data set: stratified splits, normalisation, augmentation.

* **Split.** :func:`stratified_split` shuffles each class's images with ``numpy.random.default_rng(seed)``
  and cuts them into test, validation and training parts of the requested fractions (per class, so
  every part keeps the class balance). The split is written into the run directory (``split.json``)
  and read back by ``evaluate``; the test part is never looked at during training or model selection
  (best checkpoint and early stopping use the validation part only).
* **Subsets.** ``limit_per_class`` keeps only the first L training images of each class (of the shuffled
  order); validation and test parts are not reduced, so runs with different L share one test set.
* **Regression.** Rows whose target is NaN (e.g. ``log10_m_a`` of non-axion classes) are dropped before
  splitting, with a message; classes left without rows are left out of the split.
* **Normalisation** (:class:`~equilens.data.transforms.Normalizer`): statistics from training images only.
  Regression targets are standardised with the training targets' mean and standard deviation; metrics
  are always reported in the target's own units.
* **Augmentation** (:func:`~equilens.data.transforms.augment_batch`) is applied to training batches only,
  after transfer to the device, with a generator seeded by (seed, global step, rank): a resumed run
  draws the same transforms.
* **Non-finite images** (a NaN or inf pixel anywhere in the data set, found from the manifest's per-shard
  record, :meth:`~equilens.data.store.LensDataset.nonfinite_images`) are refused with their index and
  shard, in whichever split they would fall; with ``skip_nonfinite`` they are left out of every split
  instead, with a message.
* **Loading** is lazy: each item is read from its HDF5 shard when the loader asks for it, in
  ``num_workers`` worker processes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from equilens.data.choices import TASKS
from equilens.data.store import LensDataset, describe_nonfinite, write_json_atomic
from equilens.data.transforms import AUGMENTATIONS, NORMALISATIONS, Normalizer, augment_batch, check_choice
from equilens.errors import ConfigError, DataError

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
#: At most this many training images are read to compute the normalisation statistics.
STATS_MAX_IMAGES = 2000


def data_fingerprint(dataset: LensDataset) -> str:
    """A short hash of a data set's shard checksums: changes whenever any image changes."""
    digest = hashlib.sha256()
    for shard in dataset.shards:
        digest.update(f"{shard.file}:{shard.sha256}:{shard.n};".encode())
    return digest.hexdigest()[:16]


def stratified_split(
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    candidates: np.ndarray | None = None,
    limit_per_class: int | None = None,
    require_all_classes: bool = True,
) -> dict[str, np.ndarray]:
    """Split data-set positions into train / val / test, stratified by class.

    Args:
        labels: int64 [N] class label of every image of the data set.
        class_names: names of the classes (for messages).
        val_fraction, test_fraction: fractions of each class's images (each in (0, 1), sum < 1).
        seed: seed of the shuffle (``numpy.random.default_rng``).
        candidates: positions allowed in the split (default: all); e.g. rows with a finite target.
        limit_per_class: keep at most this many training images per class.
        require_all_classes: a class without candidate images is an error (classification) rather
            than left out (regression on a parameter only some classes have).

    Returns:
        ``{"train": int64 [n_train], "val": ..., "test": ...}``, each sorted ascending.

    Raises:
        DataError: a class has no images, or a part would be empty for some class.
    """
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < frac < 1.0:
            raise ConfigError(f"{name} must be in (0, 1), got {frac}")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(f"val_fraction + test_fraction must be < 1 to leave training images, got "
                          f"{val_fraction} + {test_fraction}")
    if limit_per_class is not None and limit_per_class < 1:
        raise ConfigError(f"limit_per_class must be >= 1, got {limit_per_class}")
    labels = np.asarray(labels, dtype=np.int64)
    cand = np.arange(labels.size) if candidates is None else np.asarray(candidates, dtype=np.int64)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in SPLIT_NAMES}
    for c, name in enumerate(class_names):
        pos = cand[labels[cand] == c]
        if pos.size == 0:
            if require_all_classes:
                raise DataError(f"class {name!r} has no images in this data set (counts: "
                                f"{_counts(labels, class_names)}); every class needs images to train a classifier")
            continue
        pos = rng.permutation(pos)
        n_test = int(round(test_fraction * pos.size))
        n_val = int(round(val_fraction * pos.size))
        n_train = pos.size - n_test - n_val
        for part, n in (("test", n_test), ("val", n_val), ("train", n_train)):
            if n < 1:
                raise DataError(
                    f"the split leaves class {name!r} without {part} images: it has {pos.size} image(s) and "
                    f"the fractions are val {val_fraction}, test {test_fraction}; use more images of this class "
                    f"or larger fractions (each part needs at least one image per class)")
        parts["test"].append(pos[:n_test])
        parts["val"].append(pos[n_test:n_test + n_val])
        train = pos[n_test + n_val:]
        if limit_per_class is not None:
            train = train[:limit_per_class]
        parts["train"].append(train)
    if not parts["train"]:
        raise DataError("no class has any usable image; nothing to split")
    return {k: np.sort(np.concatenate(v)) for k, v in parts.items()}


def _counts(labels: np.ndarray, class_names: Sequence[str]) -> str:
    counts = np.bincount(labels, minlength=len(class_names))
    return ", ".join(f"{n}={int(c)}" for n, c in zip(class_names, counts, strict=False))


class LensSubset(Dataset):
    """Map-style dataset over some positions of a :class:`LensDataset`, read lazily.

    Items are ``(image float32 [C, H, W], target)``; the target is the int64 class label, or the
    standardised float32 regression target.
    """

    def __init__(self, dataset: LensDataset, positions: np.ndarray, targets: np.ndarray,
                 normalizer: Normalizer) -> None:
        self.dataset = dataset
        self.positions = np.asarray(positions, dtype=np.int64)
        self.targets = targets
        self.normalizer = normalizer

    def __len__(self) -> int:
        return int(self.positions.size)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.normalizer(self.dataset.get_image(int(self.positions[i])))
        return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)), torch.as_tensor(self.targets[i])


def _fit_epoch(trainer: Any) -> int | None:
    """The epoch the trainer's fit loop is about to run (what Lightning passes to ``set_epoch``), or None."""
    try:
        return int(trainer.fit_loop.epoch_progress.current.processed)
    except AttributeError:
        return None


class EpochLoader(DataLoader):
    """A training DataLoader whose every pass is fixed by (seed, epoch, rank) alone.

    Lightning creates the first iterator of a resumed run before it calls ``sampler.set_epoch``; with
    worker processes that iterator draws its sample order (and the workers' base seed) right away, so a
    run resumed at epoch e would replay epoch 0's order and seeds. Here each ``iter()`` first asks the
    trainer which epoch it is in, sets the sampler's epoch and reseeds the loader's generator (the source
    of the workers' base seed, from which Lightning's ``pl_worker_init_function`` seeds torch, numpy and
    random in each worker), so a resumed epoch is the same as in an uninterrupted run, with any
    ``num_workers``.
    """

    _seed: int = 0
    _rank: int = 0
    _epoch_fn: Callable[[], int | None] | None = None

    def configure(self, seed: int, rank: int, epoch_fn: Callable[[], int | None]) -> None:
        """Seed, process rank and a callable giving the current epoch (None: keep the sampler's own)."""
        self._seed, self._rank, self._epoch_fn = int(seed), int(rank), epoch_fn

    def __iter__(self) -> Any:
        epoch = self._epoch_fn() if self._epoch_fn is not None else None
        if epoch is not None and hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
        epoch = int(getattr(self.sampler, "epoch", 0) if epoch is None else epoch)
        if self.generator is not None:
            self.generator.manual_seed((self._seed * 1_000_003 + epoch * 7_919 + self._rank * 104_729) % 2**63)
        return super().__iter__()


def _env_rank() -> int:
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if key in os.environ:
            return int(os.environ[key])
    return 0


class LensDataModule(L.LightningDataModule):
    """Splits, normalisation, augmentation and loaders for one equilens data set.

    Args:
        data_dir: the data set directory.
        task: ``classify`` or ``regress``.
        target: the recorded parameter to regress (task ``regress``).
        batch_size: images per batch (per process under DDP).
        num_workers: loader worker processes.
        val_fraction, test_fraction: split fractions per class.
        split_seed: seed of the split (kept fixed across training seeds so seeds share one test set).
        seed: seed of the training order and the augmentations.
        normalisation: one of :data:`~equilens.data.transforms.NORMALISATIONS`.
        augmentation: one of :data:`~equilens.data.transforms.AUGMENTATIONS`.
        limit_per_class: at most this many training images per class.
        skip_nonfinite: leave images with NaN or inf pixels out of the split instead of refusing the data set.
        split: a previously saved split (``split.json`` content) to reuse instead of drawing one.
        stats: previously saved normalisation statistics (``normalisation.json`` content).
        log: where messages go (default ``print``).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        task: str = "classify",
        target: str | None = None,
        batch_size: int = 32,
        num_workers: int = 2,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_seed: int = 0,
        seed: int = 0,
        normalisation: str = "standardise",
        augmentation: str = "none",
        limit_per_class: int | None = None,
        skip_nonfinite: bool = False,
        split: Mapping[str, Any] | None = None,
        stats: Mapping[str, Any] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        check_choice("task", task, TASKS)
        check_choice("normalisation", normalisation, NORMALISATIONS)
        check_choice("augmentation", augmentation, AUGMENTATIONS)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
        self.data_dir = Path(data_dir)
        self.task, self.target = task, target
        self.batch_size, self.num_workers = batch_size, num_workers
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.split_seed, self.seed = split_seed, seed
        self.normalisation, self.augmentation = normalisation, augmentation
        self.limit_per_class = limit_per_class
        self._log = log or print
        self.dataset = LensDataset(self.data_dir)
        self.skip_nonfinite = bool(skip_nonfinite)
        self.nonfinite = self.dataset.nonfinite_images(log=self._log)
        if self.nonfinite and not self.skip_nonfinite:
            raise DataError(f"{self.data_dir} holds {len(self.nonfinite)} image(s) with NaN or inf pixels: "
                            f"{describe_nonfinite(self.nonfinite)} (data-set positions, counted from 0). Losses "
                            f"and metrics on them are NaN. Regenerate or remove them, or leave them out of every "
                            f"split with --skip-nonfinite (`equilens info {self.data_dir}` lists them)")
        if task == "regress":
            if not target:
                raise ConfigError("task 'regress' needs a target: one of the recorded parameters: "
                                  + ", ".join(self.dataset.parameter_names))
            self._target_values = self.dataset.parameters([target])[target]
        elif target:
            raise ConfigError(f"a target ({target!r}) only applies to task 'regress'")
        self.split = self._make_split() if split is None else self._check_split(split)
        self.stats = self._make_stats() if stats is None else dict(stats)
        self.normalizer = Normalizer.from_dict(self.stats["image"])

    # -- split and statistics ----------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        return self.dataset.class_names

    def _leave_out_nonfinite(self, candidates: np.ndarray | None) -> np.ndarray | None:
        """``candidates`` (data-set positions; ``None``: every image) less the images with NaN or inf pixels,
        which are only present with ``skip_nonfinite`` (refused otherwise); logged. ``None`` when nothing is
        left out of ``None``."""
        if not self.nonfinite:
            return candidates
        self._log(f"leaving out {len(self.nonfinite)} image(s) with NaN or inf pixels: "
                  f"{describe_nonfinite(self.nonfinite)}")
        pool = np.arange(len(self.dataset)) if candidates is None else candidates
        return np.setdiff1d(pool, np.fromiter(self.nonfinite, dtype=np.int64))

    def _make_split(self) -> dict[str, Any]:
        candidates = self._leave_out_nonfinite(None)
        require_all = True
        if self.task == "regress":
            finite = np.isfinite(self._target_values)
            dropped = int((~finite).sum())
            if dropped:
                self._log(f"dropping {dropped} of {finite.size} images whose {self.target!r} is NaN "
                          f"(classes without that parameter)")
            candidates = np.intersect1d(np.nonzero(finite)[0], candidates) if candidates is not None \
                else np.nonzero(finite)[0]
            require_all = False
            if candidates.size == 0:
                raise DataError(f"no image of {self.data_dir} has a finite {self.target!r}")
        parts = stratified_split(self.dataset.labels, self.class_names, val_fraction=self.val_fraction,
                                 test_fraction=self.test_fraction, seed=self.split_seed, candidates=candidates,
                                 limit_per_class=self.limit_per_class, require_all_classes=require_all)
        return {
            "data": str(self.data_dir.resolve()),
            "data_fingerprint": data_fingerprint(self.dataset),
            "n_images": len(self.dataset),
            "class_names": self.class_names,
            "split_seed": self.split_seed,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "limit_per_class": self.limit_per_class,
            "task": self.task,
            "target": self.target,
            **{k: v.tolist() for k, v in parts.items()},
        }

    def _check_split(self, split: Mapping[str, Any]) -> dict[str, Any]:
        fp = data_fingerprint(self.dataset)
        if split.get("data_fingerprint") != fp:
            raise DataError(f"the saved split was made for a different data set (fingerprint "
                            f"{split.get('data_fingerprint')}, {split.get('data')}); {self.data_dir} has {fp}")
        for part in SPLIT_NAMES:
            bad = {int(p): self.nonfinite[int(p)] for p in split.get(part, []) if int(p) in self.nonfinite}
            if bad:
                raise DataError(f"the {part} split holds {len(bad)} image(s) with NaN or inf pixels: "
                                f"{describe_nonfinite(bad)}; refusing to use them")
        return dict(split)

    def positions(self, part: str) -> np.ndarray:
        """Data-set positions of split ``part`` (train, val or test), int64."""
        check_choice("split part", part, SPLIT_NAMES)
        return np.asarray(self.split[part], dtype=np.int64)

    def _make_stats(self) -> dict[str, Any]:
        train = self.positions("train")
        rng = np.random.default_rng(self.split_seed)
        sample = np.sort(rng.choice(train, size=min(train.size, STATS_MAX_IMAGES), replace=False))
        norm = Normalizer.fit(self.normalisation, self.dataset.get_images(sample))
        stats: dict[str, Any] = {"image": norm.to_dict(), "n_images_used": int(sample.size), "split": "train"}
        if self.task == "regress":
            y = self._target_values[train]
            std = float(y.std())
            stats["target"] = {"name": self.target, "mean": float(y.mean()), "std": std if std > 0 else 1.0}
        return stats

    def save(self, run_dir: str | os.PathLike[str]) -> None:
        """Write ``split.json`` and ``normalisation.json`` into ``run_dir``."""
        run_dir = Path(run_dir)
        write_json_atomic(run_dir / "split.json", self.split)
        write_json_atomic(run_dir / "normalisation.json", self.stats)

    @staticmethod
    def load_saved(run_dir: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Read ``split.json`` and ``normalisation.json`` of a run."""
        run_dir = Path(run_dir)
        out = []
        for name in ("split.json", "normalisation.json"):
            path = run_dir / name
            if not path.is_file():
                raise DataError(f"{run_dir} has no {name}: not a complete equilens run directory")
            out.append(json.loads(path.read_text(encoding="utf-8")))
        return out[0], out[1]

    # -- datasets ----------------------------------------------------------------------------------
    def targets_raw(self, positions: np.ndarray) -> np.ndarray:
        """Targets in their own units: int64 labels, or the float64 recorded parameter."""
        if self.task == "classify":
            return self.dataset.labels[positions]
        return self._target_values[positions]

    def subset(self, positions: np.ndarray) -> LensSubset:
        """A :class:`LensSubset` of any positions, normalised like the training images."""
        positions = np.asarray(positions, dtype=np.int64)
        raw = self.targets_raw(positions)
        if self.task == "classify":
            targets = raw.astype(np.int64)
        else:
            t = self.stats["target"]
            targets = ((raw - t["mean"]) / t["std"]).astype(np.float32)
        return LensSubset(self.dataset, positions, targets, self.normalizer)

    def _loader(self, part: str, train: bool) -> DataLoader:
        ds = self.subset(self.positions(part))
        kwargs: dict[str, Any] = {"batch_size": self.batch_size, "num_workers": self.num_workers,
                                  "persistent_workers": False, "pin_memory": False}
        if not train:
            return DataLoader(ds, **kwargs)
        trainer = getattr(self, "trainer", None)
        world = trainer.world_size if trainer is not None else 1
        rank = trainer.global_rank if trainer is not None else 0
        # Order seeded by (seed, epoch), worker seeds by (seed, epoch, rank): nothing depends on the global RNG
        # or on when Lightning calls set_epoch, so a resumed run sees the same batches (see EpochLoader).
        sampler: DistributedSampler[Any] = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True,
                                                              seed=self.seed)
        per_rank = len(sampler)
        kwargs.update(sampler=sampler, drop_last=per_rank > self.batch_size and per_rank % self.batch_size == 1)
        loader = EpochLoader(ds, generator=torch.Generator(), **kwargs)
        loader.configure(self.seed, rank, lambda: _fit_epoch(trainer))
        return loader

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = getattr(self, "trainer", None)
        if self.augmentation == "none" or trainer is None or not trainer.training:
            return batch
        images, targets = batch
        gen = torch.Generator().manual_seed(
            (self.seed * 1_000_003 + trainer.global_step * 101 + trainer.global_rank) % (2**63))
        return augment_batch(images, self.augmentation, gen), targets
