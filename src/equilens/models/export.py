"""Export a model to plain torch (no escnn at inference), e.g. for ``torch.compile`` or deployment.

escnn layers expand their filters from a steerable basis; ``export()`` freezes them into ordinary
``nn.Conv2d`` / ``nn.BatchNorm2d`` modules with the same outputs. :func:`export_model` does this for
every escnn layer of an equilens model and returns a model with the same interface (``forward``,
``forward_features``, ``forward_head``, input checks). Plain-torch models are returned unchanged.
"""

from __future__ import annotations

import copy

from torch import nn

from equilens.models.steerable import EscnnModule


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
