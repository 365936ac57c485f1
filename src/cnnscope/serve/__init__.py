"""The local web viewer: `create_app(run_path)` returns a Starlette ASGI app; `serve(...)` runs it with uvicorn."""

from __future__ import annotations

from .app import create_app
from .server import serve
from .viewer import RequestError, Viewer

__all__ = ["RequestError", "Viewer", "create_app", "serve"]
