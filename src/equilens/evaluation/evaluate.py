"""``evaluate()``: metrics, plots and the symmetry of a trained model on held-out data.

By default a run is evaluated on its own test split (``split.json``: never used for training, for
choosing the checkpoint or for early stopping) with the best-on-validation checkpoint. With ``data``
another data set with the same classes is evaluated, all of it (it was never seen in training), with
the run's normalisation statistics.

Outputs (``<run>/eval/`` or ``<run>/eval-<data name>/``): ``metrics.json``, ``predictions.npz`` and the
figures: ``roc.png`` and ``confusion.png`` (classification), ``pred_vs_true.png`` and
``calibration.png`` (regression; calibration only with a predicted variance), ``symmetry.png``.

Symmetry of the trained model (measured here, on normalised test images, eval mode):

* grid transforms (exact, no interpolation): rot90, rot180, rot270, horizontal and vertical flip, on
  the whole evaluated set: the test metric on the transformed images and the relative output change
  ``||f(g X) - f(X)|| / ||f(X) - mean f(X)||`` over the set (Frobenius norms of the (N, K) outputs:
  logits, or standardised regression mean and raw variance; normalised by the spread of the outputs
  over images, :func:`equilens.evaluation.equivariance.relative_change`, so 1 means the transform
  changes the output as much as swapping the image for another one);
* continuous angles (bilinear rotation about the image centre,
  :func:`equilens.evaluation.equivariance.rotate_images`) on a class-stratified subset of at most
  ``symmetry_images`` images, all masked to the inscribed disk (pixels outside set to empty sky, the
  normalised value of zero flux; 0 in normalised units, the training set's mean pixel, is a bright frame no
  image has, and a steerable net trained on full frames put every such image in one class) before and
  after rotating, so that no corner content enters or leaves the field: the same two
  numbers against the masked unrotated images (the 0-degree row is the masked baseline), and the
  interpolation floor, the output change caused by rotating forth and back by the same angle (what
  interpolation alone costs), and the image floor (relative change of the images themselves).

Test-time augmentation (``tta``) averages the outputs over the 8 transforms of the square (rot90 x flip):
probabilities for classification; for regression the mean of the means, with variance = mean variance +
variance of the means.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from equilens.cpu import flush_denormals
from equilens.data.datamodule import LensDataModule, data_fingerprint
from equilens.data.store import LensDataset, describe_nonfinite, write_json_atomic
from equilens.data.transforms import hflip, rot90
from equilens.errors import ConfigError, DataError, ModelError
from equilens.evaluation import plots
from equilens.evaluation.equivariance import masked_rotation, relative_change, sky_fill
from equilens.evaluation.metrics import classification_metrics, regression_metrics, softmax
from equilens.models import get_entry, load_model
from equilens.models.base import LensModel
from equilens.models.export import CheckMeta
from equilens.models.symmetry import GRID_IDENTITY, GridTransform
from equilens.models.symmetry import GRID_TRANSFORMS as SYMMETRY_GRID
from equilens.training.config import RUNTIME_KEYS, TrainConfig, read_run_config
from equilens.training.fit import build_datamodule, checkpoint_path
from equilens.training.module import num_outputs_for, split_regression_output

#: Continuous rotation angles (degrees) of the symmetry measurement.
DEFAULT_ANGLES: tuple[float, ...] = tuple(float(a) for a in range(0, 361, 30))
#: Grid transforms (exact on the pixel grid) reported in metrics.json, under these names, with their angles
#: (NaN for the flips), taken from the one table of :data:`equilens.models.symmetry.GRID_TRANSFORMS`
#: (``flip_h``: left-right, ``flip_v``: up-down).
GRID_TRANSFORMS: dict[str, GridTransform] = {
    "identity": GRID_IDENTITY,
    **{name: SYMMETRY_GRID[name] for name in ("rot90", "rot180", "rot270")},
    "flip_h": SYMMETRY_GRID["flip_lr"],
    "flip_v": SYMMETRY_GRID["flip_ud"],
}


def load_run_model(cfg: TrainConfig, ckpt: str | os.PathLike[str], num_classes: int,
                   check_meta: CheckMeta | None = None) -> tuple[LensModel, dict[str, Any]]:
    """The model of a training run with the weights of one of its checkpoints, in eval mode, and the
    checkpoint's run description.

    The run's config decides the model: its name, its options (``cfg.model_kwargs``, over any the checkpoint
    records) and its number of outputs (task, ``num_classes``, ``predict_variance``); reading and loading are
    :func:`equilens.models.load_model`'s (``torch.load(weights_only=True)``, read once).

    Args:
        check_meta: called with the checkpoint's run description after it is known to be an equilens
            training checkpoint and before anything else is checked (``evaluate`` refuses another run's
            checkpoint there, :func:`check_same_run`).

    Returns:
        ``(model, meta)``: ``meta`` is the checkpoint's ``"equilens"`` run description with Lightning's
        ``"epoch"`` (0-based epoch during which it was saved) and ``"global_step"``
        (:func:`equilens.models.read_checkpoint`).

    Raises:
        ModelError: the checkpoint cannot be read, is not an equilens training checkpoint, ``check_meta``
            refuses it, it holds another model than the config's, or its weights do not fit the model.
    """
    run_meta: dict[str, Any] = {}

    def check(meta: dict[str, Any]) -> None:
        if meta.get("model") is None:  # a plain state dict, or a Lightning checkpoint equilens did not write
            raise ModelError(f"{ckpt} is not an equilens training checkpoint (no 'equilens' run description); "
                             f"evaluate takes the checkpoints a run wrote (<run>/checkpoints/*.ckpt)")
        if check_meta is not None:
            check_meta(meta)
        if meta["model"] != cfg.model:
            raise ModelError(f"checkpoint {ckpt} holds a {meta['model']!r} model but the run's config says "
                             f"{cfg.model!r}; evaluate the run that made this checkpoint, or pass --checkpoint "
                             f"with a checkpoint of {cfg.model!r}")
        run_meta.update(meta)

    n_out = num_outputs_for(cfg.task, num_classes, cfg.predict_variance)
    hint = f"the run's config asks for {n_out} outputs: task {cfg.task}, predict_variance {cfg.predict_variance}"
    model = load_model(cfg.model, ckpt, in_channels=1, num_outputs=n_out, check_meta=check, hint=hint,
                       **cfg.model_kwargs)
    return model, run_meta


def check_same_run(cfg: TrainConfig, meta: dict[str, Any], ckpt: Path, run_dir: Path,
                   run_id: str | None = None) -> None:
    """Refuse a checkpoint made by another run than ``run_dir``.

    Metrics are written into the run's folder and shown under its name by ``report``; a checkpoint of
    another run, even of the same architecture, would put another model's numbers there. Runs record a
    random ``run_id`` in ``split.json`` and in every checkpoint; where either lacks it (runs made before
    it existed) the checkpoint's recorded training config must equal the run's (runtime keys aside).
    """
    owner = ckpt.resolve().parent.parent
    hint = (f"evaluate the run that made it: equilens evaluate {owner} --checkpoint {ckpt}"
            if (owner / "config.yaml").is_file() else "evaluate it with the run that made it")
    if run_id and meta.get("run_id"):
        if meta["run_id"] != run_id:
            raise ModelError(f"checkpoint {ckpt} was made by another run, not {run_dir} (run id {meta['run_id']} "
                             f"vs {run_id}); its metrics would be written to {run_dir} and reported under that "
                             f"run's name. {hint}")
        return
    saved = meta.get("config")
    if not isinstance(saved, dict):
        raise ModelError(f"checkpoint {ckpt} does not record the training config of the run that made it; "
                         f"cannot tell whether it belongs to {run_dir}")
    mine = cfg.to_dict()
    keys = [k for k in mine if k not in RUNTIME_KEYS and k in saved and saved[k] != mine[k]]
    keys += [k for k in saved if k not in mine and k not in RUNTIME_KEYS]
    if keys:
        details = ", ".join(f"{k} {saved.get(k)!r} vs {mine.get(k)!r}" for k in keys[:6])
        raise ModelError(f"checkpoint {ckpt} was made by another run, not {run_dir} (its training config "
                         f"differs in {details}); its metrics would be written to {run_dir} and reported under "
                         f"that run's name. {hint}")

@torch.no_grad()
def predict(model: LensModel, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Model outputs (N, num_outputs) for normalised images (N, 1, H, W), in batches, eval mode."""
    model.eval()
    outs = [model(images[i:i + batch_size]) for i in range(0, images.shape[0], batch_size)]
    return torch.cat(outs) if outs else torch.zeros(0, model.num_outputs)


def _stratified_subset(labels: np.ndarray, n_max: int) -> np.ndarray:
    """Indices (into ``labels``) of at most ``n_max`` items, the same share of every class, in order."""
    if labels.size <= n_max:
        return np.arange(labels.size)
    classes = np.unique(labels)
    per = max(1, n_max // classes.size)
    return np.sort(np.concatenate([np.nonzero(labels == c)[0][:per] for c in classes]))


class _Task:
    """Turns raw outputs into metrics for one task."""

    def __init__(self, cfg: TrainConfig, class_names: Sequence[str], target_stats: dict[str, Any] | None) -> None:
        self.cfg, self.class_names = cfg, list(class_names)
        self.mean = float(target_stats["mean"]) if target_stats else 0.0
        self.std = float(target_stats["std"]) if target_stats else 1.0

    def decode(self, out: torch.Tensor) -> dict[str, np.ndarray]:
        if self.cfg.task == "classify":
            return {"probs": softmax(out.double().numpy())}
        mean, var = split_regression_output(out, self.cfg.predict_variance)
        res = {"pred": mean.double().numpy() * self.std + self.mean}
        if var is not None:
            res["sigma"] = np.sqrt(var.double().numpy()) * self.std
        return res

    def metrics(self, out: torch.Tensor, truth: np.ndarray) -> dict[str, Any]:
        d = self.decode(out)
        if self.cfg.task == "classify":
            return classification_metrics(d["probs"], truth, self.class_names)
        return regression_metrics(d["pred"], truth, d.get("sigma"))

    @property
    def headline(self) -> str:
        return "accuracy" if self.cfg.task == "classify" else "mae"


def _tta_outputs(model: LensModel, images: torch.Tensor, task: _Task, batch_size: int) -> dict[str, np.ndarray]:
    decoded = []
    for flip in (False, True):
        for k in range(4):
            x = rot90(hflip(images) if flip else images, k)
            decoded.append(task.decode(predict(model, x, batch_size)))
    if task.cfg.task == "classify":
        return {"probs": np.mean([d["probs"] for d in decoded], axis=0)}
    preds = np.stack([d["pred"] for d in decoded])
    res = {"pred": preds.mean(axis=0)}
    if "sigma" in decoded[0]:
        var = np.mean([d["sigma"] ** 2 for d in decoded], axis=0) + preds.var(axis=0)
        res["sigma"] = np.sqrt(var)
    return res


def symmetry_table(model: LensModel, images: torch.Tensor, truth: np.ndarray, labels: np.ndarray, task: _Task,
                   angles: Sequence[float] = DEFAULT_ANGLES, max_images: int = 256,
                   batch_size: int = 64, sky: float = 0.0) -> dict[str, Any]:
    """Test metric and relative output change under grid transforms (all images) and continuous angles
    (a stratified subset of at most ``max_images``, disk-masked with ``sky`` outside the disk: the
    normalised value of empty sky, :func:`~equilens.evaluation.equivariance.sky_fill`), with the
    interpolation floor (see module docstring)."""
    base = predict(model, images, batch_size)
    grid = []
    for name, transform in GRID_TRANSFORMS.items():
        out = base if name == "identity" else predict(model, transform(images), batch_size)
        m = task.metrics(out, truth)
        grid.append({"name": name, "angle": transform.angle, "rel_change": relative_change(out, base),
                     "metric": m[task.headline], **({"auc_macro": m["auc_macro"]} if "auc_macro" in m else {})})
    sub = _stratified_subset(labels, max_images)
    x, t = masked_rotation(images[sub], 0.0, sky), truth[sub]
    base_sub = predict(model, x, batch_size)
    cont = []
    for angle in angles:
        rotated = masked_rotation(x, float(angle), sky)
        out = predict(model, rotated, batch_size)
        back_images = masked_rotation(rotated, -float(angle), sky)
        back = predict(model, back_images, batch_size)
        cont.append({"angle": float(angle), "rel_change": relative_change(out, base_sub),
                     "floor": relative_change(back, base_sub),
                     "image_floor": float((back_images - x).norm() / (x - sky).norm().clamp_min(1e-12)),
                     "metric": task.metrics(out, t)[task.headline]})
    return {"metric": task.headline, "grid": grid, "continuous": cont, "n_grid": int(images.shape[0]),
            "n_continuous": int(sub.size)}


def evaluation_images(cfg: TrainConfig, run_dir: Path, split: dict[str, Any], stats: dict[str, Any],
                      data: str | os.PathLike[str] | None, out: str | os.PathLike[str] | None, *,
                      targets: Sequence[str], class_names: Sequence[str] | None,
                      log: Callable[[str], None]) -> tuple[LensDataModule, np.ndarray, str, Path]:
    """The images a run is evaluated on, for every task: (data module, data-set positions, subset name,
    output directory).

    Without ``data``: the run's test split, written to ``RUN/eval`` (or ``out``). With ``data``: every image
    of that data set (never seen in training) whose ``targets`` are all finite, less the images with NaN or
    inf pixels when the run was trained with ``skip_nonfinite``, written to ``RUN/eval-<data name>``.
    ``class_names``, when given, must be the data set's.
    """
    if data is None:
        dm = build_datamodule(cfg, split, stats, log=log)
        return dm, dm.positions("test"), "test split", Path(out) if out else run_dir / "eval"
    other = LensDataset(data)
    if class_names is not None and other.class_names != list(class_names):
        raise DataError(f"{data} has classes {other.class_names}; the run was trained on {list(class_names)}")
    other.verify()
    positions = np.arange(len(other))
    if targets:
        cols = other.parameters(list(targets))
        values = np.stack([cols[t] for t in targets], axis=1)
        positions = np.nonzero(np.isfinite(values).all(axis=1))[0]
        if positions.size == 0:
            raise DataError(f"no image of {data} has a finite {', '.join(repr(t) for t in targets)}")
    if cfg.skip_nonfinite:  # the run left such images out of its split; leave them out here too
        bad = other.nonfinite_images(log=log)
        if bad:
            log(f"leaving out {len(bad)} image(s) with NaN or inf pixels: {describe_nonfinite(bad)}")
            positions = np.setdiff1d(positions, np.fromiter(bad, dtype=np.int64))
    whole = {"data": str(Path(data).resolve()), "data_fingerprint": data_fingerprint(other),
             "class_names": other.class_names, "train": [], "val": [], "test": positions.tolist()}
    dm = build_datamodule(cfg, whole, stats, log=log, data_dir=str(data))
    return dm, positions, "whole data set", Path(out) if out else run_dir / f"eval-{Path(data).resolve().name}"


def evaluate(
    run_dir: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str] | None = None,
    checkpoint: str = "best",
    tta: bool = False,
    symmetry: bool = True,
    angles: Sequence[float] = DEFAULT_ANGLES,
    symmetry_images: int = 256,
    batch_size: int = 64,
    out: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = print,
    posterior_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate a run (see module docstring); writes ``metrics.json`` and figures, returns the metrics.

    A posterior run (``--task posterior``) is evaluated by :func:`equilens.evaluation.posterior.evaluate_posterior`
    (``posterior_options``: its keyword arguments, e.g. ``n_samples``, ``compare``).
    Raises:
        ConfigError: ``batch_size`` or ``symmetry_images`` below 1.
        ModelError: the checkpoint was made by another run (its training config differs), or does not fit.
    """
    for name, value in (("batch_size", batch_size), ("symmetry_images", symmetry_images)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    flush_denormals()
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    if cfg.task == "posterior":  # neural posterior estimation: samples, coverage, SBC (equilens.evaluation.posterior)
        from equilens.evaluation.posterior import evaluate_posterior

        return evaluate_posterior(run_dir, data=data, checkpoint=checkpoint, batch_size=batch_size, out=out, log=log,
                                  **dict(posterior_options or {}))
    split, stats = LensDataModule.load_saved(run_dir)
    ckpt = checkpoint_path(run_dir, checkpoint)
    class_names = list(split["class_names"])
    model, meta = load_run_model(cfg, ckpt, len(class_names),
                                 check_meta=lambda m: check_same_run(cfg, m, ckpt, run_dir, run_id=split.get("run_id")))

    targets = [str(cfg.target)] if cfg.task == "regress" else []
    dm, positions, subset, out_dir = evaluation_images(cfg, run_dir, split, stats, data, out, targets=targets,
                                                       class_names=class_names, log=log)

    ds = dm.subset(positions)
    if len(ds) == 0:
        raise DataError("nothing to evaluate: the selected split is empty")
    images = torch.from_numpy(dm.normalizer(dm.dataset.get_images(positions)))
    truth = dm.targets_raw(positions)
    labels = dm.dataset.labels[positions]
    task = _Task(cfg, class_names, stats.get("target"))
    out_dir.mkdir(parents=True, exist_ok=True)

    outputs = predict(model, images, batch_size)
    bad_rows = np.nonzero(~torch.isfinite(outputs).all(dim=1).numpy())[0]
    if bad_rows.size:
        raise ModelError(f"the model gives NaN or inf outputs for {bad_rows.size} of {len(positions)} images "
                         f"(data-set positions {positions[bad_rows[:5]].tolist()}"
                         f"{' ...' if bad_rows.size > 5 else ''}); the checkpoint {ckpt} holds diverged weights "
                         f"or the images are out of range. No metrics written")
    result: dict[str, Any] = {
        "run": str(run_dir), "checkpoint": str(ckpt), "data": str(dm.data_dir), "subset": subset,
        "model": cfg.model, "symmetry_group": get_entry(cfg.model).symmetry, "task": cfg.task,
        "target": cfg.target, "seed": cfg.seed, "n": int(len(positions)),
        "checkpoint_epoch": meta.get("epoch"),
    }
    result.update(task.metrics(outputs, truth))
    decoded = task.decode(outputs)
    np.savez(out_dir / "predictions.npz", positions=positions, truth=truth, labels=labels, **decoded)
    figures: list[str] = []
    title = f"{cfg.model} seed {cfg.seed}"
    if cfg.task == "classify":
        figures.append(plots.plot_roc(decoded["probs"], truth, class_names, result["auc_per_class"],
                                      out_dir / "roc.png", title=f"ROC, {title}").name)
        figures.append(plots.plot_confusion(np.asarray(result["confusion_matrix"]), class_names,
                                            out_dir / "confusion.png", title=f"confusion, {title}").name)
    else:
        figures.append(plots.plot_pred_vs_true(decoded["pred"], truth, decoded.get("sigma"), str(cfg.target),
                                               out_dir / "pred_vs_true.png", title=title).name)
        if "sigma" in decoded:
            figures.append(plots.plot_calibration(decoded["pred"], truth, decoded["sigma"],
                                                  out_dir / "calibration.png", title=f"calibration, {title}").name)
    if tta:
        d = _tta_outputs(model, images, task, batch_size)
        result["tta"] = (classification_metrics(d["probs"], truth, class_names) if cfg.task == "classify"
                         else regression_metrics(d["pred"], truth, d.get("sigma")))
    if symmetry:
        table = symmetry_table(model, images, truth, labels, task, angles=angles, max_images=symmetry_images,
                               batch_size=batch_size, sky=sky_fill(dm.normalizer))
        result["symmetry"] = table
        figures.append(plots.plot_symmetry(table, out_dir / "symmetry.png", task.headline, title=title).name)
    result["figures"] = figures
    write_json_atomic(out_dir / "metrics.json", result)
    log(format_metrics(result))
    log(f"metrics and figures written to {out_dir}")
    return result


def format_metrics(m: dict[str, Any]) -> str:
    """A short human-readable summary of :func:`evaluate`'s result."""
    lines = [f"{m['model']} ({m['task']}{', ' + str(m['target']) if m.get('target') else ''}) on {m['n']} images "
             f"({m['subset']})"]
    if m["task"] == "classify":
        per = ", ".join(f"{k} {v:.4f}" for k, v in m["auc_per_class"].items())
        lines.append(f"  accuracy {m['accuracy']:.4f}   macro AUC {m['auc_macro']:.4f}   ({per})")
        pairs = ", ".join(f"{k} {v:.4f}" for k, v in m.get("auc_pairwise", {}).items())
        if pairs:
            lines.append(f"  one-vs-one AUC per pair (0.5 = chance): {pairs}")
    else:
        lines.append(f"  MAE {m['mae']:.4f}   RMSE {m['rmse']:.4f}   R^2 {m['r2']:.4f}   bias {m['bias']:+.4f}")
        if "calibration" in m:
            c = m["calibration"]
            lines.append(f"  calibration: within 1 sigma {c['within_1sigma']:.3f} (0.683 expected), within 2 sigma "
                         f"{c['within_2sigma']:.3f} (0.954), z std {c['z_std']:.3f}")
    if "tta" in m:
        t = m["tta"]
        lines.append("  with TTA: " + (f"accuracy {t['accuracy']:.4f}, macro AUC {t['auc_macro']:.4f}"
                                       if m["task"] == "classify" else f"MAE {t['mae']:.4f}"))
    if "symmetry" in m:
        s = m["symmetry"]
        lines.append(f"  symmetry ({s['metric']}; relative output change):")
        for row in s["grid"]:
            lines.append(f"    {row['name']:>9}: {s['metric']} {row['metric']:.4f}, change {row['rel_change']:.2e}")
        worst = max(s["continuous"], key=lambda r: r["rel_change"])
        lines.append(f"    continuous angles: largest change {worst['rel_change']:.2e} at {worst['angle']:.0f} deg "
                     f"(interpolation floor there {worst['floor']:.2e})")
    return "\n".join(lines)


def read_metrics(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``metrics.json``."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
