"""The local web viewer: `create_app(run_path)` returns a Starlette ASGI app; `serve(...)` runs it with uvicorn."""

from __future__ import annotations

from cnnscope.base.errors import RequestError
from cnnscope.serve.app import create_app
from cnnscope.serve.server import serve
from cnnscope.serve.viewer import Viewer

__all__ = ["RequestError", "Viewer", "create_app", "serve"]
