"""The explain view: why the model picks a class, as heat maps over the input, each with a deletion test."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnscope.base.errors import ConfigError
from cnnscope.inspect.deletion import deletion_scores
from cnnscope.inspect.gradcam import last_conv_layer
from cnnscope.inspect.methods import DEFAULT_METHOD, METHODS, attribute, channel_note
from cnnscope.plots.attribution import explanation_figure, input_caption
from cnnscope.views.common import PathLike, ViewResult, class_names, image_slug, load, pick_image, probabilities, save


def resolve_class(value: int | str | None, names: Sequence[str]) -> int | None:
    """A class index from a number or a class name (case-insensitive); ConfigError listing the valid ones."""
    if value is None:
        return None
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        k = int(text)
        if 0 <= k < len(names):
            return k
        raise ConfigError(f"target class {k} is not a class of this model (valid: 0..{len(names) - 1})")
    lowered = [name.lower() for name in names]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    raise ConfigError(f"unknown target class {text!r}; valid: 0..{len(names) - 1} or {', '.join(names)}")


def check_method(method: str, layer: str | None) -> list[str]:
    """The methods to run for `method` (a registry name or 'all'); ConfigError listing them on a wrong name, or
    when a layer is given to a method that takes none."""
    if method == "all":
        return list(METHODS)
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; valid: {', '.join(METHODS)}, all")
    if layer is not None and not METHODS[method].uses_layer:
        with_layer = ", ".join(m.name for m in METHODS.values() if m.uses_layer)
        raise ConfigError(f"--layer applies to {with_layer} only, not to {method}")
    return [method]


def explain_one(model, x: np.ndarray, raw: np.ndarray, blank: np.ndarray, name: str, layer: str | None, cls: int,
                random_draws: int, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """One method's heat map (H, W) for class `cls` of preprocessed image x (1, C, H, W) (raw: the picture before
    preprocessing), and its deletion test (JSON-ready, cnnscope.inspect.deletion): deletion and insertion curves
    over 0–50 % of the pixels for the method, the brightness ranking and random ones, their AUCs and the verdict."""
    return explain_many(model, x, raw, blank, [name], layer, cls, random_draws, seed)[name]


def explain_many(model, x: np.ndarray, raw: np.ndarray, blank: np.ndarray, names: Sequence[str], layer: str | None,
                 cls: int, random_draws: int, seed: int) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """`explain_one` for several methods, the brightness and random curves computed once."""
    heats = {name: attribute(model, x, name, cls, baseline=blank,
                             layer=layer if METHODS[name].uses_layer else None)[0] for name in names}
    found = deletion_scores(model, x, {name: heat[None] for name, heat in heats.items()}, raw=np.asarray(raw)[None],
                            blank=blank, target=cls, random_draws=random_draws, seed=seed)
    return {name: (heats[name], {**found[name].summary(0), "random_draws": random_draws}) for name in names}


def explain_name(method: str, picked, image: PathLike | None, target: int | None) -> str:
    """The default figure name: explain-METHOD-IMAGE.png, with -targetK when a target class K was asked for
    (so explaining another class never overwrites the predicted class's figure)."""
    suffix = "" if target is None else f"-target{target}"
    return f"explain-{method}-{image_slug(picked, image)}{suffix}.png"


def _data(run, picked, method: str, layer: str | None, names: Sequence[str], probs: np.ndarray, cls: int,
          rows: list[dict[str, Any]]) -> dict[str, Any]:
    predicted = int(probs.argmax())
    return {"run": str(run.path), "source": picked.source, "method": method, "layer": layer,
            "label": None if picked.label is None else names[picked.label],
            "predicted": {"class": names[predicted], "index": predicted, "probability": float(probs[predicted])},
            "target": {"class": names[cls], "index": cls, "probability": float(probs[cls])},
            "deletion": rows[0]["deletion"] if len(rows) == 1 else None, "methods": rows}


def explain(run_dir: PathLike, *, index: int | None = None, split: str = "test", image: PathLike | None = None,
            method: str | None = None, layer: str | None = None, target: int | str | None = None,
            random_draws: int = 16, seed: int = 0, out: PathLike | None = None,
            svg: bool = False, data_dir: PathLike | None = None) -> ViewResult:
    """Heat maps for the predicted (or `target`) class of one image (data set index or a user's picture) with
    `method` (default: the registry's DEFAULT_METHOD; 'all': every method side by side), each with its deletion
    test against the brightness and random rankings (cnnscope.inspect.deletion); saved to `out` or
    RUN_DIR/explain-METHOD-IMAGE.png (-targetK added for a target). data: run, source, method, layer, label,
    predicted, target, deletion, methods. Methods with a baseline use a black image."""
    method = method or DEFAULT_METHOD
    names_run = check_method(method, layer)  # a bad method name fails before any work
    run = load(run_dir)
    model = run.model
    names = class_names(run)
    wanted = resolve_class(target, names)
    layer = layer or last_conv_layer(model)
    model.layer(layer)  # a wrong name fails before the data is read
    picked = pick_image(run, index, split, image, data_dir)
    raw = np.asarray(picked.raw)
    x = run.preprocessor(raw[None])  # (1, C, H, W)
    blank = run.preprocessor(np.zeros_like(raw)[None])[0]  # what a black pixel becomes
    probs = probabilities(model, x)[0]
    predicted = int(probs.argmax())
    cls = predicted if wanted is None else wanted
    results = explain_many(model, x, raw, blank, names_run, layer, cls, random_draws, seed)
    label = None if picked.label is None else names[picked.label]
    what = f"{names[cls]}" + (" (predicted)" if cls == predicted else " (target)")
    note = channel_note(names_run, int(x.shape[1]))
    fig = explanation_figure(method, raw, results, names[cls], input_caption(picked.source, label, names, probs, cls),
                             f"Why {what}?", layer, run.path.name, note)
    paths = save(fig, out, run.path / explain_name(method, picked, image, wanted), svg)
    rows = [{"method": name, "layer": layer if METHODS[name].uses_layer else None, "deletion": summary}
            for name, (_, summary) in results.items()]
    shown_layer = layer if any(METHODS[name].uses_layer for name in names_run) else None
    data = {**_data(run, picked, method, shown_layer, names, probs, cls, rows), "channels": int(x.shape[1])}
    return ViewResult(paths, data, list(picked.notes) + ([note] if note else []))
