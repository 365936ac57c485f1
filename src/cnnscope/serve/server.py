"""Run the viewer with uvicorn (what `cnnscope serve` calls)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from ..errors import CnnscopeError
from .app import create_app


def check_port(host: str, port: int) -> None:
    """CnnscopeError with a clear message when `port` cannot be bound on `host` (in use, bad address)."""
    if not 0 <= port <= 65535:
        raise CnnscopeError(f"--port must be between 0 and 65535, received {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CnnscopeError(f"--host {host!r} is not a usable address ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is fine
        try:
            probe.bind(address)
        except OSError as exc:
            raise CnnscopeError(f"cannot listen on {host}:{port} ({exc.strerror}); pass another --port") from None


def url_for(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def serve(run_path: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000,
          data_dir: str | os.PathLike | None = None, on_ready: Callable[[str], None] | None = None) -> None:
    """Load the run, check the port, call on_ready(url), then serve until interrupted."""
    import uvicorn

    app = create_app(run_path, data_dir)
    check_port(host, port)
    if on_ready is not None:
        on_ready(url_for(host, port))
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
