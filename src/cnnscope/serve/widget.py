"""The viewer in a notebook cell: `widget(run)`, an anywidget that needs no server.

The cell runs the viewer's own page and scripts (static/index.html, viewer.css, common.js, viewer.js) with the
back end of static/widget.js: each request is a message {id, method, path, query, body} to this kernel, and the
HTTP viewer's own Starlette app (serve/app.py's create_app) answers it in memory, through an ASGI call on an event
loop of its own thread. One code path serves both front ends: the same parsing (serve/bodies.py), handlers
(serve/viewer.py), limits and 4xx answers. The answer goes back as {id, status, json, headers}, a PNG as the
message's one buffer.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal
from starlette.types import ASGIApp

from cnnscope.base.errors import ConfigError, RequestError
from cnnscope.serve.app import STATIC, create_app
from cnnscope.serve.bodies import brief

log = logging.getLogger("cnnscope")

INSTALL = "the notebook viewer needs anywidget: pip install 'cnnscope[notebook]'"
METHODS = ("GET", "POST")
PATH = re.compile(r"/api/[a-z][a-z-]{0,29}")  # the shape of the API's routes (the app answers 404 to others)
MAX_PARAMS, MAX_TEXT = 32, 2000
Answer = tuple[dict[str, Any], list[bytes]]


@dataclass(frozen=True)
class Call:
    """One request of the page, checked: what the app is asked."""

    id: int
    method: str
    path: str
    query: dict[str, str]
    body: bytes | None


def _message_id(content: Any) -> int | None:
    """The message's id (a whole number the page counts up), or None when there is none usable."""
    found = content.get("id") if isinstance(content, dict) else None
    if isinstance(found, bool) or not isinstance(found, int) or not 0 <= found < 2**53:
        return None
    return found


def _query(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_PARAMS:
        raise RequestError(f"'query' must be an object of at most {MAX_PARAMS} text parameters, received "
                           f"{brief(value)}")
    for key, text in value.items():
        if not isinstance(text, str) or len(key) > MAX_TEXT or len(text) > MAX_TEXT:
            raise RequestError(f"parameter {brief(key)} must be text of at most {MAX_TEXT} characters, received "
                               f"{brief(text)}")
    return dict(value)


def _body(value: Any) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RequestError(f"'body' must be a JSON object such as {{\"pixels\": …}}, received {brief(value)}")
    try:
        return json.dumps(value, allow_nan=False).encode()
    except (ValueError, TypeError, RecursionError):
        raise RequestError("'body' is not usable JSON (NaN, infinities or nested too deeply)") from None


def parse_message(content: Any) -> Call:
    """A page's message as a Call; RequestError (400) saying what is wrong with it otherwise."""
    ident = _message_id(content)
    if ident is None:
        raise RequestError(f"a message must be an object with a whole-number 'id', received {brief(content)}")
    method, path = content.get("method"), content.get("path")
    if method not in METHODS:
        raise RequestError(f"'method' must be GET or POST, received {brief(method)}")
    if not isinstance(path, str) or not PATH.fullmatch(path):
        raise RequestError(f"'path' must name an API route such as '/api/info', received {brief(path)}")
    return Call(ident, method, path, _query(content.get("query")), _body(content.get("body")))


def _scope(call: Call) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1")]
    if call.body is not None:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(call.body)).encode())]
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": call.method,
            "scheme": "http", "path": call.path, "raw_path": call.path.encode(), "root_path": "",
            "query_string": urlencode(call.query).encode(), "headers": headers,
            "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 80)}


async def asgi_call(app: ASGIApp, call: Call) -> tuple[int, dict[str, str], bytes]:
    """(status, headers in lower case, body) of the app's answer to `call`, over no network."""
    sent = {"status": 500, "headers": {}, "body": []}
    done = anyio.Event()
    body = [{"type": "http.request", "body": call.body or b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if body:
            return body.pop()
        await done.wait()  # nothing more to read: the client "disconnects" once the answer is out
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sent["status"] = message["status"]
            sent["headers"] = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            sent["body"].append(message.get("body", b""))
            if not message.get("more_body"):
                done.set()

    try:
        await app(_scope(call), receive, send)
    except Exception:  # Starlette re-raises a handler's bug after answering 500 (logged by app.server_error)
        if not done.is_set():
            raise
    return sent["status"], sent["headers"], b"".join(sent["body"])


def answer_of(ident: int | None, status: int, headers: dict[str, str], body: bytes) -> Answer:
    """The message back to the page: JSON answers as 'json', anything else (PNG) as the one buffer."""
    kind = headers.get("content-type", "")
    shown = {k: v for k, v in headers.items() if k.startswith("x-grid-")}
    if kind.startswith("application/json"):
        return {"id": ident, "status": status, "json": json.loads(body), "headers": shown}, []
    return {"id": ident, "status": status, "json": None, "headers": {**shown, "content-type": kind}}, [body]


class Dispatcher:
    """Messages in, answers out, through one viewer app, on an event loop in a thread of its own (the kernel's
    own loop is never blocked by the model's work)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._portal_context = start_blocking_portal()
        self._portal: BlockingPortal | None = self._portal_context.__enter__()

    async def _answer(self, content: Any) -> Answer:
        try:
            call = parse_message(content)
        except RequestError as exc:
            return answer_of(_message_id(content), exc.status, {"content-type": "application/json"},
                             json.dumps({"error": str(exc)}).encode())
        return answer_of(call.id, *await asgi_call(self.app, call))

    def answer(self, content: Any) -> Answer:
        """The answer to one message, waiting for it (tests, and pages without a kernel's comm)."""
        return self._running().call(self._answer, content)

    def submit(self, content: Any, reply: Callable[[dict[str, Any], list[bytes]], None]) -> None:
        """Answer one message in the background; `reply(message, buffers)` sends it (from the loop's thread)."""
        future = self._running().start_task_soon(self._answer, content)
        future.add_done_callback(lambda done: _reply(done, reply, content))

    def _running(self) -> BlockingPortal:
        if self._portal is None:
            raise RequestError("this viewer was closed; show a new one with cnnscope.widget(run)", status=410)
        return self._portal

    def close(self) -> None:
        """Stop the event loop (waiting for answers in progress)."""
        if self._portal is not None:
            self._portal = None
            self._portal_context.__exit__(None, None, None)


def _reply(done: Any, reply: Callable[[dict[str, Any], list[bytes]], None], content: Any) -> None:
    try:
        reply(*done.result())
    except Exception:  # a bug: the page shows no answer to this request, the log says why
        log.exception("notebook viewer: no answer to %s", brief(content, 200))


@functools.cache
def esm_source() -> str:
    """The widget's ES module: the viewer's page, styles and scripts, then static/widget.js."""
    page = re.search(r"<body[^>]*>(.*)</body>", (STATIC / "index.html").read_text(encoding="utf-8"), re.S)
    style = (STATIC / "viewer.css").read_text(encoding="utf-8").replace(":root", ":host")
    style = style.replace("\nbody {", "\n.cnnscope-body {")  # the page's body is a div of the shadow root
    names = ("common.js", "png.js", "viewer.js")  # the viewer page's own scripts, in its order
    scripts = "\n".join((STATIC / name).read_text(encoding="utf-8") for name in names)
    return (f"const PAGE = {json.dumps(page.group(1) if page else '')};\nconst STYLE = {json.dumps(style)};\n"
            f"function startViewer(window, document) {{\n{scripts}\n}}\n"
            + (STATIC / "widget.js").read_text(encoding="utf-8"))


@functools.cache
def widget_class() -> type:
    """The anywidget class (built on first use: anywidget is the notebook extra, not needed by the HTTP viewer)."""
    try:
        import anywidget  # the notebook extra
    except ImportError:
        raise ConfigError(INSTALL) from None

    class ViewerWidget(anywidget.AnyWidget):
        """The viewer of one run in a notebook cell; close() stops its loop and its background work."""

        _esm = esm_source()

        def __init__(self, dispatcher: Dispatcher, viewer: Any) -> None:
            super().__init__()
            self.dispatcher, self.viewer = dispatcher, viewer
            self.on_msg(lambda _, content, buffers: self.dispatcher.submit(content, self._reply))

        def _reply(self, message: dict[str, Any], buffers: list[bytes]) -> None:  # not _send: ipywidgets has one
            self.send(message, buffers)

        def close(self) -> None:
            self.viewer.stop_warm_up()
            self.dispatcher.close()
            super().close()

    return ViewerWidget


def widget(run: Any, data_dir: str | os.PathLike | None = None, *, warm_up: bool = True) -> Any:
    """The interactive viewer of `run` (a Run or its directory) in a notebook cell, with no server: draw or pick an
    image, see the prediction, click a map for its card, switch layers and attribution methods.

    It is the viewer of `cnnscope serve` (the same page, the same handlers and answers), talking to this kernel
    instead of over HTTP. Needs the notebook extra (anywidget). With `warm_up`, a background thread fills the map
    cards' caches, as the server does.
    """
    cls = widget_class()
    app = create_app(Path(getattr(run, "path", run)), data_dir, warm_up=warm_up)
    return cls(Dispatcher(app), app.state.viewer)


__all__ = ["Call", "Dispatcher", "asgi_call", "esm_source", "parse_message", "widget"]
