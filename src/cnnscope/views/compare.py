"""The compare view: do two runs learn the same maps? One-to-one matching of a layer's maps, drawn in pairs."""

from __future__ import annotations

import logging

from ..errors import DataError
from ..inspect.activations import activations
from ..inspect.compare import check_pair, compare_runs
from ..plots.compare import compare_figure
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
    dataset = first.dataset(data_dir)
    raw, labels = _example(dataset, limit, index)
    xa, xb = first.preprocessor(raw), second.preprocessor(raw)
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
