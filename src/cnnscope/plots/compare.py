"""Figure of a run comparison: matched maps of two runs side by side for one image, with their correlations."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cnnscope.inspect.activations import as_maps
from cnnscope.inspect.compare import THRESHOLD
from cnnscope.plots.backend import new_figure


def pick_pairs(matching: Sequence[Sequence[float]], count: int, skip: Sequence[bool] | None = None) -> list[int]:
    """Indices into `matching` of `count` pairs spread evenly from the best to the worst correlation
    (pairs flagged in `skip`, e.g. two dead maps, are left out unless nothing else is left)."""
    order = sorted(range(len(matching)), key=lambda i: (-matching[i][2], matching[i][0]))
    if skip is not None and not all(skip):
        order = [i for i in order if not skip[i]]
    if count >= len(order):
        return order
    ranks = np.unique(np.round(np.linspace(0, len(order) - 1, count)).astype(int))
    return [order[r] for r in ranks]


CELL, GAP, CAP = 0.95, 0.3, 0.42  # inches: one map, space between pairs, caption height
LEFT_W, HEAD = 3.4, 0.95  # inches: the column of summary panels, the titles above everything


def _axes(fig: Figure, x: float, y_top: float, w: float, h: float):
    """Axes placed in inches from the figure's top-left corner."""
    W, H = fig.get_size_inches()
    return fig.add_axes([x / W, (H - y_top - h) / H, w / W, h / H])


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_histogram(ax, matching: Sequence[Sequence[float]], dead: list[bool], mean: float,
                    baseline_r: Sequence[float] | None = None, baseline_mean: float | None = None) -> None:
    """The distribution of the matched correlations (dead-dead pairs left out unless nothing else is left), and
    when given the same at initialisation as a grey outline with its mean dotted."""
    corr = np.array([c for (_, _, c), d in zip(matching, dead, strict=True) if not d] or [m[2] for m in matching])
    base = np.asarray(baseline_r if baseline_r is not None else [], np.float64)
    low = min(-0.2, float(corr.min(initial=0)), float(base.min(initial=0)))
    bins = np.linspace(low, 1.0, 25)
    ax.hist(corr, bins=bins, color="#4c72b0")
    title = f"matched correlations (mean {mean:.2f}, black)"
    if len(base):
        ax.hist(base, bins=bins, histtype="step", color="#707070", linewidth=1.2)
        title = f"matched r: trained (mean {mean:.2f}, black),\nat initialisation (grey, mean {baseline_mean:.2f})"
        ax.axvline(baseline_mean, color="#707070", linewidth=1, linestyle=":")
    ax.axvline(THRESHOLD, color="#b00020", linewidth=1, linestyle="--")
    ax.axvline(mean, color="black", linewidth=1)
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("r", fontsize=8)
    ax.set_ylabel("pairs", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _draw_matrix(fig: Figure, correlation: np.ndarray, matching: Sequence[Sequence[float]], constant_a: set,
                 constant_b: set, names: tuple[str, str]) -> None:
    """The correlation matrix in matched order: a bright diagonal means one-to-one partners exist."""
    ax = _axes(fig, 0.55, HEAD + 4.95, 2.35, 2.35)
    by_r = sorted(matching, key=lambda m: -m[2])  # best match first: the diagonal fades down the matrix
    rows_a = [int(a) for a, _, _ in by_r]
    cols_b = [int(b) for _, b, _ in by_r]
    ordered = np.asarray(correlation, np.float64)[np.ix_(rows_a, cols_b)]
    ordered[[i for i, a in enumerate(rows_a) if a in constant_a], :] = np.nan  # r is undefined there
    ordered[:, [j for j, b in enumerate(cols_b) if b in constant_b]] = np.nan
    shown = ax.imshow(ordered, cmap=matplotlib.colormaps["RdBu_r"].with_extremes(bad="#bdbdbd"), vmin=-1,
                      vmax=1, interpolation="nearest")
    n = len(rows_a)
    ax.plot(range(n), range(n), "o", ms=max(0.8, 0.3 * 72 * 2.35 / max(n, 1)), mfc="none", mec="black",
            mew=0.4)  # the matched pairs
    grey = "; grey: never varies" if constant_a or constant_b else ""
    ax.set_title(f"r of every pair; circled: matched{grey}", fontsize=7.5)
    ax.set_xlabel(f"{names[1]}'s partner of each row", fontsize=7.5)
    ax.set_ylabel(f"{names[0]}'s maps, best match first", fontsize=7.5)
    _bare(ax)
    bar = fig.colorbar(shown, cax=_axes(fig, 2.98, HEAD + 4.95, 0.1, 2.35))
    bar.ax.tick_params(labelsize=6.5)


def _draw_map(ax, values: np.ndarray, flat: bool, tag: str, colours) -> None:
    """One map in its own colour range, tagged with its run and number ('flat' / 'all 0' when constant)."""
    ax.imshow(values, cmap=colours, interpolation="nearest")
    _bare(ax)
    if flat:
        ax.text(0.5, 0.5, "all 0" if not values.any() else "flat", transform=ax.transAxes, color="white",
                fontsize=7, ha="center", va="center")
    ax.text(0.04, 0.96, tag, transform=ax.transAxes, color="white", fontsize=6.5, ha="left", va="top",
            bbox={"boxstyle": "square,pad=0.1", "fc": "black", "alpha": 0.45, "lw": 0})


def _draw_pairs(fig: Figure, maps: tuple[np.ndarray, np.ndarray], matching: Sequence[Sequence[float]],
                chosen: list[int], names: tuple[str, str], per_row: int, cmap: str) -> None:
    """The chosen matched pairs, A's map beside B's, each pair captioned with its r (green above THRESHOLD)."""
    W, H = fig.get_size_inches()
    colours = matplotlib.colormaps[cmap]
    for slot, i in enumerate(chosen):
        r, k = divmod(slot, per_row)
        x0 = LEFT_W + k * (2 * CELL + 0.06 + GAP)
        y0 = HEAD + r * (CELL + CAP) + CAP
        for j in range(2):
            values = maps[j][int(matching[i][j])]
            _draw_map(_axes(fig, x0 + j * (CELL + 0.06), y0, CELL, CELL), values, values.min() == values.max(),
                      f"{names[j]} {int(matching[i][j])}", colours)
        c = matching[i][2]
        fig.text((x0 + CELL + 0.03) / W, (H - y0 + 0.05) / H, f"r = {c:.3f}", fontsize=8, ha="center",
                 va="bottom", color="#1a7f37" if c > THRESHOLD else "black")


def _headline(fig: Figure, result: dict[str, Any], names: tuple[str, str], shown: int) -> None:
    """The titles: what was matched over how many images, the summary numbers, and how to read the pairs."""
    W, H = fig.get_size_inches()
    above = result.get(f"matched_above_{THRESHOLD:g}", 0)
    counted = result.get("pairs", len(result["matching"]))
    fig.text(0.12 / W, 1 - 0.12 / H, f"{result.get('layer', '')}: {names[0]} vs {names[1]} — maps matched "
             f"one-to-one on the correlation of their activations over {result.get('images', 0):,} images",
             fontsize=10.5, va="top")
    dead_note = ""
    if result.get("constant_pairs"):
        dead_note = (f"; {result['constant_pairs']} pairs of maps that never vary (dead in both) left out of the "
                     f"numbers")
    base = result.get("baseline")
    if base:
        init = (f" ({base['mean_correlation']:.3f} at initialisation)",
                f" ({base.get(f'matched_above_{THRESHOLD:g}', 0)} at initialisation)")
    else:
        init = (" (no baseline at initialisation: a run lacks its initial weights)", "")
    fig.text(0.12 / W, 1 - 0.42 / H, f"mean matched r = {result['mean_correlation']:.3f}{init[0]}, {above} of "
             f"{counted} pairs above {THRESHOLD:g}{init[1]}{dead_note}", fontsize=9, va="top")
    fig.text(LEFT_W / W, 1 - 0.72 / H, f"{shown} pairs from best to worst r; maps for the example image, "
             f"each in its own colour range (r does not depend on scale)", fontsize=8, va="top", color="#444444")


def compare_figure(image: np.ndarray, maps_a: np.ndarray, maps_b: np.ndarray, result: dict[str, Any], *,
                   names: tuple[str, str] = ("A", "B"), source: str = "", pairs: int = 16,
                   correlation: np.ndarray | None = None, baseline_r: Sequence[float] | None = None,
                   cmap: str = "magma", per_row: int = 4) -> Figure:
    """Matched maps of runs A and B for one image, side by side with their correlation, plus the distribution
    of matched correlations (and, given baseline_r, of those of the two runs at initialisation, whose summary is
    result["baseline"]) and (when given) the correlation matrix with B's maps in matched order."""
    maps_a, maps_b = as_maps(maps_a), as_maps(maps_b)
    matching = result["matching"]
    constant_a = set(result.get("constant_map_indices_a", []))
    constant_b = set(result.get("constant_map_indices_b", []))
    dead = [int(a) in constant_a and int(b) in constant_b for a, b, _ in matching]
    chosen = pick_pairs(matching, pairs, dead)
    per_row = max(1, min(per_row, len(chosen)))
    rows = max(1, math.ceil(len(chosen) / per_row))
    height = max(rows * (CELL + CAP), 7.4) + HEAD + 0.3
    fig = new_figure(figsize=(LEFT_W + per_row * (2 * CELL + 0.06 + GAP) + 0.2, height))
    ax = _axes(fig, 0.55, HEAD + 0.25, 1.9, 1.9)  # the example image
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    _bare(ax)
    ax.set_title(source or "example image", fontsize=8.5)
    base = result.get("baseline") or {}
    _draw_histogram(_axes(fig, 0.55, HEAD + 2.7, 2.6, 1.45), matching, dead, result["mean_correlation"],
                    baseline_r if base else None, base.get("mean_correlation"))
    if correlation is not None:
        _draw_matrix(fig, correlation, matching, constant_a, constant_b, names)
    _draw_pairs(fig, (maps_a, maps_b), matching, chosen, names, per_row, cmap)
    _headline(fig, result, names, len(chosen))
    return fig


# --- many runs -----------------------------------------------------------------------------------------------
def _combined(matrix: np.ndarray, baseline: np.ndarray | None) -> np.ndarray:
    """The matrix above the diagonal (and on it), the baseline below it when given."""
    if baseline is None:
        return matrix
    below = np.tril(np.ones(matrix.shape, bool), -1)
    return np.where(below, baseline, matrix)


def matrix_figure(matrix: np.ndarray, names: Sequence[str], layer: str, *, images: int = 0,
                  above: np.ndarray | None = None, threshold: float = THRESHOLD, baseline: np.ndarray | None = None,
                  baseline_above: np.ndarray | None = None) -> Figure:
    """The N×N matrix of mean matched correlation between runs as a heat map, each cell with its value (and, when
    `above` is given, how many pairs lie above the threshold); run names label the rows and columns. Given
    `baseline` (the same matrix for the runs at their initial weights), it fills the cells below the diagonal."""
    shown_values = _combined(np.asarray(matrix, np.float64),
                             None if baseline is None else np.asarray(baseline, np.float64))
    counts = None if above is None else _combined(np.asarray(above, np.float64),
                                                  None if baseline_above is None else np.asarray(baseline_above))
    n = len(names)
    side = min(max(3.2, 0.9 * n + 1.6), 14.0)
    fig = new_figure(figsize=(side + 1.2, side + 1.1))
    ax = fig.add_axes([1.2 / (side + 1.2), 0.9 / (side + 1.1), (side - 1.0) / (side + 1.2),
                       (side - 1.0) / (side + 1.1)])
    low = min(0.0, float(np.nanmin(shown_values, initial=0.0)))
    shown = ax.imshow(np.ma.masked_invalid(shown_values),
                      cmap=matplotlib.colormaps["viridis"].with_extremes(bad="#bdbdbd"), vmin=low, vmax=1.0,
                      interpolation="nearest")
    _matrix_labels(ax, shown_values, counts, threshold)
    if baseline is not None:
        ax.plot([-0.5, n - 0.5], [-0.5, n - 0.5], color="white", linewidth=2)
    ax.set_xticks(range(n), labels=list(names), rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center",
                  fontsize=8)
    ax.set_yticks(range(n), labels=list(names), fontsize=8)
    bar = fig.colorbar(shown, cax=fig.add_axes([(side + 0.3) / (side + 1.2), 0.9 / (side + 1.1),
                                                0.12 / (side + 1.2), (side - 1.0) / (side + 1.1)]))
    bar.ax.tick_params(labelsize=7)
    over = f" over {images:,} images" if images else ""
    fig.text(0.02, 0.985, f"{layer}: mean matched correlation between {n} runs{over}", fontsize=10, va="top")
    how = ("above the diagonal: trained; below: the same runs at their initial weights (the baseline)"
           if baseline is not None else "no baseline: a run lacks its initial weights")
    fig.text(0.02, 0.985 - 0.3 / (side + 1.1), f"{how}\nmaps matched one-to-one per pair (Hungarian); maps that "
             f"never vary left out", fontsize=7.5, va="top", color="#444444")
    return fig


def _matrix_labels(ax, values: np.ndarray, counts: np.ndarray | None, threshold: float) -> None:
    """Each cell's value (and count above the threshold) in a colour that reads on viridis."""
    n = len(values)
    size = max(5.0, min(10.0, 60.0 / n))
    low = min(0.0, float(np.nanmin(values, initial=0.0)))
    for i in range(n):
        for j in range(n):
            value = values[i, j]
            text = "—" if not np.isfinite(value) else f"{value:.2f}"
            if counts is not None and i != j and np.isfinite(counts[i, j]):
                text += f"\n{int(counts[i, j])} > {threshold:g}"
            bright = np.isfinite(value) and (value - low) / (1.0 - low) > 0.7
            ax.text(j, i, text, ha="center", va="center", fontsize=size, color="black" if bright else "white")


def _draw_found_cell(fig: Figure, corner: tuple[float, float], values: np.ndarray, kernel: np.ndarray | None,
                     flat: bool, tag: str, caption: str, everyone: bool, cmap: str) -> None:
    """One map of the first run (its kernel above it when given) with its caption above."""
    x0, y0 = corner
    if kernel is not None:
        limit = float(np.abs(kernel).max()) or 1.0
        ax = _axes(fig, x0, y0, CELL, CELL)
        ax.imshow(kernel, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        _bare(ax)
        y0 += CELL + 0.04
    _draw_map(_axes(fig, x0, y0, CELL, CELL), values, flat, tag, matplotlib.colormaps[cmap])
    W, H = fig.get_size_inches()
    top = corner[1]
    fig.text((x0 + CELL / 2) / W, 1 - (top - 0.04) / H, caption, fontsize=7, ha="center", va="bottom",
             color="#1a7f37" if everyone else "black", weight="bold" if everyone else "normal")


def found_figure(maps: np.ndarray, found_by: Sequence[int], r: Sequence[Sequence[float | None]], *, others: int,
                 layer: str, name: str, kernels: np.ndarray | None = None, constant: Sequence[bool] | None = None,
                 threshold: float = THRESHOLD, source: str = "", cols: int = 8, cmap: str = "magma",
                 initial_found: int | None = None) -> Figure:
    """The first run's maps (and kernels, when given) ordered by how many of the `others` runs have a one-to-one
    partner above `threshold`; each captioned with that count (green: every run) and the mean matched r.
    initial_found: how many maps every run finds when all are at their initial weights (the baseline)."""
    maps = as_maps(maps)
    n = len(maps)
    constant = [False] * n if constant is None else list(constant)
    mean_r = [float(np.mean(r[a])) if not constant[a] and len(r[a]) else -np.inf for a in range(n)]
    order = sorted(range(n), key=lambda a: (-found_by[a], constant[a], -mean_r[a], a))
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    per = 2 if kernels is not None else 1
    cell_h = per * (CELL + 0.04) + CAP
    fig = new_figure(figsize=(max(cols * (CELL + 0.12) + 0.3, 7.0), rows * cell_h + HEAD + 0.2))
    for slot, a in enumerate(order):
        row, col = divmod(slot, cols)
        _draw_found_cell(fig, (0.15 + col * (CELL + 0.12), HEAD + 0.2 + row * cell_h + CAP), maps[a],
                         None if kernels is None else kernels[a], bool(constant[a]), f"{name} {a}",
                         "never varies" if constant[a] else f"{found_by[a]}/{others}  r̄ {mean_r[a]:.2f}",
                         found_by[a] == others and not constant[a], cmap)
    W, H = fig.get_size_inches()
    total = sum(1 for a in range(n) if found_by[a] == others and not constant[a])
    init = (f" ({initial_found} at initialisation)" if initial_found is not None
            else " (no baseline at initialisation)")
    fig.text(0.12 / W, 1 - 0.12 / H, f"{layer}: which of {name}'s maps does every training find?\n{total} of {n} "
             f"maps{init} matched above r = {threshold:g} in all {others} other runs", fontsize=10, va="top")
    shown = "kernel (top) and map" if kernels is not None else "map"
    fig.text(0.12 / W, 1 - 0.62 / H, f"ordered by the runs with a one-to-one partner above {threshold:g} (green: "
             f"all); r̄: mean matched r\n{shown} for {source or 'the example image'}", fontsize=7.5, va="top",
             color="#444444")
    return fig
