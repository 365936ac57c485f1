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
from cnnscope.plots.figures import MIN_PT
from cnnscope.plots.text import LINE, TITLE_PT, draw_heading, lines_inches, text_inches, wrap_inches


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


CELL, GAP = 0.95, 0.3  # inches: one map, space between pairs
CAP = lines_inches(2, MIN_PT) + 0.1  # inches above each pair: its r, and which two maps
LEFT_W, PANEL_X, PANEL_W = 3.9, 0.6, 2.9  # inches: the column of summary panels, its panels' left edge, width
IMAGE, HIST_H, MATRIX = 1.9, 1.45, 2.35  # inches: the example image, the histogram's height, the matrix's side


def _axes(fig: Figure, x: float, y_top: float, w: float, h: float):
    """Axes placed in inches from the figure's top-left corner."""
    W, H = fig.get_size_inches()
    return fig.add_axes([x / W, (H - y_top - h) / H, w / W, h / H])


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _histogram_title(mean: float, baseline_mean: float | None) -> str:
    if baseline_mean is None:
        return f"matched correlations (mean {mean:.2f}, black)"
    return f"matched r: trained (mean {mean:.2f}, black), at initialisation (grey, mean {baseline_mean:.2f})"


def _draw_histogram(ax, matching: Sequence[Sequence[float]], dead: list[bool], title: str,
                    means: tuple[float, float | None], baseline_r: Sequence[float] | None = None) -> None:
    """The distribution of the matched correlations (dead-dead pairs left out unless nothing else is left), and
    when given the same at initialisation as a grey outline with its mean dotted; means: (trained, baseline)."""
    corr = np.array([c for (_, _, c), d in zip(matching, dead, strict=True) if not d] or [m[2] for m in matching])
    base = np.asarray(baseline_r if baseline_r is not None else [], np.float64)
    low = min(-0.2, float(corr.min(initial=0)), float(base.min(initial=0)))
    bins = np.linspace(low, 1.0, 25)
    ax.hist(corr, bins=bins, color="#4c72b0")
    if len(base):
        ax.hist(base, bins=bins, histtype="step", color="#707070", linewidth=1.2)
        ax.axvline(means[1], color="#707070", linewidth=1, linestyle=":")
    ax.axvline(THRESHOLD, color="#b00020", linewidth=1, linestyle="--")
    ax.axvline(means[0], color="black", linewidth=1)
    ax.set_title(title, fontsize=MIN_PT, linespacing=LINE)
    ax.set_xlabel("r", fontsize=MIN_PT, labelpad=1)
    ax.set_ylabel("pairs", fontsize=MIN_PT)
    ax.tick_params(labelsize=MIN_PT)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=4))


def _draw_matrix(fig: Figure, y_top: float, title: str, correlation: np.ndarray,
                 matching: Sequence[Sequence[float]], constant: tuple[set, set], names: tuple[str, str]) -> None:
    """The correlation matrix in matched order: a bright diagonal means one-to-one partners exist."""
    ax = _axes(fig, PANEL_X, y_top, MATRIX, MATRIX)
    by_r = sorted(matching, key=lambda m: -m[2])  # best match first: the diagonal fades down the matrix
    rows_a = [int(a) for a, _, _ in by_r]
    cols_b = [int(b) for _, b, _ in by_r]
    ordered = np.asarray(correlation, np.float64)[np.ix_(rows_a, cols_b)]
    ordered[[i for i, a in enumerate(rows_a) if a in constant[0]], :] = np.nan  # r is undefined there
    ordered[:, [j for j, b in enumerate(cols_b) if b in constant[1]]] = np.nan
    shown = ax.imshow(ordered, cmap=matplotlib.colormaps["RdBu_r"].with_extremes(bad="#bdbdbd"), vmin=-1,
                      vmax=1, interpolation="nearest")
    n = len(rows_a)
    ax.plot(range(n), range(n), "o", ms=max(0.8, 0.3 * 72 * MATRIX / max(n, 1)), mfc="none", mec="black",
            mew=0.4)  # the matched pairs
    ax.set_title(title, fontsize=MIN_PT, linespacing=LINE)
    ax.set_xlabel(f"{names[1]}'s partner of each row", fontsize=MIN_PT, labelpad=2)
    ax.set_ylabel(f"{names[0]}'s maps, best match first", fontsize=MIN_PT)
    _bare(ax)
    bar = fig.colorbar(shown, cax=_axes(fig, PANEL_X + MATRIX + 0.1, y_top, 0.12, MATRIX), ticks=[-1, -0.5, 0, 0.5, 1])
    bar.ax.tick_params(labelsize=MIN_PT)


def _draw_map(ax, values: np.ndarray, flat: bool, colours) -> None:
    """One map in its own colour range ('flat' / 'all 0' written on it when constant)."""
    ax.imshow(values, cmap=colours, interpolation="nearest")
    _bare(ax)
    if flat:
        ax.text(0.5, 0.5, "all 0" if not values.any() else "flat", transform=ax.transAxes, color="white",
                fontsize=MIN_PT, ha="center", va="center",
                bbox={"boxstyle": "square,pad=0.15", "fc": "black", "alpha": 0.45, "lw": 0})  # reads on any colour


def _draw_pairs(fig: Figure, top: float, maps: tuple[np.ndarray, np.ndarray], matching: Sequence[Sequence[float]],
                chosen: list[int], names: tuple[str, str], per_row: int, cmap: str) -> None:
    """The chosen matched pairs, A's map beside B's, each pair captioned with its r (green above THRESHOLD) and,
    over each map, its run and number."""
    W, H = fig.get_size_inches()
    colours = matplotlib.colormaps[cmap]
    for slot, i in enumerate(chosen):
        r, k = divmod(slot, per_row)
        x0 = LEFT_W + k * (2 * CELL + 0.06 + GAP)
        y0 = top + r * (CELL + CAP + 0.12) + CAP
        for j in range(2):
            values = maps[j][int(matching[i][j])]
            x = x0 + j * (CELL + 0.06)
            _draw_map(_axes(fig, x, y0, CELL, CELL), values, values.min() == values.max(), colours)
            fig.text((x + CELL / 2) / W, 1 - (y0 - 0.03) / H, f"{names[j]} {int(matching[i][j])}", fontsize=MIN_PT,
                     ha="center", va="bottom", color="#444444")
        c = matching[i][2]
        fig.text((x0 + CELL + 0.03) / W, 1 - (y0 - 0.03 - lines_inches(1, MIN_PT)) / H, f"r = {c:.3f}",
                 fontsize=MIN_PT, ha="center", va="bottom", color="#1a7f37" if c > THRESHOLD else "black",
                 weight="bold")


def _headline(result: dict[str, Any], names: tuple[str, str], shown: int, width: float) -> tuple[list[str], list[str]]:
    """The titles, wrapped to `width` inches: what was matched over how many images, the summary numbers, and how
    to read the pairs."""
    above = result.get(f"matched_above_{THRESHOLD:g}", 0)
    counted = result.get("pairs", len(result["matching"]))
    title = (f"{result.get('layer', '')}: {names[0]} vs {names[1]} — maps matched one-to-one on the correlation "
             f"of their activations over {result.get('images', 0):,} images")
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
    sub = (f"mean matched r = {result['mean_correlation']:.3f}{init[0]}, {above} of {counted} pairs above "
           f"{THRESHOLD:g}{init[1]}{dead_note}\nright: {shown} pairs from best to worst r; maps for the example "
           f"image, each in its own colour range (r does not depend on scale)")
    return wrap_inches(title, TITLE_PT, width - 0.3, "bold"), wrap_inches(sub, MIN_PT, width - 0.3)


def _column_titles(source: str, hist: str, matrix: bool, grey: bool) -> list[list[str]]:
    """The titles of the column's panels (the example image, the histogram, the matrix when drawn), wrapped."""
    titles = [source or "example image", hist]
    if matrix:
        titles.append(f"r of every pair; circled: matched{'; grey: never varies' if grey else ''}")
    return [wrap_inches(t, MIN_PT, PANEL_W) for t in titles]


def _column_tops(top: float, titles: list[list[str]]) -> tuple[list[float], float]:
    """Where the column's panels start (inches from the figure's top, below their titles) and where it ends."""
    tops, y = [], top
    for lines, (height, below) in zip(titles, ((IMAGE, 0.3), (HIST_H, 0.65), (MATRIX, 0.35)), strict=False):
        y += lines_inches(len(lines), MIN_PT) + 0.12
        tops.append(y)
        y += height + below
    return tops, y


def compare_figure(image: np.ndarray, maps_a: np.ndarray, maps_b: np.ndarray, result: dict[str, Any], *,
                   names: tuple[str, str] = ("A", "B"), source: str = "", pairs: int = 16,
                   correlation: np.ndarray | None = None, baseline_r: Sequence[float] | None = None,
                   cmap: str = "magma", per_row: int = 4) -> Figure:
    """Matched maps of runs A and B for one image, side by side with their correlation, plus the distribution
    of matched correlations (and, given baseline_r, of those of the two runs at initialisation, whose summary is
    result["baseline"]) and (when given) the correlation matrix with B's maps in matched order."""
    maps_a, maps_b = as_maps(maps_a), as_maps(maps_b)
    matching = result["matching"]
    constant = (set(result.get("constant_map_indices_a", [])), set(result.get("constant_map_indices_b", [])))
    dead = [int(a) in constant[0] and int(b) in constant[1] for a, b, _ in matching]
    chosen = pick_pairs(matching, pairs, dead)
    per_row = max(1, min(per_row, len(chosen)))
    rows = max(1, math.ceil(len(chosen) / per_row))
    width = LEFT_W + per_row * (2 * CELL + 0.06 + GAP) + 0.2
    heading = _headline(result, names, len(chosen), width)
    top = 0.25 + lines_inches(len(heading[0]), TITLE_PT) + lines_inches(len(heading[1]), MIN_PT) + 0.15
    base = result.get("baseline") or {}
    means = (result["mean_correlation"], base.get("mean_correlation"))
    titles = _column_titles(source, _histogram_title(*means), correlation is not None, any(constant))
    tops, bottom = _column_tops(top, titles)
    fig = new_figure(figsize=(width, max(bottom, top + rows * (CELL + CAP + 0.12)) + 0.15))
    ax = _axes(fig, PANEL_X, tops[0], IMAGE, IMAGE)  # the example image
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    _bare(ax)
    ax.set_title("\n".join(titles[0]), fontsize=MIN_PT, linespacing=LINE, loc="left")
    _draw_histogram(_axes(fig, PANEL_X, tops[1], PANEL_W, HIST_H), matching, dead, "\n".join(titles[1]), means,
                    baseline_r if base else None)
    if correlation is not None:
        _draw_matrix(fig, tops[2], "\n".join(titles[2]), correlation, matching, constant, names)
    _draw_pairs(fig, top, (maps_a, maps_b), matching, chosen, names, per_row, cmap)
    draw_heading(fig, *heading, 0.15)
    return fig


# --- many runs -----------------------------------------------------------------------------------------------
MATRIX_MAX = 10.0  # inches: the largest side of the matrix; beyond it cells shrink and their numbers go
MATRIX_CELL = 0.9  # inches: the smallest cell drawn while the matrix stays under MATRIX_MAX


def _combined(matrix: np.ndarray, baseline: np.ndarray | None) -> np.ndarray:
    """The matrix above the diagonal (and on it), the baseline below it when given."""
    if baseline is None:
        return matrix
    below = np.tril(np.ones(matrix.shape, bool), -1)
    return np.where(below, baseline, matrix)


def _cell_texts(values: np.ndarray, counts: np.ndarray | None, threshold: float) -> list[list[tuple[str, str]]]:
    """Per cell its value ('—' where undefined) and its count above the threshold ('' on the diagonal/none)."""
    n = len(values)
    return [[("—" if not np.isfinite(values[i, j]) else f"{values[i, j]:.2f}",
              f"{int(counts[i, j])} > {threshold:g}" if counts is not None and i != j and np.isfinite(counts[i, j])
              else "") for j in range(n)] for i in range(n)]


def _cell_size(texts: list[list[tuple[str, str]]]) -> tuple[float, int]:
    """The side of a cell in inches and how many lines of numbers it holds at MIN_PT (2, 1 or 0): cells grow to
    hold both lines while the matrix stays under MATRIX_MAX, then keep the value alone, then no number."""
    n = len(texts)
    cells = [cell for row in texts for cell in row]
    wide = [max(text_inches(t, MIN_PT) for t in cell) for cell in cells]
    value_only = max(text_inches(v, MIN_PT) for v, _ in cells)
    for lines, width in ((2 if any(c for _, c in cells) else 1, max(wide)), (1, value_only)):
        need = max(width + 0.1, lines_inches(lines, MIN_PT) + 0.08)
        if need * n <= MATRIX_MAX:
            return min(max(need, MATRIX_CELL), MATRIX_MAX / n), lines
    return min(MATRIX_CELL, MATRIX_MAX / n), 0


def matrix_figure(matrix: np.ndarray, names: Sequence[str], layer: str, *, images: int = 0,
                  above: np.ndarray | None = None, threshold: float = THRESHOLD, baseline: np.ndarray | None = None,
                  baseline_above: np.ndarray | None = None) -> Figure:
    """The N×N matrix of mean matched correlation between runs as a heat map, each cell with its value (and, when
    `above` is given, how many pairs lie above the threshold); run names label the rows and columns. Given
    `baseline` (the same matrix for the runs at their initial weights), it fills the cells below the diagonal.
    Cells grow with N to hold their numbers at MIN_PT up to a MATRIX_MAX-inch matrix; past that the counts, then
    the values, are left out (the subtitle says so; the colour bar still reads the value)."""
    values = _combined(np.asarray(matrix, np.float64), None if baseline is None else np.asarray(baseline, np.float64))
    counts = None if above is None else _combined(np.asarray(above, np.float64),
                                                  None if baseline_above is None else np.asarray(baseline_above))
    names = [str(name) for name in names]
    n = len(names)
    texts = _cell_texts(values, counts, threshold)
    cell, lines = _cell_size(texts)
    side = cell * n
    label_w = max(text_inches(name, MIN_PT) for name in names)
    tilted = label_w > cell - 0.05  # names wider than a column are tilted 45°
    bottom = (label_w + lines_inches(1, MIN_PT)) * 0.71 + 0.25 if tilted else lines_inches(1, MIN_PT) + 0.2
    left = label_w + 0.2
    width = max(6.0, left + side + 0.95)
    heading = _matrix_heading(layer, n, images, baseline is not None, lines, counts is not None, threshold, width)
    top = 0.25 + lines_inches(len(heading[0]), TITLE_PT) + lines_inches(len(heading[1]), MIN_PT) + 0.2
    height = top + side + bottom
    fig = new_figure(figsize=(width, height))
    ax = _axes(fig, left, top, side, side)
    low = min(0.0, float(np.nanmin(values, initial=0.0)))
    shown = ax.imshow(np.ma.masked_invalid(values), cmap=matplotlib.colormaps["viridis"].with_extremes(bad="#bdbdbd"),
                      vmin=low, vmax=1.0, interpolation="nearest")
    _matrix_labels(ax, values, texts, lines, low)
    if baseline is not None:
        ax.plot([-0.5, n - 0.5], [-0.5, n - 0.5], color="white", linewidth=2)
    step = math.ceil(lines_inches(1, MIN_PT) / cell)  # every step-th name when lines of names would touch
    ticks = range(0, n, step)
    ax.set_xticks(ticks, labels=names[::step], rotation=45 if tilted else 0, ha="right" if tilted else "center",
                  rotation_mode="anchor" if tilted else "default", fontsize=MIN_PT)
    ax.set_yticks(ticks, labels=names[::step], fontsize=MIN_PT)
    bar = fig.colorbar(shown, cax=_axes(fig, left + side + 0.2, top, 0.15, side))
    bar.ax.tick_params(labelsize=MIN_PT)
    draw_heading(fig, *heading, 0.12)
    return fig


def _matrix_heading(layer: str, n: int, images: int, baseline: bool, lines: int, counted: bool, threshold: float,
                    width: float) -> tuple[list[str], list[str]]:
    """The title and the subtitle lines, wrapped to the figure's width."""
    over = f" over {images:,} images" if images else ""
    how = ("above the diagonal: trained; below: the same runs at their initial weights (the baseline)"
           if baseline else "no baseline: a run lacks its initial weights")
    shown = ["each cell: mean matched r", f"each cell: mean matched r and the pairs with r > {threshold:g}",
             "no numbers: the cells are too small for them at this size (the colour bar reads the value)"]
    if lines == 1 and counted:
        shown[1] = f"each cell: mean matched r (the pairs above {threshold:g}: too many runs to fit, left out)"
    note = shown[1] if lines == 2 or (lines == 1 and counted) else shown[0] if lines == 1 else shown[2]
    sub = f"{how}\n{note}; maps matched one-to-one per pair (Hungarian); maps that never vary left out"
    room = width - 0.24
    return (wrap_inches(f"{layer}: mean matched correlation between {n} runs{over}", TITLE_PT, room, "bold"),
            wrap_inches(sub, MIN_PT, room))


def _matrix_labels(ax, values: np.ndarray, texts: list[list[tuple[str, str]]], lines: int, low: float) -> None:
    """Each cell's value (and count above the threshold) in a colour that reads on viridis, as many lines as fit."""
    if lines == 0:
        return
    n = len(values)
    for i in range(n):
        for j in range(n):
            value, count = texts[i][j]
            text = f"{value}\n{count}" if lines == 2 and count else value
            bright = np.isfinite(values[i, j]) and (values[i, j] - low) / (1.0 - low) > 0.7
            ax.text(j, i, text, ha="center", va="center", fontsize=MIN_PT, color="black" if bright else "white")


def _draw_found_cell(fig: Figure, corner: tuple[float, float], values: np.ndarray, kernel: np.ndarray | None,
                     flat: bool, caption: tuple[str, str], everyone: bool, cmap: str) -> None:
    """One map of the first run (its kernel above it when given) under its two caption lines: its number, and how
    many runs find it with their mean r (green and bold: every run)."""
    x0, y0 = corner
    W, H = fig.get_size_inches()
    middle = (x0 + CELL / 2) / W
    fig.text(middle, 1 - (y0 - 0.04 - lines_inches(1, MIN_PT)) / H, caption[0], fontsize=MIN_PT, ha="center",
             va="bottom", color="#444444")
    fig.text(middle, 1 - (y0 - 0.04) / H, caption[1], fontsize=MIN_PT, ha="center", va="bottom",
             color="#1a7f37" if everyone else "black", weight="bold" if everyone else "normal")
    if kernel is not None:
        limit = float(np.abs(kernel).max()) or 1.0
        ax = _axes(fig, x0, y0, CELL, CELL)
        ax.imshow(kernel, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        _bare(ax)
        y0 += CELL + 0.04
    _draw_map(_axes(fig, x0, y0, CELL, CELL), values, flat, matplotlib.colormaps[cmap])


def _found_captions(found_by: Sequence[int], mean_r: Sequence[float], constant: Sequence[bool],
                    others: int) -> list[tuple[str, str]]:
    """Per map: its number, and 'never varies' or how many of the other runs find it with the mean matched r."""
    return [(f"map {a}", "never varies" if constant[a] else f"{found_by[a]}/{others}  r̄ {mean_r[a]:.2f}")
            for a in range(len(found_by))]


def found_figure(maps: np.ndarray, found_by: Sequence[int], r: Sequence[Sequence[float | None]], *, others: int,
                 layer: str, name: str, kernels: np.ndarray | None = None, constant: Sequence[bool] | None = None,
                 threshold: float = THRESHOLD, source: str = "", cols: int = 8, cmap: str = "magma",
                 initial_found: int | None = None) -> Figure:
    """The first run's maps (and kernels, when given) ordered by how many of the `others` runs have a one-to-one
    partner above `threshold`; each captioned with its number, that count (green: every run) and the mean matched
    r. initial_found: how many maps every run finds when all are at their initial weights (the baseline)."""
    maps = as_maps(maps)
    n = len(maps)
    constant = [False] * n if constant is None else list(constant)
    mean_r = [float(np.mean(r[a])) if not constant[a] and len(r[a]) else -np.inf for a in range(n)]
    order = sorted(range(n), key=lambda a: (-found_by[a], constant[a], -mean_r[a], a))
    captions = _found_captions(found_by, mean_r, constant, others)
    pitch = max(CELL, *(text_inches(c, MIN_PT, "bold") for pair in captions for c in pair)) + 0.15
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    cap = lines_inches(2, MIN_PT) + 0.1
    cell_h = (2 if kernels is not None else 1) * (CELL + 0.04) + cap
    width = max(cols * pitch + 0.3, 7.0)
    heading = _found_heading(layer, name, n, sum(1 for a in range(n) if found_by[a] == others and not constant[a]),
                             others, threshold, initial_found, kernels is not None, source, width)
    top = 0.25 + lines_inches(len(heading[0]), TITLE_PT) + lines_inches(len(heading[1]), MIN_PT) + 0.1
    fig = new_figure(figsize=(width, top + rows * cell_h + 0.2))
    for slot, a in enumerate(order):
        row, col = divmod(slot, cols)
        _draw_found_cell(fig, (0.15 + col * pitch + (pitch - CELL) / 2, top + row * cell_h + cap), maps[a],
                         None if kernels is None else kernels[a], bool(constant[a]), captions[a],
                         found_by[a] == others and not constant[a], cmap)
    draw_heading(fig, *heading, 0.15)
    return fig


def _found_heading(layer: str, name: str, n: int, total: int, others: int, threshold: float,
                   initial_found: int | None, kernels: bool, source: str, width: float) -> tuple[list[str], list[str]]:
    """The found figure's title and subtitle lines, wrapped to its width."""
    init = f" ({initial_found} at initialisation)" if initial_found is not None else " (no baseline at initialisation)"
    title = (f"{layer}: which of {name}'s maps does every training find?\n{total} of {n} maps{init} matched above "
             f"r = {threshold:g} in all {others} other runs")
    shown = "kernel (top) and map" if kernels else "map"
    sub = (f"ordered by the runs with a one-to-one partner above {threshold:g} (green: all); r̄: mean matched r\n"
           f"{shown} for {source or 'the example image'}")
    room = width - 0.3
    return wrap_inches(title, TITLE_PT, room, "bold"), wrap_inches(sub, MIN_PT, room)
