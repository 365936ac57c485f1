"""matplotlib's Agg backend (files, threads, no display) unless a notebook already shows figures inline."""

from __future__ import annotations

import sys

import matplotlib


def _in_ipython() -> bool:
    ipython = sys.modules.get("IPython")
    return ipython is not None and getattr(ipython, "get_ipython", lambda: None)() is not None


# Forcing Agg inside Jupyter would silence the user's own plt.show(); everywhere else (CLI, server threads,
# tests) Agg is the only backend that is always safe.
if not _in_ipython():
    matplotlib.use("Agg")
