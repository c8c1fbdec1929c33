"""Names of the training choices (tasks, normalisations, augmentations), without importing torch.

The command line and :class:`equilens.training.config.TrainConfig` validate against these before any
heavy module is imported; :mod:`equilens.data.transforms` and :mod:`equilens.data.datamodule` implement
them and re-export the same tuples.
"""

from __future__ import annotations

from equilens.errors import ConfigError

#: What a run learns: classes (cross-entropy) or one recorded parameter (regression).
TASKS: tuple[str, ...] = ("classify", "regress")
#: Pixel normalisations (statistics from the training split); see :mod:`equilens.data.transforms`.
NORMALISATIONS: tuple[str, ...] = ("none", "standardise", "minmax", "asinh")
#: Symmetry augmentations of training batches; see :mod:`equilens.data.transforms`.
AUGMENTATIONS: tuple[str, ...] = ("none", "rot90", "rotate", "flip", "rotate+flip")


def check_choice(kind: str, value: str, valid: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``valid``, else raise :class:`ConfigError` listing them."""
    if value not in valid:
        raise ConfigError(f"unknown {kind} {value!r}; valid: {', '.join(valid)}")
    return value
