"""Issue 23: the classification and training figures at their default size, hard cases included (Fashion-MNIST's
long class names, 20 and 47 classes, 64- and 128-map layers): size in inches, smallest text in points, and layout
faults (text over text, over a panel it does not belong to, or past the edge; tests/test_figure_text_profile.py).

    PYTHONPATH=src .venv/bin/python benchmarks/figure_text_profile.py [--out DIR]   (--out: the PNGs at 80 dpi)

Synthetic inputs, seeded: the figures' layout depends on the names, counts and sizes, not on a model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the measurements the tests assert on

from cnnscope.inspect.classify import LayerClassification, PatternClassification, Readout  # noqa: E402
from cnnscope.inspect.profile import Misclassified, TopImages  # noqa: E402
from cnnscope.plots.profile import classify_figure, errors_figure, profile_figure, top_images_figure  # noqa: E402
from cnnscope.plots.training import confusion_figure, curves_figure  # noqa: E402
from figure_checks import smallest_text_pt  # noqa: E402
from test_figure_text_profile import FASHION, TWENTY, layout_faults  # noqa: E402

DIGITS = [str(i) for i in range(10)]
rng = np.random.default_rng(0)


def confusion(k: int, diagonal: int = 1000) -> np.ndarray:
    m = rng.integers(0, 30, (k, k))
    m[np.diag_indices(k)] = diagonal
    return m


def classification(names: list[str]) -> PatternClassification:
    k = len(names)
    layers = tuple(LayerClassification(name, (32, 14, 14), (8, 8), 2048, {kind: {m: float(rng.uniform(0.5, 0.99))
                   for m in ("nearest_cosine", "nearest_euclidean", "linear")} for kind in ("pattern", "profile")},
                   {"pattern": confusion(k, 900), "profile": confusion(k, 900)})
                   for name in ("input", "Conv2D_1", "Max_Pool_1", "Conv2D_2", "Max_Pool_2", "Conv2D_3"))
    return PatternClassification(layers, 0.991, 1 / k, 0.1135, 10_000, 10_000, (1000,) * k, Readout())


def images(n: int) -> np.ndarray:
    return rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)


def mistakes(names: list[str], n: int = 36) -> Misclassified:
    k = len(names)
    return Misclassified(np.arange(n) * 37, rng.integers(0, k, n), rng.integers(0, k, n),
                         np.sort(rng.uniform(0.4, 1, n))[::-1], rng.uniform(0, 0.3, n), 10_000, confusion(k, 980))


def top(n: int = 16, dead: bool = False) -> TopImages:
    return TopImages("Conv2D_2", 17, np.arange(n) * 101, np.sort(rng.uniform(0, 9, n))[::-1], np.zeros((n, 2), int),
                     np.tile([3, 4, 15, 16], (n, 1)), (12, 12), dead)


HISTORY = {"epoch": list(range(1, 13)), "loss": list(np.linspace(1, .1, 12)),
           "accuracy": list(np.linspace(.8, .99, 12)), "val_loss": list(np.linspace(1, .2, 12)),
           "val_accuracy": list(np.linspace(.8, .98, 12)), "data_loss": list(np.linspace(.9, .1, 12)),
           "val_data_loss": list(np.linspace(.9, .2, 12)), "val_source": "validation",
           "lr": list(np.geomspace(1e-2, 1e-5, 600))}

CASES = {
    "profile, 16 maps": lambda: profile_figure(rng.uniform(0, 1, (10, 16)), DIGITS, layer="Conv2D_1", images=10_000),
    "profile, 64 maps, Fashion": lambda: profile_figure(np.c_[rng.uniform(0, 1, (10, 62)), np.zeros((10, 2))],
                                                        FASHION, layer="Conv2D_2", images=10_000, dead=[62, 63]),
    "profile, 128 maps, 20 classes": lambda: profile_figure(rng.uniform(-1, 1, (20, 128)), TWENTY, layer="Conv2D_3",
                                                            order="class", norm="layer", images=10_000),
    "classify, digits": lambda: classify_figure(classification(DIGITS), DIGITS, layer="Conv2D_2"),
    "classify, Fashion": lambda: classify_figure(classification(FASHION), FASHION, layer="Conv2D_2"),
    "classify, 20 classes": lambda: classify_figure(classification(TWENTY), TWENTY, layer="Conv2D_2"),
    "top images, 16": lambda: top_images_figure(images(16), top(), labels=rng.integers(0, 10, 16),
                                                class_names=FASHION, searched=10_000),
    "top images, 3": lambda: top_images_figure(images(3), top(3), labels=rng.integers(0, 10, 3), class_names=DIGITS,
                                               searched=100),
    "errors, digits": lambda: errors_figure(images(36), mistakes(DIGITS), DIGITS),
    "errors, Fashion": lambda: errors_figure(images(36), mistakes(FASHION), FASHION),
    "errors, 20 classes": lambda: errors_figure(images(36), mistakes(TWENTY), TWENTY),
    "confusion, 2": lambda: confusion_figure([[5, 1], [0, 7]], ["cat", "dog"]),
    "confusion, digits, 4-digit counts": lambda: confusion_figure(confusion(10, 9999), DIGITS),
    "confusion, Fashion": lambda: confusion_figure(confusion(10), FASHION),
    "confusion, 20 classes": lambda: confusion_figure(confusion(20, 500), TWENTY),
    "confusion, 47 classes": lambda: confusion_figure(confusion(47, 500), [f"class {i}" for i in range(47)]),
    "training curves": lambda: curves_figure(HISTORY),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write each figure here as PNG (80 dpi)")
    args = parser.parse_args()
    print("| figure | inches | smallest pt | layout faults |\n| --- | --- | --- | --- |")
    for name, make in CASES.items():
        fig = make()
        faults = layout_faults(fig)
        w, h = fig.get_size_inches()
        print(f"| {name} | {w:.1f} × {h:.1f} | {smallest_text_pt(fig):.1f} | {len(faults)} |")
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            fig.savefig(args.out / f"{name.replace(', ', '-').replace(' ', '_')}.png", dpi=80)


if __name__ == "__main__":
    main()
