"""Export a model to plain torch (no escnn at inference), e.g. for ``torch.compile`` or deployment.

escnn layers expand their filters from a steerable basis; ``export()`` freezes them into ordinary
``nn.Conv2d`` / ``nn.BatchNorm2d`` modules with the same outputs. :func:`export_model` does this for
every escnn layer of an equilens model and returns a model with the same interface (``forward``,
``forward_features``, ``forward_head``, input checks). Plain-torch models are returned unchanged.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from equilens.errors import ModelError
from equilens.models.base import LensModel
from equilens.models.registry import create_model
from equilens.models.steerable import EscnnModule, skip_weight_init


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


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read model weights from ``path`` with ``torch.load(weights_only=True)``.

    Accepts a plain ``state_dict`` saved with ``torch.save(model.state_dict(), path)``, or a Lightning
    checkpoint whose ``"state_dict"`` holds the model under the prefix ``"model."`` (equilens'
    LensModule); other keys of a Lightning state dict are ignored. Returns ``(state_dict, meta)`` where
    ``meta`` is the checkpoint's ``"equilens"`` entry (model name and options) or ``{}``.
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
    meta = obj.get("equilens", {}) if isinstance(obj.get("equilens", {}), dict) else {}
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        state = {k[len("model."):]: v for k, v in obj["state_dict"].items() if k.startswith("model.")}
        if not state:
            raise ModelError(f"{str(path)!r} is a Lightning checkpoint without 'model.' weights")
        return state, meta
    if not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{str(path)!r} is neither a state_dict of tensors nor a Lightning checkpoint "
                         f"(keys: {', '.join(list(obj)[:8])})")
    return obj, meta


def load_model(name: str, checkpoint: str | Path | None = None, in_channels: int | None = None,
               num_outputs: int | None = None, **kwargs: Any) -> LensModel:
    """Build model ``name`` and, if ``checkpoint`` is given, load its weights (see :func:`read_checkpoint`).

    ``in_channels`` / ``num_outputs`` / model options default to those recorded in the checkpoint
    (its ``"equilens"`` metadata and the head's weight shape), else to 1 / 3 / the family defaults.
    """
    if checkpoint is None:
        return create_model(name, in_channels=in_channels or 1, num_outputs=num_outputs or 3, **kwargs)
    state, meta = read_checkpoint(checkpoint)
    if meta.get("model") not in (None, name):
        raise ModelError(f"checkpoint {str(checkpoint)!r} holds model {meta['model']!r}, not {name!r}")
    options = {**dict(meta.get("model_kwargs") or {}), **kwargs}
    head = state.get("head.1.weight")
    if num_outputs is None:
        num_outputs = int(head.shape[0]) if head is not None else 3
    with skip_weight_init():
        model = create_model(name, in_channels=in_channels or int(meta.get("in_channels", 1)),
                             num_outputs=num_outputs, **options)
    model.eval()  # escnn state dicts should be loaded in eval mode (see escnn R2Conv docs)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise ModelError(f"checkpoint {str(checkpoint)!r} does not fit {name} with options {options}: "
                         f"{str(exc)[:600]}") from exc
    # escnn keeps its expanded filters as eval-mode buffers; those may be absent or extra
    missing = [k for k in missing if not k.endswith(("filter", "expanded_bias"))]
    unexpected = [k for k in unexpected if not k.endswith(("filter", "expanded_bias"))]
    if missing or unexpected:
        raise ModelError(f"checkpoint {str(checkpoint)!r} does not fit {name} with options {options}: missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]}")
    model.train()
    model.eval()  # rebuild escnn's cached filters from the loaded weights
    return model
