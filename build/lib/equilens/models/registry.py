"""Model registry: every architecture is built by name through one factory.

A model module registers a factory with :func:`register_model` (one concrete name) or
:func:`register_family` (a name pattern such as ``e2wrn{depth}_{width}_{group}``). Every factory takes
``(in_channels, num_outputs, **kwargs)`` and returns an :class:`~equilens.models.base.LensModel`, so
training and evaluation code never branch on the family.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

from equilens.errors import ModelError
from equilens.models.base import LensModel

Factory = Callable[..., LensModel]


@dataclass(frozen=True)
class ModelEntry:
    """A registered model name.

    Attributes:
        name: the registry name, e.g. ``"steerable_c8"``.
        symmetry: the symmetry group the model's output is invariant to, named once here, e.g.
            ``"C8"``, ``"D4"``, ``"SO(2)"``, ``"none"``.
        family: the family the name belongs to (``"steerable"``, ``"resnet"``, ...).
        description: one line for ``equilens models``.
        factory: builds the model: ``factory(in_channels, num_outputs, **kwargs)``.
    """

    name: str
    symmetry: str
    family: str
    description: str
    factory: Factory


@dataclass(frozen=True)
class _Family:
    pattern: re.Pattern[str]
    example: str
    resolve: Callable[[re.Match[str]], ModelEntry]


_REGISTRY: dict[str, ModelEntry] = {}
_FAMILIES: list[_Family] = []


def register_model(
    name: str, *, symmetry: str, family: str, description: str
) -> Callable[[Factory], Factory]:
    """Decorator registering ``factory`` under ``name``."""

    def decorator(factory: Factory) -> Factory:
        if name in _REGISTRY:
            raise ModelError(f"model name {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, symmetry, family, description, factory)
        return factory

    return decorator


def register_family(
    pattern: str, example: str, resolve: Callable[[re.Match[str]], ModelEntry]
) -> None:
    """Register a name pattern (a full-match regex) whose names are built on demand.

    ``resolve`` turns the match into a :class:`ModelEntry` or raises :class:`ModelError` naming the
    values that are supported. Concrete names that should appear in :func:`list_models` must also be
    registered with :func:`register_model` (or added via :func:`add_entry`).
    """
    _FAMILIES.append(_Family(re.compile(pattern), example, resolve))


def add_entry(entry: ModelEntry) -> None:
    """Register a fully built :class:`ModelEntry` (used by families to list their standard names)."""
    if entry.name in _REGISTRY:
        raise ModelError(f"model name {entry.name!r} is registered twice")
    _REGISTRY[entry.name] = entry


def _ensure_loaded() -> None:
    # Importing the package imports every model module, which registers its models.
    import equilens.models  # noqa: F401


def get_entry(name: str) -> ModelEntry:
    """The :class:`ModelEntry` for ``name``; unknown names get an error listing the valid ones."""
    _ensure_loaded()
    if name in _REGISTRY:
        return _REGISTRY[name]
    for fam in _FAMILIES:
        match = fam.pattern.fullmatch(name)
        if match:
            return fam.resolve(match)
    patterns = ", ".join(f.example for f in _FAMILIES)
    raise ModelError(
        f"unknown model {name!r}. Valid names: {', '.join(sorted(_REGISTRY))}"
        + (f"; and name patterns such as {patterns}" if patterns else "")
    )


def create_model(name: str, in_channels: int = 1, num_outputs: int = 3, **kwargs: object) -> LensModel:
    """Build the model registered as ``name``.

    Args:
        name: a name from :func:`list_models` (or matching a registered family pattern).
        in_channels: image channels C of the (B, C, H, W) input.
        num_outputs: width of the output (B, num_outputs): classes for classification, 1 (or 2 with a
            predicted variance) for regression.
        **kwargs: architecture options of that family; unknown options raise :class:`ModelError`.
    """
    if in_channels < 1:
        raise ModelError(f"in_channels must be >= 1, got {in_channels}")
    if num_outputs < 1:
        raise ModelError(f"num_outputs must be >= 1, got {num_outputs}")
    entry = get_entry(name)
    try:
        # escnn prints diagnostics to stdout when it first computes (and caches) a group's
        # Clebsch-Gordan coefficients; keep stdout for the caller's own output (e.g. `equilens models`).
        with contextlib.redirect_stdout(sys.stderr):
            model = entry.factory(in_channels=in_channels, num_outputs=num_outputs, **kwargs)
    except TypeError as exc:
        if "unexpected keyword argument" in str(exc):
            raise ModelError(f"{name}: {exc}") from exc
        raise
    model.model_name = name
    model.symmetry = entry.symmetry
    # escnn convolutions hold an expanded-filter buffer right after construction that train() drops;
    # start every model in train mode with that buffer gone so state_dict keys are the same everywhere
    model.train()
    return model


def list_models(family: str | None = None) -> list[str]:
    """Every registered concrete model name (optionally of one family), sorted."""
    _ensure_loaded()
    return sorted(n for n, e in _REGISTRY.items() if family is None or e.family == family)
