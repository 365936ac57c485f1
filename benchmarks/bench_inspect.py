"""Warm timings of the activation views for a trained run (issue 3, "Performance").

(a) the array for one image's grid: activations of one layer for one image + activation_grid(scale=True)
(b) the PNG of the activations figure: (a) + figure + PNG written to disk
(c) activations of one layer for the whole test set (10,000 images for MNIST)

    .venv/bin/python benchmarks/bench_inspect.py --run runs/seed-iv-3ep --data-dir ../shared/data --threads 2

Goals: (a) < 100 ms, (b) < 500 ms, (c) < 3 s on 2 cores. Prints a table (or --json); the best and median of
--repeat warm runs after one untimed warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def _time(fn, repeat: int) -> dict[str, float]:
    fn()  # warm-up: lazy imports, allocator, font cache
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"best_s": min(times), "median_s": statistics.median(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/seed-iv-3ep", help="a trained run directory (seed-iv)")
    parser.add_argument("--data-dir", default=None, help="directory holding mnist/ (default: the run's own)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--index", type=int, default=0, help="test image for (a) and (b)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from cnnscope import load_run
    from cnnscope.inspect import activation_grid, activations, layer_display, map_layers
    from cnnscope.plots import activations_figure, save_figure_as

    run = load_run(args.run)
    start = time.perf_counter()
    ds = run.dataset(args.data_dir)
    load_s = time.perf_counter() - start
    model = run.model
    one = ds.test_x[args.index:args.index + 1]
    raw = ds.test_raw[args.index]
    results: dict[str, dict] = {"grid_array": {}, "figure_png": {}, "test_set": {}}
    out_dir = Path(tempfile.mkdtemp(prefix="bench-inspect-"))
    conv = [name for name in map_layers(model) if name.startswith("Conv")]
    for layer in conv:
        results["grid_array"][layer] = _time(
            lambda layer=layer: activation_grid(activations(model, layer, one)[0], scale=True), args.repeat)

        def png(layer=layer):
            shown = layer_display(activations(model, layer, one)[0], scale=True)
            fig = activations_figure(raw, shown, layer=layer, source=f"test image {args.index}")
            save_figure_as(fig, out_dir / f"{layer}.png")

        results["figure_png"][layer] = _time(png, args.repeat)
    for layer in map_layers(model):
        results["test_set"][layer] = _time(lambda layer=layer: activations(model, layer, ds.test_x),
                                           max(1, args.repeat // 2))
    meta = {"run": str(args.run), "threads": torch.get_num_threads(), "test_images": len(ds.test_x),
            "dataset_load_s": load_s, "torch": torch.__version__}
    if args.json:
        print(json.dumps({**meta, **results}, indent=2))
        return
    print(f"run {args.run}, {meta['threads']} torch threads, torch {meta['torch']}; "
          f"data set load + preprocessing {load_s:.2f} s (not timed below)")
    goals = {"grid_array": ("(a) one image's grid array", 0.1), "figure_png": ("(b) activations figure, PNG", 0.5),
             "test_set": (f"(c) whole test set ({len(ds.test_x):,} images)", 3.0)}
    for key, (title, goal) in goals.items():
        print(f"{title}, goal < {goal * 1000:.0f} ms")
        for layer, t in results[key].items():
            print(f"  {layer:<12} best {t['best_s'] * 1000:8.1f} ms   median {t['median_s'] * 1000:8.1f} ms"
                  f"   {'ok' if t['median_s'] < goal else 'OVER'}")


if __name__ == "__main__":
    main()
