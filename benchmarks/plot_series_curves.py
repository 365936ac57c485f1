"""The series recipe epoch by epoch: Keras 3 against cnnscope (Keras' rules), official split and reshuffled.

Reads the rows `vs_keras.py --json` writes (both sides, official split) and, optionally, the history.json of a
cnnscope run trained with `--split reshuffle`; draws test accuracy per epoch with the articles' reported range and
prints final and best accuracies. Usage:

    .venv/bin/python benchmarks/plot_series_curves.py /tmp/w19runs/official.json \
        --reshuffle /tmp/w19runs/reshuffle/history.json --out benchmarks/series-keras-rules.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from matplotlib.figure import Figure

ARTICLES = (99.35, 99.44)  # the series' reported test accuracy (%)
# cnnscope with torch's rules, official split, seed 0: the 10-epoch vs_keras.py table in benchmarks/README.md
# ("vs Keras, the series' recipe, quiet machine", before Keras' rules existed), for comparison.
TORCH_RULES = [0.9888, 0.9905, 0.9914, 0.9922, 0.9920, 0.9921, 0.9929, 0.9926, 0.9929, 0.9924]


def summary(name: str, values: list[float]) -> str:
    best = max(range(len(values)), key=values.__getitem__)
    return (f"{name}: {len(values)} epochs, final {100 * values[-1]:.2f} %, best {100 * values[best]:.2f} % "
            f"(epoch {best + 1})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("official", help="vs_keras.py --json output")
    parser.add_argument("--reshuffle", help="history.json of the cnnscope run with --split reshuffle")
    parser.add_argument("--out", default="benchmarks/series-keras-rules.png")
    args = parser.parse_args()
    rows = json.loads(Path(args.official).read_text())
    curves = {f"Keras {rows['keras']} (official split)": [r["keras_val_accuracy"] for r in rows["epochs"]],
              f"cnnscope, {rows['rules']} rules (official split)": [r["cnnscope_val_accuracy"] for r in rows["epochs"]]}
    if args.reshuffle:
        history = json.loads(Path(args.reshuffle).read_text())
        curves[f"cnnscope, {rows['rules']} rules (--split reshuffle)"] = history["val_accuracy"]
    curves["cnnscope, torch rules (official split, earlier run)"] = TORCH_RULES
    fig = Figure(figsize=(8, 4.5), dpi=110)
    ax = fig.add_subplot()
    ax.axhspan(*ARTICLES, color="0.85", label=f"the articles: {ARTICLES[0]}–{ARTICLES[1]} %")
    for (name, values), style in zip(curves.items(), ("-o", "-s", "--^", ":x"), strict=False):
        ax.plot(range(1, len(values) + 1), [100 * v for v in values], style, ms=3, label=name)
        print(summary(name, values))
    lowest = min(100 * min(values) for values in curves.values())
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", ylim=(min(98.4, lowest - 0.1), 99.7),
           title=f"seed-iv, the series' recipe (RMSprop, power decay), seed {rows['seed']}; chance 10 %")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
