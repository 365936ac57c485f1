"""Progress on a terminal, through one helper: what a long call is doing (`say`: records of the
`cnnscope.progress` logger, which the CLI shows on stderr only when it is a terminal) and how far (`bar`: a tqdm
bar, drawn only on a terminal). The library never prints; a script or test sees the same records through
logging (e.g. pytest's caplog), and `--quiet` hides both."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TypeVar

log = logging.getLogger("cnnscope.progress")
T = TypeVar("T")


def say(message: str, *args: object) -> None:
    """One line on what is being done now, e.g. say("loading %s", path)."""
    log.info(message, *args)


def bar(items: Iterable[T], *, total: int | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    """`items`, with a bar saying how far they are done on a terminal (and a line saying what they are)."""
    from tqdm.auto import tqdm

    say("%s", desc)
    shown = log.isEnabledFor(logging.INFO)
    yield from tqdm(items, total=total, desc=desc, unit=unit, leave=False, disable=None if shown else True)


__all__ = ["bar", "say"]
