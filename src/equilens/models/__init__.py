"""The model zoo. Importing this package registers every model.

Use :func:`create_model` and :func:`list_models`; see :mod:`equilens.models.registry`.
"""

# Model modules register themselves on import: one line per module of this package, sorted.
import equilens.models.cnn  # noqa: F401
import equilens.models.e2wrn  # noqa: F401
import equilens.models.etn  # noqa: F401
import equilens.models.fourier  # noqa: F401
import equilens.models.harmonic  # noqa: F401
import equilens.models.resnet  # noqa: F401
import equilens.models.steerable  # noqa: F401
from equilens.models.base import PLAIN_FIELD_MODELS, FeatureFields, LensModel
from equilens.models.export import (
    derived_state_keys,
    export_model,
    load_model,
    load_weights,
    read_checkpoint,
    state_dict_for_checkpoint,
)
from equilens.models.registry import create_model, get_entry, list_models, register_family, register_model
from equilens.models.steerable import DEFAULT_EQUIVARIANT_MODEL, EQUIVARIANT_FIELD_MODELS

__all__ = ["DEFAULT_EQUIVARIANT_MODEL", "EQUIVARIANT_FIELD_MODELS", "PLAIN_FIELD_MODELS", "FeatureFields",
           "LensModel", "create_model", "derived_state_keys", "export_model",
           "get_entry", "list_models", "load_model", "load_weights", "read_checkpoint", "register_family",
           "register_model", "state_dict_for_checkpoint"]
