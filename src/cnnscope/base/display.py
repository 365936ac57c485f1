"""The hook through which a notebook shows cnnscope's objects (a run, a model spec, a data set, a view's result) as
HTML: a class inherits RichDisplay, and IPython calls its `_repr_html_`.

The HTML itself is built in cnnscope.views.display, like every front end's. These classes live in layers below
views/, so the hook imports it only when a notebook asks for the picture: the one import against the layering
(tests/test_layering.py names it), run at display time, never at import time.
"""

from __future__ import annotations


class RichDisplay:
    """Mixin: `_repr_html_` for Jupyter, VS Code and marimo, built by cnnscope.views.display.html_of."""

    __slots__ = ()

    def _repr_html_(self) -> str:
        # views/ sits above this class's layer: imported here, when a notebook displays the object
        from cnnscope.views.display import html_of

        return html_of(self)


__all__ = ["RichDisplay"]
