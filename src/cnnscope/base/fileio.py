"""Small file helpers: atomic writes (temp file + rename), strict TOML/JSON reading, safetensors headers."""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import tomli_w

from cnnscope.base.errors import CnnscopeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MAX_TEXT_BYTES = 64 * 2**20  # a JSON/TOML file cnnscope reads (history.json of a long run is a few MB)
MAX_HEADER_BYTES = 100 * 2**20  # the safetensors library's own bound on a header
MAX_INT_DIGITS = 40  # nothing cnnscope reads is meaningful beyond 2**64 (20 digits); bigger integers are refused
DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp_path) on a temp file next to `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_for(path)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _temp_for(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write(tmp: Path, data: bytes) -> None:
    """Write and flush `data` to disk (an OSError such as ENOSPC comes from here)."""
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o666 & ~_umask())


def write_together(files: Sequence[tuple[str | Path, bytes]]) -> None:
    """Write every file to a temp name first, then rename them in order: a failed write changes none of them."""
    temps: list[Path] = []
    try:
        for path, data in files:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            temps.append(_temp_for(Path(path)))
            _write(temps[-1], data)
        for (path, _), tmp in zip(files, temps, strict=True):
            os.replace(tmp, path)
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write bytes to `path` through a temporary file and a rename: never half-written."""
    write_together([(path, data)])


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 text to `path` through a temporary file and a rename."""
    write_together([(path, text.encode("utf-8"))])


def json_bytes(data: Any) -> bytes:
    """`data` as indented UTF-8 JSON bytes ending in a newline."""
    return (json.dumps(data, indent=2) + "\n").encode("utf-8")


def write_json(path: str | Path, data: Any) -> None:
    """Write `data` as indented JSON to `path`, atomically."""
    write_together([(path, json_bytes(data))])


def _read_bytes(path: Path, error: type[CnnscopeError], max_bytes: int) -> bytes:
    if not path.is_file():
        raise error(f"file not found: {path}")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise error(f"{path}: {size:,} bytes is too large for this file (at most {max_bytes:,})")
        return path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _bounded_int(text: str) -> int:
    """JSON's integer hook: a number of at most MAX_INT_DIGITS digits, refused before Python converts it."""
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {digits:,} digits; at most {MAX_INT_DIGITS} are accepted")
    return int(text)


def _check_ints(value: Any) -> Any:
    """`value` unchanged; ValueError if it holds an integer beyond MAX_INT_DIGITS digits (TOML has no int hook)."""
    stack, limit = [value], 10**MAX_INT_DIGITS
    while stack:
        item = stack.pop()
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) >= limit:
            raise ValueError(f"an integer of more than {MAX_INT_DIGITS} digits; at most {MAX_INT_DIGITS} are accepted")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return value


def loads_json(text: str | bytes) -> Any:
    """JSON with integers bounded to MAX_INT_DIGITS digits; ValueError (or RecursionError) when it is not usable."""
    return json.loads(text, parse_int=_bounded_int)


def loads_toml(text: str) -> dict[str, Any]:
    """TOML with integers bounded to MAX_INT_DIGITS digits; ValueError (TOMLDecodeError is one) when not usable."""
    return _check_ints(tomllib.loads(text))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if "integer string conversion" in str(exc):  # Python's own limit, hit inside tomllib before our check
        return f"an integer of more than 4,300 digits; at most {MAX_INT_DIGITS} are accepted"
    return str(exc)[:200]


def _parse(path: str | Path, error: type[CnnscopeError], max_bytes: int, loads: Callable[[str], Any],
           what: str) -> Any:
    """Read a text file of at most `max_bytes` and parse it; `error` saying why it is missing, too large or invalid."""
    path = Path(path)
    raw = _read_bytes(path, error, max_bytes)
    try:
        return loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError, JSON/TOMLDecodeError are ValueErrors
        raise error(f"{path}: not valid {what} ({_reason(exc)})") from None


def read_json(path: str | Path, error: type[CnnscopeError], max_bytes: int = MAX_TEXT_BYTES) -> Any:
    """Parse a JSON file of at most `max_bytes`; `error` saying why when it is missing, too large or invalid."""
    return _parse(path, error, max_bytes, loads_json, "JSON")


def write_toml(path: str | Path, data: dict[str, Any]) -> None:
    """Write `data` as TOML to `path`, atomically."""
    atomic_write_text(path, tomli_w.dumps(data))


def read_toml(path: str | Path, error: type[CnnscopeError], max_bytes: int = MAX_TEXT_BYTES) -> dict[str, Any]:
    """Parse a TOML file of at most `max_bytes`; `error` saying why when it is missing, too large or invalid."""
    return _parse(path, error, max_bytes, loads_toml, "TOML")


# --- safetensors headers -------------------------------------------------------------------------
def read_safetensors_header(path: str | Path, error: type[CnnscopeError]
                            ) -> tuple[dict[str, tuple[str, tuple[int, ...]]], dict[str, str]]:
    """Tensor name -> (dtype, shape), and the metadata, of a safetensors file; checked before any tensor is read.

    The layout: an 8-byte little-endian header length, that many bytes of JSON, then the tensor data.
    """
    path = Path(path)
    bad = f"{path}: not a valid safetensors file"
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else -1
            if length < 2 or length > min(size - 8, MAX_HEADER_BYTES):
                raise error(f"{bad} (its header length {length:,} does not fit the file's {size:,} bytes)")
            raw = fh.read(length)
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        header = loads_json(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise error(f"{bad} (its header is not JSON: {_reason(exc)})") from None
    if not isinstance(header, dict):
        raise error(f"{bad} (its header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise error(f"{bad} (its __metadata__ is not a table of strings)")
    data_size = size - 8 - length
    return {name: _tensor_entry(name, info, data_size, bad, error) for name, info in header.items()}, metadata


def _tensor_entry(name: str, info: Any, data_size: int, bad: str,
                  error: type[CnnscopeError]) -> tuple[str, tuple[int, ...]]:
    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    if not isinstance(info, dict) or info.get("dtype") not in DTYPE_SIZES:
        raise error(f"{bad} (tensor {name[:80]!r} has no valid dtype)")
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if not isinstance(shape, list) or len(shape) > 16 or not all(is_int(d) for d in shape):
        raise error(f"{bad} (tensor {name[:80]!r} has an invalid shape)")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(is_int(o) for o in offsets)
            and offsets[0] <= offsets[1] <= data_size
            and offsets[1] - offsets[0] == math.prod(shape) * DTYPE_SIZES[info["dtype"]]):
        raise error(f"{bad} (tensor {name[:80]!r}: its data offsets do not match its shape and the file size)")
    return info["dtype"], tuple(shape)
