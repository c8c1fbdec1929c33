"""Studies: grids of ordinary training runs (cells), trained and evaluated alike, summarised in tables and plots.

Two studies are defined (:data:`STUDY_KINDS`):

* ``data-efficiency`` ("equivariance versus augmentation", Gerken et al. 2022): every combination of
  model, training augmentation, training-set size (images per class) and seed. Every cell trains on the
  first ``size`` images per class of one shuffled training pool and is evaluated on one test split: the
  split is drawn once (``split_seed``, fractions) by
  :func:`equilens.data.datamodule.stratified_split` and ``limit_per_class`` keeps the first images of each
  class's shuffled training part, so the subsets are nested (the 500-image subset holds the 250-image one)
  and every cell, size and seed sees the same validation and test images. The seeds change initialisation,
  batch order and augmentations, not the subset. Results: test macro AUC, accuracy and the hardest class
  pair's one-vs-one AUC against the size (mean and sample standard deviation over seeds), the wall time of
  every run, and the number of training images seen (epochs x training images) until the validation macro
  AUC first reached ``target_auc`` (logged once per epoch by
  :class:`equilens.evaluation.monitor.ValidationAUC`).
* ``rotation-robustness``: model x augmentation x seed at one size (default: all training images), meant
  for data of one fixed orientation (``equilens simulate --legacy`` / ``--fixed-orientation``); each run is
  then evaluated on its test images rotated by 0..360 degrees
  (:func:`equilens.evaluation.rotation.rotation_curve`): accuracy and macro AUC against the angle.

Layout of a study directory ``out``::

    study.json                 kind, the settings that define the cells, the grid, the tables (read by
                               ``equilens report``)
    <model>-<augment>-n<size>-seed<seed>/   one ordinary run directory per cell (``equilens train`` layout,
                               eval/ from ``equilens evaluate``) plus cell.json (the cell's numbers)
    cells.csv                  one row per cell
    data_efficiency.csv/.md/.png   or   rotation.csv/.md/.png   the summary over seeds

Running a study again continues it: a cell with ``cell.json`` is kept, an interrupted one resumes from its
``last.ckpt``, a missing one runs. Cells may be added (more models, sizes or seeds), but a study directory
made with other cell settings (data set, epochs, learning rate, ...) is refused rather than mixed. With a
Dask scheduler address the pending cells run as tasks on that cluster (every worker must see ``out`` and the
data set at the same paths).
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from equilens.data.choices import AUGMENTATIONS, check_choice
from equilens.errors import ConfigError, DataError

#: The studies :func:`run_study` knows.
STUDY_KINDS: tuple[str, ...] = ("data-efficiency", "rotation-robustness")
#: The study's record in its directory (the name ``equilens report`` looks for).
STUDY_FILE = "study.json"
#: Each cell's numbers, written into its run directory when it is finished.
CELL_FILE = "cell.json"
#: Settings that define every cell's training and evaluation: a study directory made with other values is
#: refused. The grid (models, augment, sizes, seeds) may grow; target_auc, accelerator and num_workers change
#: only the summary or where cells run.
CELL_KEYS: tuple[str, ...] = ("kind", "epochs", "batch_size", "lr", "model_kwargs", "split_seed", "val_fraction",
                              "test_fraction", "angle_step", "rotation_step")


@dataclass
class StudyConfig:
    """Settings of a study (defaults: the issue's data-efficiency grid).

    Attributes:
        kind: one of :data:`STUDY_KINDS`.
        data: the data set directory (all cells use it).
        models: registry model names; augment: training augmentations (``equilens train --augmentation``).
        sizes: training images per class; None means all the training split holds.
        seeds: number of training seeds per combination (seeds 0 .. seeds-1).
        epochs, batch_size, lr: training settings shared by every cell.
        model_kwargs: architecture options given to every model (e.g. ``{"width": 0.5}``).
        split_seed, val_fraction, test_fraction: the one train / validation / test split of every cell.
        angle_step: continuous-angle step (degrees) of the symmetry measurement of ``evaluate``.
        rotation_step: angle step (degrees) of the rotation curve (rotation-robustness).
        target_auc: validation macro AUC whose first crossing is counted in training images.
        accelerator: Lightning accelerator of every cell (``auto`` takes a GPU where there is one).
        num_workers: data-loader worker processes per cell.
    """

    kind: str = "data-efficiency"
    data: str = ""
    models: Sequence[str] = ("steerable_so2_fourier", "resnet18")
    augment: Sequence[str] = ("none", "rotate")
    sizes: Sequence[int | None] = (250, 500, 1000, 2000)
    seeds: int = 3
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    split_seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    angle_step: float = 45.0
    rotation_step: float = 15.0
    target_auc: float = 0.9
    accelerator: str = "auto"
    num_workers: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (sequences as lists)."""
        d = asdict(self)
        d["model_kwargs"] = dict(self.model_kwargs)
        return json.loads(json.dumps(d))

    def validate(self) -> StudyConfig:
        """Check the settings that need no data or heavy import; raise :class:`ConfigError` saying what is valid."""
        check_choice("study", self.kind, STUDY_KINDS)
        if not self.data:
            raise ConfigError("no data set given: pass --data DIR")
        for name, values in (("models", self.models), ("augment", self.augment), ("sizes", self.sizes)):
            if not values:
                raise ConfigError(f"the study needs at least one of {name} (a comma-separated list)")
            if len(set(values)) != len(values):
                raise ConfigError(f"{name} lists a value twice: {', '.join(str(v) for v in values)}")
        for aug in self.augment:
            check_choice("augmentation", aug, AUGMENTATIONS)
        for size in self.sizes:
            if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
                raise ConfigError(f"sizes are training images per class, integers >= 1; got {size!r}")
        for name in ("seeds", "epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not 0.5 < self.target_auc <= 1.0:
            raise ConfigError(f"target_auc must be in (0.5, 1] (0.5 is chance), got {self.target_auc}")
        for name in ("angle_step", "rotation_step"):
            if not 0 < getattr(self, name) <= 360:
                raise ConfigError(f"{name} must be in (0, 360] degrees, got {getattr(self, name)}")
        return self

    def cell_settings(self) -> dict[str, Any]:
        """The :data:`CELL_KEYS` values (what a study directory is checked against)."""
        d = self.to_dict()
        return {k: d[k] for k in CELL_KEYS}


@dataclass(frozen=True)
class Cell:
    """One run of a study: a model trained with an augmentation on ``size`` images per class (None: all)."""

    model: str
    augment: str
    size: int | None
    seed: int

    @property
    def name(self) -> str:
        """The run directory's name, e.g. ``steerable_d4-rotate-n250-seed0``."""
        return f"{self.model}-{self.augment}-n{'all' if self.size is None else self.size}-seed{self.seed}"


def study_cells(cfg: StudyConfig) -> list[Cell]:
    """Every cell of the grid, in the order they run: sizes from small to large, then seeds, models, augment."""
    sizes = sorted(cfg.sizes, key=lambda s: math.inf if s is None else s)
    return [Cell(m, a, s, seed) for s in sizes for seed in range(cfg.seeds) for m in cfg.models for a in cfg.augment]


def training_pool(cfg: StudyConfig) -> dict[str, int]:
    """Training images per class the split leaves (what a size may be at most), read from the data set.

    Raises:
        DataError: the data set cannot be read or a class has too few images to split.
    """
    from equilens.data.datamodule import stratified_split
    from equilens.data.store import LensDataset

    ds = LensDataset(cfg.data)
    parts = stratified_split(ds.labels, ds.class_names, val_fraction=cfg.val_fraction,
                             test_fraction=cfg.test_fraction, seed=cfg.split_seed)
    train = ds.labels[parts["train"]]
    return {name: int((train == c).sum()) for c, name in enumerate(ds.class_names)}


def check_study(cfg: StudyConfig, out: str | os.PathLike[str]) -> dict[str, Any]:
    """Validate ``cfg`` against the models, the data set and an existing study in ``out``.

    Returns:
        the settings recorded in ``study.json`` (``cfg.cell_settings()`` plus the data fingerprint).

    Raises:
        ConfigError: an unknown model or augmentation (listing the valid ones), a size larger than the
            training split holds per class (saying how many it holds), or ``out`` holds a study made with
            other cell settings (naming each difference).
    """
    from equilens.data.datamodule import data_fingerprint
    from equilens.data.store import LensDataset
    from equilens.models import get_entry

    cfg.validate()
    for model in cfg.models:
        get_entry(model)
    pool = training_pool(cfg)
    largest = max((s for s in cfg.sizes if s is not None), default=None)
    fewest = min(pool.values())
    if largest is not None and largest > fewest:
        ds = LensDataset(cfg.data)
        raise ConfigError(
            f"size {largest} per class is more than {cfg.data} holds for training: it has "
            f"{', '.join(f'{k} {v}' for k, v in ds.class_counts().items())} images, of which the split (validation "
            f"{cfg.val_fraction}, test {cfg.test_fraction}) leaves {', '.join(f'{k} {v}' for k, v in pool.items())} "
            f"for training; choose sizes up to {fewest}")
    settings = {**cfg.cell_settings(), "data_fingerprint": data_fingerprint(LensDataset(cfg.data))}
    path = Path(out) / STUDY_FILE
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8")).get("settings", {})
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON ({exc}); delete it or give another --out") from exc
        changed = [f"{k} {json.dumps(old.get(k))} -> {json.dumps(v)}" for k, v in settings.items() if old.get(k) != v]
        if changed:
            raise ConfigError(f"{out} holds a study made with other settings ({'; '.join(changed)}); its finished "
                              f"cells are not mixed with new ones: give another --out, or the same settings")
    elif Path(out).is_dir() and any(Path(out).iterdir()):
        raise ConfigError(f"{out} exists and is not a study directory (no {STUDY_FILE}); give another --out")
    return settings


def cell_train_config(cfg: StudyConfig, cell: Cell) -> Any:
    """The :class:`~equilens.training.config.TrainConfig` of a cell."""
    from equilens.training.config import TrainConfig

    return TrainConfig(data=str(cfg.data), model=cell.model, model_kwargs=dict(cfg.model_kwargs), epochs=cfg.epochs,
                       batch_size=cfg.batch_size, lr=cfg.lr, seed=cell.seed, split_seed=cfg.split_seed,
                       val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, augmentation=cell.augment,
                       limit_per_class=cell.size, num_workers=cfg.num_workers, accelerator=cfg.accelerator)


def _angles(step: float) -> tuple[float, ...]:
    n = int(math.floor(360.0 / step + 1e-9))
    return tuple(round(i * step, 9) for i in range(n + 1))


def run_cell(cfg: StudyConfig, cell: Cell, out: str | os.PathLike[str], *,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train and evaluate one cell into ``out/<cell.name>`` (resuming an interrupted run) and write its
    ``cell.json``; returns the cell's row (see :func:`cell_row`). A task of the Dask path: plain arguments."""
    from equilens.evaluation.monitor import ValidationAUC
    from equilens.workflows.quickstart import train_and_evaluate

    run = Path(out) / cell.name
    t_train, t_eval = train_and_evaluate(cell_train_config(cfg, cell), run, angles=_angles(cfg.angle_step),
                                         progress=False, log=log, callbacks=[ValidationAUC()])
    rotation = None
    if cfg.kind == "rotation-robustness":
        from equilens.evaluation.rotation import rotation_curve

        t = time.perf_counter()
        rotation = rotation_curve(run, _angles(cfg.rotation_step), log=log)["angles"]
        t_eval += time.perf_counter() - t
    row = cell_row(cfg, cell, run, eval_seconds=t_eval)
    record = {"cell": asdict(cell), "name": cell.name, "settings": cfg.cell_settings(), "row": row,
              "rotation": rotation}
    from equilens.data.store import write_json_atomic

    write_json_atomic(run / CELL_FILE, record)
    return row


def validation_curve(run: str | os.PathLike[str]) -> list[tuple[int, float]]:
    """``(epoch, val_auc)`` of every finished epoch of a run, from ``logs/csv*/metrics.csv`` (epochs counted
    from 0; a later session's value of an epoch replaces an earlier one's)."""
    values: dict[int, float] = {}
    logs = Path(run) / "logs"
    paths = sorted(logs.glob("csv*/metrics.csv"), key=lambda p: (p.parent.name != "csv", len(p.parent.name),
                                                                    p.parent.name))
    for path in paths:
        with path.open(encoding="utf-8", newline="") as f:
            for rec in csv.DictReader(f):
                if rec.get("val_auc") not in (None, "") and rec.get("epoch") not in (None, ""):
                    values[int(float(rec["epoch"]))] = float(rec["val_auc"])
    return sorted(values.items())


def cell_row(cfg: StudyConfig, cell: Cell, run: Path, eval_seconds: float) -> dict[str, Any]:
    """The numbers of a finished cell: test metrics (``eval/metrics.json``), parameters and training time
    (``train_summary.json``), training images (``split.json``) and the images seen until the validation
    AUC first reached ``cfg.target_auc`` (None if it never did)."""
    metrics = json.loads((run / "eval" / "metrics.json").read_text(encoding="utf-8"))
    summary = json.loads((run / "train_summary.json").read_text(encoding="utf-8"))
    n_train = len(json.loads((run / "split.json").read_text(encoding="utf-8"))["train"])
    curve = validation_curve(run)
    first = next((epoch for epoch, auc in curve if auc >= cfg.target_auc), None)
    row: dict[str, Any] = {
        "cell": cell.name, "model": cell.model, "augment": cell.augment,
        "size": cell.size if cell.size is not None else "all", "seed": cell.seed, "n_train": n_train,
        "epochs": summary.get("epochs_completed"), "num_parameters": summary.get("num_parameters"),
        "accuracy": metrics["accuracy"], "auc_macro": metrics["auc_macro"],
        **{f"auc_{pair}": v for pair, v in metrics.get("auc_pairwise", {}).items()},
        "val_auc_last": curve[-1][1] if curve else None,
        "target_auc": cfg.target_auc,
        "epochs_to_target": None if first is None else first + 1,
        "images_to_target": None if first is None else (first + 1) * n_train,
        "train_seconds": summary.get("training_seconds"), "eval_seconds": eval_seconds,
        "wall_seconds": float(summary.get("training_seconds") or 0.0) + eval_seconds,
    }
    return row


def _read_cell(cfg: StudyConfig, cell: Cell, out: Path) -> dict[str, Any] | None:
    path = out / cell.name / CELL_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.get("settings") != cfg.cell_settings():
        return None
    return record


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def run_study(cfg: StudyConfig, out: str | os.PathLike[str], *, scheduler: str | None = None,
              log: Callable[[str], None] = print) -> Path:
    """Run (or continue) a study into ``out`` and write its tables and plots; returns the markdown table's path.

    Args:
        cfg: the study's settings.
        out: the study directory (layout in the module docstring).
        scheduler: a Dask scheduler address ``tcp://HOST:PORT``: the pending cells run there as tasks
            (every worker needs equilens and the same paths to ``out`` and the data set); None runs them
            here, one after another.
        log: message sink (progress over cells: k of n, with an estimate of the time left).
    """
    settings = check_study(cfg, out)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_study_file(cfg, out, settings, tables=_old_tables(out))
    cells = study_cells(cfg)
    done = {c: r for c in cells if (r := _read_cell(cfg, c, out)) is not None}
    pending = [c for c in cells if c not in done]
    n = len(cells)
    log(f"{cfg.kind} study in {out}: {n} cells ({len(cfg.models)} models x {len(cfg.augment)} augmentations x "
        f"{len(cfg.sizes)} sizes x {cfg.seeds} seeds); {len(done)} finished earlier (kept), {len(pending)} to run"
        + (f" on the Dask cluster at {scheduler}" if scheduler and pending else ""))
    t0 = time.perf_counter()
    finished = 0

    def on_result(cell: Cell) -> None:
        nonlocal finished
        finished += 1
        record = _read_cell(cfg, cell, out)
        if record is not None:
            done[cell] = record
        left = len(pending) - finished
        eta = (time.perf_counter() - t0) / finished * left
        auc = (record or {}).get("row", {}).get("auc_macro")
        log(f"cell {len(done)} of {n} finished: {cell.name}"
            + (f" (test macro AUC {auc:.4f})" if isinstance(auc, float) else "")
            + (f"; about {_duration(eta)} left for {left} more" if left else ""))

    if pending and scheduler:
        _run_dask(scheduler, cfg, pending, out, on_result)
    else:
        for cell in pending:
            log(f"cell {len(done) + 1} of {n}: {cell.name}")
            run_cell(cfg, cell, out, log=log)
            on_result(cell)
    records = [done[c] for c in cells]
    tables = write_summary(cfg, records, out)
    _write_study_file(cfg, out, settings, tables=tables)
    log(f"{cfg.kind} study: {n} cells in {out}; tables {', '.join(t['markdown'] for t in tables)}")
    return out / tables[0]["markdown"]


def _run_dask(address: str, cfg: StudyConfig, cells: Sequence[Cell], out: Path,
              on_result: Callable[[Cell], None]) -> None:
    """Run ``cells`` as tasks on the Dask cluster at ``address``; on the first failure cancel the rest (the
    cells finished so far are kept) and raise it."""
    from distributed import Client, as_completed

    try:
        client = Client(address, timeout="20s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise DataError(f"cannot reach the Dask scheduler at {address!r} ({exc}); start one with `dask scheduler` "
                        f"and workers with `dask worker {address}`, or drop --scheduler") from exc
    run_id = uuid.uuid4().hex[:12]  # keys unique per call: never reuse another study's result on the cluster
    error: BaseException | None = None
    try:
        futures = {client.submit(run_cell, cfg, cell, str(out), log=_quiet, pure=False,
                                 key=f"equilens-study-{run_id}-{cell.name}"): cell for cell in cells}
        for fut in as_completed(list(futures)):
            try:
                fut.result()
            except Exception as exc:  # noqa: BLE001 - re-raised below after the others are cancelled
                if error is None:
                    error = exc
                    client.cancel([f for f in futures if not f.done()])
                continue
            finally:
                fut.release()
            on_result(futures[fut])
    finally:
        client.close()
    if error is not None:
        if isinstance(error, ImportError):
            raise DataError(f"a worker of the Dask cluster at {address} cannot import what equilens needs "
                            f"({error}); install equilens and its dependencies in every worker's environment") \
                from error
        raise error


def _quiet(_message: str) -> None:
    """Message sink of the cells run on a Dask worker (their progress is reported where the study runs)."""


def _old_tables(out: Path) -> list[dict[str, Any]]:
    path = out / STUDY_FILE
    if not path.is_file():
        return []
    return list(json.loads(path.read_text(encoding="utf-8")).get("tables", []))


def _write_study_file(cfg: StudyConfig, out: Path, settings: Mapping[str, Any], tables: list[dict[str, Any]]) -> None:
    from equilens.data.store import write_json_atomic

    grid = {k: v for k, v in cfg.to_dict().items() if k not in settings}
    write_json_atomic(out / STUDY_FILE, {"kind": cfg.kind, "settings": dict(settings), "grid": grid,
                                         "tables": tables})


# ------------------------------------------------------------------------------------------------
# Summaries
# ------------------------------------------------------------------------------------------------

def _mean_std(values: Sequence[Any]) -> tuple[float, float, int]:
    from equilens.evaluation.metrics import mean_std

    return mean_std([float(v) for v in values if isinstance(v, int | float)])


def _pm(stats: tuple[float, float, int], digits: int = 4) -> str:
    mean, std, count = stats
    if count == 0:
        return "-"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if count > 1 else "")


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: "" if r.get(k) is None else r.get(k) for k in keys})
    os.replace(tmp, path)


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lines of a markdown table."""
    def esc(text: str) -> str:
        return str(text).replace("|", "\\|")
    return ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(map(esc, r)) + " |" for r in rows)]


def hardest_pair(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """The class pair ``a/b`` with the lowest mean one-vs-one test AUC over ``rows`` (None without pairs)."""
    pairs = sorted({k.removeprefix("auc_") for r in rows for k in r if k.startswith("auc_") and "/" in k})
    if not pairs:
        return None
    return min(pairs, key=lambda p: _mean_std([r.get(f"auc_{p}") for r in rows])[0])


def write_summary(cfg: StudyConfig, records: Sequence[Mapping[str, Any]], out: Path) -> list[dict[str, Any]]:
    """Write ``cells.csv`` and the study's summary table (CSV, markdown) and figure; returns the table
    entries recorded in ``study.json`` (title, note, header, rows, file names), which ``equilens report``
    shows."""
    rows = [dict(r["row"]) for r in records]
    _write_csv(out / "cells.csv", rows)
    if cfg.kind == "data-efficiency":
        table = _efficiency_summary(cfg, rows, out)
    else:
        table = _rotation_summary(cfg, records, out)
    md = [f"## {table['title']}", "", table["note"], "", *md_table(table["header"], table["rows"]), ""]
    for extra in table.get("extra", []):
        md += [extra["note"], "", *md_table(extra["header"], extra["rows"]), ""]
    md += [f"![{table['title']}]({table['figure']})", ""]
    (out / table["markdown"]).write_text("\n".join(md), encoding="utf-8")
    return [table]


def _settings_text(cfg: StudyConfig) -> str:
    kwargs = ", ".join(f"{k}={v}" for k, v in cfg.model_kwargs.items())
    return (f"data {cfg.data}; {cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr}"
            + (f", model options {kwargs}" if kwargs else "")
            + f"; one split (seed {cfg.split_seed}, validation {cfg.val_fraction}, test {cfg.test_fraction})")


def _efficiency_summary(cfg: StudyConfig, rows: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    pair = hardest_pair(rows)
    groups: dict[tuple[str, str, Any], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["augment"], r["size"]), []).append(r)
    summary = []
    for (model, augment, size), rs in groups.items():
        reached = [r["images_to_target"] for r in rs if r["images_to_target"] is not None]
        summary.append({
            "model": model, "augment": augment, "size": size, "seeds": len(rs),
            **{f"{k}_{s}": v for k in ("auc_macro", "accuracy")
               for s, v in zip(("mean", "std"), _mean_std([r[k] for r in rs])[:2], strict=True)},
            "hardest_pair": pair,
            "hardest_pair_auc_mean": _mean_std([r.get(f"auc_{pair}") for r in rs])[0] if pair else None,
            "hardest_pair_auc_std": _mean_std([r.get(f"auc_{pair}") for r in rs])[1] if pair else None,
            "wall_seconds_mean": _mean_std([r["wall_seconds"] for r in rs])[0],
            "target_auc": cfg.target_auc, "target_reached": len(reached),
            "images_to_target_mean": _mean_std(reached)[0] if reached else None,
        })
    _write_csv(out / "data_efficiency.csv", summary)
    header = ["model", "augment", "images per class", "seeds", "test macro AUC", "accuracy",
              f"{pair or 'hardest pair'} AUC", "wall time per run", f"images to val AUC {cfg.target_auc}"]
    body = []
    for (model, augment, size), rs in groups.items():
        reached = [r["images_to_target"] for r in rs if r["images_to_target"] is not None]
        to_target = (f"{_mean_std(reached)[0]:,.0f} ({len(reached)} of {len(rs)} runs)" if reached
                     else f"not reached in {cfg.epochs} epochs")
        body.append([model, augment, str(size), str(len(rs)), _pm(_mean_std([r["auc_macro"] for r in rs])),
                     _pm(_mean_std([r["accuracy"] for r in rs])),
                     _pm(_mean_std([r.get(f"auc_{pair}") for r in rs])) if pair else "-",
                     _duration(_mean_std([r["wall_seconds"] for r in rs])[0]), to_target])
    note = (f"Test-split metrics of every model, augmentation and training-set size (images per class; nested "
            f"subsets of one training pool, one test split for all): mean ± sample standard deviation over seeds. "
            f"The hardest pair is the class pair with the lowest mean one-vs-one AUC over all cells. Images to "
            f"target: training images seen (epochs x training images) until the validation macro AUC first "
            f"reached {cfg.target_auc}, mean over the runs that reached it. {_settings_text(cfg)}.")
    figure = "data_efficiency.png"
    _plot_efficiency(groups, pair, out / figure)
    return {"title": "Data efficiency: equivariance versus augmentation", "note": note, "header": header,
            "rows": body, "csv": "data_efficiency.csv", "markdown": "data_efficiency.md", "figure": figure,
            "extra": [_matching_table(groups)]}


def _matching_table(groups: Mapping[tuple[str, str, Any], list[dict[str, Any]]]) -> dict[str, Any]:
    """For each pair of configurations A, B: the smallest size of the grid at which A's mean test macro AUC
    reaches B's at B's largest size."""
    configs: dict[tuple[str, str], dict[int, float]] = {}
    for (model, augment, size), rs in groups.items():
        if isinstance(size, int):
            configs.setdefault((model, augment), {})[size] = _mean_std([r["auc_macro"] for r in rs])[0]
    names = [f"{m} {a}" for m, a in configs]
    body = []
    for (ma, aa), curve_a in configs.items():
        cells = []
        for _key, curve_b in configs.items():
            if curve_b is curve_a:
                cells.append("-")
                continue
            largest = max(curve_b)
            ref = curve_b[largest]
            hit = next((s for s in sorted(curve_a) if curve_a[s] >= ref), None)
            cells.append(f"{hit} (B: {ref:.4f} at {largest})" if hit is not None
                         else f"not reached up to {max(curve_a)} (B: {ref:.4f} at {largest})")
        body.append([f"{ma} {aa}", *cells])
    return {"note": "Smallest training-set size (images per class, from the grid) at which the row's mean test "
                    "macro AUC reaches the column's at the column's largest size:",
            "header": ["A \\ B", *names], "rows": body}


def _plot_efficiency(groups: Mapping[tuple[str, str, Any], list[dict[str, Any]]], pair: str | None,
                     path: Path) -> None:
    import matplotlib.pyplot as plt

    from equilens.evaluation import plots  # noqa: F401 - selects the Agg backend

    panels = [("auc_macro", "test macro AUC"), ("accuracy", "test accuracy")]
    if pair:
        panels.append((f"auc_{pair}", f"{pair} one-vs-one AUC"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    configs = sorted({(m, a) for m, a, _ in groups})
    for ax, (key, label) in zip(axes[0], panels, strict=True):
        for j, (model, augment) in enumerate(configs):
            pts = sorted((s, _mean_std([r.get(key) for r in rs]), rs) for (m, a, s), rs in groups.items()
                         if (m, a) == (model, augment) and isinstance(s, int))
            if not pts:
                continue
            xs = [p[0] for p in pts]
            means = [p[1][0] for p in pts]
            errs = [p[1][1] if p[1][2] > 1 else 0.0 for p in pts]
            style = "-" if augment == "none" else "--"
            line = ax.errorbar(xs, means, yerr=errs, fmt="o" + style, capsize=3, ms=4, lw=1.3,
                               color=f"C{j}", label=f"{model}, {augment}")
            for s, _st, rs in pts:
                ax.plot([s] * len(rs), [r.get(key) for r in rs], ".", color=line[0].get_color(), alpha=0.35, ms=3)
        ax.set_xscale("log")
        sizes = sorted({s for _, _, s in groups if isinstance(s, int)})
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.minorticks_off()
        ax.set_xlabel("training images per class")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("mean ± std over seeds (dots: single runs)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _rotation_summary(cfg: StudyConfig, records: Sequence[Mapping[str, Any]], out: Path) -> dict[str, Any]:
    groups: dict[tuple[str, str, Any], list[Mapping[str, Any]]] = {}
    for rec in records:
        r = rec["row"]
        groups.setdefault((r["model"], r["augment"], r["size"]), []).append(rec)
    summary = []
    angles = [a["angle"] for a in records[0]["rotation"]] if records else []
    for (model, augment, size), recs in groups.items():
        for i, angle in enumerate(angles):
            acc = _mean_std([rec["rotation"][i]["accuracy"] for rec in recs])
            auc = _mean_std([rec["rotation"][i]["auc_macro"] for rec in recs])
            summary.append({"model": model, "augment": augment, "size": size, "angle": angle, "seeds": len(recs),
                            "accuracy_mean": acc[0], "accuracy_std": acc[1], "auc_macro_mean": auc[0],
                            "auc_macro_std": auc[1]})
    _write_csv(out / "rotation.csv", summary)
    keys = list(groups)
    header = ["angle (deg)", *[f"{m} {a} accuracy" for m, a, _ in keys], *[f"{m} {a} macro AUC" for m, a, _ in keys]]
    body = []
    for i, angle in enumerate(angles):
        body.append([f"{angle:g}",
                     *[_pm(_mean_std([rec["rotation"][i]["accuracy"] for rec in groups[k]]), 3) for k in keys],
                     *[_pm(_mean_std([rec["rotation"][i]["auc_macro"] for rec in groups[k]]), 3) for k in keys]])
    sizes = sorted({str(s) for _, _, s in keys})
    note = (f"Test images of the training data set rotated counter-clockwise by each angle (empty sky outside the "
            f"inscribed disk, bilinear between multiples of 90 degrees): accuracy and macro AUC, mean ± sample "
            f"standard deviation over {cfg.seeds} seed(s); {'/'.join(sizes)} training images per class. "
            f"{_settings_text(cfg)}.")
    figure = "rotation.png"
    _plot_rotation(groups, angles, out / figure)
    return {"title": "Rotation robustness", "note": note, "header": header, "rows": body, "csv": "rotation.csv",
            "markdown": "rotation.md", "figure": figure}


def _plot_rotation(groups: Mapping[tuple[str, str, Any], list[Mapping[str, Any]]], angles: Sequence[float],
                   path: Path) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    from equilens.evaluation import plots  # noqa: F401 - selects the Agg backend

    fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.6))
    for ax, (key, label) in zip(axes, (("accuracy", "test accuracy"), ("auc_macro", "test macro AUC")), strict=True):
        for j, ((model, augment, _size), recs) in enumerate(groups.items()):
            stats = [_mean_std([rec["rotation"][i][key] for rec in recs]) for i in range(len(angles))]
            mean = np.array([s[0] for s in stats])
            std = np.array([s[1] if s[2] > 1 else 0.0 for s in stats])
            style = "-" if augment == "none" else "--"
            ax.plot(angles, mean, "o" + style, ms=3, lw=1.3, color=f"C{j}", label=f"{model}, {augment}")
            ax.fill_between(angles, mean - std, mean + std, color=f"C{j}", alpha=0.15, lw=0)
        ax.set_xlabel("rotation of the test images (degrees)")
        ax.set_ylabel(label)
        ax.set_xticks(np.arange(0, 361, 45))
        ax.grid(alpha=0.3)
    n_seeds = max((len(recs) for recs in groups.values()), default=0)
    spread = "mean ± std over seeds (band)" if n_seeds > 1 else "one seed"
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=max(1, len(labels)), fontsize=8, frameon=False)
    fig.suptitle(f"trained on one orientation; {spread}", fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 1))  # room for the legend below the panels, off the curves
    fig.savefig(path, dpi=110)
    plt.close(fig)
