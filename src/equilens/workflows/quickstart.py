"""The main job: simulate a small set, train the default equivariant model and ResNet-18, evaluate both,
write the report, and print what the numbers mean.

Layout of the output directory::

    quickstart.json         the settings of the job (checked when it is run again)
    data/                   the simulated data set (``equilens simulate`` format)
    runs/<model>-seed<s>/   one training run per model and seed (``equilens train`` layout, with eval/)
    report/report.html      the comparison page (and report.md, figures/)
    timings.json            seconds per step

Running the same command again continues where it stopped: the simulation completes missing shards,
a finished run is kept, an unfinished one is resumed, an unevaluated one is evaluated. Running it again
with other settings never mixes old and new results: a run whose training settings changed (epochs,
augmentation, ...) is trained again, a changed symmetry angle step re-evaluates, and changed data
settings (preset, image size, images per class, physics) are refused, because the runs were trained on
the data set in ``data/``.

The physics here is DeepLense's subhalo recipe, not ``equilens simulate``'s realistic default: Poisson(25)
point-mass subhalos over 1e6..1e10 Msun with DeepLense's mass slope dN/dm ~ m^-0.9 and no mass sheet
(``subhalo_abundance=count``, ``subhalo_mass_slope=-0.9``, ``subhalo_mass_sheet=false``,
``subhalo_render_mass_min=null``): about 4e10 Msun of subhalos per image, so ``cdm`` is learnable at 64 px
in a minute. With the count recipe and slope -1.9 the subhalos weigh 3.4e8 Msun per image and no model
tells ``cdm`` from ``no_sub`` (one-vs-one AUC 0.5, README "Science figures"); the realistic Sigma_sub
default (f_sub about 1.5%) has not been measured in the quickstart's minute. A one-minute demonstration
should show a task the models can learn.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from equilens.data.choices import AUGMENTATIONS, check_choice
from equilens.errors import ConfigError
from equilens.training.config import RUNTIME_KEYS, TrainConfig, read_run_config

#: The models the main job compares: the project's default equivariant model
#: (:data:`equilens.models.DEFAULT_EQUIVARIANT_MODEL`, kept equal by a test; named here so that building
#: the command line's help does not import the models) and the baseline.
QUICKSTART_MODELS: tuple[str, ...] = ("steerable_so2_fourier", "resnet18")
QUICKSTART_CLASSES: tuple[str, ...] = ("no_sub", "cdm", "axion")
#: Simulator overrides of the main job: DeepLense's subhalo recipe (25 point masses, slope -0.9, no mass
#: sheet), under which cdm is learnable at 64 px in a minute (see the module docstring). Under
#: ``subhalo_abundance=sigma_sub`` the slope -0.9 would put f_sub near 23%, so the four go together.
QUICKSTART_PHYSICS: Mapping[str, Any] = {"subhalo_abundance": "count", "subhalo_mass_slope": -0.9,
                                         "subhalo_mass_sheet": False, "subhalo_render_mass_min": None}
#: Settings that define the data set besides the resolved simulator config (recorded as ``sim_config``);
#: a changed one is refused on an existing output directory.
DATA_KEYS: tuple[str, ...] = ("n_per_class", "sim_seed", "classes")
SETTINGS_FILE = "quickstart.json"


@dataclass
class QuickstartConfig:
    """Settings of the main job (defaults: about 1 minute on an idle 2-core machine, see the README).

    Attributes:
        preset: simulator preset; image_size: override of its image size in px (None: the preset's, 64).
        n_per_class: simulated images per class; sim_seed: simulation seed; workers: simulation processes.
        sim_overrides: simulator config overrides (keys of ``equilens.simulation.config.CONFIG_KEYS``),
            applied on top of the preset; default :data:`QUICKSTART_PHYSICS`.
        models: models to train; seeds: training seeds per model.
        epochs, batch_size, lr, augmentation: training settings shared by every model.
        angle_step: continuous-angle step of the symmetry measurement (degrees).
        classes: simulated classes, in label order.
    """

    preset: str = "model_ii"
    image_size: int | None = None
    n_per_class: int = 300
    sim_seed: int = 0
    workers: int = 2
    sim_overrides: Mapping[str, Any] = field(default_factory=lambda: dict(QUICKSTART_PHYSICS))
    models: Sequence[str] = QUICKSTART_MODELS
    seeds: Sequence[int] = (0,)
    epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-3
    augmentation: str = "none"
    angle_step: float = 45.0
    classes: Sequence[str] = field(default=QUICKSTART_CLASSES)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings, as they read back from ``quickstart.json`` (sequences as lists)."""
        d = asdict(self)
        d["sim_overrides"] = dict(self.sim_overrides)
        return json.loads(json.dumps(d))

    def validate(self) -> QuickstartConfig:
        """Check the settings that need no heavy import; raise :class:`ConfigError` saying what is valid."""
        if self.n_per_class < 10:
            raise ConfigError(f"n_per_class must be >= 10 so every class has train, validation and test images, "
                              f"got {self.n_per_class}")
        if not self.models or not self.seeds:
            raise ConfigError("quickstart needs at least one model and one seed")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        if not 0 < self.angle_step <= 360:
            raise ConfigError(f"angle step must be in (0, 360] degrees, got {self.angle_step}")
        check_choice("augmentation", self.augmentation, AUGMENTATIONS)
        return self


def check_settings(cfg: QuickstartConfig, out: str | os.PathLike[str],
                   sim_config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The settings recorded in ``out`` by an earlier run (None if there is none).

    Args:
        cfg: the settings of this run; sim_config: its resolved simulator config (``SimConfig.to_dict()``),
            compared key by key, so ``--image-size 64`` on a 64 px preset is no change.

    Raises:
        ConfigError: the earlier run simulated a different data set (a :data:`DATA_KEYS` setting or a
            simulator config value differs), naming each difference.
    """
    path = Path(out) / SETTINGS_FILE
    if not path.is_file():
        return None
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); delete it or give another --out") from exc
    new = cfg.to_dict()
    changed = [f"{k} {_show(old.get(k))} -> {_show(new[k])}" for k in DATA_KEYS if old.get(k) != new[k]]
    # without a recorded sim_config the data set's own manifest check (generate_dataset) still refuses a mix
    old_sim = old.get("sim_config") or {}
    new_sim = json.loads(json.dumps(dict(sim_config))) if old_sim else {}
    changed += [f"{k} {_show(old_sim.get(k))} -> {_show(new_sim.get(k))}"
                for k in sorted(set(old_sim) | set(new_sim)) if old_sim.get(k) != new_sim.get(k)]
    if changed:
        what = ", ".join(changed)
        raise ConfigError(f"{out} holds a quickstart whose data set was made with other settings ({what}); "
                          f"give another --out, or delete {out}")
    return old


def run_quickstart(cfg: QuickstartConfig, out: str | os.PathLike[str], *, progress: bool = True,
                   log: Callable[[str], None] = print) -> Path:
    """Run the main job into ``out``; logs the test-split results with their meaning and returns the
    path of ``report.html`` (which the caller prints)."""
    from equilens.evaluation.report import build_report
    from equilens.models import get_entry
    from equilens.simulation.config import resolve_config
    from equilens.simulation.generate import generate_dataset

    cfg.validate()
    for model in cfg.models:
        get_entry(model)  # unknown names fail here, before any simulation
    overrides = dict(cfg.sim_overrides)
    if cfg.image_size:
        overrides["image_size"] = cfg.image_size
    sim_cfg = resolve_config(cfg.preset, overrides)
    check_settings(cfg, out, sim_cfg.to_dict())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / SETTINGS_FILE).write_text(json.dumps({**cfg.to_dict(), "sim_config": sim_cfg.to_dict()}, indent=2) + "\n",
                                     encoding="utf-8")
    timings: dict[str, float] = {}
    t_all = time.perf_counter()

    data = out / "data"
    physics = ", ".join(f"{k}={_show(v)}" for k, v in cfg.sim_overrides.items()) or "default physics"
    log(f"[1/3] simulating {_plural(cfg.n_per_class, 'image')} per class of {', '.join(cfg.classes)} "
        f"({cfg.preset}, {sim_cfg.image_size} px, {physics}) into {data}")
    t = time.perf_counter()
    generate_dataset(sim_cfg, list(cfg.classes), cfg.n_per_class, cfg.sim_seed, data, workers=cfg.workers,
                     progress=progress)
    timings["simulate_s"] = time.perf_counter() - t

    runs = [out / "runs" / f"{model}-seed{seed}" for model in cfg.models for seed in cfg.seeds]
    angles = tuple(float(a) for a in _frange(0.0, 360.0, cfg.angle_step))
    for k, run in enumerate(runs):
        model, seed = run.name.rsplit("-seed", 1)
        log(f"[2/3] run {k + 1} of {len(runs)}: {run.name}")
        tcfg = TrainConfig(data=str(data), model=model, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                           seed=int(seed), augmentation=cfg.augmentation, num_workers=0, accelerator="cpu")
        t_train, t_eval = train_and_evaluate(tcfg, run, angles=angles, progress=progress, log=log)
        timings[f"train_{run.name}_s"] = t_train
        timings[f"evaluate_{run.name}_s"] = t_eval
    log("[3/3] writing the report")
    report = build_report(runs, out / "report", title=f"equilens quickstart ({cfg.preset}, {physics}, "
                                                       f"{_plural(cfg.n_per_class, 'image')} per class)",
                          log=lambda _msg: None)
    timings["total_s"] = time.perf_counter() - t_all
    (out / "timings.json").write_text(json.dumps(timings, indent=2) + "\n", encoding="utf-8")
    log(summarise_runs(runs, physics=physics))
    log(f"done in {timings['total_s'] / 60:.1f} min")
    return report


def train_and_evaluate(tcfg: TrainConfig, run: Path, *, angles: Sequence[float], progress: bool = True,
                       log: Callable[[str], None] = print, reevaluate: bool = False,
                       callbacks: Sequence[Any] = ()) -> tuple[float, float]:
    """Train ``run`` and evaluate it on its test split; returns the seconds spent training and evaluating.

    A finished run with the same training settings is kept, an interrupted one is resumed, and a run whose
    saved settings differ from ``tcfg`` (other than the data path and runtime keys) is trained again from
    scratch. It is evaluated unless it was kept and its evaluation used the same symmetry ``angles``;
    ``reevaluate`` evaluates it in any case. ``callbacks``: extra Lightning callbacks for training (e.g.
    :class:`equilens.evaluation.monitor.ValidationAUC`).
    """
    from equilens.evaluation.evaluate import evaluate
    from equilens.training.fit import train

    summary = run / "train_summary.json"
    status = json.loads(summary.read_text()).get("status", "") if summary.is_file() else ""
    changed = _changed_settings(run, tcfg)
    t = time.perf_counter()
    trained = True
    what = (f"{tcfg.model} ({tcfg.task}{' ' + tcfg.target if tcfg.target else ''}, seed {tcfg.seed}) for "
            f"{_plural(tcfg.epochs, 'epoch')} into {run}")
    if changed:
        log(f"{run.name}: settings changed since it was trained ({changed}); training it again")
        log(f"training {what}")
        train(tcfg, run, overwrite=True, progress=progress, log=log, callbacks=callbacks)
    elif status.startswith("complete") or status.startswith("stopped early"):
        log(f"{run.name}: already trained with these settings, kept")
        trained = False
    elif (run / "checkpoints" / "last.ckpt").is_file():
        log(f"{run.name}: resuming")
        train(tcfg, run, resume=True, progress=progress, log=log, callbacks=callbacks)
    else:
        log(f"training {what}")
        train(tcfg, run, overwrite=run.exists(), progress=progress, log=log, callbacks=callbacks)
    t_train = time.perf_counter() - t
    t = time.perf_counter()
    if trained or reevaluate or _evaluated_angles(run) != [float(a) for a in angles]:
        log(f"evaluating {run.name} on its test split")
        evaluate(run, angles=angles, log=log)
    return t_train, time.perf_counter() - t


#: What the pairwise numbers mean, printed under the quickstart's results.
AUC_EXPLANATION = (
    "one-vs-one AUC of a pair a/b: on the test images of those two classes, the probability that the model "
    "ranks a random image of a above a random image of b (mean of both directions). 0.5 = it cannot tell "
    "them apart (chance), 1.0 = it separates them perfectly. The macro one-vs-rest AUC averages each class "
    "against all others, so one perfectly separated class lifts it even when another pair is at chance.")


def summarise_runs(runs: Sequence[Path], *, physics: str = "") -> str:
    """A table of the runs' test-split accuracy, macro AUC and one-vs-one AUC per class pair, followed by
    what those numbers mean (and why a pair may sit at chance). Runs without ``eval/metrics.json`` are
    listed as not evaluated."""
    metrics = {}
    for run in runs:
        path = Path(run) / "eval" / "metrics.json"
        metrics[Path(run).name] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    pairs: list[str] = []
    for m in metrics.values():
        for p in (m or {}).get("auc_pairwise", {}):
            if p not in pairs:
                pairs.append(p)
    width = max([len(n) for n in metrics] + [3])
    header = (f"  {'run':<{width}}  accuracy  macro AUC" + "".join(f"  {p:>{max(len(p), 6)}}" for p in pairs)
              + "  rot90 change")
    n_test = next((m["n"] for m in metrics.values() if m), None)
    lines = [f"test-split results ({n_test} images; one seed of a small set: a demonstration, not a science "
             f"figure):" if n_test else "test-split results:", header]
    for name, m in metrics.items():
        if m is None:
            lines.append(f"  {name:<{width}}  not evaluated")
            continue
        cells = "".join(f"  {_num(m.get('auc_pairwise', {}).get(p)):>{max(len(p), 6)}}" for p in pairs)
        rot90 = next((r["rel_change"] for r in (m.get("symmetry") or {}).get("grid", []) if r["name"] == "rot90"),
                     None)
        lines.append(f"  {name:<{width}}  {_num(m.get('accuracy')):>8}  {_num(m.get('auc_macro')):>9}{cells}"
                     f"  {'-' if rot90 is None else f'{rot90:.1e}':>12}")
    lines += ["", _wrap(AUC_EXPLANATION + " rot90 change: relative change of the model's outputs when the test "
                        "images are turned by 90 degrees (0 for an exactly invariant model).", indent="  ")]
    chance = [p for p in pairs if all(m is None or not (m.get("auc_pairwise", {}).get(p, 1.0) > 0.6)
                                      for m in metrics.values())]
    for p in chance:
        a, b = p.split("/", 1)
        note = (f"{p} is near chance for every model: the {b if a == 'no_sub' else a} images carry too little "
                f"signal at this resolution and noise ({physics or 'these settings'}); more epochs will not help. "
                f"With the default physics (subhalo mass slope -1.9) this is expected for no_sub/cdm, see the "
                f"README's 'Science figures'.")
        lines += ["", _wrap(note, indent="  ")]
    return "\n".join(lines)


def _changed_settings(run: Path, tcfg: TrainConfig) -> str:
    """``"epochs 1 -> 6, ..."`` for the training settings of ``run`` that differ from ``tcfg`` ('' if none
    or if the run has no config yet). The data path is not compared: the quickstart checks its data set."""
    if not (run / "config.yaml").is_file():
        return ""
    saved = read_run_config(run)
    keys = saved.differences(tcfg, ignore=RUNTIME_KEYS | {"data"})
    old, new = saved.to_dict(), tcfg.to_dict()
    return ", ".join(f"{k} {_show(old[k])} -> {_show(new[k])}" for k in keys)


def _evaluated_angles(run: Path) -> list[float] | None:
    """The continuous symmetry angles (degrees) of ``run``'s evaluation (None if it has none)."""
    path = run / "eval" / "metrics.json"
    if not path.is_file():
        return None
    symmetry = json.loads(path.read_text(encoding="utf-8")).get("symmetry") or {}
    return [float(r["angle"]) for r in symmetry.get("continuous", [])]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def _num(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) and math.isfinite(value) else "-"


def _wrap(text: str, indent: str = "", width: int = 100) -> str:
    import textwrap

    return textwrap.fill(text, width=width, initial_indent=indent, subsequent_indent=indent)


def _frange(start: float, stop: float, step: float) -> list[float]:
    if step <= 0:
        raise ConfigError(f"angle step must be > 0, got {step}")
    n = int(round((stop - start) / step))
    return [start + i * step for i in range(n + 1) if start + i * step <= stop + 1e-9]
