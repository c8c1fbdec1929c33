"""Exceptions shared across equilens. Every message says what was wrong and what would be valid."""


class EquilensError(Exception):
    """Base class of every error equilens raises on purpose (the CLI prints these without a traceback)."""


class ConfigError(EquilensError, ValueError):
    """An invalid configuration key, value or combination."""


class DataError(EquilensError):
    """A data set that is missing, corrupt or does not match what was asked for."""


class ModelError(EquilensError, ValueError):
    """An unknown model name, unsupported option or input the model cannot take."""
