"""The compare view: do two runs learn the same maps? One-to-one matching of a layer's maps, drawn in pairs."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError, DataError, RunError
from ..inspect.activations import activations, conv_layers
from ..inspect.compare import THRESHOLD, check_pair, check_runs, compare_many, compare_runs
from ..inspect.filters import conv_filters
from ..plots.compare import compare_figure, found_figure, matrix_figure
from ..progress import bar, say
from .common import PathLike, ViewResult, check_positive, load, save

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
    data: run_a, run_b, the numbers of cnnscope.inspect.compare_runs (without the matrix), example_index."""
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
    maps_a = activations(first.model, layer, xa[index:index + 1])[0]
    maps_b = activations(second.model, layer, xb[index:index + 1])[0]
    source = f"test image {index} (class {dataset.class_names[int(labels[index])]})"
    fig = compare_figure(raw[index], maps_a, maps_b, result, names=("A", "B"), source=source, pairs=pairs,
                         correlation=matrix)
    paths = save(fig, out, first.path / f"compare-{layer}-{second.path.resolve().name}.png", svg)
    return ViewResult(paths, {"run_a": str(first.path), "run_b": str(second.path), **result,
                              "example_index": index})


# --- many runs -----------------------------------------------------------------------------------------------
def is_study(path: PathLike) -> bool:
    """Whether `path` is a study directory (study.toml and trials/, as `cnnscope sweep` writes them)."""
    path = Path(path)
    return (path / "study.toml").is_file() and (path / "trials").is_dir()


def study_runs(study: PathLike) -> tuple[list[Path], list[str]]:
    """The completed trials of a study (trials/*/ whose metrics.json says completed, in name order) and a note
    for each one left out; links are not followed."""
    from ..runs import read_metrics

    runs, notes = [], []
    for trial in sorted(Path(study, "trials").iterdir()):
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
    cnnscope.inspect.compare_many), notes on left-out trials."""
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
    results = []
    for layer in bar(chosen, desc=f"matching the maps of {len(runs)} runs on {len(raw):,} test images, layer by "
                                  f"layer", unit="layer"):
        results += compare_many([r.model for r in runs], [layer], images, threshold=threshold)
    home = Path(paths[0]) if is_study(paths[0]) else runs[0].path
    source = f"test image {index} (class {dataset.class_names[int(labels[index])]})"
    figures = []
    for result in results:
        figures += _draw_many(result, runs, names, images[0][index:index + 1], source, len(raw),
                              (out, home, svg))
    data = {"runs": [str(p) for p in run_dirs], "names": names, "images": int(len(raw)), "threshold": threshold,
            "example_index": index, "layers": results}
    return ViewResult(figures, data, notes)


def _draw_many(result: dict, runs: Sequence, names: Sequence[str], x, source: str, images: int,
               where: tuple) -> list[Path]:
    """The matrix figure and the found-by figure of one layer; the paths written."""
    out, home, svg = where
    layer, first = result["layer"], runs[0]
    fig = matrix_figure(result["matrix"], names, layer, images=images, above=result["matched_above"],
                        threshold=result["threshold"])
    paths = save(fig, _figure_path(out, home, "matrix", layer), None, svg)
    rows = result["first_run_maps"]
    maps = activations(first.model, layer, x)[0]
    kernels = conv_filters(first.model, layer).kernels if layer == conv_layers(first.model)[0] else None
    fig = found_figure(maps, [m["found_by"] for m in rows],
                       [[math.nan if v is None else v for v in m["r"]] for m in rows], others=len(runs) - 1,
                       layer=layer, name=names[0], kernels=kernels, constant=[m["constant"] for m in rows],
                       threshold=result["threshold"], source=source)
    return paths + save(fig, _figure_path(out, home, "found", layer), None, svg)
