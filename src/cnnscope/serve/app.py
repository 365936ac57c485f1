"""The viewer's ASGI app (Starlette): one static page and a small JSON/PNG API over a loaded run.

Nothing is written to disk: uploads are read into memory (capped), decoded with Pillow, and forgotten.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import CnnscopeError
from . import imaging, render
from .viewer import RequestError, Viewer

log = logging.getLogger("cnnscope")

STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
NO_STORE = {"Cache-Control": "no-store"}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


# --- parameters ------------------------------------------------------------------------------
def _int(params: dict[str, str], name: str, default: int | None = None) -> int:
    value = params.get(name)
    if value is None or value == "":
        if default is None:
            raise RequestError(f"missing parameter {name!r}")
        return default
    try:
        return int(value)
    except ValueError:
        raise RequestError(f"parameter {name!r} must be an integer, received {value!r}") from None


def _bool(params: dict[str, str], name: str, default: bool = False) -> bool:
    value = params.get(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise RequestError(f"parameter {name!r} must be 0 or 1 (or true/false), received {value!r}")


def _cmap(params: dict[str, str], default: str = "magma") -> str:
    name = params.get("cmap") or default
    render.colormap(name)  # RenderError listing the offered names
    return name


def _cols(params: dict[str, str]) -> int:
    cols = _int(params, "cols", 8)
    if not 1 <= cols <= 64:
        raise RequestError(f"parameter 'cols' must be between 1 and 64, received {cols}")
    return cols


def _format(params: dict[str, str]) -> str:
    fmt = params.get("format", "png")
    if fmt not in ("png", "json"):
        raise RequestError(f"parameter 'format' must be 'png' or 'json', received {fmt!r}")
    return fmt


# --- request bodies --------------------------------------------------------------------------
async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes (declared or streamed)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestError(f"the upload is {int(declared):,} bytes; the limit is {limit:,} bytes", status=413)
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise RequestError(f"the upload is larger than the limit of {limit:,} bytes", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def _style(viewer: Viewer) -> str:
    return "fashion-mnist" if viewer.dataset.name == "fashion-mnist" else "mnist"


def _pixels_from_json(data: Any, viewer: Viewer) -> tuple[np.ndarray, list[str]]:
    """JSON {"pixels": base64 of H*W bytes or a nested H×W list} or {"image": "data:image/...;base64,..."}."""
    if not isinstance(data, dict) or not ({"pixels", "image"} & set(data)):
        raise RequestError('JSON bodies must be {"pixels": …} (28×28 values 0..255, or their bytes in base64) '
                           'or {"image": "data:image/png;base64,…"}')
    if "image" in data:
        text = str(data["image"])
        try:
            payload = base64.b64decode(text.split(",", 1)[1] if text.startswith("data:") else text, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError("'image' is not valid base64") from None
        return imaging.prepare(payload, _style(viewer))
    h, w = viewer.run.spec.input_shape[1:]
    pixels = data["pixels"]
    if isinstance(pixels, str):
        try:
            raw = np.frombuffer(base64.b64decode(pixels, validate=True), dtype=np.uint8)
        except (binascii.Error, ValueError):
            raise RequestError("'pixels' is not valid base64") from None
        if raw.size != h * w:
            raise RequestError(f"'pixels' holds {raw.size} bytes; expected {h * w} ({h}×{w})")
        return raw.reshape(h, w), []
    try:
        raw = np.asarray(pixels, dtype=np.float32)
    except (TypeError, ValueError):
        raise RequestError(f"'pixels' must be a {h}×{w} list of numbers") from None
    if raw.shape != (h, w) or not np.isfinite(raw).all():
        raise RequestError(f"'pixels' must be a {h}×{w} list of numbers, received shape {raw.shape}")
    return np.clip(raw, 0, 255).astype(np.uint8), []


async def _posted_image(request: Request, viewer: Viewer,
                        limit: int) -> tuple[np.ndarray, dict[str, str], list[str]]:
    """(raw image (H, W) uint8, parameters, notes) from a POST: multipart 'image' file, JSON, or picture bytes."""
    body = await _read_body(request, limit)
    params = dict(request.query_params)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=1, max_fields=20, max_part_size=limit)
        except Exception as exc:  # malformed multipart: python-multipart/Starlette raise several types
            raise RequestError(f"could not read the multipart form ({exc})") from None
        upload = form.get("image") or form.get("file")
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
        if upload is None or isinstance(upload, str):
            raise RequestError("the form has no 'image' file field; send the picture as image=@file.png")
        data = await upload.read()
        await form.close()
        raw, notes = await run_in_threadpool(imaging.prepare, data, _style(viewer))
        return raw, params, notes
    if kind == "application/json":
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RequestError("the body is not valid JSON") from None
        raw, notes = await run_in_threadpool(_pixels_from_json, data, viewer)
        return raw, params, notes
    raw, notes = await run_in_threadpool(imaging.prepare, body, _style(viewer))
    return raw, params, notes


def _source(params: dict[str, str], viewer: Viewer) -> tuple[np.ndarray, dict[str, Any]]:
    split = params.get("set", "test")
    index = _int(params, "index", 0)
    raw, label = viewer.image(index, split)
    return raw, {"set": split, "index": index, "label": label, "class_name": viewer.class_names[label]}


def _pixels_b64(raw: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(raw, dtype=np.uint8).tobytes()).decode("ascii")


def _grid_headers(meta: dict[str, Any]) -> dict[str, str]:
    keys = ("maps", "rows", "cols", "height", "width", "min", "max", "value_min", "value_max")
    return {**NO_STORE, **{f"X-Grid-{k.replace('_', '-').title()}": str(meta[k]) for k in keys}}


# --- the app ---------------------------------------------------------------------------------
def create_app(run_path: str | os.PathLike, data_dir: str | os.PathLike | None = None, *,
               max_upload_bytes: int = MAX_UPLOAD_BYTES, viewer: Viewer | None = None,
               warm_up: bool = True) -> Starlette:
    """The viewer for one run: `GET /` serves the page, `/api/...` the data (see README.md, "The API").

    Loads the run and its data now, so a bad path or missing data fails before a server starts; with `warm_up`
    a background thread then fills the map cards' caches (top images over the test set, class read-out).
    """
    viewer = viewer or Viewer(run_path, data_dir)
    if warm_up:
        viewer.start_warm_up()

    def threaded(fn: Callable[..., Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            return await run_in_threadpool(fn, dict(request.query_params))
        return endpoint

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=NO_STORE)

    def info(params: dict[str, str]) -> Response:
        return JSONResponse(viewer.info())

    def layers(params: dict[str, str]) -> Response:
        return JSONResponse({"layers": viewer.layer_list()})

    def sample(params: dict[str, str]) -> Response:
        if params.get("index") in (None, "") and ("class" in params or _bool(params, "random")):
            label = _int(params, "class") if params.get("class", "") != "" else None
            params = {**params, "index": str(viewer.random_index(params.get("set", "test"), label))}
        raw, source = _source(params, viewer)
        return JSONResponse({**source, **viewer.predict(raw), "pixels": _pixels_b64(raw),
                             "image": render.data_uri(render.grey_png(raw))}, headers=NO_STORE)

    def image(params: dict[str, str]) -> Response:
        raw, _ = _source(params, viewer)
        return Response(render.grey_png(raw), media_type="image/png")

    def grid_response(raw: np.ndarray, params: dict[str, str], extra: dict[str, Any]) -> Response:
        layer = params.get("layer") or viewer.grid_layers[0].name
        cols, scale, cmap, fmt = _cols(params), _bool(params, "scale"), _cmap(params), _format(params)
        if fmt == "json":
            return JSONResponse({**extra, **viewer.grid_json(layer, raw, cols, scale, cmap)}, headers=NO_STORE)
        png, meta = viewer.grid(layer, raw, cols, scale, cmap)
        return Response(png, media_type="image/png", headers=_grid_headers(meta))

    def activations_get(params: dict[str, str]) -> Response:
        raw, source = _source(params, viewer)
        return grid_response(raw, params, source)

    def card_response(raw: np.ndarray, params: dict[str, str]) -> Response:
        layer = params.get("layer") or viewer.grid_layers[0].name
        return JSONResponse(viewer.card(layer, _int(params, "map"), raw, _cmap(params)), headers=NO_STORE)

    def card_get(params: dict[str, str]) -> Response:
        raw, _ = _source(params, viewer)
        return card_response(raw, params)

    def pattern(params: dict[str, str]) -> Response:
        layer = params.get("layer") or viewer.grid_layers[0].name
        png = viewer.pattern(layer, _int(params, "map"), _cmap(params, "gray"))
        return Response(png, media_type="image/png")

    def colormap_strip(params: dict[str, str]) -> Response:
        return Response(render.colormap_strip(_cmap(params)), media_type="image/png",
                        headers={"Cache-Control": "max-age=3600"})

    async def predict_post(request: Request) -> Response:
        raw, _, notes = await _posted_image(request, viewer, max_upload_bytes)
        result = await run_in_threadpool(viewer.predict, raw)
        return JSONResponse({**result, "pixels": _pixels_b64(raw), "image": render.data_uri(render.grey_png(raw)),
                             "notes": notes}, headers=NO_STORE)

    async def activations_post(request: Request) -> Response:
        raw, params, _ = await _posted_image(request, viewer, max_upload_bytes)
        return await run_in_threadpool(grid_response, raw, params, {"source": "upload"})

    async def card_post(request: Request) -> Response:
        raw, params, _ = await _posted_image(request, viewer, max_upload_bytes)
        return await run_in_threadpool(card_response, raw, params)

    async def request_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status", 400)
        return JSONResponse({"error": str(exc)}, status_code=status)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {404: f"no such page: {request.url.path}", 405: f"{request.method} is not allowed on "
                   f"{request.url.path}"}.get(exc.status_code, str(exc.detail))
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("viewer: %s %s failed", request.method, request.url.path)
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    routes = [
        Route("/", index),
        Route("/api/info", threaded(info)),
        Route("/api/layers", threaded(layers)),
        Route("/api/sample", threaded(sample)),
        Route("/api/image", threaded(image)),
        Route("/api/activations", threaded(activations_get), methods=["GET"]),
        Route("/api/activations", activations_post, methods=["POST"]),
        Route("/api/predict", predict_post, methods=["POST"]),
        Route("/api/card", threaded(card_get), methods=["GET"]),
        Route("/api/card", card_post, methods=["POST"]),
        Route("/api/pattern", threaded(pattern)),
        Route("/api/colormap", threaded(colormap_strip)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers = {CnnscopeError: request_error, HTTPException: http_error, Exception: server_error}
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.viewer = viewer
    return app
