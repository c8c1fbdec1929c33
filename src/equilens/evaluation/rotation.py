"""Accuracy and AUC of a trained classifier on its test images rotated by arbitrary angles.

:func:`rotation_curve` loads a run's best checkpoint, takes all of its test split (``split.json``),
normalises the images with the run's statistics, masks them to the inscribed disk
(:func:`equilens.evaluation.equivariance.disk_mask`) so that no corner content enters or leaves the field,
rotates them counter-clockwise about the grid centre by each angle
(:func:`equilens.evaluation.equivariance.rotate_images`: exact for multiples of 90 degrees, bilinear
otherwise), masks again, and computes the classification metrics
(:func:`equilens.evaluation.metrics.classification_metrics`) at every angle. Pixels outside the disk are
set to empty sky: the normalised value of zero flux (:func:`sky_fill`), not to 0 in normalised units,
which for standardised images is the training set's mean pixel, a bright frame no image of the data set
has (a model trained without rotations, `steerable_d4` on the legacy recipe, put every such image in one
class). The 0-degree row is the masked, unrotated baseline (it can differ slightly from ``evaluate``'s
unmasked test metrics).

This is what the rotation-robustness study measures: a model trained on images of one fixed orientation
and evaluated at others shows how much it relies on that orientation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from equilens.data.datamodule import LensDataModule
from equilens.data.store import write_json_atomic
from equilens.errors import ConfigError
from equilens.evaluation.equivariance import masked_rotation, sky_fill
from equilens.evaluation.evaluate import check_same_run, load_run_model, predict
from equilens.evaluation.metrics import classification_metrics, softmax
from equilens.training.config import read_run_config
from equilens.training.fit import build_datamodule, checkpoint_path

#: File written into ``<run>/eval/`` by :func:`rotation_curve`.
ROTATION_FILE = "rotation.json"


@torch.no_grad()
def rotation_curve(run_dir: str | os.PathLike[str], angles: Sequence[float], *, checkpoint: str = "best",
                   batch_size: int = 64, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Test-split accuracy, macro AUC and one-vs-one AUC per class pair at every rotation angle.

    Args:
        run_dir: a classification run directory (``equilens train`` layout).
        angles: rotation angles in degrees (counter-clockwise).
        checkpoint: ``best``, ``last`` or a checkpoint path of that run.
        batch_size: images per forward pass.

    Returns:
        ``{"run", "checkpoint", "n", "angles": [{"angle", "accuracy", "auc_macro", "auc_pairwise"}, ...]}``,
        also written to ``<run_dir>/eval/rotation.json``.

    Raises:
        ConfigError: the run is not a classification run, or ``angles`` is empty.
    """
    run_dir = Path(run_dir)
    if not angles:
        raise ConfigError("rotation_curve needs at least one angle")
    cfg = read_run_config(run_dir)
    if cfg.task != "classify":
        raise ConfigError(f"{run_dir} is a {cfg.task} run; the rotation curve measures classifiers only")
    split, stats = LensDataModule.load_saved(run_dir)
    ckpt = checkpoint_path(run_dir, checkpoint)
    class_names = list(split["class_names"])
    model, _meta = load_run_model(cfg, ckpt, len(class_names),
                                  check_meta=lambda m: check_same_run(cfg, m, ckpt, run_dir, split.get("run_id")))
    dm = build_datamodule(cfg, split, stats, log=log)
    positions = dm.positions("test")
    labels = dm.dataset.labels[positions]
    images = torch.from_numpy(dm.normalizer(dm.dataset.get_images(positions)))
    sky = sky_fill(dm.normalizer)
    rows = []
    for angle in angles:
        logits = predict(model, masked_rotation(images, float(angle), sky), batch_size)
        m = classification_metrics(softmax(logits.double().numpy()), labels, class_names)
        rows.append({"angle": float(angle), "accuracy": m["accuracy"], "auc_macro": m["auc_macro"],
                     "auc_pairwise": m["auc_pairwise"]})
    result = {"run": str(run_dir), "checkpoint": str(ckpt), "n": int(positions.size), "class_names": class_names,
              "angles": rows}
    out = run_dir / "eval"
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / ROTATION_FILE, result)
    worst = min(rows, key=lambda r: r["accuracy"] if np.isfinite(r["accuracy"]) else 1.0)
    log(f"{run_dir.name}: accuracy under rotation {min(r['accuracy'] for r in rows):.4f}.."
        f"{max(r['accuracy'] for r in rows):.4f} (lowest at {worst['angle']:.0f} deg), {len(rows)} angles")
    return result


def read_rotation_curve(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The saved result of :func:`rotation_curve` for a run, or None."""
    path = Path(run_dir) / "eval" / ROTATION_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
