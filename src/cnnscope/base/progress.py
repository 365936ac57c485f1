"""Progress, through one module: what a long call is doing (`say`: records of the `cnnscope.progress` logger, which
the CLI shows on stderr only when it is a terminal) and how far (`progress_bar`, `bar`: tqdm bars). The library
never prints; a script or test sees the same records through logging (e.g. pytest's caplog), and `--quiet` hides
both.

A bar is what tqdm.auto would choose, without its warning: a widget in a Jupyter kernel that has ipywidgets (the
`notebook` extra), else text. Text bars are drawn on a terminal and in a notebook, never into a pipe or a log file.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from cnnscope.base.jupyter import has_widgets, in_kernel

log = logging.getLogger("cnnscope.progress")
T = TypeVar("T")


def say(message: str, *args: object) -> None:
    """One line on what is being done now, e.g. say("loading %s", path)."""
    log.info(message, *args)


def bar_class() -> type:
    """tqdm's notebook bar (a widget) in a Jupyter kernel with ipywidgets, its text bar anywhere else.

    tqdm.auto picks the same, but warns "IProgress not found" in a notebook without ipywidgets; here the text bar
    is the quiet fallback."""
    if has_widgets():
        from tqdm.notebook import tqdm  # tqdm is imported when a bar is drawn, not when cnnscope is
    else:
        from tqdm.std import tqdm
    return tqdm


def shows_bars() -> bool:
    """Whether a bar left to its default is drawn: on a terminal (stderr is one) and in a notebook."""
    isatty = getattr(sys.stderr, "isatty", None)
    return in_kernel() or bool(isatty and isatty())


def progress_bar(iterable: Iterable[T] | None = None, *, show: bool | None = None, **options: Any) -> Any:
    """A tqdm bar over `iterable` (tqdm's keywords in `options`: total, desc, unit, leave, ...); `show` None draws
    it on a terminal or in a notebook (shows_bars), True always, False never."""
    shown = shows_bars() if show is None else show
    return bar_class()(iterable, disable=not shown, **options)


def bar(items: Iterable[T], *, total: int | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    """`items`, with a bar saying how far they are done (and a line saying what they are) when progress is shown
    (the CLI on a terminal, a script or notebook that enables the cnnscope.progress logger)."""
    say("%s", desc)
    shown = log.isEnabledFor(logging.INFO)
    yield from progress_bar(items, show=None if shown else False, total=total, desc=desc, unit=unit, leave=False)


def batches(n: int, batch_size: int, desc: str) -> Iterable[int]:
    """The start of each `batch_size` batch of `n` items, with a bar (`desc`) when there is more than one: a
    whole test set gets its bar, a handful of images no line."""
    starts = range(0, n, batch_size)
    return bar(starts, desc=desc, unit="batch") if len(starts) > 1 else starts


__all__ = ["bar", "bar_class", "batches", "progress_bar", "say", "shows_bars"]
