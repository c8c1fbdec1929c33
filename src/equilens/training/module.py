"""The LightningModule: one class for classification and regression, any registered model.

Losses:

* ``classify``: cross-entropy of the logits (B, K) against int64 labels (B,).
* ``regress``: mean squared error of the prediction (B,) against the standardised target (B,); with
  ``predict_variance`` the model has two outputs, mean and a raw variance mapped through softplus (plus
  :data:`MIN_VARIANCE`), trained with the Gaussian negative log-likelihood.

Every loss checks its input shapes (:func:`check_shapes`): a (B, 1) prediction against a (B,) target is an
error here, not a silent (B, B) broadcast. A NaN or inf training loss raises :class:`TrainingDiverged`
before the optimiser step, so the checkpoints written so far keep the last good weights.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from equilens.errors import EquilensError, ModelError
from equilens.models import create_model, state_dict_for_checkpoint

#: Floor added to the softplus variance (standardised target units squared).
MIN_VARIANCE = 1e-6


class TrainingDiverged(EquilensError):
    """The training loss became NaN or inf."""


def check_shapes(pred: torch.Tensor, target: torch.Tensor, what: str) -> None:
    """Raise :class:`ModelError` unless ``pred`` and ``target`` have identical shapes."""
    if pred.shape != target.shape:
        raise ModelError(f"{what}: prediction shape {tuple(pred.shape)} does not match target shape "
                         f"{tuple(target.shape)}; refusing to broadcast")


def num_outputs_for(task: str, num_classes: int, predict_variance: bool) -> int:
    """Model output width for a task."""
    if task == "classify":
        return num_classes
    return 2 if predict_variance else 1


def split_regression_output(out: torch.Tensor, predict_variance: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, 1 or 2) model output -> mean (B,) and variance (B,) or None, in standardised units."""
    expected = 2 if predict_variance else 1
    if out.ndim != 2 or out.shape[1] != expected:
        raise ModelError(f"regression output must be (B, {expected}), got {tuple(out.shape)}")
    mean = out[:, 0]
    var = F.softplus(out[:, 1]) + MIN_VARIANCE if predict_variance else None
    return mean, var


class LensModule(L.LightningModule):
    """Training logic around a registry model.

    Args:
        model_name: a name from :func:`equilens.models.list_models`.
        model_kwargs: architecture options passed to ``create_model``.
        task: ``classify`` or ``regress``.
        num_classes: classes of the data set (classification output width).
        predict_variance: regression with a predicted variance (Gaussian NLL).
        lr: AdamW learning rate; ``weight_decay``: AdamW weight decay.
        max_epochs: length of the cosine learning-rate schedule.
        seed: the run's seed (used to reseed torch each epoch so a resumed run continues identically).
        meta: plain-type run description stored in every checkpoint under ``"equilens"``.
    """

    def __init__(self, model_name: str, model_kwargs: dict[str, Any] | None, task: str, num_classes: int,
                 predict_variance: bool = False, lr: float = 1e-3, weight_decay: float = 1e-4,
                 max_epochs: int = 10, seed: int = 0, meta: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.task = task
        self.predict_variance = bool(predict_variance)
        self.lr, self.weight_decay, self.max_epochs, self.seed = lr, weight_decay, max_epochs, seed
        self.model = create_model(model_name, in_channels=1,
                                  num_outputs=num_outputs_for(task, num_classes, self.predict_variance),
                                  **(model_kwargs or {}))
        # checkpoints keep the learnt state only, not caches some layers derive from it in eval mode, so
        # that they load into a freshly built model
        self._state_keys = {f"model.{k}" for k in state_dict_for_checkpoint(self.model)}
        self.meta = dict(meta or {})
        self.meta.update(model=model_name, model_kwargs=dict(model_kwargs or {}), task=task,
                         num_classes=num_classes, predict_variance=self.predict_variance)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The task loss of model output ``out`` against ``target`` (see module docstring)."""
        if self.task == "classify":
            if out.ndim != 2 or target.ndim != 1 or out.shape[0] != target.shape[0]:
                raise ModelError(f"classification needs logits (B, K) and labels (B,), got {tuple(out.shape)} "
                                 f"and {tuple(target.shape)}")
            return F.cross_entropy(out, target)
        mean, var = split_regression_output(out, self.predict_variance)
        check_shapes(mean, target, "regression loss")
        if var is None:
            return F.mse_loss(mean, target)
        check_shapes(var, target, "regression variance")
        return F.gaussian_nll_loss(mean, target, var, full=True)

    def on_train_epoch_start(self) -> None:
        # Any use of the global RNG inside the model (dropout) restarts from a seed fixed by the epoch,
        # so an interrupted and resumed run continues exactly as an uninterrupted one.
        torch.manual_seed(self.seed * 100_003 + self.current_epoch * 7 + self.global_rank)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, target = batch
        loss = self.loss(self(images), target)
        finite_here = bool(torch.isfinite(loss))
        trainer = self._trainer
        world = trainer.world_size if trainer is not None else 1
        diverged = not finite_here
        if trainer is not None and world > 1:
            # Decided together: a rank that raised alone would break the others' gradient all-reduce with a
            # bare connection error (or leave them waiting). One tiny all-reduce per step is the price.
            diverged = trainer.strategy.reduce_boolean_decision(diverged, all=False)
        if diverged:
            last = _last_checkpoint(trainer)
            if finite_here:  # only under DDP: another rank saw the NaN
                what = f"training loss became NaN or inf on another of the {world} processes"
            else:
                what = f"training loss became {loss.item()}" + (f" on process {self.global_rank} of {world}"
                                                                 if world > 1 else "")
            raise TrainingDiverged(
                f"{what} at epoch {self.current_epoch}, batch {batch_idx} "
                f"(global step {self.global_step}); stopped before the optimiser step. The last good "
                f"checkpoint is {last or 'not written yet (no epoch finished)'}. Check the images for NaN/inf "
                f"and try a lower learning rate")
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True,
                 batch_size=images.shape[0])
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        """Log the validation loss and metric of a batch; returns the detached model output (B, num_outputs)
        for callbacks (``on_validation_batch_end``), e.g. one computing the epoch's validation AUC."""
        images, target = batch
        out = self(images)
        loss = self.loss(out, target)
        n = images.shape[0]
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=n)
        if self.task == "classify":
            acc = (out.argmax(dim=1) == target).float().mean()
            self.log("val_acc", acc, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=n)
        else:
            mean, _ = split_regression_output(out, self.predict_variance)
            std = float(self.meta.get("target_std", 1.0))
            self.log("val_mae", (mean - target).abs().mean() * std, on_epoch=True, prog_bar=True,
                     sync_dist=True, batch_size=n)
        return out.detach()

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(self.max_epochs, 1))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Only plain types (str, int, float, bool, None, lists, dicts): loadable with weights_only=True.
        checkpoint["equilens"] = _plain(self.meta)
        state = checkpoint.get("state_dict", {})
        checkpoint["state_dict"] = {k: v for k, v in state.items()
                                    if not k.startswith("model.") or k in self._state_keys}


def _last_checkpoint(trainer: Any) -> str:
    """Path of the newest ``last.ckpt`` written by any checkpoint callback ('' if none yet)."""
    for cb in getattr(trainer, "checkpoint_callbacks", None) or []:
        path = getattr(cb, "last_model_path", "") or ""
        if not path and getattr(cb, "monitor", "x") is None:  # the every-epoch checkpoint of equilens.training.fit
            path = getattr(cb, "best_model_path", "") or ""
        if path:
            return str(path)
    return ""


def _plain(obj: Any) -> Any:
    """Recursively convert to JSON-like plain types (for weights_only-safe checkpoints)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    return str(obj)
