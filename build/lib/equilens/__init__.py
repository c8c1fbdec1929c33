"""equilens: strong-lens simulation with dark-matter substructure and rotation-equivariant networks."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("equilens")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
