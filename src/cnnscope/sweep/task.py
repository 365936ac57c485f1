"""What travels between the driver and a trial: the trial's task, a failure as one line, and run directories as
bytes (the Ray engine: nodes share no filesystem with the driver). Light: no torch, so that the driver can decide
that a study has nothing to do without loading it.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnscope.base.errors import CnnscopeError

MAX_SHIPPED_BYTES = 2**30  # a run directory that comes back from a Ray task
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,120}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,120}){0,3}")


@dataclass(frozen=True)
class TrialTask:
    """What a worker needs to run one trial: its number, values, the base tables, its run directory, the metric."""

    number: int
    values: dict[str, Any]
    config: dict[str, Any]
    run_dir: str
    metric: str
    threads: int = 0
    tensorboard: str | None = None  # a TensorBoard log directory for this trial


def one_line(exc: BaseException) -> str:
    """An exception as one short line for results.json."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, CnnscopeError) else f"{type(exc).__name__}: {text}"[:300]


def read_run_files(run_dir: Path) -> dict[str, bytes]:
    """The regular files of a run directory (and its folders, 3 deep) by relative name; links are skipped."""
    files: dict[str, bytes] = {}
    total = 0
    for path in sorted(run_dir.rglob("*")):
        name = path.relative_to(run_dir).as_posix()
        if path.is_symlink() or not path.is_file() or not SAFE_NAME.fullmatch(name) or ".tmp" in path.name:
            continue
        data = path.read_bytes()
        total += len(data)
        if total > MAX_SHIPPED_BYTES:
            raise CnnscopeError(f"{run_dir} holds more than {MAX_SHIPPED_BYTES:,} bytes; too large to send back")
        files[name] = data
    return files


def write_run_files(target: Path, files: dict[str, bytes]) -> None:
    """Replace the directory `target` by these files at once: written beside it, then renamed over it."""
    incoming, old = target.parent / f".{target.name}.incoming", target.parent / f".{target.name}.old"
    shutil.rmtree(incoming, ignore_errors=True)
    for name, data in files.items():
        if not SAFE_NAME.fullmatch(name) or ".." in name.split("/"):
            continue  # names come from a worker: never outside the run directory
        path = incoming / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    incoming.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(incoming, target)
    shutil.rmtree(old, ignore_errors=True)


def recover_run_dirs(trials_dir: Path) -> None:
    """After a crash between the two renames of write_run_files: put each run directory back."""
    if not trials_dir.is_dir():
        return
    for old in trials_dir.glob(".*.old"):
        target = trials_dir / old.name[1:-4]
        if not target.exists():
            os.replace(old, target)
        else:
            shutil.rmtree(old, ignore_errors=True)
