"""Run directories: self-describing, atomically written, reloaded from their own spec.

Every file of a run directory is checked before it is used, so a damaged or hostile run (one someone sent you)
gives one RunError line naming the file, never a traceback: JSON/TOML files are size-bounded and type-checked;
safetensors headers are bounded by the file size and their names, dtypes and shapes are compared with the
model built from the run's own spec (on the meta device, so nothing is allocated) before a tensor is read.
Non-finite weights (from a diverged training or an altered file) are refused unless `allow_nonfinite=True`.

Each epoch's checkpoint (model.safetensors, state.safetensors, history.json, state.json) is written to temp
files first and renamed only when all are on disk, state.json last: a failed write (disk full) leaves the
previous epoch's files intact, and every file records its epoch so a cut-off rename is caught on resume.
"""

from __future__ import annotations

import contextlib
import errno
import math
import re
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from cnnscope.base.errors import RunError
from cnnscope.base.fileio import json_bytes, read_json, read_safetensors_header, write_together
from cnnscope.data.dataset import Preprocessor
from cnnscope.runs.layout import CONFIG, HISTORY, INITIAL, OUTPUTS, PREPROCESS, STATE, STATE_META, WEIGHTS
from cnnscope.runs.records import read_history
from cnnscope.trainer.config import RunConfig
from cnnscope.trainer.rules_torch import Optimizer

COUNT = re.compile(r"[0-9]{1,9}")  # str.isdigit() accepts '²', which int() refuses
DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}
# --- writing -------------------------------------------------------------------------------------
def _weights_bytes(model: torch.nn.Module, epoch: int | None = None) -> bytes:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    return save_bytes(tensors, None if epoch is None else {"epoch": str(epoch)})


def save_weights(path: str | Path, model: torch.nn.Module) -> None:
    """Write a model's state dict as safetensors, atomically."""
    write_together([(path, _weights_bytes(model))])


@contextlib.contextmanager
def saving(what: str, intact: str, retry: str) -> Iterator[None]:
    """Turn an OSError (disk full, no permission) while saving `what` into one RunError line."""
    try:
        yield
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
        reason = "no space left on device" if full else f"{exc.strerror or exc}".lower()
        fix = "free some space" if full else "fix that"
        raise RunError(f"{reason} while saving {what}; {intact} ({fix}, then {retry})") from None


def save_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer: Optimizer, step: int,
                    epoch: int, history: dict[str, Any]) -> None:
    """Weights, optimizer/RNG state and history after `epoch`: all written, or none changed."""
    tensors, meta = _training_state(optimizer, step, epoch)
    files = [(run_dir / WEIGHTS, _weights_bytes(model, epoch)),
             (run_dir / STATE, save_bytes(tensors, {"epoch": str(epoch)})), (run_dir / HISTORY, json_bytes(history)),
             (run_dir / STATE_META, json_bytes(meta))]  # last: the epoch counter resume trusts
    intact = f"the files of epoch {epoch - 1} are intact" if epoch > 1 else "its initial weights are intact"
    with deferred_interrupt(), saving(f"epoch {epoch} to {run_dir}", intact, f"'cnnscope train --resume {run_dir}'"):
        write_together(files)


def _training_state(optimizer: Optimizer, step: int, epoch: int) -> tuple[dict[str, Any], dict]:
    """Optimizer tensors and the torch RNG state (safetensors) plus the scalar rest (JSON)."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {"rng.torch": torch.get_rng_state()}
    scalars: dict[str, Any] = {}
    for index, param_state in state["state"].items():
        for key, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"state.{index}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"step": step, "epoch": epoch, "param_groups": state["param_groups"], "scalars": scalars}


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl-C until the block ends, so a set of files is written whole (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[Any] = []
    previous = signal.signal(signal.SIGINT, lambda *args: received.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            raise KeyboardInterrupt


def check_run_dir(out: str | Path, overwrite: bool = False) -> Path:
    """RunError unless `out` can receive a new run (checked before any slow work starts)."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise RunError(f"{path} exists and is not a directory; choose another --out")
    if (path / CONFIG).exists() and not overwrite:
        raise RunError(f"{path} already holds a run; choose another --out, pass --overwrite, or --resume it")
    return path


def init_run_dir(out: str | Path, overwrite: bool = False) -> Path:
    """Create `out` for a new run; refuse to clobber an existing run unless asked."""
    path = check_run_dir(out, overwrite)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot create the run directory {path} ({exc.strerror or exc})") from None
    return path


def write_run_files(run_dir: Path, config: RunConfig, preprocessor: Preprocessor) -> None:
    """The files that describe a run: preprocess.json, then config.toml (what makes the directory a run)."""
    with saving(f"the run files to {run_dir}", "no run was written there", "train again"):
        write_together([(run_dir / PREPROCESS, json_bytes(preprocessor.to_dict()))])
        config.save(run_dir / CONFIG)


def start_run(run_dir: Path, config: RunConfig, preprocessor: Preprocessor, model: torch.nn.Module) -> None:
    """Replace whatever run `run_dir` held by a new one at its initial weights (config.toml removed first,
    written last, so a write cut off midway leaves no run, never a mixed one)."""
    with deferred_interrupt(), saving(f"the new run to {run_dir}", "no run was written there", "train again"):
        for name in (CONFIG, *OUTPUTS):
            (run_dir / name).unlink(missing_ok=True)
        save_weights(run_dir / INITIAL, model)
        write_run_files(run_dir, config, preprocessor)


# --- checking and loading tensors ----------------------------------------------------------------
def check_weights_file(path: str | Path, model: torch.nn.Module) -> dict[str, str]:
    """RunError unless the file's tensor names, dtypes and shapes are those of `model` (which may be on the
    meta device); read from the header only. Returns the file's metadata."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"missing weights file {path}")
    header, metadata = read_safetensors_header(path, RunError)
    expected = {k: (DTYPES.get(v.dtype, str(v.dtype)), tuple(v.shape)) for k, v in model.state_dict().items()}
    missing, unexpected = sorted(set(expected) - set(header)), sorted(set(header) - set(expected))
    problems = [f"missing {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")] if missing \
        else []
    if unexpected:
        problems.append(f"unexpected {unexpected[0][:80]}" + (f" and {len(unexpected) - 1} more"
                                                              if len(unexpected) > 1 else ""))
    for name in sorted(set(expected) & set(header)):
        if header[name] != expected[name]:
            problems.append(f"{name} is {header[name][0]} {list(header[name][1])} in the file, the spec needs "
                            f"{expected[name][0]} {list(expected[name][1])}")
            break
    if problems:
        raise RunError(f"{path}: weights do not match the run's model spec ({'; '.join(problems)})")
    return metadata


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_bytes(path.read_bytes())
    except OSError as exc:
        raise RunError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise RunError(f"{path}: not a valid safetensors file ({str(exc)[:200]})") from None


def _check_finite(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    for name, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise RunError(f"{path}: {name} holds {bad:,} non-finite values (NaN or ±inf); the training diverged or "
                           f"the file was altered (train again, e.g. with a lower --lr)")


def load_weights(path: str | Path, model: torch.nn.Module, *, allow_nonfinite: bool = False) -> None:
    """Load safetensors weights into `model`; RunError when missing, corrupt, not matching the spec, or non-finite
    (unless allow_nonfinite)."""
    path = Path(path)
    check_weights_file(path, model)
    tensors = _read_tensors(path)
    if not allow_nonfinite:
        _check_finite(path, tensors)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0:2]
        raise RunError(f"{path}: weights do not match the run's model spec ({' '.join(first)})") from None


def load_training_state(run_dir: Path, optimizer: Optimizer,
                        keys: set[str] | None = None) -> tuple[int, int]:
    """Restore what save_checkpoint wrote; returns (step, epoch). RunError naming the file when it is damaged.

    `keys`: the per-parameter state names the optimizer keeps (checked when given). The saved param_groups are
    not loaded: the hyperparameters come from the run's config (the learning rate is set at every step).
    """
    meta = _read_state_meta(run_dir)
    path = run_dir / STATE
    if not path.is_file():
        raise RunError(f"{run_dir} has no saved training state ({STATE}); it cannot be resumed")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    header, _ = read_safetensors_header(path, RunError)
    rng = tuple(torch.get_rng_state().shape)
    state: dict[int, dict[str, Any]] = {}
    for name, (dtype, shape) in header.items():
        if name == "rng.torch":
            if (dtype, shape) != ("U8", rng):
                raise RunError(f"{path}: rng.torch must be U8 {list(rng)}, the file holds {dtype} {list(shape)}")
            continue
        index, key = _state_name(path, name, len(params))
        if dtype not in ("F32", "F64", "F16", "BF16") or shape not in ((), tuple(params[index].shape)):
            raise RunError(f"{path}: {name} is {dtype} {list(shape)}; the model's parameter {index} needs a float "
                           f"tensor {list(params[index].shape)} or []")
        state.setdefault(index, {})[key] = None
    if "rng.torch" not in header:
        raise RunError(f"{path}: no rng.torch tensor; the file is not a cnnscope training state")
    tensors = _read_tensors(path)
    _check_finite(path, tensors)
    for name, value in tensors.items():
        if name != "rng.torch":
            index, key = _state_name(path, name, len(params))
            state[index][key] = value
    for name, value in meta["scalars"].items():
        index, key = _state_name(run_dir / STATE_META, f"state.{name}", len(params))
        state.setdefault(index, {})[key] = value
    _check_state_keys(run_dir, state, keys)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise RunError(f"{path}: the optimizer state does not fit this run ({str(exc)[:200]})") from None
    torch.set_rng_state(tensors["rng.torch"])
    return meta["step"], meta["epoch"]


def _state_name(path: Path, name: str, n_params: int) -> tuple[int, str]:
    parts = name.split(".", 2)
    if len(parts) != 3 or parts[0] != "state" or not COUNT.fullmatch(parts[1]) or int(parts[1]) >= n_params \
            or not parts[2]:
        raise RunError(f"{path}: unexpected entry {name[:80]!r}; expected state.<parameter 0-{n_params - 1}>.<name> "
                       f"or rng.torch")
    return int(parts[1]), parts[2]


def _check_state_keys(run_dir: Path, state: dict[int, dict[str, Any]], keys: set[str] | None) -> None:
    if keys is None:
        return
    for index, values in state.items():
        if set(values) != keys:
            raise RunError(f"{run_dir / STATE}: parameter {index} has optimizer state {sorted(values)}, this "
                           f"run's optimizer keeps {sorted(keys)}")


def _read_state_meta(run_dir: Path) -> dict[str, Any]:
    path = run_dir / STATE_META
    meta = read_json(path, RunError)

    def count(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53

    def scalar(value: Any) -> bool:
        return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                 and math.isfinite(value))

    if not isinstance(meta, dict) or not count(meta.get("step")) or not count(meta.get("epoch")):
        raise RunError(f"{path}: expected an object with integer 'step' and 'epoch' >= 0")
    scalars = meta.get("scalars", {})
    if not isinstance(scalars, dict) or not all(scalar(v) for v in scalars.values()):
        raise RunError(f"{path}: 'scalars' must map names to numbers or null")
    return meta


def saved_epoch(run_dir: str | Path) -> int:
    """The epoch `resume` continues from: 0 when only the initial weights were saved (a run stopped before its
    first epoch ended); RunError when the run cannot be resumed or its files come from different epochs."""
    run_dir = Path(run_dir)
    done = len(read_history(run_dir).get("epoch", []))
    if not (run_dir / STATE_META).is_file():
        if done:
            raise RunError(f"{run_dir} has no saved training state ({STATE_META}); it cannot be resumed (its weights "
                           f"can still be inspected)")
        return 0
    epochs = {STATE_META: _read_state_meta(run_dir)["epoch"], HISTORY: done}
    for name in (WEIGHTS, STATE):
        if not (run_dir / name).is_file():
            raise RunError(f"{run_dir} has no {name}; it cannot be resumed")
        mark = read_safetensors_header(run_dir / name, RunError)[1].get("epoch")
        if mark is not None:
            epochs[name] = int(mark) if COUNT.fullmatch(mark) else -1
    if len(set(epochs.values())) > 1:
        found = ", ".join(f"{name}: {epoch}" for name, epoch in epochs.items())
        raise RunError(f"{run_dir}: its files come from different epochs ({found}); a save was cut off, so it "
                       f"cannot be resumed (train again, or inspect its weights)")
    return epochs[STATE_META]
