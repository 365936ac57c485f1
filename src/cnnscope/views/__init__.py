"""Views: one function per command (and later per report section and viewer panel).

A view loads a run, selects the images or data it needs, computes through cnnscope.inspect, draws through
cnnscope.plots, writes the figure files and returns one ViewResult: the paths written, a JSON-ready dict of what
it found (`data`; `to_json()` adds "figures") and notes for the reader.

    views.activations: activations (one layer), all_layers (overview), filters
    views.explain:     explain (heat maps with a deletion test)
    views.patterns:    patterns (inputs that maximise maps)
    views.profile:     profile (class profile), top_images, errors
    views.compare:     compare (two runs, maps matched one-to-one), study_matrix (the dashboard's)
    views.panels:      the web viewer's panels (run, layers, grids, map cards, explanations) as JSON
    views.panel_data:  the arrays behind them (maps, units, peak and read-out tables, patterns)
    views.common:      ViewResult and what the views share (run loading, image selection, figure files)

Each function lives in the module of the same family (import it from there: `from cnnscope.views.profile import
profile`, or after `import cnnscope` as cnnscope.views.profile.profile: the modules load on first use); this package
only exports ViewResult, so a module is never shadowed by a function of its name.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from cnnscope.views.common import ViewResult

__all__ = ["ViewResult"]


def __getattr__(name: str) -> Any:
    """A module of views on first use (PEP 562): cnnscope.views.activations.activations(...) after `import cnnscope`."""
    if name in {module.name for module in pkgutil.iter_modules(__path__)}:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'cnnscope.views' has no attribute {name!r}")
