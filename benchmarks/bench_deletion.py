"""Deletion test of every attribution method against an image-only baseline (issue 18 item 4; earlier: issue 9
item 7, issue 13 item 2).

    CNNSCOPE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/bench_deletion.py RUN [--images 500] [--json]

For the first N test images, per method of the registry (`cnnscope.inspect.METHODS`, each with its defaults, a
black image as baseline where the method takes one), the deletion test of `cnnscope.inspect.deletion`: the
predicted class's probability while 0–50 % of the pixels are blanked (deletion) or inserted into a black image
(insertion) in the method's order, in the order of brightness alone (no model: distance from black, the ink)
and in random orders (mean of --draws). Prints, per method, the share of images on which it beats random and
beats brightness (deletion AUC lower by at least BEAT_MARGIN: the verdict "passes"), the share beating
brightness on insertion, and the mean AUCs; then the brightness and random rows; and the method that passes
most often (what DEFAULT_METHOD should be). A markdown table with --markdown.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

import cnnscope
from cnnscope import inspect
from cnnscope.inspect.deletion import BEAT_MARGIN, FRACTIONS, DeletionResult


def measure(run, x: np.ndarray, raw: np.ndarray, names: list[str], draws: int,
            batch: int) -> tuple[list[dict], list[DeletionResult]]:
    """Every method over all images, in batches (the brightness and random curves computed once per batch and
    shared): per method its verdict shares, mean AUCs and heat-map seconds; and the results of the first method."""
    blank = run.preprocessor(np.zeros((1, *raw.shape[1:]), np.uint8))[0]  # a black image, preprocessed
    seconds, parts = dict.fromkeys(names, 0.0), {name: [] for name in names}
    for i in range(0, len(x), batch):
        heats = {}
        for name in names:
            start = time.perf_counter()
            heats[name] = inspect.attribute(run.model, x[i:i + batch], name, baseline=blank)
            seconds[name] += time.perf_counter() - start
        found = inspect.deletion_scores(run.model, x[i:i + batch], heats, raw=raw[i:i + batch], blank=blank,
                                        random_draws=draws, seed=i)
        for name in names:
            parts[name].append(found[name])
        logging.info("%d of %d images", min(i + batch, len(x)), len(x))
    return [row(name, parts[name], seconds[name]) for name in names], parts[names[0]]


def row(name: str, parts: list[DeletionResult], seconds: float) -> dict:
    """One method's line of the table from its results over the batches."""
    def joined(values) -> np.ndarray:
        return np.concatenate(list(values))

    return {"method": name, "beats_random": float(joined(p.beats_random for p in parts).mean()),
            "beats_brightness": float(joined(p.passes for p in parts).mean()),
            "insertion_beats_brightness": float(joined(p.beats("brightness", "insertion") for p in parts).mean()),
            "deletion_auc": float(joined(p.auc("method") for p in parts).mean()),
            "insertion_auc": float(joined(p.auc("method", "insertion") for p in parts).mean()),
            "heatmap_seconds": seconds}


def baseline_rows(parts: list[DeletionResult]) -> list[dict]:
    """The brightness and random rankings' own rows (the same for every method: same seeds)."""
    rows = []
    for name in ("brightness", "random"):
        deletion = np.concatenate([p.auc(name) for p in parts])
        insertion = np.concatenate([p.auc(name, "insertion") for p in parts])
        random = np.concatenate([p.auc("random") for p in parts])
        rows.append({"method": name, "beats_random": float((random - deletion >= BEAT_MARGIN).mean())
                     if name == "brightness" else None, "beats_brightness": None,
                     "insertion_beats_brightness": None, "deletion_auc": float(deletion.mean()),
                     "insertion_auc": float(insertion.mean()), "heatmap_seconds": 0.0})
    return rows


def share(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def print_table(rows: list[dict], markdown: bool, default: str) -> None:
    head = ("method", "beats random", "passes: beats brightness", "insertion beats brightness",
            "deletion AUC ↓", "insertion AUC ↑", "heat maps")
    if markdown:
        print("| " + " | ".join(head) + " |\n|" + " --- |" * len(head))
    for r in rows:
        name = f"**{r['method']}** (best)" if r["method"] == default else r["method"]
        cells = (name, share(r["beats_random"]), share(r["beats_brightness"]), share(r["insertion_beats_brightness"]),
                 f"{r['deletion_auc']:.3f}", f"{r['insertion_auc']:.3f}",
                 f"{r['heatmap_seconds']:.1f} s" if r["heatmap_seconds"] else "–")
        print("| " + " | ".join(cells) + " |" if markdown else
              f"{cells[0]:30s} " + " ".join(f"{c:>8s}" for c in cells[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--data-dir")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--draws", type=int, default=4, help="random orders per image (default 4)")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--methods", help="comma-separated subset of the registry (default: all)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--save", metavar="FILE", help="also write the JSON answer to FILE")
    args = parser.parse_args()
    run = cnnscope.load_run(args.run)
    data = run.dataset(args.data_dir)
    x, raw = data.test_x[:args.images], np.asarray(data.test_raw[:args.images])
    names = args.methods.split(",") if args.methods else list(inspect.METHODS)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rows, first = measure(run, x, raw, names, args.draws, args.batch)
    rows += baseline_rows(first)
    best = max(rows[:len(names)], key=lambda r: (r["beats_brightness"], -r["deletion_auc"]))["method"]
    probability = float(np.concatenate([p.probability for p in first]).mean())
    answer = json.dumps({"run": args.run, "images": len(x), "fractions": list(FRACTIONS), "draws": args.draws,
                         "margin": BEAT_MARGIN, "probability": probability, "best": best,
                         "default": inspect.DEFAULT_METHOD, "rows": rows}, indent=2)
    if args.save:
        Path(args.save).write_text(answer + "\n", encoding="utf-8")
    if args.json:
        print(answer)
        return
    print(f"{args.run}: {len(x)} test images, mean p(predicted) {probability:.4f}; 0–50 % of the pixels in steps "
          f"of 5 %; random: mean of {args.draws} orders; beats = deletion AUC lower by >= {BEAT_MARGIN} "
          f"(insertion: higher); current default: {inspect.DEFAULT_METHOD}; passes most often: {best}")
    print_table(rows, args.markdown, best)


if __name__ == "__main__":
    main()
