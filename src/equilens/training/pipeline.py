"""The main job: simulate a small set, train the default equivariant model and ResNet-18, evaluate both,
write the report.

Layout of the output directory::

    data/                   the simulated data set (``equilens simulate`` format)
    runs/<model>-seed<s>/   one training run per model and seed (``equilens train`` layout, with eval/)
    report/report.html      the comparison page (and report.md, figures/)

Running the same command again continues where it stopped: the simulation completes missing shards,
a finished run is kept, an unfinished one is resumed, an unevaluated one is evaluated.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from equilens.errors import ConfigError
from equilens.models import DEFAULT_EQUIVARIANT_MODEL
from equilens.training.config import TrainConfig

#: The models the main job compares: the project's default equivariant model and the baseline.
QUICKSTART_MODELS: tuple[str, ...] = (DEFAULT_EQUIVARIANT_MODEL, "resnet18")
QUICKSTART_CLASSES: tuple[str, ...] = ("no_sub", "cdm", "axion")


@dataclass
class QuickstartConfig:
    """Settings of the main job (defaults: about 1 minute on an idle 2-core machine, see the README).

    Attributes:
        preset: simulator preset; image_size: override of its image size (None: the preset's, 64 px).
        n_per_class: simulated images per class; sim_seed: simulation seed; workers: simulation processes.
        models: models to train; seeds: training seeds per model.
        epochs, batch_size, lr, augmentation: training settings shared by every model.
        angle_step: continuous-angle step of the symmetry measurement (degrees).
    """

    preset: str = "model_ii"
    image_size: int | None = None
    n_per_class: int = 300
    sim_seed: int = 0
    workers: int = 2
    models: Sequence[str] = QUICKSTART_MODELS
    seeds: Sequence[int] = (0,)
    epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-3
    augmentation: str = "none"
    angle_step: float = 45.0
    classes: Sequence[str] = field(default=QUICKSTART_CLASSES)


def run_quickstart(cfg: QuickstartConfig, out: str | os.PathLike[str], *, progress: bool = True,
                   log: Callable[[str], None] = print) -> Path:
    """Run the main job into ``out``; returns the path of ``report.html``."""
    from equilens.evaluation.report import build_report
    from equilens.simulation.config import resolve_config
    from equilens.simulation.generate import generate_dataset

    if cfg.n_per_class < 10:
        raise ConfigError(f"n_per_class must be >= 10 so every class has train, validation and test images, "
                          f"got {cfg.n_per_class}")
    from equilens.data.transforms import AUGMENTATIONS, check_choice
    from equilens.models import get_entry

    for model in cfg.models:
        get_entry(model)  # unknown names fail here, before any simulation
    check_choice("augmentation", cfg.augmentation, AUGMENTATIONS)
    if not cfg.models or not cfg.seeds:
        raise ConfigError("quickstart needs at least one model and one seed")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()

    overrides = {"image_size": cfg.image_size} if cfg.image_size else {}
    sim_cfg = resolve_config(cfg.preset, overrides)
    data = out / "data"
    log(f"[1/3] simulating {cfg.n_per_class} images per class of {', '.join(cfg.classes)} ({cfg.preset}) "
        f"into {data}")
    t = time.perf_counter()
    generate_dataset(sim_cfg, list(cfg.classes), cfg.n_per_class, cfg.sim_seed, data, workers=cfg.workers,
                     progress=progress)
    timings["simulate_s"] = time.perf_counter() - t

    runs = []
    for model in cfg.models:
        for seed in cfg.seeds:
            run = out / "runs" / f"{model}-seed{seed}"
            runs.append(run)
            log(f"[2/3] {run.name}")
            tcfg = TrainConfig(data=str(data), model=model, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                               seed=seed, augmentation=cfg.augmentation, num_workers=0, accelerator="cpu")
            angles = tuple(float(a) for a in _frange(0.0, 360.0, cfg.angle_step))
            t_train, t_eval = train_and_evaluate(tcfg, run, angles=angles, progress=progress, log=log)
            timings[f"train_{run.name}_s"] = t_train
            timings[f"evaluate_{run.name}_s"] = t_eval
    report = build_report(runs, out / "report", title=f"equilens quickstart ({cfg.preset}, "
                                                            f"{cfg.n_per_class} images per class)", log=log)
    timings["total_s"] = time.perf_counter() - t_all
    (out / "timings.json").write_text(json.dumps(timings, indent=2) + "\n", encoding="utf-8")
    log(f"done in {timings['total_s'] / 60:.1f} min. Report: {report.resolve()}")
    return report


def train_and_evaluate(tcfg: TrainConfig, run: Path, *, angles: Sequence[float], progress: bool = True,
                       log: Callable[[str], None] = print) -> tuple[float, float]:
    """Train ``run`` (kept if finished, resumed if interrupted) and evaluate it on its test split unless
    it has been; returns the seconds spent training and evaluating in this call."""
    from equilens.evaluation.evaluate import evaluate
    from equilens.training.fit import train

    summary = run / "train_summary.json"
    status = json.loads(summary.read_text()).get("status", "") if summary.is_file() else ""
    t = time.perf_counter()
    if status.startswith("complete") or status.startswith("stopped early"):
        log(f"{run.name}: already trained, kept")
    elif (run / "checkpoints" / "last.ckpt").is_file():
        log(f"{run.name}: resuming")
        train(tcfg, run, resume=True, progress=progress, log=log)
    else:
        log(f"training {tcfg.model} ({tcfg.task}{' ' + tcfg.target if tcfg.target else ''}, seed {tcfg.seed}) "
            f"for {tcfg.epochs} epochs into {run}")
        train(tcfg, run, overwrite=run.exists(), progress=progress, log=log)
    t_train = time.perf_counter() - t
    t = time.perf_counter()
    if not (run / "eval" / "metrics.json").is_file():
        log(f"evaluating {run.name} on its test split")
        evaluate(run, angles=angles, log=log)
    return t_train, time.perf_counter() - t


def _frange(start: float, stop: float, step: float) -> list[float]:
    if step <= 0:
        raise ConfigError(f"angle step must be > 0, got {step}")
    n = int(round((stop - start) / step))
    return [start + i * step for i in range(n + 1) if start + i * step <= stop + 1e-9]
