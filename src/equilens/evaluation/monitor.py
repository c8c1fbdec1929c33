"""Metrics of the validation split during training, computed with :mod:`equilens.evaluation.metrics`.

:class:`ValidationAUC` is a Lightning callback for classification runs: it collects the model outputs of
every validation batch (what :meth:`equilens.training.module.LensModule.validation_step` returns), and at
the end of the validation epoch logs ``val_auc`` (the macro one-vs-rest ROC AUC of the softmax
probabilities, :func:`~equilens.evaluation.metrics.classification_metrics`) into the run's loggers, so it
appears once per epoch in ``logs/csv*/metrics.csv`` beside ``val_loss`` and ``val_acc``. Pass it to
:func:`equilens.training.fit.train` (``callbacks=[ValidationAUC()]``). It lives here, above training,
because the metric code does (training never imports evaluation).

Under several processes (DDP) each process sees its share of the validation images; the value logged is
the mean of the processes' AUCs (``sync_dist``), not the AUC of the pooled outputs.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from equilens.evaluation.metrics import classification_metrics, softmax

#: Name of the logged metric.
VAL_AUC = "val_auc"


class ValidationAUC(Callback):
    """Log the validation macro AUC of every epoch as ``val_auc`` (classification only; a no-op otherwise)."""

    def __init__(self) -> None:
        self._logits: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._logits, self._labels = [], []

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if getattr(pl_module, "task", None) != "classify" or not isinstance(outputs, torch.Tensor):
            return
        self._logits.append(outputs.detach().float().cpu().numpy())
        self._labels.append(batch[1].detach().cpu().numpy())

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._logits or trainer.sanity_checking:
            return
        logits, labels = np.concatenate(self._logits), np.concatenate(self._labels)
        self._logits, self._labels = [], []
        names = [str(k) for k in range(logits.shape[1])]
        auc = classification_metrics(softmax(logits), labels, names)["auc_macro"]
        if math.isfinite(auc):
            pl_module.log(VAL_AUC, float(auc), on_epoch=True, prog_bar=True, sync_dist=True)
