"""``train()``: one training run from a :class:`~equilens.training.config.TrainConfig` into a run directory.

Run directory layout::

    config.yaml              the resolved configuration
    split.json               data-set positions of the train / val / test parts (+ data fingerprint, and
                             the run's random ``run_id``, also stored in every checkpoint)
    normalisation.json       image (and regression-target) statistics, from the training part only
    checkpoints/best.ckpt    lowest validation loss so far
    checkpoints/last.ckpt    end of the latest finished epoch (what --resume continues from)
    logs/csv/metrics.csv     per-step and per-epoch losses and validation metrics (``val_auc`` too when
                             :class:`equilens.evaluation.monitor.ValidationAUC` is passed); each resumed session
                             writes the next free logs/csv-session2/, logs/csv-session3/, ... (also after
                             a kill, so no session's rows are ever overwritten)
    logs/tensorboard/        the same for TensorBoard
    train_summary.json       model, parameter count, epochs, training time, best validation loss, status
    eval/                    written by ``equilens evaluate``

Checkpoints hold only tensors and plain Python types and load with ``torch.load(weights_only=True)``.
``last.ckpt`` is written after every validation (epoch end) whether or not the loss improved: it is a
separate checkpoint callback without a monitored metric (Lightning's ``save_last`` of the monitored one
only follows improvements).

Console output: one line per epoch (epoch, losses, validation metric, seconds) unless ``progress`` is
asked for on a terminal, where Lightning's progress bar is shown. Lightning's informational lines
(accelerator availability, tips, restore notices), its model summary and known harmless warnings are kept
quiet unless ``verbose``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

import equilens
from equilens.cpu import flush_denormals
from equilens.data.datamodule import LensDataModule, _env_rank
from equilens.data.store import write_json_atomic
from equilens.errors import ConfigError, ModelError
from equilens.models import get_entry
from equilens.models.batchnorm import batch_norm_layers, recompute_batch_norm
from equilens.training.config import TrainConfig, read_run_config, save_config
from equilens.training.module import LensModule

CHECKPOINT_DIR = "checkpoints"
BEST = "best.ckpt"
LAST = "last.ckpt"


class _StopAfter(Callback):
    """Ends the session after ``n`` finished epochs (the run can be continued with ``resume``)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch + 1 >= self.n:
            trainer.should_stop = True


def batch_norm_batches(dm: LensDataModule, n_batches: int, rank: int = 0, world: int = 1) -> Iterator[torch.Tensor]:
    """The training images :class:`PreciseBatchNorm` averages over: ``n_batches`` batches (of the data
    module's batch size) of a fixed random subset of the training split, normalised, not augmented, in
    data-set order; process ``rank`` of ``world`` takes every ``world``-th image. Yields (B, C, H, W)."""
    positions = dm.positions("train")
    pick = np.random.default_rng(0).permutation(len(positions))[:n_batches * dm.batch_size]
    subset = dm.subset(np.sort(positions[pick])[rank::world])
    for start in range(0, len(subset), dm.batch_size):
        yield torch.stack([subset[i][0] for i in range(start, min(start + dm.batch_size, len(subset)))])


class PreciseBatchNorm(Callback):
    """Before every validation of a fit: batch-norm statistics recomputed for the current weights.

    The moving averages a batch-norm layer keeps during training lag the weights while they still move
    (early in the cosine schedule), so validation, early stopping and the choice of the best checkpoint
    would judge a network that differs from the one trained (:mod:`equilens.models.batchnorm`). The
    statistics are averaged over ``n_batches`` batches of a fixed random subset of the training split
    (without augmentation), the same subset every epoch; with several processes each takes its share
    and the averages are then averaged over processes, so every process keeps the same statistics. The
    checkpoints written after the validation hold them.
    """

    def __init__(self, n_batches: int) -> None:
        self.n_batches = n_batches

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = getattr(trainer, "datamodule", None)
        if self.n_batches < 1 or trainer.sanity_checking or trainer.state.fn != "fit" or dm is None:
            return
        world = trainer.world_size
        batches = (x.to(pl_module.device) for x in batch_norm_batches(dm, self.n_batches, trainer.global_rank, world))
        model = pl_module.model
        assert isinstance(model, torch.nn.Module)
        with torch.random.fork_rng(devices=[]):
            recompute_batch_norm(model, batches)
        if world > 1:
            for layer in batch_norm_layers(model):
                for buf in layer.buffers(recurse=False):
                    if buf.is_floating_point():
                        buf.copy_(trainer.strategy.reduce(buf.clone(), reduce_op="mean"))


class _EpochLines(Callback):
    """Prints one line per finished epoch: losses, the validation metric and the epoch's seconds."""

    def __init__(self, epochs: int, log: Callable[[str], None]) -> None:
        self.epochs, self._sink = epochs, log
        self._t0 = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        parts = [f"epoch {trainer.current_epoch + 1}/{self.epochs}"]
        for key in ("train_loss_epoch", "val_loss", "val_acc", "val_auc", "val_mae"):
            if key in metrics:
                parts.append(f"{key.removesuffix('_epoch')} {float(metrics[key]):.4f}")
        parts.append(f"({time.perf_counter() - self._t0:.1f} s)")
        self._sink("  ".join(parts))


#: Messages of third-party warnings that say nothing actionable to an equilens user (shown with verbose).
QUIET_WARNINGS: tuple[str, ...] = (
    r".*isinstance\(treespec, LeafSpec\).*",  # torch deprecation inside Lightning's _pytree
    r"Checkpoint directory .* exists and is not empty.*",  # every resume
    r".*does not have many workers which may be a bottleneck.*",
    r".*The number of training batches .* is smaller than the logging interval.*",
    r".*Experiment logs directory .* exists and is not empty.*",
)
#: Loggers whose INFO lines (GPU/TPU availability, litlogger tip, restore notices) are hidden unless verbose.
QUIET_LOGGERS: tuple[str, ...] = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric")


@contextlib.contextmanager
def quiet_libraries(verbose: bool) -> Iterator[None]:
    """Hide Lightning's informational chatter and :data:`QUIET_WARNINGS` (nothing is hidden if ``verbose``)."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        for pattern in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def _is_terminal() -> bool:
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def _next_csv_version(out: Path) -> str:
    """``csv`` for the first session, then the first free ``csv-sessionN`` (never an existing folder)."""
    if not (out / "logs" / "csv").exists():
        return "csv"
    n = 2
    while (out / "logs" / f"csv-session{n}").exists():
        n += 1
    return f"csv-session{n}"


def _make_trainer(cfg: TrainConfig, **kwargs: Any) -> L.Trainer:
    """``L.Trainer`` with the config's devices; Lightning's refusals become one-line :class:`ConfigError`."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return L.Trainer(accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes,
                         strategy=cfg.strategy, **kwargs)
    except (MisconfigurationException, ValueError, RuntimeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot run with accelerator={cfg.accelerator!r}, devices={cfg.devices!r}, "
                          f"num_nodes={cfg.num_nodes}, strategy={cfg.strategy!r}: {first} "
                          f"(on this machine: accelerator cpu with devices 1 always works)") from exc


def _is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file()


def checkpoint_path(run_dir: str | os.PathLike[str], checkpoint: str = "best") -> Path:
    """``best`` / ``last`` of a run, or an explicit path."""
    run_dir = Path(run_dir)
    if checkpoint in ("best", "last"):
        path = run_dir / CHECKPOINT_DIR / (BEST if checkpoint == "best" else LAST)
    else:
        path = Path(checkpoint)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist (choose best, last or a .ckpt file; the run's "
                         f"checkpoints are in {run_dir / CHECKPOINT_DIR})")
    return path


def build_datamodule(cfg: TrainConfig, split: dict[str, Any] | None = None, stats: dict[str, Any] | None = None,
                     log: Callable[[str], None] = print, data_dir: str | None = None) -> LensDataModule:
    """The :class:`LensDataModule` of a config (optionally with a saved split and statistics)."""
    if cfg.task == "posterior":  # neural posterior estimation: equilens.training.posterior
        from equilens.training.posterior import build_posterior_datamodule

        return build_posterior_datamodule(cfg, split, stats, log=log, data_dir=data_dir)
    return LensDataModule(
        data_dir or cfg.data, task=cfg.task, target=cfg.target, batch_size=cfg.batch_size,
        num_workers=cfg.num_workers, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
        split_seed=cfg.split_seed, seed=cfg.seed, normalisation=cfg.normalisation,
        augmentation=cfg.augmentation, limit_per_class=cfg.limit_per_class,
        skip_nonfinite=cfg.skip_nonfinite, split=split, stats=stats, log=log)


def build_module(cfg: TrainConfig, dm: LensDataModule) -> LensModule:
    """The :class:`LensModule` of a config, with the run description it stores in checkpoints."""
    meta: dict[str, Any] = {"config": cfg.to_dict(), "class_names": dm.class_names,
                            "equilens_version": equilens.__version__, "run_id": dm.split.get("run_id")}
    if cfg.task == "posterior":  # neural posterior estimation: equilens.training.posterior
        from equilens.training.posterior import build_posterior_module

        return build_posterior_module(cfg, dm, meta)
    if cfg.task == "regress":
        meta["target_mean"] = dm.stats["target"]["mean"]
        meta["target_std"] = dm.stats["target"]["std"]
    return LensModule(cfg.model, cfg.model_kwargs, cfg.task, num_classes=len(dm.class_names),
                      predict_variance=cfg.predict_variance, lr=cfg.lr, weight_decay=cfg.weight_decay,
                      max_epochs=cfg.epochs, seed=cfg.seed, meta=meta)


def train(
    cfg: TrainConfig | None,
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    stop_after_epochs: int | None = None,
    runtime_overrides: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
    verbose: bool = False,
    callbacks: Sequence[Callback] = (),
) -> Path:
    """Train one model and write the run directory ``out`` (layout in the module docstring).

    Args:
        cfg: the configuration; with ``resume`` it may be None (the saved one is used) and must
            otherwise agree with the saved one except for :data:`~equilens.training.config.RUNTIME_KEYS`.
        out: the run directory. An existing run is refused unless ``resume`` or ``overwrite``.
        resume: continue from ``checkpoints/last.ckpt`` to the configured number of epochs.
        overwrite: replace an existing run directory (only after the new config, data and model check out).
        progress: show Lightning's progress bar when stderr is a terminal; otherwise (or False) one
            line per epoch is printed through ``log``.
        stop_after_epochs: end this session after that many finished epochs (continue later with resume).
        runtime_overrides: runtime keys (devices, num_workers, ...) to change on resume.
        log: message sink.
        verbose: also show Lightning's informational messages, model summary and warnings.
        callbacks: extra Lightning callbacks (e.g. :class:`equilens.evaluation.monitor.ValidationAUC`, which
            logs the validation AUC of every epoch); they are not saved with the run, so pass them again on
            resume.

    Returns:
        ``out`` as a Path.
    """
    out = Path(out)
    rank = _env_rank()
    if resume:
        if not _is_run_dir(out):
            raise ConfigError(f"cannot resume {out}: it is not an equilens run directory (no config.yaml)")
        saved = read_run_config(out)
        if cfg is not None:
            diff = cfg.differences(saved)
            if diff:
                raise ConfigError(f"--resume with a config that differs from the saved run in: {', '.join(diff)} "
                                  f"(saved: {', '.join(f'{k}={saved.to_dict()[k]!r}' for k in diff)}); "
                                  f"resume with the saved settings or start a new run")
        cfg = saved
        for k, v in (runtime_overrides or {}).items():
            setattr(cfg, k, v)
        last = out / CHECKPOINT_DIR / LAST
        if not last.is_file():
            raise ConfigError(f"cannot resume {out}: no {CHECKPOINT_DIR}/{LAST} (no epoch finished); start it "
                              f"again with --overwrite")
    else:
        if cfg is None:
            raise ConfigError("no training config given")
        if rank == 0 and out.exists() and (not out.is_dir() or any(out.iterdir())):
            if not overwrite:
                raise ConfigError(f"{out} already exists; pass --resume to continue that run, --overwrite to "
                                  f"replace it, or choose another --out")
            if not _is_run_dir(out):
                raise ConfigError(f"refusing to overwrite {out}: it is not an equilens run directory "
                                  f"(no config.yaml); choose another --out")
    cfg.validate()
    get_entry(cfg.model)  # unknown model: error listing the valid names, before anything is written
    with quiet_libraries(verbose):
        return _train(cfg, out, resume=resume, overwrite=overwrite, progress=progress,
                      stop_after_epochs=stop_after_epochs, log=log, verbose=verbose, rank=rank,
                      extra_callbacks=callbacks)


def _train(cfg: TrainConfig, out: Path, *, resume: bool, overwrite: bool, progress: bool,
           stop_after_epochs: int | None, log: Callable[[str], None], verbose: bool, rank: int,
           extra_callbacks: Sequence[Callback] = ()) -> Path:
    flush_denormals()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if resume:
        split, stats = LensDataModule.load_saved(out)
        dm = build_datamodule(cfg, split, stats, log=log)
    else:
        dm = build_datamodule(cfg, log=log)
        # identifies this run in its checkpoints, so that `evaluate` refuses another run's checkpoint
        dm.split["run_id"] = uuid.uuid4().hex
        if rank == 0:
            dm.dataset.verify()
    module = build_module(cfg, dm)

    ckpt_dir = out / CHECKPOINT_DIR
    best_ckpt = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_loss", mode="min",
                                save_top_k=1, save_last=False, enable_version_counter=False)
    # No monitor: saved after every validation, improved or not (the end of the latest finished epoch).
    last_ckpt = ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1,
                                enable_version_counter=False)
    bar = progress and _is_terminal()
    # first in the list: the checkpoints written after the validation hold the recomputed statistics
    callbacks: list[Callback] = [PreciseBatchNorm(cfg.bn_batches), best_ckpt, last_ckpt, *extra_callbacks]
    if not bar:
        callbacks.append(_EpochLines(cfg.epochs, log))
    if cfg.early_stopping_patience:
        callbacks.append(EarlyStopping(monitor="val_loss", mode="min", patience=cfg.early_stopping_patience))
    if stop_after_epochs is not None:
        callbacks.append(_StopAfter(stop_after_epochs))
    loggers = [CSVLogger(out, name="logs", version=_next_csv_version(out)),
               TensorBoardLogger(out, name="logs", version="tensorboard")]
    n_train = len(dm.positions("train"))
    world = (cfg.devices if isinstance(cfg.devices, int) else 1) * cfg.num_nodes
    # Built before anything is written: an unavailable accelerator or bad device count leaves no folder.
    trainer = _make_trainer(
        cfg, max_epochs=cfg.epochs, deterministic=cfg.deterministic, callbacks=callbacks, logger=loggers,
        enable_progress_bar=bar, log_every_n_steps=max(1, min(50, n_train // (cfg.batch_size * world))),
        num_sanity_val_steps=0, enable_model_summary=verbose,
    )

    if rank == 0 and not resume:
        if out.exists() and overwrite:
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        dm.save(out)
        counts = {part: {name: int((dm.dataset.labels[dm.positions(part)] == c).sum())
                         for c, name in enumerate(dm.class_names)} for part in ("train", "val", "test")}
        log(f"split (images per class): {json.dumps(counts)}")
    if rank == 0:
        n_params = sum(p.numel() for p in module.model.parameters())
        log(f"{'resuming' if resume else 'training'} {cfg.model} ({n_params:,} parameters, {cfg.task}) for "
            f"{cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''} on {n_train} images; run directory {out}")
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt_dir / LAST) if resume else None, weights_only=True)
    seconds = time.perf_counter() - t0
    if trainer.is_global_zero:
        summary = _write_summary(out, cfg, module, trainer, best_ckpt, seconds, stopped_by=stop_after_epochs)
        if summary.get("warning"):
            log(f"WARNING: {summary['warning']}")
        log(f"run written to {out} (best checkpoint: {best_ckpt.best_model_path})")
    return out


def _write_summary(out: Path, cfg: TrainConfig, module: LensModule, trainer: L.Trainer,
                   checkpoint: ModelCheckpoint, seconds: float, stopped_by: int | None) -> dict[str, Any]:
    path = out / "train_summary.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    epochs_done = int(trainer.current_epoch)
    if epochs_done >= cfg.epochs:
        status = "complete"
    elif stopped_by is not None and epochs_done >= stopped_by:
        status = "paused (continue with --resume)"
    else:
        status = "stopped early (early stopping)"
    best = checkpoint.best_model_score
    summary = {
        "model": cfg.model,
        "symmetry": get_entry(cfg.model).symmetry,
        "num_parameters": int(sum(p.numel() for p in module.model.parameters())),
        "task": cfg.task,
        "target": cfg.target,
        "seed": cfg.seed,
        "data": cfg.data,
        "epochs_configured": cfg.epochs,
        "epochs_completed": epochs_done,
        "training_seconds": float(previous.get("training_seconds", 0.0)) + seconds,
        "sessions": int(previous.get("sessions", 0)) + 1,
        "best_checkpoint": str(Path(checkpoint.best_model_path).relative_to(out.resolve()))
        if checkpoint.best_model_path and Path(checkpoint.best_model_path).is_relative_to(out.resolve())
        else checkpoint.best_model_path,
        "best_val_loss": float(best) if best is not None and bool(torch.isfinite(best)) else None,
        "status": status,
        "torch_threads": torch.get_num_threads(),
        "world_size": trainer.world_size,
        "equilens_version": equilens.__version__,
        "torch_version": torch.__version__,
    }
    if best is None or not bool(torch.isfinite(best)):
        summary["warning"] = ("the validation loss was never finite (NaN or inf in every epoch): best.ckpt was "
                              "chosen on nothing; check the validation images and the learning rate")
    write_json_atomic(path, summary)
    return summary
