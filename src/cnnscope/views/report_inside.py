"""Views of the report's sections that look inside the network: the maps of one test image per class, the first
conv layer's filters, maximising patterns, class profiles and why the model predicts what it does (heat maps of
the default attribution method with their deletion test). Each returns a ViewResult with the section's HTML."""

from __future__ import annotations

import numpy as np
import torch

from ..imaging import colorize, layout, png_bytes
from ..inspect.profile import class_means
from ..progress import bar
from .report_html import esc, figure_uri, img, picture_uri, png_img, section
from .report_sections import EXPLAINED, TestSet
from .tiles import pictures_png, tiles_png

PATTERN_MAPS = 32  # maximising patterns of the first 32 maps of each conv layer


def activations_section(run, tested: TestSet, layers: list[str]):
    """The first test image of each class and its maps in every conv and pooling layer."""
    from ..inspect.activations import capture

    picks = tested.firsts()
    with torch.no_grad():
        outputs, _ = capture(run.model, layers, torch.as_tensor(tested.x[picks]))
    shapes = {name: tuple(outputs[name].shape[1:]) for name in layers}
    head = "".join(f"<th>{esc(name)}<br><span class=muted>{'×'.join(map(str, shapes[name]))}</span></th>"
                   for name in layers)
    names, rows = tested.class_names, []
    for row, i in enumerate(picks):
        pred = int(tested.probs[i].argmax())
        cells = "".join(f"<td>{png_img(tiles_png(outputs[name][row].float().numpy()), name)}</td>" for name in layers)
        mark = "" if pred == tested.labels[i] else f' <span class="bad">→ {esc(names[pred])}</span>'
        rows.append(f'<tr><th>{img(picture_uri(tested.raw[i]), f"test image {i}", "px thumb")}<br>#{i} '
                    f'{esc(names[tested.labels[i]])}{mark}</th>{cells}</tr>')
    body = f'<div class="scroll"><table class="strip"><tr><th>input</th>{head}</tr>{"".join(rows)}</table></div>'
    note = ("The first test image of each class and the maps of every conv and pooling layer (magma colour map, "
            "one range per grid: black is the grid's smallest value, yellow its largest).")
    return section("activations", "Inside the network: one test image per class", body, note, images=picks)


def _cell(p: float, logit: float, predicted: bool) -> str:
    """A probability cell, shaded by its value, with the logit below it (the predicted class in bold)."""
    shade = f"background:rgba(84,39,143,{0.08 + 0.72 * p:.2f});color:{'#fff' if p > 0.5 else '#222'}"
    pct = f"<b>{100 * p:.1f} %</b>" if predicted else f"{100 * p:.1f} %"
    return f'<td style="{shade}">{pct}<br><span class="logit">{logit:+.2f}</span></td>'


def output_section(run, tested: TestSet):
    """The output layer for the first test image of each class: each class's logit and the probability the
    output activation makes of it."""
    from ..inspect.activations import capture

    layer, names = run.spec.output_layer_name, tested.class_names
    picks = tested.firsts()
    with torch.no_grad():
        logits = capture(run.model, [layer], torch.as_tensor(tested.x[picks]))[0][layer].float().numpy()
    rows = []
    for row, i in enumerate(picks):
        probs, best = tested.probs[i], int(tested.probs[i].argmax())
        cells = "".join(_cell(float(probs[k]), float(logits[row, k]), k == best) for k in range(len(names)))
        rows.append(f'<tr><th>{img(picture_uri(tested.raw[i]), f"test image {i}", "px thumb")}<br>#{i} '
                    f'{esc(names[tested.labels[i]])}</th>{cells}</tr>')
    head = "".join(f"<th>{esc(name)}</th>" for name in names)
    body = (f'<div class="scroll"><table class="strip output"><tr><th>input</th>{head}</tr>{"".join(rows)}'
            f'</table></div>')
    activation = run.spec.output_activation
    chance = f"; chance is {100 / len(names):.0f} %" if activation == "softmax" else ""
    note = (f"{esc(layer)}, the output layer, for the first test image of each class: per class its logit (the "
            f"layer's output, small, signed) and the probability the {activation} makes of it (shaded{chance}). "
            f"cnnscope activations RUN --layer {esc(layer)} --index N draws one image's as bars.")
    return section("output", "The output layer: logits and probabilities", body, note, images=picks)


def filters_section(run, first_conv: str):
    """The first conv layer's kernels on one diverging scale (a colour model's: each filter as one RGB picture),
    with their biases."""
    from ..inspect.filters import conv_filters, default_channels
    from ..plots.activations import filters_figure

    channels = default_channels(run.model, first_conv)
    fig = filters_figure(conv_filters(run.model, first_conv, channels=channels))
    note = ("Each filter's red, green and blue kernels as one RGB picture, scaled jointly per filter (mid-grey is "
            "zero; cnnscope filters --channels split draws each channel on a diverging scale), with its bias."
            if channels == "rgb" else
            "Each filter's kernel on one diverging colour scale centred on zero, with its bias.")
    return section("filters", f"Filters of {first_conv}", img(figure_uri(fig, dpi=90), "filters"), note)


def patterns_section(run, convs: list[str], train_x: np.ndarray):
    """Inputs found by gradient ascent that maximise the first PATTERN_MAPS maps of each conv layer."""
    from ..inspect.patterns import input_bounds, maximize_activation
    from ..plots.patterns import pattern_pixels

    lo, hi = input_bounds(train_x)
    parts = []
    for layer in bar(convs, desc="report: maximising patterns, layer by layer", unit="layer"):
        maps = list(range(min(PATTERN_MAPS, run.spec.layer(layer).output_shape[0])))
        patterns = maximize_activation(run.model, layer, maps, lo=lo, hi=hi)  # (k, [C,] H, W) preprocessed
        pixels = pattern_pixels(patterns, run.preprocessor)  # back to 0..255: (k, H, W) or (k, H, W, 3)
        grid = pictures_png(pixels, cols=8, min_cell=28 * 2)
        parts.append(f"<h3>{esc(layer)} — maps 0 to {maps[-1]}</h3>{png_img(grid, layer + ' patterns')}")
    note = ("Inputs found by gradient ascent (cnnscope.inspect.maximize_activation) that make each map's mean "
            "as large as possible, kept inside the training images' pixel range; shown as pixels, 0 black to "
            "255 white" + (", in colour." if run.spec.input_shape[0] == 3 else "."))
    return section("patterns", "Maximising patterns", "".join(parts), note)


def profiles_section(tested: TestSet, convs: list[str]):
    """Each conv layer's class profile (cnnscope.inspect.profile.class_means of the one pass's spatial means)."""
    from ..plots.profile import profile_figure

    parts = []
    for layer in convs:
        profile = class_means(tested.means[layer], tested.labels, len(tested.class_names))
        fig = profile_figure(profile, tested.class_names, layer=layer, images=len(tested.labels))
        parts.append(img(figure_uri(fig, dpi=80), f"class profile of {layer}", "wide"))
    note = ("Mean activation of each map over the test images of each class, each map divided by its largest "
            "class mean: which class each map prefers.")
    return section("profiles", "Class profiles", "".join(parts), note)


def _heat_png(heat: np.ndarray, signed: bool) -> bytes:
    """A heat map enlarged 4× (blue/red around zero when signed, magma otherwise; unseen pixels light grey)."""
    rgb, _, _ = colorize(heat, "RdBu_r" if signed else "magma", symmetric=signed)
    return png_bytes(layout(rgb, 1, 1, min_cell=4 * max(heat.shape)))


def explanation_section(run, tested: TestSet, method_name: str | None = None, fraction: float = 0.2):
    """Why the model predicts its class for the first test image of each class: heat maps of an attribution
    method (default: cnnscope's default) and the deletion test (top `fraction` of pixels vs random ones set to
    black)."""
    from ..inspect.deletion import deletion_score
    from ..inspect.methods import DEFAULT_METHOD, attribute, channel_note, get_method

    method_name = method_name or DEFAULT_METHOD
    method = get_method(method_name)  # ConfigError listing the valid names
    picks = tested.firsts()[:EXPLAINED]
    x = tested.x[picks]
    blank = run.preprocessor(np.zeros_like(tested.raw[:1]))[0]
    predicted = tested.probs[picks].argmax(axis=1)
    heats = attribute(run.model, x, method_name, predicted, baseline=blank)
    found = deletion_score(run.model, x, heats, fraction, blank=blank, target=predicted, random_draws=4)
    names, cells = tested.class_names, []
    for row, i in enumerate(picks):
        cls = names[predicted[row]]
        cells.append(f'<figure>{img(picture_uri(tested.raw[i]), f"test image {i}", "px")}'
                     f'{png_img(_heat_png(heats[row], method.signed), f"heat map of test image {i}")}'
                     f'<figcaption>#{i} → <b>{esc(cls)}</b><br>P {100 * found.probability[row]:.0f} % → '
                     f'{100 * found.after_top[row]:.0f} % (random {100 * found.after_random[row]:.0f} %)'
                     f'</figcaption></figure>')
    summary = found.summary()
    beats = int(found.beats_random.sum())
    verdict = (f"<p>Blanking the {100 * fraction:.0f} % of pixels {esc(method.title.lower())} ranks highest "
               f"lowers the predicted class's probability from {100 * summary['probability']:.1f} % to "
               f"{100 * summary['after_top']:.1f} % on average; blanking as many random pixels lowers it to "
               f"{100 * summary['after_random']:.1f} %. The ranked pixels hurt more than random ones on "
               f"<b>{beats} of {len(picks)}</b> images.</p>")
    colours = "red pixels raise its score, blue ones lower it" if method.signed else "bright pixels matter most"
    which = "cnnscope's default attribution method" if method_name == DEFAULT_METHOD else "chosen with --method"
    note = (f"{esc(method.title)} ({which}; every method: cnnscope explain --method all) for the predicted "
            f"class of the first test image of each class: {colours}. Below each: "
            f"the class probability before and after the deletion test.")
    channels = channel_note([method_name], int(x.shape[1]))
    note += f" Colour images: {esc(channels)}." if channels else ""
    body = verdict + f'<div class="gallery explain">{"".join(cells)}</div>'
    return section("explanation", "Why it predicts what it does", body, note, method=method_name,
                   deletion=summary, beats_random=beats)
