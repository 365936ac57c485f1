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


class PictureError(DataError):
    """A user's picture cannot be read or prepared: not a picture, too many pixels, truncated, blank."""


class RequestError(CnnscopeError):
    """A viewer request is invalid; `status` is the HTTP status to answer with (4xx)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class RenderError(CnnscopeError):
    """A rendering parameter is invalid (unknown colour map, …)."""


class KerasImportError(SpecError):
    """The file is not a Keras model, is hostile or malformed, or uses a layer cnnscope cannot express."""


class UsageError(CnnscopeError):
    """A command-line mistake found by the parser (unknown option, missing command): one line, exit 2."""


class SiteError(CnnscopeError):
    """A static site cannot be exported: its runtime (onnxruntime-web) is missing, unreachable or fails its check,
    or the output folder is unsuitable."""


class SweepError(CnnscopeError):
    """A sweep definition is invalid (parameter, distribution, key), an extra is missing, or it differs from the
    study already in the study directory."""


# Control flow, not user errors: raised and caught inside cnnscope, never reach a user.
class StopForward(Exception):
    """Raised by a forward hook to end a forward pass once every requested output is captured."""


class WarmUpStopped(Exception):
    """Raised inside the viewer's warm-up thread to end it when the server stops."""


class StopTraining(KeyboardInterrupt):
    """Raised by a training callback to end a training after the epoch it saw, as Ctrl-C would: the loop keeps
    the completed epochs and writes metrics.json (a sweep's pruned or diverged trial)."""


def choice_error(cls: type[CnnscopeError], what: str, received: object, valid) -> CnnscopeError:
    """Build the standard 'unknown X' error listing the valid names."""
    names = ", ".join(str(v) for v in valid)
    return cls(f"unknown {what} {brief(received)}; valid: {names}")


def brief(value: object, limit: int = 80) -> str:
    """repr(value) cut to `limit` characters, for quoting what a user gave in a one-line message."""
    try:
        text = repr(value)
    except ValueError:  # an int with more digits than Python will print
        text = f"<{type(value).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def check_number(cls: type[CnnscopeError], what: str, value: object, low: float | None = None,
                 high: float | None = None, *, low_open: bool = False, high_open: bool = True) -> float:
    """`value` as a float when it is a finite real number within the bounds; else `cls` saying the valid range."""
    if low is not None and high is not None:
        valid = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        valid = f"{'>' if low_open else '>='} {low:g}"
    else:
        valid = "finite"
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int beyond float range
            number = None
    if number is None or number != number or number in (float("inf"), float("-inf")) or (
            low is not None and (number <= low if low_open else number < low)) or (
            high is not None and (number >= high if high_open else number > high)):
        raise cls(f"{what} must be a finite number {valid}, received {brief(value)}")
    return number
