"""Run the viewer with uvicorn (what `cnnscope serve` calls): bind first, then load, then serve.

A run directory gets the single-run viewer; any other folder (of runs, or a study) the dashboard."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

from cnnscope.base.errors import CnnscopeError
from cnnscope.base.progress import say
from cnnscope.runs.layout import CONFIG
from cnnscope.serve.app import create_app
from cnnscope.serve.dashboard import Dashboard, create_dashboard_app
from cnnscope.serve.viewer import Viewer


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on host:port; CnnscopeError (one line) for a bad port, a bad host or a busy port.

    Called before anything else starts (no thread, no model), so a refusal exits cleanly.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise CnnscopeError(f"--port must be between 0 and 65535, received {port!r}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CnnscopeError(f"--host {host!r:.80} is not a usable address ({exc.strerror}); use 127.0.0.1 "
                            f"(this machine) or an address of this machine") from None
    except (UnicodeError, ValueError, TypeError) as exc:
        raise CnnscopeError(f"--host {host!r:.80} is not a usable address ({exc}); use 127.0.0.1") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is fine
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise CnnscopeError(f"cannot listen on {host}:{port} ({exc.strerror}); pass another --port, or a --host "
                            f"this machine has") from None
    return sock


def check_port(host: str, port: int) -> None:
    """CnnscopeError with a clear message when `port` cannot be bound on `host` (in use, bad address)."""
    bind_socket(host, port).close()


def url_for(host: str, port: int) -> str:
    """The address to open in a browser for a server bound to host:port."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def serve(run_path: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000,
          data_dir: str | os.PathLike | None = None, on_ready: Callable[[str], None] | None = None) -> None:
    """Bind host:port, load the run, call on_ready(url), then serve until interrupted.

    The port is taken before any thread starts; the warm-up thread is stopped and joined on every way out
    (Ctrl-C included), so the process never ends with a background thread inside torch.
    """
    if is_dashboard(run_path):
        serve_dashboard(run_path, host, port, data_dir, on_ready)
        return
    sock = bind_socket(host, port)
    viewer = None
    try:
        say("loading the run %s and its data", run_path)
        viewer = Viewer(run_path, data_dir)
        app = create_app(run_path, viewer=viewer, warm_up=False, hosts=[host])
        server = _uvicorn_server(app, host, sock, on_ready)
        viewer.start_warm_up()
        say("starting the web server")
        server.run(sockets=[sock])
    finally:
        if viewer is not None:
            viewer.stop_warm_up()
        sock.close()


def is_dashboard(path: str | os.PathLike) -> bool:
    """Whether `cnnscope serve PATH` opens the dashboard: PATH is a folder but not a run directory."""
    path = Path(path)
    return path.is_dir() and not (path / CONFIG).exists()


def _uvicorn_server(app, host: str, sock: socket.socket, on_ready: Callable[[str], None] | None):
    """A uvicorn server that calls on_ready(url) once it answers requests (its start-up done), not before."""
    import uvicorn  # the server itself: loaded only when one is run (tests use Starlette's test client)

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and on_ready is not None:
                on_ready(url_for(host, sock.getsockname()[1]))

    config = uvicorn.Config(app, host=host, port=sock.getsockname()[1], log_level="warning", access_log=False,
                            lifespan="off", timeout_graceful_shutdown=5)
    return Server(config)


def serve_dashboard(root: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000,
                    data_dir: str | os.PathLike | None = None, on_ready: Callable[[str], None] | None = None) -> None:
    """The dashboard of the runs and studies under `root`: bind, scan, call on_ready(url), serve until interrupted;
    the single-run viewers it opened stop their warm-up threads on every way out."""
    sock = bind_socket(host, port)
    board = None
    try:
        say("scanning %s for runs and studies", root)
        board = Dashboard(root, data_dir, hosts=[host])
        server = _uvicorn_server(create_dashboard_app(root, board=board, hosts=[host]), host, sock, on_ready)
        say("starting the web server")
        server.run(sockets=[sock])
    finally:
        if board is not None:
            board.close()
        sock.close()
