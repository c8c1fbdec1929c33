"""equilens: strong-lens simulation with dark-matter substructure and rotation-equivariant networks."""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """``equilens.__version__``, read from the installed metadata on first use (importlib.metadata costs
    a noticeable part of ``equilens --help``, which does not need it)."""
    if name != "__version__":
        raise AttributeError(f"module 'equilens' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("equilens")
    except PackageNotFoundError:  # running from a source tree without installation
        value = "0.0.0+unknown"
    globals()["__version__"] = value
    return value
