"""Do two trainings learn the same filters? Match the maps of two runs one-to-one (Hungarian assignment) on the
correlation of their activations over a set of images, and on the correlation of their kernels."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnscope.base.errors import RunError, SpecError
from cnnscope.base.progress import batches
from cnnscope.inspect.activations import activations, capture, conv_layers, layer_output_shape
from cnnscope.model.network import CNN

MAX_MAPS = 1024  # the assignment is O(n³); beyond this a layer is not a sensible thing to match map by map
THRESHOLD = 0.9


# --- the assignment problem ----------------------------------------------------------------------------------
def linear_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one assignment of rows to columns (Hungarian method with potentials, O(n²·m)).

    Returns (rows, cols) like scipy.optimize.linear_sum_assignment: rows ascending; with a rectangular
    matrix every row (or every column, whichever are fewer) is assigned. Finite values only.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"cost must be a 2-D matrix, received shape {cost.shape}")
    if not np.isfinite(cost).all():
        raise ValueError("cost must hold finite numbers only")
    if cost.shape[0] > cost.shape[1]:
        cols, rows = linear_assignment(cost.T)
        order = np.argsort(rows)
        return rows[order], cols[order]
    n, m = cost.shape
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # Shortest augmenting paths with row/column potentials u, v (1-based; column 0 is a sentinel).
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    owner = np.zeros(m + 1, np.int64)  # owner[j]: row (1-based) assigned to column j, 0 = free
    way = np.zeros(m + 1, np.int64)
    for i in range(1, n + 1):
        owner[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, bool)
        while True:
            used[j0] = True
            i0 = owner[j0]
            free = ~used
            free[0] = False
            reduced = cost[i0 - 1] - u[i0] - v[1:]
            better = free[1:] & (reduced < minv[1:])
            minv[1:][better] = reduced[better]
            way[1:][better] = j0
            candidates = np.where(free[1:], minv[1:], np.inf)
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            u[owner[used]] += delta  # the rows on the tree (distinct) and the sentinel's row i
            v[used] -= delta
            minv[free] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:  # flip the augmenting path
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    cols = np.flatnonzero(owner[1:]).astype(np.int64)
    rows = owner[1:][cols] - 1
    order = np.argsort(rows)
    return rows[order].astype(np.int64), cols[order]


# --- correlations --------------------------------------------------------------------------------------------
class _PearsonAccumulator:
    """Pearson correlation between every variable of A and every variable of B, accumulated batch by batch.

    Values are shifted by the first batch's means before summing (float64) so the sums do not cancel.
    """

    def __init__(self) -> None:
        self.n = 0
        self.shift_a = self.shift_b = None
        self.sa = self.sb = self.saa = self.sbb = self.sab = None

    def add(self, a: np.ndarray, b: np.ndarray | None = None) -> None:  # (vars_a, samples), (vars_b, samples)
        """Add samples; b=None correlates a's variables with themselves (one symmetric product, half the work)."""
        same = b is None
        a = a.astype(np.float64)
        b = a if same else b.astype(np.float64)
        if self.shift_a is None:
            self.shift_a, self.shift_b = a.mean(axis=1, keepdims=True), b.mean(axis=1, keepdims=True)
            self.sa, self.sb = np.zeros(len(a)), np.zeros(len(b))
            self.saa, self.sbb = np.zeros(len(a)), np.zeros(len(b))
            self.sab = np.zeros((len(a), len(b)))
        a -= self.shift_a
        if not same:
            b -= self.shift_b
        self.n += a.shape[1]
        self.sa += a.sum(axis=1)
        self.sb += b.sum(axis=1)
        self.saa += np.einsum("ij,ij->i", a, a)
        self.sbb += np.einsum("ij,ij->i", b, b)
        self.sab += a @ a.T if same else a @ b.T

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(correlation (vars_a, vars_b), constant_a (vars_a,) bool, constant_b (vars_b,) bool)."""
        n = max(self.n, 1)
        var_a = np.maximum(self.saa / n - (self.sa / n) ** 2, 0.0)
        var_b = np.maximum(self.sbb / n - (self.sb / n) ** 2, 0.0)
        cov = self.sab / n - np.outer(self.sa / n, self.sb / n)
        mean_a = self.shift_a[:, 0] + self.sa / n
        mean_b = self.shift_b[:, 0] + self.sb / n
        scale_a = np.maximum(np.abs(mean_a), 1.0)
        scale_b = np.maximum(np.abs(mean_b), 1.0)
        const_a = var_a <= (1e-6 * scale_a) ** 2
        const_b = var_b <= (1e-6 * scale_b) ** 2
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = cov / np.sqrt(np.outer(var_a, var_b))
        corr = np.clip(np.nan_to_num(corr, nan=0.0), -1.0, 1.0)
        corr[const_a, :] = 0.0
        corr[:, const_b] = 0.0
        # Two constant maps compute the same function (a dead ReLU map is 0 everywhere in both runs): a
        # correlation is undefined there, so they count as equal (1.0) when their constants agree.
        same = np.isclose(mean_a[const_a][:, None], mean_b[const_b][None, :], rtol=1e-5, atol=1e-6)
        corr[np.ix_(const_a, const_b)] = same.astype(np.float64)
        return corr, const_a, const_b


def _describe(shape: tuple[int, ...]) -> str:
    kind = "maps" if len(shape) == 3 else "units"
    return f"{shape[0]} {kind} ({'×'.join(map(str, shape))})"


def check_runs(models: Sequence[CNN], names: Sequence[str], layer: str) -> tuple[int, ...]:
    """The output shape of `layer`, present with the same shape in every model (at most MAX_MAPS maps);
    SpecError or RunError naming the run that differs otherwise."""
    shapes = []
    for name, model in zip(names, models, strict=True):
        try:
            model.layer(layer)
        except SpecError as exc:
            raise SpecError(f"run {name}: {exc}") from None
        shapes.append(layer_output_shape(model, layer))
    for name, shape in zip(names[1:], shapes[1:], strict=True):
        if shape != shapes[0]:
            raise RunError(f"cannot compare {layer}: run {names[0]} has {_describe(shapes[0])} but run {name} has "
                           f"{_describe(shape)}; compare needs runs whose specs agree on that layer")
    if shapes[0][0] > MAX_MAPS:
        raise RunError(f"{layer} has {shapes[0][0]} maps/units; compare matches at most {MAX_MAPS} (choose a conv, "
                       f"pool or dense layer)")
    return shapes[0]


def check_pair(model_a: CNN, model_b: CNN, layer: str) -> tuple[int, ...]:
    """The output shape of `layer`, present with the same shape in both models (at most MAX_MAPS maps);
    SpecError or RunError saying which run differs otherwise."""
    return check_runs((model_a, model_b), ("A", "B"), layer)


def activation_correlation(model_a: CNN, model_b: CNN, layer: str, images: np.ndarray,
                           images_b: np.ndarray | None = None,
                           batch_size: int = 250) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pearson correlation of every map of A's `layer` with every map of B's over the images and all positions.

    images: preprocessed for A; images_b: the same images preprocessed for B (default: the same array).
    Returns (correlation (maps, maps), constant_a, constant_b); see _PearsonAccumulator for constant maps.
    """
    check_pair(model_a, model_b, layer)
    images_b = images if images_b is None else images_b
    if len(images_b) != len(images):
        raise RunError(f"images for A and B differ in number: {len(images)} vs {len(images_b)}")
    if len(images) == 0:
        raise RunError("compare needs at least one image")
    acc = _PearsonAccumulator()
    for start in batches(len(images), batch_size, f"{layer}'s maps of both runs over {len(images):,} images"):
        a = activations(model_a, layer, images[start:start + batch_size], batch_size)
        b = activations(model_b, layer, images_b[start:start + batch_size], batch_size)
        # (n, maps, h, w) -> (maps, n·h·w): every image and position is one sample of each map
        acc.add(np.moveaxis(a, 1, 0).reshape(a.shape[1], -1), np.moveaxis(b, 1, 0).reshape(b.shape[1], -1))
    return acc.result()


def kernel_correlation(model_a: CNN, model_b: CNN, layer: str,
                       input_order: np.ndarray | None = None) -> np.ndarray:
    """Pearson correlation of every kernel of conv layer `layer` in A with every kernel in B (maps, maps).

    Each filter's weights (in_channels × kh × kw, bias left out) are one vector. input_order[c] names the input
    channel of B that corresponds to A's channel c (B's kernels are reordered before correlating); None
    keeps the order, which is right only for the first conv layer, whose inputs are the image's channels.
    """
    check_pair(model_a, model_b, layer)
    if layer not in conv_layers(model_a):
        raise SpecError(f"layer {layer!r} has no kernels; conv layers: {', '.join(conv_layers(model_a))}")
    wa = model_a.layer(layer).conv.weight.detach().cpu().double().numpy()  # (out, in, kh, kw)
    wb = model_b.layer(layer).conv.weight.detach().cpu().double().numpy()
    if wa.shape != wb.shape:
        raise RunError(f"cannot compare {layer} kernels: shapes {wa.shape} and {wb.shape} differ")
    if input_order is not None:
        wb = wb[:, np.asarray(input_order)]
    acc = _PearsonAccumulator()
    acc.add(wa.reshape(len(wa), -1), wb.reshape(len(wb), -1))
    return acc.result()[0]


# --- matching ------------------------------------------------------------------------------------------------
def match_maps(correlation: np.ndarray, constant_a: np.ndarray | None = None, constant_b: np.ndarray | None = None,
               threshold: float = THRESHOLD) -> dict[str, Any]:
    """One-to-one matching that maximises the summed correlation; summary numbers and [[a, b, corr], …].

    Maps that are constant over the images (dead ReLU maps) say nothing about what a run learned: the summary
    numbers (mean_correlation, matched_above_…) are over the matched pairs in which at least one map varies;
    pairs of two constant maps are counted in "constant_pairs" and "mean_correlation_all" includes them
    (as 1.0 when their constants agree). Equal correlations are resolved in favour of a → a.
    """
    correlation = np.asarray(correlation, np.float64)
    n_a, n_b = correlation.shape
    constant_a = np.zeros(n_a, bool) if constant_a is None else np.asarray(constant_a, bool)
    constant_b = np.zeros(n_b, bool) if constant_b is None else np.asarray(constant_b, bool)
    # A bonus far below any meaningful difference in correlation: ties (indistinguishable maps, e.g. a run's
    # dead maps compared with themselves) keep their index instead of an arbitrary permutation.
    bonus = np.zeros_like(correlation)
    k = min(n_a, n_b)
    bonus[np.arange(k), np.arange(k)] = 1e-9
    rows, cols = linear_assignment(-(correlation + bonus))
    matched = correlation[rows, cols]
    both_constant = constant_a[rows] & constant_b[cols]
    live = matched[~both_constant] if (~both_constant).any() else matched

    def mean(values: np.ndarray) -> float:
        return float(values.mean()) if len(values) else math.nan

    return {
        "mean_correlation": mean(live),
        "median_correlation": float(np.median(live)) if len(live) else math.nan,
        f"matched_above_{threshold:g}": int((live > threshold).sum()),
        "pairs": int(len(live)),
        "constant_pairs": int(both_constant.sum()),
        "mean_correlation_all": mean(matched),
        "identity_matches": int((rows == cols).sum()),
        # the best partner of each varying map of A, ignoring one-to-one: what the one-to-one constraint costs
        "mean_best_correlation": mean(correlation[~constant_a].max(axis=1)) if n_b and (~constant_a).any()
        else math.nan,
        "matching": [[int(a), int(b), round(float(c), 6)] for a, b, c in zip(rows, cols, matched, strict=True)],
    }


def _previous_conv(model: CNN, layer: str) -> str | None:
    convs = conv_layers(model)
    index = convs.index(layer)
    return convs[index - 1] if index > 0 else None


def compare_runs(model_a: CNN, model_b: CNN, layer: str, images: np.ndarray, images_b: np.ndarray | None = None,
                 *, kernels: bool = True, batch_size: int = 250, with_matrix: bool = False) -> dict[str, Any]:
    """Match the maps of `layer` in two models one-to-one on the correlation of their activations.

    images: preprocessed inputs (n, C, H, W) for A; images_b: the same images preprocessed for B when the runs
    preprocess differently. Returns {"mean_correlation", "matched_above_0.9", "matching": [[a, b, corr], …],
    …, "kernels": {…} or None}. The kernel variant (conv layers only) matches flattened kernels; for a deeper
    conv layer the input channels of B are first put in A's order using the activation matching of the
    previous conv layer (its maps are this layer's input channels; pools keep their order).
    Maps constant over the images (dead ReLU maps) are listed and left out of the summary numbers (see
    match_maps). with_matrix: also return the activation correlation matrix under "correlation" (an array).
    """
    shape = check_pair(model_a, model_b, layer)
    corr, const_a, const_b = activation_correlation(model_a, model_b, layer, images, images_b, batch_size)
    result: dict[str, Any] = {"layer": layer, "maps": int(shape[0]), "images": int(len(images)),
                              "positions": int(np.prod(shape[1:])) if len(shape) == 3 else 1,
                              "method": "pearson correlation of activations over images and positions",
                              **match_maps(corr, const_a, const_b),
                              "constant_maps_a": int(const_a.sum()), "constant_maps_b": int(const_b.sum()),
                              "constant_map_indices_a": np.flatnonzero(const_a).tolist(),
                              "constant_map_indices_b": np.flatnonzero(const_b).tolist()}
    result["kernels"] = None
    if kernels and layer in conv_layers(model_a):
        previous = _previous_conv(model_a, layer)
        order, note = None, "input channels are the image's channels, in the same order in both runs"
        if previous is not None:
            prev_corr = activation_correlation(model_a, model_b, previous, images, images_b, batch_size)[0]
            rows, cols = linear_assignment(-prev_corr)
            order = cols[np.argsort(rows)]
            note = (f"B's input channels put in A's order by the activation matching of {previous} "
                    f"(mean r = {prev_corr[rows, cols].mean():.3f})")
        kernel = match_maps(kernel_correlation(model_a, model_b, layer, order))
        del kernel["constant_pairs"], kernel["mean_correlation_all"]
        agree = {(a, b) for a, b, _ in result["matching"]} & {(a, b) for a, b, _ in kernel["matching"]}
        kernel["input_channels"] = note
        kernel["agreement_with_activation_matching"] = len(agree) / max(shape[0], 1)
        result["kernels"] = kernel
    if with_matrix:
        result["correlation"] = corr
    return result


# --- many runs -----------------------------------------------------------------------------------------------
def _samples(values: np.ndarray) -> np.ndarray:
    """(n, maps, h, w) or (n, units) -> (maps, n·h·w): every image and position is one sample of each map."""
    return np.moveaxis(values, 1, 0).reshape(values.shape[1], -1)


def _outputs(model: CNN, layers: Sequence[str], x: np.ndarray) -> dict[str, np.ndarray]:
    """The outputs of `layers` for one batch, in one forward pass (eval mode, no gradients; mode restored)."""
    import torch


    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            batch = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
            outputs, _ = capture(model, list(layers), batch, stop_early=True)
    finally:
        model.train(was_training)
    return {name: outputs[name].float().cpu().numpy() for name in layers}


def many_correlations(models: Sequence[CNN], layers: Sequence[str], images: Sequence[np.ndarray],
                      batch_size: int = 100) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each layer, the correlation of every map of every run with every map of every run over the images and
    all positions: {layer: (correlation (runs·maps, runs·maps), constant (runs·maps,))}, run i's maps in rows
    i·maps … (i+1)·maps. images[i]: the same images preprocessed for models[i]. Each model runs once per batch
    for all layers, so N runs cost N forward passes over the images, not N²."""
    if len(images) != len(models):
        raise RunError(f"one image array per run is needed: {len(models)} runs, {len(images)} arrays")
    counts = {len(x) for x in images}
    if len(counts) != 1 or 0 in counts:
        raise RunError(f"compare needs the same images (at least one) for every run, received "
                       f"{sorted(len(x) for x in images)}")
    accumulators = {layer: _PearsonAccumulator() for layer in layers}
    for start in batches(len(images[0]), batch_size, f"{len(models)} runs over {len(images[0]):,} images"):
        per_run = [_outputs(model, layers, x[start:start + batch_size]) for model, x in zip(models, images,
                                                                                          strict=True)]
        for layer, acc in accumulators.items():
            acc.add(np.concatenate([_samples(outputs[layer]) for outputs in per_run]))
    return {layer: (acc.result()[0], acc.result()[1]) for layer, acc in accumulators.items()}


def compare_many(models: Sequence[CNN], layers: Sequence[str], images: Sequence[np.ndarray], *,
                 threshold: float = THRESHOLD, batch_size: int = 100) -> list[dict[str, Any]]:
    """Compare N runs layer by layer: the N×N matrix of mean matched correlation (match_maps on each pair) and,
    for every map of the first run, in how many other runs its one-to-one partner lies above `threshold`.

    images[i]: the same images preprocessed for models[i]. One dict per layer: layer, maps, matrix (N×N, 1.0 on
    the diagonal; NaN where no map varies), matched_above (N×N pairs above the threshold), constant_maps (per
    run), mean_correlation (the mean of the matrix over the N·(N-1)/2 pairs), first_run_maps ([{map, constant,
    found_by, r: [per other run], partners: [per other run]}]),
    found_by_all (maps of the first run matched above the threshold in every other run)."""
    names = [str(i) for i in range(len(models))]
    for layer in layers:
        check_runs(models, names, layer)
    correlations = many_correlations(models, layers, images, batch_size)
    return [_layer_summary(layer, *correlations[layer], len(models), threshold) for layer in layers]


def _layer_summary(layer: str, corr: np.ndarray, constant: np.ndarray, runs: int,
                   threshold: float) -> dict[str, Any]:
    maps = len(constant) // runs
    dead = constant.reshape(runs, maps)
    matrix = np.full((runs, runs), math.nan)
    above = np.zeros((runs, runs), np.int64)
    partner = np.zeros((runs, maps), np.int64)
    first_r = np.full((runs, maps), math.nan)
    for i in range(runs):
        matrix[i, i] = 1.0 if (~dead[i]).any() else math.nan  # a run matches itself map for map
        above[i, i] = int((~dead[i]).sum())
        for j in range(i + 1, runs):
            pair = match_maps(corr[i * maps:(i + 1) * maps, j * maps:(j + 1) * maps], dead[i], dead[j], threshold)
            matrix[i, j] = matrix[j, i] = pair["mean_correlation"]
            above[i, j] = above[j, i] = pair[f"matched_above_{threshold:g}"]
            if i == 0:
                for a, b, c in pair["matching"]:
                    partner[j, a], first_r[j, a] = b, c
    first = []
    for a in range(maps):
        live = not dead[0, a]
        first.append({"map": a, "constant": not live,
                      "found_by": int((first_r[1:, a] > threshold).sum()) if live else 0,
                      "r": [round(float(c), 6) if live else None for c in first_r[1:, a]],
                      "partners": [int(p) if live else None for p in partner[1:, a]]})
    pairs = matrix[np.triu_indices(runs, 1)]
    pairs = pairs[np.isfinite(pairs)]
    return {"layer": layer, "maps": maps, "threshold": threshold, "matrix": matrix.tolist(),
            "mean_correlation": float(pairs.mean()) if len(pairs) else math.nan,
            "matched_above": above.tolist(), "constant_maps": dead.sum(axis=1).tolist(), "first_run_maps": first,
            "found_by_all": sum(m["found_by"] == runs - 1 for m in first)}
