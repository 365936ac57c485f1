"""The colour ranges maps are shown with, computed once here (figures in cnnscope.plots receive them): one range
for a layer (ending at a percentile of its values), one per map, a fixed one, or the series' standardisation;
and for an overview of every layer, each layer relative to its own range under one shared colour bar."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from cnnscope.base.errors import ConfigError, choice_error
from cnnscope.inspect.activations import as_maps, standardize_maps

NORMS = ("map", "layer", "fixed")
DEFAULT_CLIP = 99.0  # --norm layer: the colour range ends at this percentile (benchmarks/README.md)


@dataclass(frozen=True)
class MapDisplay:
    """Maps ready to draw with one colour scale that is true for every one of them."""

    values: np.ndarray  # (maps, h, w), the numbers to colour
    vmin: float
    vmax: float
    label: str  # what the colour bar's numbers mean
    signed: bool  # negative values present: use a diverging map centred on zero
    extend: str  # 'neither', 'min', 'max' or 'both': values beyond the colour range were clipped
    words: str = ""  # the range in words, for a figure's subtitle ('' when nothing more is to be said)


def display_maps(maps: np.ndarray, norm: str = "layer", fixed: tuple[float, float] | None = None,
                 scale: bool = False) -> MapDisplay:
    """Normalise one image's maps for display.

    norm='layer': one range (min..max of all maps; ±max|x| when signed) so maps are comparable; 'map': each map
    its own range (0..1 of its min..max, or −1..1 of its max |x| when signed); 'fixed': the given (lo, hi).
    scale=True: the series' standardise-and-clip (a per-map norm; values 0..255).
    """
    if norm not in NORMS:
        raise choice_error(ConfigError, "norm", norm, NORMS)
    x = as_maps(maps).astype(np.float32)
    if scale:
        if norm != "map":
            raise ConfigError(f"scale (standardise and clip) is a per-map normalisation; it cannot be combined "
                              f"with norm {norm!r} (use norm 'map' or leave scale off)")
        return MapDisplay(standardize_maps(x), 0.0, 255.0, "per map: (x − mean)/std·64 + 128", False, "neither")
    finite = x[np.isfinite(x)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    signed = lo < 0
    if norm == "fixed":
        if fixed is None or len(fixed) != 2:
            raise ConfigError("norm 'fixed' needs a range: LO HI")
        flo, fhi = float(fixed[0]), float(fixed[1])
        if not (math.isfinite(flo) and math.isfinite(fhi) and flo < fhi):
            raise ConfigError(f"fixed range needs LO < HI, received {flo:g} {fhi:g}")
        extend = {(False, False): "neither", (True, False): "min", (False, True): "max", (True, True): "both"}[
            (lo < flo, hi > fhi)]
        return MapDisplay(np.clip(x, flo, fhi), flo, fhi, "activation (fixed range)", flo < 0 < fhi, extend)
    if norm == "layer":
        if signed:
            m = max(abs(lo), abs(hi)) or 1.0
            return MapDisplay(x, -m, m, "activation (one range for the layer)", True, "neither")
        return MapDisplay(x, lo, hi if hi > lo else lo + 1.0, "activation (one range for the layer)", False,
                          "neither")
    axes = (1, 2)
    if signed:
        m = np.abs(x).max(axis=axes, keepdims=True)
        return MapDisplay(x / np.where(m > 0, m, 1.0), -1.0, 1.0, "per map: x / max|x| of the map", True,
                          "neither")
    mn, mx = x.min(axis=axes, keepdims=True), x.max(axis=axes, keepdims=True)
    span = mx - mn
    return MapDisplay(np.where(span > 0, (x - mn) / np.where(span > 0, span, 1.0), 0.0).astype(np.float32),
                      0.0, 1.0, "per map: 0 = its min, 1 = its max", False, "neither")


def layer_display(maps: np.ndarray, norm: str | None = None, fixed: tuple[float, float] | None = None,
                  scale: bool = False, clip: float = DEFAULT_CLIP) -> MapDisplay:
    """One image's maps (maps, h, w) as cnnscope.plots.activations_figure draws them: display_maps by `norm`
    (default 'layer', or 'map' with `scale`), the layer's range ending at its clip-th percentile (clip_display),
    and the range in words."""
    norm = norm or ("map" if scale else "layer")
    display = display_maps(maps, norm, fixed, scale)
    if norm == "layer" and not scale:
        clipped = clip_display(display, clip)
        if clipped.words:
            return clipped
    return dataclasses.replace(display, words=_scale_words(display, norm, scale))


def clip_display(display: MapDisplay, clip: float = DEFAULT_CLIP) -> MapDisplay:
    """A one-range display whose top ends at the clip-th percentile of the values (of |x| when signed), so a few
    very bright nodes do not leave most maps black; the values above it get the end colour and the colour bar an
    arrow. Its `words` say so ('' and the display unchanged when nothing is clipped)."""
    x = display.values[np.isfinite(display.values)]
    if clip >= 100 or x.size == 0:
        return display
    top = float(np.percentile(np.abs(x) if display.signed else x, clip))
    full = display.vmax
    if not (top > (0.0 if display.signed else display.vmin) and top < full):
        return display
    above = float(np.mean(np.abs(x) > top if display.signed else x > top))
    low, high = (bool(x.min() < -top), bool(x.max() > top)) if display.signed else (False, True)
    extend = {(True, True): "both", (True, False): "min", (False, True): "max"}.get((low, high), "neither")
    vmin = -top if display.signed else display.vmin
    label = f"activation (one range for the layer, to its {clip:g}th percentile)"
    words = (f"colours: one range for the layer, {vmin:.3g} to {top:.3g} = its {clip:g}th percentile "
             f"(max {full:.3g}; the top {above:.1%} of values share the end colour, arrow on the bar)")
    return MapDisplay(display.values, vmin, top, label, display.signed, extend, words)


def is_vector(values: np.ndarray) -> bool:
    """Whether one image's layer output is a vector (units,) or (units, 1, 1), such as a dense layer's: drawn as
    bars (cnnscope.plots.vector_figure), not as maps."""
    values = np.asarray(values)
    return values.ndim == 1 or (values.ndim == 3 and values.shape[1:] == (1, 1))


def _scale_words(display: MapDisplay, norm: str, scale: bool) -> str:
    """The subtitle's line on the colour scale when nothing is clipped."""
    if scale or norm == "map":
        return "colours: each map its own range (maps are not comparable by colour)"
    if norm == "fixed":
        return f"colours: the fixed range {display.vmin:.3g} to {display.vmax:.3g}"
    return f"colours: one range for the layer, {display.vmin:.3g} to {display.vmax:.3g} (its full range)"


def _relative(display: MapDisplay, clip: float) -> MapDisplay:
    """A layer-range display expressed as a fraction of that range, so layers can share one colour bar."""
    display = clip_display(display, clip)
    end = f"its {clip:g}th percentile" if display.words else "max"
    if display.signed:
        return MapDisplay(display.values / display.vmax, -1.0, 1.0, f"per layer: x / {end} of |x|", True,
                          display.extend)
    span = display.vmax - display.vmin
    return MapDisplay((display.values - display.vmin) / span, 0.0, 1.0, f"per layer: 0 = its min, 1 = {end}",
                      False, display.extend)


def overview_displays(outputs: dict[str, np.ndarray], norm: str | None = None,
                      fixed: tuple[float, float] | None = None, scale: bool = False,
                      clip: float = DEFAULT_CLIP) -> tuple[dict[str, MapDisplay], MapDisplay]:
    """For cnnscope.plots.overview_figure: each layer's display (with norm 'layer', the default, relative to its
    own range ending at its clip-th percentile) and the one scale they share (one diverging scale when any layer
    is signed); norm, fixed and scale as in layer_display."""
    norm = norm or ("map" if scale else "layer")
    displays = {}
    for name, values in outputs.items():
        display = display_maps(values, norm, fixed, scale)
        displays[name] = _relative(display, clip) if norm == "layer" and not scale else display
    signed = any(d.signed for d in displays.values())
    if norm == "layer" and signed:  # one diverging scale for all: unsigned layers use its upper half
        displays = {k: d if d.signed else MapDisplay(d.values, -1.0, 1.0, "per layer: x / the top of its range",
                                                    True, d.extend) for k, d in displays.items()}
    first = next(iter(displays.values()))
    shared = MapDisplay(first.values, first.vmin, first.vmax, first.label, signed,
                        _widest(d.extend for d in displays.values()))
    return displays, shared


def _widest(extends: Iterable[str]) -> str:
    got = set(extends)
    if "both" in got or {"min", "max"} <= got:
        return "both"
    return "min" if "min" in got else "max" if "max" in got else "neither"
