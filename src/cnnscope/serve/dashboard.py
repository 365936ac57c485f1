"""The dashboard: `cnnscope serve DIR` on a folder of runs or a study.

`GET /` is the home page (runs table, overlaid curves, studies); `GET /api/runs` the catalog
(cnnscope.runs.catalog), `GET /api/runs/NAME/history` a run's history.json as it stands, `GET /api/studies/NAME` a
study's trials, `GET /api/studies/NAME/compare?layer=L&images=N` the matrix of mean matched correlation between
its completed trials beside the same matrix at their initial weights (cnnscope.views.compare.study_matrix,
computed in a worker thread, one at a time, and cached by the trials' weight files). The runs and history
answers carry an ETag: a poll with If-None-Match gets 304 and no body when nothing changed (a history's tag is its
file's mtime and size, so an unchanged file is not even read). Every run's single-run viewer is mounted under
`/runs/NAME/` (opened on its first API call, at most MAX_OPEN kept open).
NAME is never a path: it must be one of the catalog's names, so `..` or a link cannot reach another folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from cnnscope.base.errors import CnnscopeError, RequestError, SpecError, brief
from cnnscope.base.threads import BACKGROUND
from cnnscope.runs.catalog import LIVE_SECONDS, Catalog, Listing
from cnnscope.runs.layout import CONFIG, HISTORY, INITIAL, TRIALS, WEIGHTS
from cnnscope.serve.app import create_app, give_back_memory, http_error, request_error, server_error
from cnnscope.serve.guard import HostGuard, SafeJSONResponse
from cnnscope.serve.viewer import Viewer
from cnnscope.views.compare import is_study, study_matrix, study_runs

STATIC = Path(__file__).parent / "static"
MAX_OPEN = 4  # single-run viewers kept loaded (each holds a model and its data set)
COMPARE_IMAGES, MAX_COMPARE_IMAGES = 500, 2000  # test images a study's compare matrix is computed on
MAX_CACHED = 16  # compare answers kept (keyed by study, layer, images and the trials' weight files)
NO_STORE = {"Cache-Control": "no-store"}
_API_LITERAL = re.compile(r"""(["'`(])/api/""")  # "/api/…", '/api/…', `/api/…`, url(/api/…) in the viewer's JS


def viewer_script() -> str:
    """The single-run viewer's script with its API paths made relative, so it works under /runs/NAME/."""
    return _API_LITERAL.sub(r"\1api/", (STATIC / "viewer.js").read_text(encoding="utf-8"))


def viewer_page() -> str:
    """The single-run viewer's page, loading the relative-path script and linking back to the dashboard."""
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    page = page.replace('src="/static/viewer.js"', 'src="/dashboard-run/viewer.js"')
    return page.replace('<div class="brand">', '<div class="brand"><a href="/" title="all runs">← runs</a> ', 1)


def _etag(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def _tagged(request: Request, body: bytes, etag: str) -> Response:
    """200 with the body and its ETag, or 304 when the client already has it (If-None-Match)."""
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


class Dashboard:
    """The catalog of a folder, the runs' histories, and the single-run viewers opened so far."""

    def __init__(self, root: str | os.PathLike, data_dir: str | os.PathLike | None = None, *,
                 hosts: Iterable[str] = (), live_seconds: float = LIVE_SECONDS, max_open: int = MAX_OPEN,
                 warm_up: bool = True) -> None:
        self.catalog = Catalog(root, live_seconds=live_seconds)
        self.data_dir, self.hosts, self.max_open, self.warm_up = data_dir, tuple(hosts), max_open, warm_up
        self._scan_lock = threading.Lock()
        self._open_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._compared: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
        self.compare_limiter = anyio.CapacityLimiter(1)  # one matrix computed at a time; waiting calls hold no thread
        self.viewers: OrderedDict[str, ASGIApp] = OrderedDict()
        self._datasets: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # shared by viewers of one data
        self.scan()

    def scan(self) -> Listing:
        """The catalog now (one scan at a time; unchanged files are not read again)."""
        with self._scan_lock:
            return self.catalog.scan()

    def entry(self, name: str, kind: str = "run") -> dict[str, Any]:
        """The catalog entry called `name` (rescanning once for a new one); RequestError 404 otherwise."""
        for listing in (self.catalog.last, None):
            listing = listing or self.scan()
            found = listing.find(name)
            if found is not None and found["kind"] == kind:
                return found
        raise RequestError(f"no {kind} called {brief(name)} in {self.catalog.root.name or self.catalog.root}; "
                           f"GET /api/runs lists them", status=404)

    def history(self, name: str) -> tuple[str, Any]:
        """(ETag, history.json as parsed) of the run `name`; {} before its first epoch."""
        self.entry(name)
        path = self.catalog.root / name / HISTORY
        key, history = self.catalog.files.get(path, "json")
        return (f'"{key[0]:x}-{key[1]:x}"' if key else '"none"'), (history if history is not None else {})

    def history_tag(self, name: str) -> str | None:
        """The ETag history() would give, from the file's mtime and size alone (no read)."""
        self.entry(name)
        try:
            info = os.lstat(self.catalog.root / name / HISTORY)
        except OSError:
            return '"none"'
        return f'"{info.st_mtime_ns:x}-{info.st_size:x}"'

    def study(self, name: str) -> dict[str, Any]:
        """A study's trials (number, params, status, metrics, run name), its best trial and the compare note."""
        study = self.entry(name, "study")
        listing = self.catalog.last or self.scan()
        prefix = "" if name == "." else name + "/"
        trials = [e for e in listing.runs() if e.get("study") == name and e["name"].startswith(prefix)]
        params = sorted({k for t in trials for k in t.get("settings", {}) if _is_param(k, trials)})
        rows = [{"name": t["name"], "number": t.get("number"), "status": t["status"],
                 "test_accuracy": t.get("test_accuracy"), "best_val_accuracy": t.get("best_val_accuracy"),
                 "value": t.get("value"),  # what the sweep chose on (absent for studies written before)
                 "val_accuracy": t.get("val_accuracy") if t.get("val_source") == "validation" else None,
                 "epochs": t.get("epochs"), "seconds": t.get("seconds"),
                 "params": {k: t["settings"].get(k) for k in params}} for t in trials]
        return {"study": study, "params": params, "trials": rows, "compare": f"/api/studies/{name}/compare"}

    def is_study(self, name: str) -> bool:
        """Whether the last scan lists a study called `name` (no rescan)."""
        found = self.catalog.last.find(name) if self.catalog.last else None
        return found is not None and found["kind"] == "study"

    def compare_trials(self, name: str) -> tuple[list[Path], list[str], tuple]:
        """(completed trial folders, notes on the others, cache stamp of their weight files) of study `name`."""
        self.entry(name, "study")
        folder = self.catalog.root / name
        if not is_study(folder):
            return [], [f"{name}: no {TRIALS}/ folder yet"], ()
        trials, notes = study_runs(folder)
        return trials, notes, tuple((self.catalog.name_of(t), _stamp(t / WEIGHTS), _stamp(t / INITIAL))
                                    for t in trials)

    def compare_cached(self, name: str, layer: str | None, images: int) -> dict[str, Any] | None:
        """The cached compare answer for these trials' current weights, or None."""
        stamp = self.compare_trials(name)[2]
        with self._cache_lock:
            return self._compared.get((name, layer, images, stamp))

    def compare(self, name: str, layer: str | None, images: int) -> dict[str, Any]:
        """The compare matrix of study `name`'s completed trials on `layer` (default: the first conv layer) over
        its first `images` test images (blocking: call in a worker thread; cached by the weight files)."""
        trials, notes, stamp = self.compare_trials(name)
        key = (name, layer, images, stamp)
        with self._cache_lock:
            if key in self._compared:
                return self._compared[key]
        answer = compute_matrix(trials, [self.catalog.name_of(t) for t in trials], layer, images, self.data_dir)
        answer = {"study": name, **answer, "notes": notes + answer["notes"]}
        with self._cache_lock:
            for k in {key, (name, answer["layer"], images, stamp)}:
                self._compared[k] = answer
            while len(self._compared) > MAX_CACHED:
                self._compared.popitem(last=False)
        return answer

    def viewer_app(self, name: str) -> ASGIApp:
        """The single-run viewer of run `name`, loaded on first use (blocking: call in a worker thread).

        Viewers of the same data share one copy of it; the least recently used beyond `max_open` is dropped, its
        warm-up stopped and its memory handed back (see `give_back_memory`: without it, under uvicorn, every
        dropped viewer's model and data stayed until a rare full collection: 0.27 → 7.7 GB in 3 rounds of 8)."""
        with self._open_lock:
            if name in self.viewers:
                self.viewers.move_to_end(name)
                return self.viewers[name]
            self.check_confined(name)
            viewer = Viewer(self.catalog.root / name, self.data_dir, datasets=self._datasets)
            app = create_app(self.catalog.root / name, viewer=viewer, hosts=self.hosts, warm_up=self.warm_up)
            self.viewers[name] = app
            dropped = [self.viewers.popitem(last=False)[1] for _ in range(len(self.viewers) - self.max_open)]
        for old in dropped:
            old.state.viewer.stop_warm_up(timeout=2.0)
        if dropped:
            del dropped, old
            give_back_memory()
        return app

    def check_confined(self, name: str) -> None:
        """RequestError 403 unless every file of run `name` and its npz:/folder: data lie inside the served folder
        (resolved: a link to a place inside is fine, one leading out is refused and never read)."""
        real, folder = self.catalog.root.resolve(), self.catalog.root / name
        for entry in sorted(folder.iterdir()):
            if not _inside(entry, real):
                raise RequestError(f"{name}/{entry.name} leads outside {self.catalog.root.name or real}; the "
                                   f"dashboard reads only files inside the folder it serves", status=403)
        _, config = self.catalog.files.get(folder / CONFIG, "toml")
        data = config.get("data") if isinstance(config, dict) else None
        source = str(data.get("dataset", "")) if isinstance(data, dict) else ""
        kind, _, where = source.partition(":")
        if kind in ("npz", "folder") and where and not _inside(folder / where, real):
            raise RequestError(f"{name}: its data {brief(source, 120)} lies outside {self.catalog.root.name or real}; "
                               f"the dashboard reads only data inside the folder it serves (built-in data sets come "
                               f"from --data-dir): open this run alone with cnnscope serve RUN", status=403)

    def close(self) -> None:
        """Stop every opened viewer's warm-up thread."""
        with self._open_lock:
            for app in self.viewers.values():
                app.state.viewer.stop_warm_up()

    def run_for(self, rest: str) -> tuple[str, str] | None:
        """(run name, path inside it) for a path after /runs/: the longest catalog name it starts with."""
        for listing in (self.catalog.last, None):
            listing = listing or self.scan()
            names = [e["name"] for e in listing.runs() if rest == e["name"] or rest.startswith(e["name"] + "/")]
            if names:
                name = max(names, key=len)
                return name, rest[len(name):]
        return None


def _inside(path: Path, real: Path) -> bool:
    """Whether `path`, links resolved, lies inside the folder `real` (a loop lies nowhere)."""
    try:
        return path.resolve().is_relative_to(real)
    except (OSError, RuntimeError):
        return False


def _stamp(path: Path) -> tuple[int, int] | None:
    """(mtime_ns, size) of a file, None when it is missing."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


def compute_matrix(trials: list[Path], runs: list[str], layer: str | None, images: int,
                   data_dir: str | os.PathLike | None) -> dict[str, Any]:
    """cnnscope.views.compare.study_matrix (the trials' matrix, its baseline at initialisation, "seeds" or
    "trials", the seconds it took), computed while the viewers' warm-ups wait; RequestError for a layer that is
    not a conv layer."""
    try:
        with BACKGROUND:  # viewers' warm-ups pause at their next batch: one team of threads on the cores
            return study_matrix(trials, runs, layer, images, data_dir)
    except SpecError as exc:
        raise RequestError(str(exc)) from None


def _images(value: str | None) -> int:
    """The `images` query parameter: 1 to MAX_COMPARE_IMAGES (default COMPARE_IMAGES); RequestError otherwise."""
    if value is None or value == "":
        return COMPARE_IMAGES
    valid = f"a whole number of test images from 1 to {MAX_COMPARE_IMAGES}"
    if len(value) > 12 or not (value.isascii() and value.strip().isdigit()):
        raise RequestError(f"parameter 'images' must be {valid}, received {brief(value)}")
    number = int(value)
    if not 1 <= number <= MAX_COMPARE_IMAGES:
        raise RequestError(f"parameter 'images' must be {valid}, received {number}")
    return number


def _is_param(key: str, trials: list[dict[str, Any]]) -> bool:
    """Whether a setting differs between the trials of one study (the study's parameters)."""
    values = {repr(t.get("settings", {}).get(key)) for t in trials}
    return len(values) > 1


# --- HTTP ---------------------------------------------------------------------------------------
class Routes:
    """The dashboard's handlers over one Dashboard."""

    def __init__(self, board: Dashboard) -> None:
        self.board = board

    async def index(self, request: Request) -> Response:
        """GET /: the home page."""
        return FileResponse(STATIC / "dashboard.html", headers=NO_STORE)

    async def runs(self, request: Request) -> Response:
        """GET /api/runs: every run and study, with an ETag of the answer."""
        listing = await anyio.to_thread.run_sync(self.board.scan)
        root = self.board.catalog.root.resolve().name
        body = SafeJSONResponse({"root": root, "runs": listing.entries, "differing": listing.differing,
                                 "notes": listing.notes}).body
        return _tagged(request, body, _etag(body))

    async def history(self, request: Request) -> Response:
        """GET /api/runs/NAME/history: the run's history.json as it stands (304 when unchanged)."""
        name = request.path_params["name"]
        tag = await anyio.to_thread.run_sync(self.board.history_tag, name)
        if tag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers={"ETag": tag, "Cache-Control": "no-cache"})
        tag, history = await anyio.to_thread.run_sync(self.board.history, name)
        return _tagged(request, SafeJSONResponse({"name": name, "history": history}).body, tag)

    async def study(self, request: Request) -> Response:
        """GET /api/studies/NAME: the study's trials, parameters and best trial."""
        return await self._study(request, request.path_params["name"])

    async def _study(self, request: Request, name: str) -> Response:
        result = await anyio.to_thread.run_sync(self.board.study, name)
        body = SafeJSONResponse(result).body
        return _tagged(request, body, _etag(body))

    async def study_compare(self, request: Request) -> Response:
        """GET /api/studies/NAME/compare?layer=L&images=N: the compare matrix of the study's completed trials."""
        name, params = request.path_params["name"], request.query_params
        if self.board.is_study(name + "/compare") and not self.board.is_study(name):
            return await self._study(request, name + "/compare")  # a study that is itself called …/compare
        layer, images = params.get("layer") or None, _images(params.get("images"))
        if layer is not None and len(layer) > 200:
            raise RequestError(f"unknown layer {brief(layer)}")
        answer = await anyio.to_thread.run_sync(self.board.compare_cached, name, layer, images)
        if answer is None:
            answer = await anyio.to_thread.run_sync(self.board.compare, name, layer, images,
                                                    limiter=self.board.compare_limiter)
        return SafeJSONResponse(answer, headers=NO_STORE)

    async def viewer_js(self, request: Request) -> Response:
        """GET /dashboard-run/viewer.js: the viewer's script with relative API paths."""
        return Response(viewer_script(), media_type="text/javascript", headers=NO_STORE)


class RunMount:
    """ASGI: /runs/NAME/… goes to the single-run viewer of run NAME (its page, its /api/…); the rest to `app`."""

    def __init__(self, app: ASGIApp, board: Dashboard) -> None:
        self.app, self.board = app, board

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/runs/"):
            await self.app(scope, receive, send)
            return
        try:
            found = await anyio.to_thread.run_sync(self.board.run_for, path[len("/runs/"):])
            if found is None:
                raise RequestError(f"no run called {brief(path[len('/runs/'):].rstrip('/'))}; GET /api/runs lists "
                                   f"them", status=404)
            name, rest = found
            answer = await self._answer(scope, name, rest)
        except CnnscopeError as exc:
            answer = SafeJSONResponse({"error": str(exc)}, status_code=getattr(exc, "status", 400))
        if isinstance(answer, Response):
            await answer(scope, receive, send)
            return
        await answer({**scope, "path": rest, "raw_path": rest.encode("utf-8"), "root_path": ""}, receive, send)

    async def _answer(self, scope: Scope, name: str, rest: str) -> Response | ASGIApp:
        """The page or a redirect answered here, or the run's own app (opened now if needed) for its API."""
        if rest == "":  # from the path as sent (still encoded): a decoded '?' or '#' would end the URL's path
            sent = scope.get("raw_path") or quote(scope["path"]).encode()
            return RedirectResponse(sent.decode("latin-1") + "/", status_code=307)
        if rest == "/" and scope["method"] in ("GET", "HEAD"):
            return Response(viewer_page(), media_type="text/html", headers=NO_STORE)
        if not rest.startswith("/api/"):
            return SafeJSONResponse({"error": f"no such page: {brief(scope['path'])}"}, status_code=404)
        return await anyio.to_thread.run_sync(self.board.viewer_app, name)


def create_dashboard_app(root: str | os.PathLike, data_dir: str | os.PathLike | None = None, *,
                         hosts: Iterable[str] = (), live_seconds: float = LIVE_SECONDS,
                         board: Dashboard | None = None) -> ASGIApp:
    """The dashboard of the runs and studies under `root` (see this module's docstring and README's API)."""
    board = board or Dashboard(root, data_dir, hosts=hosts, live_seconds=live_seconds)
    api = Routes(board)
    routes = [
        Route("/", api.index),
        Route("/api/runs", api.runs),
        Route("/api/runs/{name:path}/history", api.history),
        Route("/api/studies/{name:path}/compare", api.study_compare),
        Route("/api/studies/{name:path}", api.study),
        Route("/dashboard-run/viewer.js", api.viewer_js),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers = {CnnscopeError: request_error, HTTPException: http_error, Exception: server_error}
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.board = board
    guarded = HostGuard(RunMount(app, board), hosts=tuple(hosts))
    return _Wrapped(guarded, board)


class _Wrapped:
    """The guarded ASGI app, with `.state.board` for the server and tests."""

    def __init__(self, app: ASGIApp, board: Dashboard) -> None:
        self.app = app
        self.state = type("State", (), {"board": board})()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
