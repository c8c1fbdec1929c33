"""The model zoo. Importing this package registers every model.

Use :func:`create_model` and :func:`list_models`; see :mod:`equilens.models.registry`.
"""

from equilens.models.base import LensModel
from equilens.models.registry import create_model, get_entry, list_models, register_family, register_model

# Model modules register themselves on import. Keep this list in sync with the files of this package.
# (model modules are imported here as they are added, e.g. `from equilens.models import resnet`)

__all__ = ["LensModel", "create_model", "get_entry", "list_models", "register_family", "register_model"]
