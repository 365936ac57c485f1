"""The compare view: do two runs learn the same maps? One-to-one matching of a layer's maps, drawn in pairs."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnscope.base.errors import ConfigError, DataError, RunError, SpecError, brief
from cnnscope.base.progress import bar, say
from cnnscope.inspect.activations import activations, conv_layers
from cnnscope.inspect.compare import THRESHOLD, check_pair, check_runs, compare_many, compare_runs
from cnnscope.inspect.filters import conv_filters
from cnnscope.plots.compare import compare_figure, found_figure, matrix_figure
from cnnscope.runs.layout import INITIAL, STUDY, TRIALS
from cnnscope.runs.load import load_run
from cnnscope.runs.records import read_metrics
from cnnscope.views.common import PathLike, ViewResult, check_positive, load, save

log = logging.getLogger("cnnscope")


def _example(dataset, limit: int | None, index: int):
    """Run A's test images (the first `limit`), their labels, and a check that example `index` is among them."""
    raw, labels = dataset.test_raw, dataset.test_y
    if limit is not None:
        raw, labels = raw[:limit], labels[:limit]
    if not 0 <= index < len(raw):
        raise DataError(f"example index {index} is outside the {len(raw):,} test images compared "
                        f"(valid: 0 to {len(raw) - 1})")
    return raw, labels


def compare(run_a: PathLike, run_b: PathLike, layer: str, *, limit: int | None = None, index: int = 0,
            pairs: int = 16, kernels: bool = True, out: PathLike | None = None, svg: bool = False,
            data_dir: PathLike | None = None) -> ViewResult:
    """Compare two runs' maps of `layer` on run A's test images (each run preprocesses them its own way), and
    draw the matched pairs for test image `index`; saved to `out` or RUN_A/compare-LAYER-RUN_B.png.
    data: run_a, run_b, the numbers of cnnscope.inspect.compare_runs (without the matrix), example_index,
    kind/seeds/differ_in (describe_runs; its notes go to the view's notes), and "baseline": the same numbers
    for the two runs put back to their initial weights (kernels: under kernels.baseline), or None with
    "baseline_note" saying why (a run without initial.safetensors)."""
    if limit is not None:
        check_positive(limit, "limit")
    check_positive(pairs, "pairs")
    first, second = load(run_a), load(run_b)
    check_pair(first.model, second.model, layer)  # names and shapes fail before the data is loaded
    if first.data_config.dataset != second.data_config.dataset:
        log.warning("run A was trained on %s, run B on %s; comparing on A's test images",
                    first.data_config.dataset, second.data_config.dataset)
    say("loading the test images")
    dataset = first.dataset(data_dir)
    raw, labels = _example(dataset, limit, index)
    xa, xb = first.preprocessor(raw), second.preprocessor(raw)
    say("matching the %d maps of %s on %s test images", first.spec.layer(layer).output_shape[0], layer,
        f"{len(raw):,}")
    result = compare_runs(first.model, second.model, layer, xa, xb, kernels=kernels, with_matrix=True)
    matrix = result.pop("correlation")
    models, note = initial_models((first, second), (str(run_a), str(run_b)))
    base = None if models is None else compare_runs(*models, layer, xa, xb, kernels=kernels)
    _attach_pair_baseline(result, base, note)
    maps_a = activations(first.model, layer, xa[index:index + 1])[0]
    maps_b = activations(second.model, layer, xb[index:index + 1])[0]
    source = f"test image {index} (class {dataset.class_names[int(labels[index])]})"
    fig = compare_figure(raw[index], maps_a, maps_b, result, names=("A", "B"), source=source, pairs=pairs,
                         correlation=matrix, baseline_r=None if base is None else [m[2] for m in base["matching"]])
    paths = save(fig, out, first.path / f"compare-{layer}-{second.path.resolve().name}.png", svg)
    described = describe_runs((first, second), (str(run_a), str(run_b)))
    notes = described.pop("notes") + ([note] if note else [])
    return ViewResult(paths, {"run_a": str(first.path), "run_b": str(second.path), **result, **described,
                              "example_index": index}, notes)


# --- the baseline: the same runs at their initial weights -----------------------------------------------------
_PAIR_KEYS = ("mean_correlation", "median_correlation", f"matched_above_{THRESHOLD:g}", "pairs", "constant_pairs",
              "mean_correlation_all", "mean_best_correlation", "constant_maps_a", "constant_maps_b")
_KERNEL_KEYS = ("mean_correlation", "median_correlation", f"matched_above_{THRESHOLD:g}", "pairs",
                "mean_best_correlation", "agreement_with_activation_matching")


def initial_models(runs: Sequence, names: Sequence[str]) -> tuple[list | None, str | None]:
    """Each run's model at its initial weights (its initial.safetensors, saved when the run was built), or
    (None, a note naming the runs without them: older runs, or a file that is a link, which is not followed)."""
    missing = [name for name, run in zip(names, runs, strict=True)
               if (run.path / INITIAL).is_symlink() or not (run.path / INITIAL).is_file()]
    if missing:
        return None, (f"no baseline at initialisation: {', '.join(missing)} "
                      f"{'has' if len(missing) == 1 else 'have'} no {INITIAL} (trained before cnnscope kept initial "
                      f"weights), so these correlations stand without what untrained networks already share")
    try:
        return [load_run(run.path, weights=INITIAL).model for run in runs], None
    except RunError as exc:
        return None, f"no baseline at initialisation: {exc}"


def _attach_pair_baseline(result: dict[str, Any], base: dict[str, Any] | None, note: str | None) -> None:
    """result["baseline"] (and result["kernels"]["baseline"]): base's summary numbers, or None and a note."""
    result["baseline"] = None if base is None else {"weights": INITIAL,
                                                    **{k: base[k] for k in _PAIR_KEYS}}
    result["baseline_note"] = note
    if result.get("kernels") is not None:
        kernels = None if base is None else base.get("kernels")
        result["kernels"]["baseline"] = None if kernels is None else {k: kernels[k] for k in _KERNEL_KEYS}


def _many_baseline(base: dict[str, Any] | None) -> dict[str, Any] | None:
    """The numbers of one layer of compare_many at initialisation, as they stand beside the trained ones."""
    if base is None:
        return None
    return {"weights": INITIAL, "matrix": base["matrix"], "matched_above": base["matched_above"],
            "mean_correlation": base["mean_correlation"], "found_by_all": base["found_by_all"],
            "found_by": [m["found_by"] for m in base["first_run_maps"]], "constant_maps": base["constant_maps"]}


def matrices(runs: Sequence, names: Sequence[str], layers: Sequence[str], images: Sequence,
             threshold: float = THRESHOLD) -> tuple[list[dict[str, Any]], str | None]:
    """compare_many over the runs as trained, each layer's result with "baseline": the same numbers for the runs
    at their initial weights (None when a run lacks them; the note says so)."""
    models, note = initial_models(runs, names)
    results = []
    for layer in bar(layers, desc=f"matching the maps of {len(runs)} runs on {len(images[0]):,} test images, "
                                  "layer by layer", unit="layer"):
        result = compare_many([r.model for r in runs], [layer], images, threshold=threshold)[0]
        initial = compare_many(models, [layer], images, threshold=threshold)[0] if models else None
        results.append({**result, "baseline": _many_baseline(initial)})
    return results, note


def _digest(run) -> str | None:
    """A digest of the run's initial weights file (None when missing or a link)."""
    path = run.path / INITIAL
    if path.is_symlink() or not path.is_file():
        return None
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def _differing(runs: Sequence) -> list[str]:
    """The training and data settings (not the seed, device, threads or data folder) that differ between the runs;
    --seed sets the data's seed too (the split's shuffle), so both count as "the seed"."""
    def settings(run) -> dict[str, Any]:
        train = {f"train.{k}": v for k, v in dataclasses.asdict(run.config).items()
                 if k not in ("seed", "device", "threads")}
        return {**train, **{f"data.{k}": v for k, v in dataclasses.asdict(run.data_config).items()
                            if k not in ("seed", "data_dir")}}

    every = [settings(r) for r in runs]
    return sorted(k for k in every[0] if any(repr(s.get(k)) != repr(every[0][k]) for s in every[1:]))


def describe_runs(runs: Sequence, names: Sequence[str]) -> dict[str, Any]:
    """What sets the compared runs apart at the start: kind "seeds" when they differ in seed and in nothing else
    that sets initial weights (same model spec, no two with the same initial weights), "trials" otherwise;
    seeds, differ_in (other settings that differ) and notes saying which runs share their initial weights."""
    seeds = [r.config.seed for r in runs]
    same_model = all(r.spec == runs[0].spec for r in runs)
    starts: dict[Any, list[str]] = {}
    for name, run in zip(names, runs, strict=True):  # without the file: same seed and model, same start
        starts.setdefault(_digest(run) or (run.config.seed, run.spec), []).append(name)
    shared = [group for group in starts.values() if len(group) > 1]
    kind = "seeds" if len(set(seeds)) == len(seeds) and same_model and not shared else "trials"
    other = _differing(runs)
    notes = []
    if len(shared) == 1 and len(shared[0]) == len(runs):
        notes.append(f"all {len(runs)} start from the same initial weights: the matrix shows what their other "
                     f"settings ({', '.join(other) or 'none'}) change, not what a seed changes")
    else:
        notes += [f"{', '.join(group)} start from the same initial weights" for group in shared]
    if not same_model:
        notes.append("their model specs differ, so their initial weights differ for more than the seed")
    elif kind == "seeds" and other:
        notes.append(f"besides the seed they differ in {', '.join(other)}: the matrix mixes what a seed changes "
                     f"with what those change")
    return {"kind": kind, "seeds": seeds, "differ_in": other, "notes": notes}


# --- many runs -----------------------------------------------------------------------------------------------
def is_study(path: PathLike) -> bool:
    """Whether `path` is a study directory (study.toml and trials/, as `cnnscope sweep` writes them)."""
    path = Path(path)
    return (path / STUDY).is_file() and (path / TRIALS).is_dir()


def study_runs(study: PathLike) -> tuple[list[Path], list[str]]:
    """The completed trials of a study (trials/*/ whose metrics.json says completed, in name order) and a note
    for each one left out; links are not followed."""
    runs, notes = [], []
    for trial in sorted(Path(study, TRIALS).iterdir()):
        if trial.is_symlink() or not trial.is_dir():
            continue
        try:
            status = read_metrics(trial).get("status", "not finished")
        except RunError as exc:
            status = f"unreadable ({exc})"
        if status == "completed":
            runs.append(trial)
        else:
            notes.append(f"{trial}: left out ({status})")
    return runs, notes


def expand_runs(paths: Sequence[PathLike]) -> tuple[list[Path], list[str]]:
    """Run directories from the command line, each study directory replaced by its completed trials; RunError
    unless at least two remain."""
    runs: list[Path] = []
    notes: list[str] = []
    for path in paths:
        if is_study(path):
            trials, skipped = study_runs(path)
            runs += trials
            notes += skipped
        else:
            runs.append(Path(path))
    if len(runs) < 2:
        given = ", ".join(str(p) for p in paths)
        raise RunError(f"compare needs at least two runs, or a study with at least two completed trials; "
                       f"received {len(runs)} run(s) from {given}")
    return runs, notes


def run_names(paths: Sequence[Path]) -> list[str]:
    """Short distinct labels: each run's directory name, with as many parent names as needed to tell them apart."""
    parts = [Path(p).resolve().parts for p in paths]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def _check_same_data(runs: Sequence, names: Sequence[str]) -> None:
    """RunError unless every run was trained on the first run's dataset with its input shape."""
    first = runs[0]
    for name, run in zip(names[1:], runs[1:], strict=True):
        if run.data_config.dataset != first.data_config.dataset:
            raise RunError(f"cannot compare runs of different datasets: {names[0]} was trained on "
                           f"{first.data_config.dataset}, {name} on {run.data_config.dataset}")
        if tuple(run.spec.input_shape) != tuple(first.spec.input_shape):
            raise RunError(f"cannot compare runs with different inputs: {names[0]} takes "
                           f"{'×'.join(map(str, first.spec.input_shape))}, {name} takes "
                           f"{'×'.join(map(str, run.spec.input_shape))}")


def pick_layers(model, layers: Sequence[str]) -> list[str]:
    """The layers asked for ('all': every conv layer), without repeats, in the order given."""
    chosen: list[str] = []
    for layer in layers:
        for name in conv_layers(model) if layer == "all" else [layer]:
            if name not in chosen:
                chosen.append(name)
    return chosen


def check_threshold(threshold: float) -> None:
    """ConfigError unless -1 <= threshold < 1."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not -1.0 <= threshold < 1.0:
        raise ConfigError(f"threshold must be a correlation between -1 and 1 (1 excluded), received {threshold!r}")


def _figure_path(out: PathLike | None, default_dir: Path, kind: str, layer: str) -> Path:
    """compare-KIND-LAYER.png in default_dir, or beside `out` as OUT-KIND-LAYER.SUFFIX."""
    if not out:
        return default_dir / f"compare-{kind}-{layer}.png"
    out = Path(out)
    return out.with_name(f"{out.stem}-{kind}-{layer}{out.suffix or '.png'}")


def compare_many_runs(paths: Sequence[PathLike], layers: Sequence[str], *, threshold: float = THRESHOLD,
                      limit: int | None = None, index: int = 0, out: PathLike | None = None, svg: bool = False,
                      data_dir: PathLike | None = None) -> ViewResult:
    """Compare N runs (or a study's completed trials) on the first run's test images: per layer the N×N matrix of
    mean matched correlation and which maps of the first run every other run finds (r above `threshold`).

    Figures per layer: compare-matrix-LAYER.png and compare-found-LAYER.png (in the study directory, or the first
    run's; beside `out` when given). data: runs, names, images, threshold, example_index, layers (see
    cnnscope.inspect.compare_many; each layer with "baseline": the same numbers for the runs at their initial
    weights, or None and "baseline_note"), kind/seeds/differ_in (describe_runs), notes (left-out trials, shared
    initial weights, a missing baseline)."""
    if limit is not None:
        check_positive(limit, "limit")
    check_threshold(threshold)
    run_dirs, notes = expand_runs(paths)
    names = run_names(run_dirs)
    runs = [load(p) for p in bar(run_dirs, desc=f"loading {len(run_dirs)} runs", unit="run")]
    _check_same_data(runs, names)
    chosen = pick_layers(runs[0].model, layers)
    for layer in chosen:  # names and shapes fail before the data is loaded
        check_runs([r.model for r in runs], names, layer)
    say("loading the test images")
    dataset = runs[0].dataset(data_dir)
    raw, labels = _example(dataset, limit, index)
    images = [run.preprocessor(raw) for run in runs]
    results, note = matrices(runs, names, chosen, images, threshold)
    described = describe_runs(runs, names)
    notes += described.pop("notes") + ([note] if note else [])
    home = Path(paths[0]) if is_study(paths[0]) else runs[0].path
    source = f"test image {index} (class {dataset.class_names[int(labels[index])]})"
    figures = []
    for result in bar(results, desc=f"drawing the matrix and found maps of {len(results)} layer(s)", unit="layer"):
        figures += _draw_many(result, runs, names, images[0][index:index + 1], source, len(raw),
                              (out, home, svg))
    data = {"runs": [str(p) for p in run_dirs], "names": names, "images": int(len(raw)), "threshold": threshold,
            "example_index": index, **described, "baseline_note": note, "layers": results}
    return ViewResult(figures, data, notes)


def _draw_many(result: dict, runs: Sequence, names: Sequence[str], x, source: str, images: int,
               where: tuple) -> list[Path]:
    """The matrix figure and the found-by figure of one layer; the paths written."""
    out, home, svg = where
    layer, first = result["layer"], runs[0]
    base = result["baseline"] or {}
    fig = matrix_figure(result["matrix"], names, layer, images=images, above=result["matched_above"],
                        threshold=result["threshold"], baseline=base.get("matrix"),
                        baseline_above=base.get("matched_above"))
    paths = save(fig, _figure_path(out, home, "matrix", layer), None, svg)
    rows = result["first_run_maps"]
    maps = activations(first.model, layer, x)[0]
    kernels = conv_filters(first.model, layer).kernels if layer == conv_layers(first.model)[0] else None
    fig = found_figure(maps, [m["found_by"] for m in rows],
                       [[math.nan if v is None else v for v in m["r"]] for m in rows], others=len(runs) - 1,
                       layer=layer, name=names[0], kernels=kernels, constant=[m["constant"] for m in rows],
                       threshold=result["threshold"], source=source, initial_found=base.get("found_by_all"))
    return paths + save(fig, _figure_path(out, home, "found", layer), None, svg)


# --- a study's matrix for the dashboard -----------------------------------------------------------------------
def _nullable(matrix: Sequence[Sequence[float]]) -> list[list[float | None]]:
    return [[v if v == v else None for v in row] for row in matrix]  # NaN (no map of a run varies): null


def study_matrix(trials: Sequence[Path], names: Sequence[str], layer: str | None, images: int,
                 data_dir: PathLike | None = None) -> dict[str, Any]:
    """The compare matrix of a study's completed trials on one conv layer (default: the first) over the first
    trial's first `images` test images, as the dashboard shows it: layer, layers, runs, images, maps, threshold,
    matrix (null where no map varies), matched_above, mean_correlation, counts (per map of the first trial: the
    other trials that find it), found_by_all, constant_maps, baseline (the same at initialisation, or None),
    baseline_note, kind ("seeds" or "trials", see describe_runs), seeds, differ_in, notes (shared initial weights,
    a missing baseline), seconds (the time it took). With fewer than two trials: no matrix, and a note saying
    why. SpecError for a layer that is not a conv layer."""
    if len(trials) < 2:
        return _no_matrix(names, layer)
    started = time.perf_counter()
    loaded = [load(t) for t in trials]
    layers = conv_layers(loaded[0].model)
    layer = layers[0] if layer is None and layers else layer
    if layer not in layers:
        raise SpecError(f"unknown layer {brief(layer)}; the conv layers of {names[0]} are: "
                        f"{', '.join(layers) or 'none'}")
    check_runs([r.model for r in loaded], names, layer)  # shapes fail before the data is loaded
    raw = loaded[0].dataset(data_dir).test_raw[:images]
    (result,), note = matrices(loaded, names, [layer], [r.preprocessor(raw) for r in loaded])
    base = result["baseline"]
    if base is not None:
        base = {**base, "matrix": _nullable(base["matrix"])}
    described = describe_runs(loaded, names)
    described["notes"] += [note] if note else []
    return {"layer": layer, "layers": layers, "runs": list(names), "images": int(len(raw)), "maps": result["maps"],
            "threshold": result["threshold"], "matrix": _nullable(result["matrix"]),
            "matched_above": result["matched_above"], "mean_correlation": result["mean_correlation"],
            "counts": [m["found_by"] for m in result["first_run_maps"]], "found_by_all": result["found_by_all"],
            "constant_maps": result["constant_maps"], "baseline": base, "baseline_note": note, **described,
            "seconds": round(time.perf_counter() - started, 3)}


def _no_matrix(names: Sequence[str], layer: str | None) -> dict[str, Any]:
    """study_matrix's answer for a study with fewer than two completed trials."""
    return {"layer": layer, "layers": [], "runs": list(names), "matrix": None, "found_by_all": None, "counts": None,
            "threshold": None, "baseline": None, "kind": "trials", "notes": [],
            "note": f"the compare matrix needs at least two completed trials; this study has {len(names)} so far"}
