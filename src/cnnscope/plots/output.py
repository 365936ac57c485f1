"""The output layer for one image: its logits and the class probabilities they become, beside the input."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from cnnscope.plots.activations import Prediction, draw_input
from cnnscope.plots.backend import new_figure

POSITIVE, NEGATIVE, PLAIN, BEST, TRUE = "#b2182b", "#2166ac", "#9e9ac8", "#54278f", "#1b7837"


def _bars(ax, values: np.ndarray, names: Sequence[str], colours: list[str], xlabel: str) -> None:
    """Horizontal bars, one per class, class 0 at the top, names as tick labels."""
    n = len(values)
    ax.barh(np.arange(n), values, color=colours, height=0.7)
    ax.set_yticks(np.arange(n))
    ax.set_yticklabels([str(name) for name in names], fontsize=10)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlabel(xlabel, fontsize=10)
    ax.tick_params(axis="x", labelsize=9)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def output_figure(image: np.ndarray, logits: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str], *,
                  layer: str, activation: str = "softmax", source: str = "", prediction: Prediction | None = None,
                  true_class: int | None = None) -> Figure:
    """The input, then one bar per class for the logits (red above zero, blue below) and for the probabilities
    (`activation` of the logits), the predicted class dark, the true one green, with the chance level 1/classes."""
    logits = np.asarray(logits, np.float64).reshape(-1)
    probs = np.asarray(probabilities, np.float64).reshape(-1)
    n = len(logits)
    best = int(np.argmax(probs))
    height = max(3.4, 0.3 * n + 1.6)
    fig = new_figure(figsize=(11.0, height))
    grid = fig.add_gridspec(1, 3, width_ratios=(1.0, 1.25, 1.25), left=0.04, right=0.97, top=1 - 1.05 / height,
                            bottom=0.75 / height, wspace=0.55)
    draw_input(fig.add_subplot(grid[0]), image, source, prediction)
    ax_logit = fig.add_subplot(grid[1])
    _bars(ax_logit, logits, class_names, [POSITIVE if v >= 0 else NEGATIVE for v in logits], "logit")
    ax_logit.axvline(0, color="#444444", linewidth=0.8)
    ax_logit.set_title("logits (the layer's output)", fontsize=11)
    colours = [BEST if k == best else TRUE if k == true_class else PLAIN for k in range(n)]
    ax_prob = fig.add_subplot(grid[2])
    chance = 1.0 / n
    softmax = activation == "softmax"
    _bars(ax_prob, probs, class_names, colours,
          f"probability (dashed: chance, 1/{n} = {chance:.0%})" if softmax else "probability")
    ax_prob.set_xlim(0, 1.18)
    if softmax:
        ax_prob.axvline(chance, color="#888888", linewidth=0.9, linestyle="--")
    for k, p in enumerate(probs):
        ax_prob.text(min(p, 1.0) + 0.02, k, f"{p:.1%}", va="center", fontsize=9)
    ax_prob.set_title(f"probabilities ({activation} of the logits)", fontsize=11)
    fig.text(0.04, 1 - 0.2 / height, f"{layer} (output layer): {n} logits and their {activation}", fontsize=13,
             fontweight="bold", va="top")
    fig.text(0.04, 1 - 0.52 / height, f"predicted class dark, true class green; {activation} turns logits into "
             f"probabilities" + (" that sum to 1" if activation == "softmax" else " (each class on its own)"),
             fontsize=10, va="top", color="#444444")
    return fig


__all__ = ["output_figure"]
