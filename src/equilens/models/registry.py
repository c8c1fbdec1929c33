"""Model registry: every architecture is built by name through one factory.

A model module registers a factory with :func:`register_model` (one concrete name) or
:func:`register_family` (a name pattern such as ``e2wrn{depth}_{width}_{group}``). Every factory takes
``(in_channels, num_outputs, **kwargs)`` and returns an :class:`~equilens.models.base.LensModel`, so
training and evaluation code never branch on the family.
"""

from __future__ import annotations

import contextlib
import copy
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


#: Architecture options of each family (``create_model(name, **options)``, ``model_kwargs`` in a training
#: config), printed by ``equilens models``. One name per idea: ``width`` multiplies every layer's channels
#: in every family, ``kernel_size`` sets the (odd) filter size wherever there is a choice.
FAMILY_OPTIONS: dict[str, str] = {
    "steerable": "width (channel multiplier), kernel_size (odd px, every layer), frequency_cutoff (band "
                 "limit per px of filter radius), dropout; C_N/D_N: pool (blur [default, anti-aliased average "
                 "after the ReLU] | blur5 [a [1, 4, 6, 4, 1] blur first] | blur7 | avg | maxblur | max [the former "
                 "layout]), head_pool (mean | disk), "
                 "input_blur (Gaussian sigma in px before the first layer; 0 = none), "
                 "nonlinearity (relu [default] | elu | gelu | softplus), group_pool (max [default] | mean | "
                 "fourier [one norm per irrep of G]), fine_nonlinearity (list of conv layers, 1-based, whose "
                 "nonlinearity runs on a 2x finer grid, alias-suppressed; [] [default] = none); "
                 "SO(2)/O(2): max_frequency; *_fourier (band-limited SO(2)/O(2) fields, ReLU on sampled "
                 "rotations): max_frequency, group_samples (rotations the ReLU is evaluated on, multiple of 4; "
                 "default so2 32, o2 16), norm (samples [default] | iid), pool, head_pool, input_blur, "
                 "fine_nonlinearity [default so2 [1, ..., 7] (all), o2 [3, 4]]; "
                 "steerable_d8_smooth is steerable_d8 with other defaults: "
                 "its last pool removed, pool blur5, group_pool mean; steerable_d8_fine is steerable_d8_smooth "
                 "with fine_nonlinearity [3, 4]",
    "e2wrn": "width, kernel_size (one int, or 4: stem and stages), dropout, restrict (group order per stage, "
             "e.g. [8, 4, 1]), fields (channels: channels/|G| | params: channels/sqrt(|G|), Weiler & Cesa), "
             "pool, stem_pool; e2wrn16_8_d8_paper and e2wrn28_10_d8_paper are Weiler & Cesa 2019's CIFAR "
             "configuration (built on demand)",
    "harmonic": "width, kernel_size, widths, blocks, dropout",
    "etn": "backbone (small or any model name), pose, n_angles, max_shift, max_scale, dropout",
    "resnet": "width, dropout",
    "cnn": "width, widths, dropout",
}

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
    if "symmetry" not in vars(model):  # a model whose options change its group (e2wrn restrict=...) sets its own
        model.symmetry = entry.symmetry
    # escnn convolutions hold an expanded-filter buffer right after construction that train() drops;
    # start every model in train mode with that buffer gone so state_dict keys are the same everywhere
    model.train()
    # escnn reuses one basis-expansion module (with its sampled-basis buffer) for every convolution of the
    # same field types and kernel, across models: converting one model (.double(), .to(device)) then changed
    # the others built in the same process. A deep copy gives each model its own.
    if any(type(m).__module__.startswith("escnn") for m in model.modules()):
        model = copy.deepcopy(model)
    return model


def list_models(family: str | None = None) -> list[str]:
    """Every registered concrete model name (optionally of one family), sorted."""
    _ensure_loaded()
    return sorted(n for n, e in _REGISTRY.items() if family is None or e.family == family)
