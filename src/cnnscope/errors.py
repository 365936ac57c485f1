"""The exceptions cnnscope raises for bad input; the CLI turns them into one-line errors."""

from __future__ import annotations


class CnnscopeError(Exception):
    """Base class: a problem the user can fix (bad file, bad name, bad value)."""


class DataError(CnnscopeError):
    """A dataset file is missing, corrupt or inconsistent, or a data setting is invalid."""


class SpecError(CnnscopeError):
    """A model specification is invalid (unknown key, bad value, layer does not fit)."""


class ConfigError(CnnscopeError):
    """A training or run configuration value is invalid."""


class RunError(CnnscopeError):
    """A run directory is missing, incomplete or inconsistent, or a layer/index is not in it."""


class OutputError(CnnscopeError):
    """An output file cannot be written: bad format, directory missing or read-only, disk full."""


def choice_error(cls: type[CnnscopeError], what: str, received: object, valid) -> CnnscopeError:
    """Build the standard 'unknown X' error listing the valid names."""
    names = ", ".join(str(v) for v in valid)
    return cls(f"unknown {what} {received!r}; valid: {names}")
