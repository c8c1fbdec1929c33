"""Export a model to plain torch (no escnn at inference), e.g. for ``torch.compile`` or deployment.

escnn layers expand their filters from a steerable basis; ``export()`` freezes them into ordinary
``nn.Conv2d`` / ``nn.BatchNorm2d`` modules with the same outputs. :func:`export_model` does this for
every escnn layer of an equilens model and returns a model with the same interface (``forward``,
``forward_features``, ``forward_head``, input checks). Plain-torch models are returned unchanged.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import equilens
from equilens.errors import ModelError
from equilens.models._escnn_compat import enn
from equilens.models.base import LensModel
from equilens.models.registry import create_model
from equilens.models.steerable import EscnnModule, skip_weight_init

#: Buffers escnn convolutions / linear layers derive from their weights in eval mode (dropped in train mode).
_ESCNN_DERIVED = ("filter", "matrix", "expanded_bias")


def derived_state_keys(model: nn.Module) -> set[str]:
    """Names of ``model.state_dict()`` entries that are caches derived from the weights (escnn's expanded
    filters and biases, present in eval mode only), whether or not they are present now.

    Saved weights should leave them out (:func:`state_dict_for_checkpoint`) and loading ignores them
    (:func:`load_weights`); nothing outside this package needs to know which library adds them.
    """
    keys: set[str] = set()
    for name, module in model.named_modules():
        if isinstance(module, (enn.R2Conv, enn.Linear)):
            keys.update(f"{name}.{buf}" if name else buf for buf in _ESCNN_DERIVED
                        if buf not in dict(module.named_parameters(recurse=False)))
    return keys


def state_dict_for_checkpoint(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` without derived caches: the same keys in train and eval mode, loadable into a
    freshly built model by :func:`load_weights` (or ``load_state_dict`` in train mode)."""
    derived = derived_state_keys(model)
    return {k: v for k, v in model.state_dict().items() if k not in derived}


def _name(model: nn.Module) -> str:
    return str(getattr(model, "model_name", "") or type(model).__name__)


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str = "the weights",
                 hint: str = "") -> None:
    """Load ``state`` into ``model`` strictly, ignoring derived caches; keeps the model's mode.

    Raises:
        ModelError: weights missing, unexpected or of the wrong shape; the message names ``source``,
            a few of the keys and ends with ``hint``.
    """
    derived = derived_state_keys(model)
    state = {k: v for k, v in state.items() if k not in derived}
    was_training = model.training
    model.train()  # no derived caches present
    own = set(model.state_dict())
    missing, unexpected = sorted(own - set(state)), sorted(set(state) - own)
    suffix = f"; {hint}" if hint else ""
    if missing or unexpected:
        model.train(was_training)
        raise ModelError(f"{source} does not fit model {_name(model)!r}: "
                         f"{len(missing)} missing weights (e.g. {missing[:3]}) and {len(unexpected)} unexpected "
                         f"ones (e.g. {unexpected[:3]}){suffix}")
    own_state = model.state_dict()
    shapes = [f"{k}: checkpoint {tuple(v.shape)}, model {tuple(own_state[k].shape)}" for k, v in state.items()
              if hasattr(v, "shape") and tuple(v.shape) != tuple(own_state[k].shape)]
    if shapes:
        model.train(was_training)
        raise ModelError(f"{source} does not fit model {_name(model)!r}: {len(shapes)} weight(s) of another "
                         f"shape, e.g. {'; '.join(shapes[:3])}{suffix}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # anything load_state_dict refuses beyond names and shapes
        model.train(was_training)
        raise ModelError(f"{source} does not fit model {_name(model)!r}: "
                         f"{str(exc).strip().splitlines()[0]}{suffix}") from exc
    model.train(was_training)  # eval mode rebuilds escnn's caches from the loaded weights


def export_model(model: nn.Module) -> nn.Module:
    """A plain-torch copy of ``model`` in eval mode with the same outputs (about 1e-6 relative).

    The input model is not modified. Plain-torch models (no escnn layer) are returned as they are. The
    exported copy's ``state_dict`` saves and loads like any torch module: load it into
    ``export_model(create_model(same name and options))``.
    """
    wrapped = [m for m in model.modules() if isinstance(m, EscnnModule) and not m.exported]
    if not wrapped:
        return model
    # escnn caches its expanded filters (non-leaf tensors, which deepcopy refuses) in eval mode only:
    # copy in train mode (which drops the cache and changes no parameter or statistic), then restore.
    was_training = model.training
    model.train()
    try:
        exported = copy.deepcopy(model)
    finally:
        model.train(was_training)
    exported.eval()
    for module in exported.modules():
        if isinstance(module, EscnnModule):
            module.export_()
    return exported


#: Called with a checkpoint's ``meta`` (see :func:`read_checkpoint`) before a model is built from it; raises
#: an :class:`~equilens.errors.EquilensError` (usually ModelError) to refuse the checkpoint.
CheckMeta = Callable[[dict[str, Any]], None]

#: The training counters of a Lightning checkpoint that :func:`read_checkpoint` adds to ``meta``.
LIGHTNING_COUNTERS = ("epoch", "global_step")


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read model weights from ``path`` with ``torch.load(weights_only=True)`` (the file is read once).

    Accepts a plain ``state_dict`` saved with ``torch.save(model.state_dict(), path)``, or a Lightning
    checkpoint whose ``"state_dict"`` holds the model under the prefix ``"model."`` (equilens'
    LensModule; the prefix is removed); other keys of a Lightning state dict are ignored.

    Returns:
        ``(state_dict, meta)``. ``meta`` is ``{}`` for a plain state dict. For a Lightning checkpoint it is
        a copy of the checkpoint's ``"equilens"`` entry (the run description equilens training writes:
        ``model``, ``model_kwargs``, ``config``, ``equilens_version``, ...; absent in a foreign checkpoint)
        plus Lightning's counters (:data:`LIGHTNING_COUNTERS`): ``"epoch"`` (0-based index of the epoch
        during which it was saved) and ``"global_step"`` (optimizer steps so far), None where the file
        does not record them.

    Raises:
        ModelError: the file does not exist, cannot be read with ``weights_only=True``, or holds neither
            a state dict of tensors nor a Lightning checkpoint with ``"model."`` weights.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors of many kinds: report them as a user error
        raise ModelError(f"cannot read {str(path)!r} as weights (torch.load weights_only=True): {exc}") from exc
    if not isinstance(obj, dict):
        raise ModelError(f"{str(path)!r} holds a {type(obj).__name__}, expected a state_dict or a Lightning "
                         "checkpoint")
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        state = {k[len("model."):]: v for k, v in obj["state_dict"].items() if k.startswith("model.")}
        if not state:
            raise ModelError(f"{str(path)!r} is a Lightning checkpoint without 'model.' weights")
        entry = obj.get("equilens")
        meta = {**(entry if isinstance(entry, dict) else {}), **{k: obj.get(k) for k in LIGHTNING_COUNTERS}}
        return state, meta
    if not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{str(path)!r} is neither a state_dict of tensors nor a Lightning checkpoint "
                         f"(keys: {', '.join(list(obj)[:8])})")
    return obj, {}


def load_model(name: str, checkpoint: str | os.PathLike[str] | None = None, in_channels: int | None = None,
               num_outputs: int | None = None, *, check_meta: CheckMeta | None = None, hint: str = "",
               **kwargs: Any) -> LensModel:
    """Build model ``name`` and, if ``checkpoint`` is given, load its weights (see :func:`read_checkpoint`),
    in eval mode.

    ``in_channels`` / ``num_outputs`` / model options default to those recorded in the checkpoint
    (its ``"equilens"`` metadata and the head's weight shape), else to 1 / 3 / the family defaults;
    options given here take precedence over recorded ones.

    Args:
        check_meta: called with the checkpoint's ``meta`` (:func:`read_checkpoint`) right after reading,
            before anything else is checked or built; it refuses the checkpoint by raising an EquilensError
            (and may keep ``meta``: the file is not read twice). Unused without ``checkpoint``.
        hint: the caller's part of the message when the weights do not fit the model (e.g. where the
            options and output count came from); it precedes the generic causes (another architecture, or
            the layout of the model in the equilens version that made the checkpoint, if recorded).

    Raises:
        ModelError: the checkpoint cannot be read (:func:`read_checkpoint`), ``check_meta`` refuses it, it
            records another model than ``name``, or its weights do not fit the model built.
    """
    if checkpoint is None:
        return create_model(name, in_channels=in_channels or 1, num_outputs=num_outputs or 3, **kwargs)
    state, meta = read_checkpoint(checkpoint)
    if check_meta is not None:
        check_meta(meta)
    if meta.get("model") not in (None, name):
        raise ModelError(f"checkpoint {str(checkpoint)!r} holds model {meta['model']!r}, not {name!r}")
    options = {**dict(meta.get("model_kwargs") or {}), **kwargs}
    head = state.get("head.1.weight")
    if num_outputs is None:
        num_outputs = int(head.shape[0]) if head is not None else 3
    with skip_weight_init():
        model = create_model(name, in_channels=in_channels or int(meta.get("in_channels", 1)),
                             num_outputs=num_outputs, **options)
    made_by = meta.get("equilens_version")
    causes = (f"it was made by another architecture, or by equilens {made_by} whose {name!r} had another layout "
              f"(this is equilens {equilens.__version__})" if made_by else
              "it was made by another architecture, or by an equilens version whose layout of this model differed")
    load_weights(model, state, source=f"checkpoint {str(checkpoint)!r} (options {options})",
                 hint=f"{hint}; {causes}" if hint else causes)
    model.eval()
    return model
