"""The training configuration: one typed, validated record, from YAML and/or command-line flags.

A run directory keeps the resolved configuration as ``config.yaml``; ``equilens train --config
run.yaml`` reads the same keys (unknown keys are an error listing the valid ones).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from equilens.data.choices import AUGMENTATIONS, NORMALISATIONS, TASKS, check_choice
from equilens.errors import ConfigError

#: Values of ``accelerator`` (Lightning's names).
ACCELERATORS: tuple[str, ...] = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")

#: Tasks of ``equilens train``: the data module's plus ``posterior`` (neural posterior estimation,
#: :mod:`equilens.training.posterior`).
TRAIN_TASKS: tuple[str, ...] = (*TASKS, "posterior")
#: Keys that may differ when a run is resumed (they change where and how fast it runs, not its result).
RUNTIME_KEYS: frozenset[str] = frozenset({"num_workers", "devices", "num_nodes", "strategy", "accelerator"})


@dataclass
class TrainConfig:
    """Everything that defines a training run.

    Attributes:
        data: data set directory.
        model: registry model name (``equilens models`` lists them).
        model_kwargs: architecture options for ``create_model``.
        task: ``classify``, ``regress`` or ``posterior``.
        target: recorded parameter to regress (``regress``), e.g. ``log10_m_a``; for ``posterior`` one or
            more, comma-separated.
        predict_variance: regression also predicts a variance (Gaussian NLL loss).
        epochs: training epochs; batch_size: images per batch and process.
        lr: AdamW learning rate; weight_decay: AdamW weight decay. Cosine schedule over ``epochs``.
        seed: seed of initialisation, data order and augmentation.
        split_seed: seed of the train/val/test split (fixed across seeds so seeds share one test set).
        val_fraction, test_fraction: split fractions, per class.
        normalisation: ``none | standardise | minmax | asinh`` (statistics from the training split).
        augmentation: ``none | rot90 | rotate | flip | rotate+flip`` (training batches only).
        limit_per_class: at most this many training images per class.
        skip_nonfinite: leave images with NaN or inf pixels out of the split (default: refuse the data set).
        num_workers: data-loader worker processes.
        early_stopping_patience: stop after this many epochs without a lower validation loss (None: off).
        bn_batches: before every validation, batch-norm statistics are recomputed for the current weights
            over this many training batches (a fixed subset; :mod:`equilens.models.batchnorm`); 0 keeps
            the moving averages of training.
        accelerator, devices, num_nodes, strategy: passed to the Lightning ``Trainer``.
        deterministic: ``Trainer(deterministic=...)``; with it a resumed run repeats an uninterrupted one.
        prior: ``posterior`` only: prior range per target ``{name: [low, high]}`` (default: documented or
            recorded range, :func:`equilens.training.posterior.resolve_prior`).
        flow_kwargs: ``posterior`` only: options of the flow head
            (:data:`equilens.training.posterior.FLOW_DEFAULTS`).
    """

    data: str = ""
    model: str = ""
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    task: str = "classify"
    target: str | None = None
    predict_variance: bool = False
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    split_seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    normalisation: str = "standardise"
    augmentation: str = "none"
    limit_per_class: int | None = None
    skip_nonfinite: bool = False
    num_workers: int = 2
    early_stopping_patience: int | None = None
    bn_batches: int = 32
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    deterministic: bool = True
    # --- task posterior (equilens.training.posterior) ---
    prior: dict[str, list[float]] = field(default_factory=dict)
    flow_kwargs: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> TrainConfig:
        """Check every value; raise :class:`ConfigError` naming the valid choices."""
        if not self.data:
            raise ConfigError("no data set given: pass --data DIR (or `data:` in the YAML config)")
        if not self.model:
            raise ConfigError("no model given: pass --model NAME (`equilens models` lists them)")
        check_choice("task", self.task, TRAIN_TASKS)
        check_choice("normalisation", self.normalisation, NORMALISATIONS)
        check_choice("augmentation", self.augmentation, AUGMENTATIONS)
        if self.task == "regress" and not self.target:
            raise ConfigError("task 'regress' needs --target (a recorded parameter such as log10_m_a)")
        if self.task == "classify" and self.target:
            raise ConfigError("--target only applies to --task regress or posterior")
        if self.task == "posterior":
            from equilens.training.posterior import validate_posterior_config

            validate_posterior_config(self)
        elif self.prior or self.flow_kwargs:
            raise ConfigError("--prior and --flow-arg only apply to --task posterior")
        if self.predict_variance and self.task != "regress":
            raise ConfigError("--predict-variance only applies to --task regress")
        for name in ("epochs", "batch_size", "num_nodes"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.limit_per_class is not None and self.limit_per_class < 1:
            raise ConfigError(f"limit_per_class must be >= 1, got {self.limit_per_class}")
        if int(self.bn_batches) < 0:
            raise ConfigError(f"bn_batches must be >= 0 (0: keep the moving averages), got {self.bn_batches}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ConfigError(f"early_stopping_patience must be >= 1, got {self.early_stopping_patience}")
        check_choice("accelerator", self.accelerator, ACCELERATORS)
        _check_devices(self.devices)
        if not isinstance(self.model_kwargs, dict):
            raise ConfigError(f"model_kwargs must be a mapping, got {self.model_kwargs!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys raise :class:`ConfigError` listing the valid ones."""
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ConfigError(f"unknown training config key(s) {', '.join(unknown)}; valid keys: {', '.join(valid)}")
        return cls(**dict(values))

    def differences(self, other: TrainConfig, ignore: frozenset[str] = RUNTIME_KEYS) -> list[str]:
        """Keys whose values differ from ``other`` (except ``ignore``)."""
        a, b = self.to_dict(), other.to_dict()
        return [k for k in a if k not in ignore and a[k] != b[k]]


def _check_devices(devices: Any) -> None:
    """``devices`` must be a count >= 1, ``auto``, or a comma-separated list of device ids (``0,1``)."""
    valid = "a count >= 1, 'auto', or a comma-separated list of device ids such as '0,1'"
    if isinstance(devices, bool):
        raise ConfigError(f"devices must be {valid}, got {devices!r}")
    if isinstance(devices, int):
        if devices < 1:
            raise ConfigError(f"devices must be {valid}, got {devices}")
        return
    if isinstance(devices, str):
        text = devices.strip()
        if text == "auto" or (text and all(p.strip().isdigit() for p in text.rstrip(",").split(","))):
            return
    raise ConfigError(f"devices must be {valid}, got {devices!r}")


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML training config into a plain mapping (validated later)."""
    import yaml  # here, not at the top: TrainConfig is imported to build the command line's help

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of training config keys, got {type(values).__name__}")
    return values


def save_config(cfg: TrainConfig, path: str | os.PathLike[str]) -> None:
    """Write the resolved config as YAML (atomically)."""
    import yaml

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)


def read_run_config(run_dir: str | os.PathLike[str]) -> TrainConfig:
    """The resolved config of a run directory."""
    run_dir = Path(run_dir)
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no config.yaml: not an equilens run directory (made by `equilens train`)")
    return TrainConfig.from_mapping(load_config_file(path))
