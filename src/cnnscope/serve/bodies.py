"""Request bodies -> a picture to prepare or the model's pixels ((H, W), or (H, W, C) for colour models); anything
malformed is a RequestError (400).

Everything stays in memory: the body is read with a byte cap, multipart files are never spooled to disk, and
nothing is decoded here (decoding is `cnnscope.data.picture_input.prepare_picture`, run by the app with a limit on
how many run at once).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import Request

from cnnscope.base.errors import RequestError
from cnnscope.data.picture_input import sniff_picture

PICTURE_HELP = ("send a picture (PNG, JPEG, GIF, BMP, WebP) as the body or as a multipart file field 'image', "
                'or JSON {"pixels": …} or {"image": "data:image/png;base64,…"}')


@dataclass
class Posted:
    """What a POST carried: picture bytes to decode, or ready pixels; plus form fields as parameters."""

    params: dict[str, str]
    picture: bytes | None = None
    pixels: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def brief(value: object, limit: int = 60) -> str:
    """repr(value) cut to `limit` characters (never fails, even for ints too long to print)."""
    try:
        text = repr(value)
    except ValueError:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 1] + "…"


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes (declared or streamed)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and len(declared) < 20 and int(declared) > limit:
        raise RequestError(f"the upload is {int(declared):,} bytes; the limit is {limit:,} bytes", status=413)
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise RequestError(f"the upload is larger than the limit of {limit:,} bytes", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


async def _once(body: bytes):
    yield body


async def _form(request: Request, body: bytes, kind: str, limit: int) -> tuple[bytes | None, dict[str, str]]:
    """(the 'image' (or 'file') part's bytes or None, the text fields) of a multipart or urlencoded body."""
    try:
        if kind == "multipart/form-data":
            parser = MultiPartParser(request.headers, _once(body), max_files=1, max_fields=20, max_part_size=limit)
            parser.spool_max_size = limit + 1  # file parts stay in memory (the body is capped at `limit` anyway)
        else:
            parser = FormParser(request.headers, _once(body), max_fields=20, max_part_size=limit)
        form = await parser.parse()
    except MultiPartException as exc:
        raise RequestError(f"could not read the form: {exc.message}") from None
    except (ValueError, KeyError, UnicodeDecodeError) as exc:  # python-multipart on a malformed body
        raise RequestError(f"could not read the form ({brief(str(exc))})") from None
    try:
        upload = form.get("image") or form.get("file")
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        data = None if upload is None or isinstance(upload, str) else await upload.read()
    finally:
        await form.close()
    return data, fields


def parse_json(body: bytes) -> Any:
    """The body as JSON; NaN/Infinity, numbers beyond 4300 digits, too deep nesting or bad UTF-8 are a 400."""
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    try:
        return json.loads(body, parse_constant=refuse)
    except json.JSONDecodeError as exc:
        raise RequestError(f"the body is not valid JSON ({exc.msg} at character {exc.pos})") from None
    except RecursionError:
        raise RequestError("the body is not usable JSON: it is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:  # NaN, a 5000-digit integer, bytes that are not UTF-8
        raise RequestError(f"the body is not usable JSON ({brief(str(exc), 80)})") from None


def data_uri_bytes(value: Any) -> bytes:
    """The picture in {"image": "data:image/png;base64,…"} (a bare base64 string is accepted too)."""
    if not isinstance(value, str):
        raise RequestError(f"'image' must be a data URI string such as 'data:image/png;base64,…', received "
                           f"{type(value).__name__}")
    payload = value
    if value.startswith("data:"):
        header, comma, payload = value[5:].partition(",")
        if not comma or not header.lower().endswith(";base64"):
            raise RequestError(f"'image' must be a base64 data URI such as 'data:image/png;base64,…', received "
                               f"{brief(value)}")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"'image' is not valid base64 (received {brief(value)})") from None


def _check_nested(value: Any, shape: tuple[int, ...], expected: str, where: tuple[int, ...] = ()) -> None:
    """RequestError unless `value` is nested lists of `shape` holding numbers 0..255, naming the first bad item."""
    if len(where) == len(shape):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 255:
            at = ", ".join(f"{name} {i}" for name, i in zip(("row", "column", "channel"), where, strict=False))
            raise RequestError(f"{expected}, received {brief(value)} at {at}")
        return
    if not isinstance(value, list) or len(value) != shape[len(where)]:
        got = f"a list of {len(value)}" + ("" if where else " rows") if isinstance(value, list) else \
            type(value).__name__
        at = ", ".join(f"{name} {i}" for name, i in zip(("row", "column"), where, strict=False))
        raise RequestError(f"{expected}, received {got}" + (f" at {at}" if where else ""))
    for i, item in enumerate(value):
        _check_nested(item, shape, expected, (*where, i))


def pixels_array(value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """{"pixels": …} as uint8 (H, W) (colour models: (H, W, C)): nested lists of numbers 0..255, or the bytes in
    base64 (row by row, colour channels interleaved)."""
    size = int(np.prod(shape))
    dims = "×".join(str(d) for d in shape)
    if isinstance(value, str):
        try:
            raw = np.frombuffer(base64.b64decode(value, validate=True), dtype=np.uint8)
        except (binascii.Error, ValueError):
            raise RequestError("'pixels' is not valid base64") from None
        if raw.size != size:
            raise RequestError(f"'pixels' holds {raw.size} bytes; expected {size} ({dims})")
        return raw.reshape(shape).copy()
    expected = f"'pixels' must be a {dims} list of numbers from 0 to 255 (or its {size} bytes in base64)"
    _check_nested(value, tuple(shape), expected)
    return np.asarray(value, dtype=np.float64).round().astype(np.uint8)


def _from_json(data: Any, params: dict[str, str], shape: tuple[int, ...]) -> Posted:
    if not isinstance(data, dict) or not ({"pixels", "image"} & set(data)):
        dims = "×".join(str(d) for d in shape)
        raise RequestError(f'JSON bodies must be {{"pixels": …}} ({dims} values 0..255, or their bytes in base64) '
                           'or {"image": "data:image/png;base64,…"}')
    if "image" in data:
        return Posted(params, picture=data_uri_bytes(data["image"]))
    return Posted(params, pixels=pixels_array(data["pixels"], shape))


async def posted(request: Request, limit: int, shape: tuple[int, ...]) -> Posted:
    """Read a POST: multipart file 'image', picture bytes (whatever the Content-Type says), or JSON."""
    body = await read_body(request, limit)
    params = dict(request.query_params)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        data, fields = await _form(request, body, kind, limit)
        params.update(fields)
        if data is None:
            raise RequestError("the form has no 'image' file field; send the picture as image=@file.png")
        return Posted(params, picture=data)
    if sniff_picture(body):  # curl --data-binary sends pictures as x-www-form-urlencoded; trust the bytes
        return Posted(params, picture=body)
    if kind == "application/json" or (kind in ("", "text/plain") and body.lstrip()[:1] == b"{"):
        return _from_json(parse_json(body), params, shape)
    if kind == "application/x-www-form-urlencoded":
        _, fields = await _form(request, body, kind, limit)
        params.update(fields)
        raise RequestError("the form has no 'image' file field; send the picture as image=@file.png "
                           "(multipart) or as the body (--data-binary @file.png)")
    if not body:
        raise RequestError(f"the body is empty; {PICTURE_HELP}")
    return Posted(params, picture=body)  # let the decoder say what is wrong with it
