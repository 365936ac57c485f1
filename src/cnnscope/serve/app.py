"""The viewer's ASGI app (Starlette): one static page and a small JSON/PNG API over a loaded run.

Nothing is written to disk: uploads are read into memory (capped), decoded with Pillow by the same safe
preparation as the CLI's --image (cnnscope.data.picture_input.prepare_picture), at most MAX_DECODES at a time,
and forgotten. Every answer to a bad request is a 4xx with {"error": …}; JSON answers never carry NaN.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import gc
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from cnnscope.base import imaging
from cnnscope.base.errors import CnnscopeError, RequestError
from cnnscope.data.picture_input import prepare_picture
from cnnscope.serve.bodies import Posted, brief, posted
from cnnscope.serve.guard import HostGuard, SafeJSONResponse
from cnnscope.serve.viewer import Viewer
from cnnscope.views.common import stranger_warnings
from cnnscope.views.panels import explain_method

log = logging.getLogger("cnnscope")

STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_DECODES = 2  # pictures decoded at once (each may take ~70 MB while it is decoded)
MAX_WAITING = 64  # pictures waiting for a decode slot before new ones get 429
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
        if len(value) > 30:  # no index or count is that long; int() of huge strings is slow
            raise ValueError
        return int(value)
    except ValueError:
        raise RequestError(f"parameter {name!r} must be an integer, received {brief(value)}") from None


def _bool(params: dict[str, str], name: str, default: bool = False) -> bool:
    value = params.get(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise RequestError(f"parameter {name!r} must be 0 or 1 (or true/false), received {brief(value)}")


def _cmap(params: dict[str, str], default: str = "magma") -> str:
    name = params.get("cmap") or default
    imaging.colormap(name)  # RenderError listing the offered names
    return name


def _method(params: dict[str, str]) -> str:
    return explain_method(params.get("method"))


def _cols(params: dict[str, str]) -> int:
    cols = _int(params, "cols", 8)
    if not 1 <= cols <= 64:
        raise RequestError(f"parameter 'cols' must be between 1 and 64, received {cols}")
    return cols


def _format(params: dict[str, str]) -> str:
    fmt = params.get("format", "png")
    if fmt not in ("png", "json"):
        raise RequestError(f"parameter 'format' must be 'png' or 'json', received {brief(fmt)}")
    return fmt


def _pixels_b64(raw: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(raw, dtype=np.uint8).tobytes()).decode("ascii")


def _grid_headers(meta: dict[str, Any]) -> dict[str, str]:
    keys = ("maps", "rows", "cols", "height", "width", "min", "max", "value_min", "value_max")
    return {**NO_STORE, **{f"X-Grid-{k.replace('_', '-').title()}": str(meta[k]) for k in keys}}


# --- bounded work ----------------------------------------------------------------------------
def _malloc_trim() -> Callable[[], Any] | None:
    """glibc's malloc_trim (gives freed heap memory back to the system), or None elsewhere."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


def give_back_memory() -> None:
    """Collect reference cycles now and hand freed heap memory back to the system.

    A dropped viewer app is such a cycle (Starlette's router keeps a bound method of itself), so its model and
    data would otherwise wait for a rare full collection; then glibc's malloc_trim returns the freed pages.
    """
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)


class Slots:
    """At most `size` calls at once, in worker threads of their own limiter (waiting calls hold no thread of the
    shared pool, so grid answers never queue behind them); more than `queue` waiting gives 429."""

    def __init__(self, size: int, queue: int, what: str, trim: bool = False) -> None:
        self.limiter = anyio.CapacityLimiter(size)
        self.queue, self.what, self.trim = queue, what, trim
        self.active = 0

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(*args)` in a worker thread when a slot is free; RequestError 429 when too many wait."""
        if self.active >= self.queue:
            raise RequestError(f"too many {self.what} at once ({self.active} waiting); try again in a moment",
                               status=429)
        self.active += 1
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)
        finally:
            self.active -= 1
            if self.trim and self.active == 0 and _TRIM is not None:
                _TRIM(0)  # the decodes' large buffers go back to the system, not into a fragmented heap


# --- the app ---------------------------------------------------------------------------------
def threaded(fn: Callable[[dict[str, str]], Response]) -> Callable[[Request], Any]:
    """An endpoint running a handler of the query parameters in the thread pool (the model work is blocking)."""
    async def endpoint(request: Request) -> Response:
        return await run_in_threadpool(fn, dict(request.query_params))
    return endpoint


class Endpoints:
    """The API's handlers over one loaded run, with the limits they share (decode, pattern and explanation slots)."""

    def __init__(self, viewer: Viewer, max_upload_bytes: int, max_decodes: int) -> None:
        self.viewer, self.max_upload_bytes = viewer, max_upload_bytes
        self.decodes = Slots(max_decodes, MAX_WAITING, "pictures are being prepared", trim=True)
        self.patterns = Slots(1, 16, "patterns are being computed")
        self.explanations = Slots(1, 16, "explanations are being computed")
        self.shape = viewer.pixel_shape  # (H, W), or (H, W, C) for colour models

    async def picture(self, request: Request) -> Posted:
        """The request's picture or pixels (POST bodies), a picture decoded in a decode slot."""
        sent = await posted(request, self.max_upload_bytes, self.shape)
        if sent.picture is not None:
            sent.pixels, sent.notes = await self.decodes.run(prepare_picture, sent.picture, self.viewer.style,
                                                             "the upload")
            sent.notes[:0] = stranger_warnings(self.viewer.run.preprocessor, sent.pixels)
            sent.picture = None
        return sent

    async def index(self, request: Request) -> Response:
        """GET /: the page."""
        return FileResponse(STATIC / "index.html", headers=NO_STORE)

    def info(self, params: dict[str, str]) -> Response:
        """GET /api/info: the run's description."""
        return SafeJSONResponse(self.viewer.info())

    def layers(self, params: dict[str, str]) -> Response:
        """GET /api/layers: every layer, its shape, kind and geometry."""
        return SafeJSONResponse({"layers": self.viewer.layer_list()})

    def source(self, params: dict[str, str]) -> tuple[np.ndarray, dict[str, Any]]:
        """A test or training image chosen by ?set= and ?index=, with where it came from."""
        split = params.get("set", "test")
        where = _int(params, "index", 0)
        raw, label = self.viewer.image(where, split)
        return raw, {"set": split, "index": where, "label": label, "class_name": self.viewer.class_names[label]}

    def sample(self, params: dict[str, str]) -> Response:
        """GET /api/sample: an image (by index, class or at random) with its prediction."""
        if params.get("index") in (None, "") and ("class" in params or _bool(params, "random")):
            label = _int(params, "class") if params.get("class", "") != "" else None
            params = {**params, "index": str(self.viewer.random_index(params.get("set", "test"), label))}
        raw, where = self.source(params)
        return SafeJSONResponse({**where, **self.viewer.predict(raw), "pixels": _pixels_b64(raw),
                                 "image": imaging.data_uri(imaging.picture_png(raw))}, headers=NO_STORE)

    def image(self, params: dict[str, str]) -> Response:
        """GET /api/image: an image as a PNG."""
        raw, _ = self.source(params)
        return Response(imaging.picture_png(raw), media_type="image/png")

    def grid_response(self, raw: np.ndarray, params: dict[str, str], extra: dict[str, Any]) -> Response:
        """A layer's maps for one image as a PNG grid (or JSON with ?format=json)."""
        layer = params.get("layer") or self.viewer.grid_layers[0].name
        cols, scale, cmap, fmt = _cols(params), _bool(params, "scale"), _cmap(params), _format(params)
        if fmt == "json":
            return SafeJSONResponse({**extra, **self.viewer.grid_json(layer, raw, cols, scale, cmap)}, headers=NO_STORE)
        png, meta = self.viewer.grid(layer, raw, cols, scale, cmap)
        return Response(png, media_type="image/png", headers=_grid_headers(meta))

    def activations_get(self, params: dict[str, str]) -> Response:
        """GET /api/activations: the grid of a data set image."""
        raw, where = self.source(params)
        return self.grid_response(raw, params, where)

    def units_get(self, params: dict[str, str]) -> Response:
        """GET /api/units: a dense layer's units (the output layer's logits and probabilities) for a data set
        image."""
        raw, where = self.source(params)
        return SafeJSONResponse({**where, **self.viewer.units(params.get("layer", ""), raw)}, headers=NO_STORE)

    async def units_post(self, request: Request) -> Response:
        """POST /api/units: the same for an uploaded picture."""
        sent = await self.picture(request)
        result = await run_in_threadpool(self.viewer.units, sent.params.get("layer", ""), sent.pixels)
        return SafeJSONResponse({"source": "upload", **result}, headers=NO_STORE)

    def card_response(self, raw: np.ndarray, params: dict[str, str]) -> Response:
        """The card of one map of a layer for one image."""
        layer = params.get("layer") or self.viewer.grid_layers[0].name
        return SafeJSONResponse(self.viewer.card(layer, _int(params, "map"), raw, _cmap(params)), headers=NO_STORE)

    def card_get(self, params: dict[str, str]) -> Response:
        """GET /api/card: a map's card for a data set image."""
        raw, _ = self.source(params)
        return self.card_response(raw, params)

    async def pattern(self, request: Request) -> Response:
        """GET /api/pattern: the input pattern that maximises a map (one at a time)."""
        params = dict(request.query_params)
        layer = params.get("layer") or self.viewer.grid_layers[0].name
        where, cmap = _int(params, "map"), _cmap(params, "gray")
        png = (self.viewer.cached_pattern(layer, where, cmap)
               or await self.patterns.run(self.viewer.pattern, layer, where, cmap))
        return Response(png, media_type="image/png")

    async def explain_get(self, request: Request) -> Response:
        """GET /api/explain: heat map and deletion test of ?method= for a data set image."""
        params = dict(request.query_params)
        method = _method(params)
        raw, where = await run_in_threadpool(self.source, params)
        result = await self.explanations.run(self.viewer.explain, raw, method)
        return SafeJSONResponse({**where, **result}, headers=NO_STORE)

    async def explain_post(self, request: Request) -> Response:
        """POST /api/explain: the same for an uploaded picture."""
        _method(dict(request.query_params))  # a wrong name fails before the picture is decoded
        sent = await self.picture(request)
        result = await self.explanations.run(self.viewer.explain, sent.pixels, _method(sent.params))
        return SafeJSONResponse({"source": "upload", **result}, headers=NO_STORE)

    def colormap_strip(self, params: dict[str, str]) -> Response:
        """GET /api/colormap: a colour map as a PNG strip."""
        return Response(imaging.colormap_strip(_cmap(params)), media_type="image/png",
                        headers={"Cache-Control": "max-age=3600"})

    async def predict_post(self, request: Request) -> Response:
        """POST /api/predict: the class probabilities of an uploaded picture, with the preparation notes."""
        sent = await self.picture(request)
        result = await run_in_threadpool(self.viewer.predict, sent.pixels)
        notes = [n for n in sent.notes if not n.startswith("warning:")]
        warnings = [n.removeprefix("warning:").strip() for n in sent.notes if n.startswith("warning:")]
        return SafeJSONResponse({**result, "pixels": _pixels_b64(sent.pixels), "notes": notes, "warnings": warnings,
                                 "image": imaging.data_uri(imaging.picture_png(sent.pixels))}, headers=NO_STORE)

    async def activations_post(self, request: Request) -> Response:
        """POST /api/activations: the grid of an uploaded picture."""
        sent = await self.picture(request)
        return await run_in_threadpool(self.grid_response, sent.pixels, sent.params, {"source": "upload"})

    async def card_post(self, request: Request) -> Response:
        """POST /api/card: a map's card for an uploaded picture."""
        sent = await self.picture(request)
        return await run_in_threadpool(self.card_response, sent.pixels, sent.params)


def create_app(run_path: str | os.PathLike, data_dir: str | os.PathLike | None = None, *,
               max_upload_bytes: int = MAX_UPLOAD_BYTES, viewer: Viewer | None = None,
               warm_up: bool = True, hosts: Iterable[str] = (), max_decodes: int = MAX_DECODES) -> Starlette:
    """The viewer for one run: `GET /` serves the page, `/api/...` the data (see README.md, "The API").

    Loads the run and its data now, so a bad path or missing data fails before a server starts; with `warm_up`
    a background thread then fills the map cards' caches (top images over the test set, class read-out).
    Requests must be addressed to 127.0.0.1, localhost, [::1] or one of `hosts` (the address bound).
    """
    viewer = viewer or Viewer(run_path, data_dir)
    if warm_up:
        viewer.start_warm_up()
    api = Endpoints(viewer, max_upload_bytes, max_decodes)
    routes = [
        Route("/", api.index),
        Route("/api/info", threaded(api.info)),
        Route("/api/layers", threaded(api.layers)),
        Route("/api/sample", threaded(api.sample)),
        Route("/api/image", threaded(api.image)),
        Route("/api/activations", threaded(api.activations_get), methods=["GET"]),
        Route("/api/activations", api.activations_post, methods=["POST"]),
        Route("/api/predict", api.predict_post, methods=["POST"]),
        Route("/api/units", threaded(api.units_get), methods=["GET"]),
        Route("/api/units", api.units_post, methods=["POST"]),
        Route("/api/card", threaded(api.card_get), methods=["GET"]),
        Route("/api/card", api.card_post, methods=["POST"]),
        Route("/api/pattern", api.pattern),
        Route("/api/explain", api.explain_get, methods=["GET"]),
        Route("/api/explain", api.explain_post, methods=["POST"]),
        Route("/api/colormap", threaded(api.colormap_strip)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers = {CnnscopeError: request_error, HTTPException: http_error, Exception: server_error}
    app = Starlette(routes=routes, exception_handlers=handlers,
                    middleware=[Middleware(HostGuard, hosts=tuple(hosts))])
    app.state.viewer = viewer
    return app


async def request_error(request: Request, exc: Exception) -> Response:
    """A CnnscopeError as a 4xx JSON answer (its `status`, default 400)."""
    status = getattr(exc, "status", 400)
    return SafeJSONResponse({"error": str(exc)}, status_code=status)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's 404/405 as one JSON line saying what was asked."""
    assert isinstance(exc, HTTPException)  # noqa: S101 - Starlette routes only HTTPException here
    path = brief(request.url.path)
    message = {404: f"no such page: {path}", 405: f"{request.method} is not allowed on {path}"}.get(
        exc.status_code, str(exc.detail))
    return SafeJSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)


async def server_error(request: Request, exc: Exception) -> Response:
    """A bug: logged with its traceback, answered as a 500 JSON line."""
    log.exception("viewer: %s %s failed", request.method, request.url.path)
    return SafeJSONResponse({"error": f"internal error: {type(exc).__name__}: {brief(str(exc), 200)}"},
                            status_code=500)
