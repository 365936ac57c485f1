"""Where the code runs: under IPython, and in a Jupyter kernel (a notebook, VS Code, JupyterLab), where pictures,
HTML and widgets can be shown. IPython is never imported here: a process that did not load it is not in it."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any


def ipython_shell() -> Any:
    """The running IPython shell, or None (plain Python, or IPython loaded but not running)."""
    ipython = sys.modules.get("IPython")
    return getattr(ipython, "get_ipython", lambda: None)() if ipython is not None else None


def in_ipython() -> bool:
    """Running under IPython or Jupyter (where display() shows pictures)."""
    return ipython_shell() is not None


def in_kernel() -> bool:
    """Running in a Jupyter kernel (a notebook's cell), not in a terminal IPython."""
    return getattr(ipython_shell(), "kernel", None) is not None


def has_widgets() -> bool:
    """A Jupyter kernel with ipywidgets installed (the `notebook` extra): progress bars can be widgets."""
    return in_kernel() and importlib.util.find_spec("ipywidgets") is not None


__all__ = ["has_widgets", "in_ipython", "in_kernel", "ipython_shell"]
