"""Views of the report's sections that look inside the network: the maps of one test image per class, the first
conv layer's filters, maximising patterns, class profiles and why the model predicts what it does (heat maps of
the default attribution method with their deletion test). Each returns a ViewResult with the section's HTML."""

from __future__ import annotations

import numpy as np
import torch

from cnnscope.base.imaging import colorize, layout, png_bytes
from cnnscope.base.progress import bar
from cnnscope.inspect.activations import capture
from cnnscope.inspect.classify import TRAIN_IMAGES, classify_by_patterns, sample_indices
from cnnscope.inspect.deletion import deletion_score
from cnnscope.inspect.filters import conv_filters, default_channels
from cnnscope.inspect.methods import DEFAULT_METHOD, attribute, channel_note, get_method
from cnnscope.inspect.patterns import input_bounds, maximize_activation_result
from cnnscope.inspect.profile import class_means
from cnnscope.plots.activations import filters_figure
from cnnscope.plots.attribution import deletion_curves_figure
from cnnscope.plots.patterns import pattern_pixels, patterns_figure
from cnnscope.plots.profile import classify_figure, profile_figure
from cnnscope.views.report_html import esc, figure_uri, img, picture_uri, png_img, section
from cnnscope.views.report_sections import EXPLAINED, TestSet
from cnnscope.views.tiles import tiles_png

PATTERN_MAPS = 32  # maximising patterns of the first 32 maps of each conv layer


def activations_section(run, tested: TestSet, layers: list[str]):
    """The first test image of each class and its maps in every conv and pooling layer."""
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
    channels = default_channels(run.model, first_conv)
    fig = filters_figure(conv_filters(run.model, first_conv, channels=channels))
    note = ("Each filter's red, green and blue kernels as one RGB picture, scaled jointly per filter (mid-grey is "
            "zero; cnnscope filters --channels split draws each channel on a diverging scale), with its bias."
            if channels == "rgb" else
            "Each filter's kernel on one diverging colour scale centred on zero, with its bias.")
    return section("filters", f"Filters of {first_conv}", img(figure_uri(fig, dpi=90), "filters"), note)


def _dead_note(dead: list[int]) -> str:
    return (f' <span class="bad">Dead (0 on every test image): map{"s" if len(dead) > 1 else ""} '
            f'{esc(", ".join(map(str, dead)))}.</span>' if dead else "")


def patterns_section(run, convs: list[str], train_x: np.ndarray, tested: TestSet):
    """Inputs found by gradient ascent that maximise the first PATTERN_MAPS maps of each conv layer, each with
    its map number, the mean activation it reached and the map's 99th percentile over the test images ("dead"
    for a map that is 0 on every test image, left out of the share that beats every test image)."""
    lo, hi = input_bounds(train_x)
    parts, shares = [], {}
    for layer in bar(convs, desc="report: maximising patterns, layer by layer", unit="layer"):
        maps = list(range(min(PATTERN_MAPS, run.spec.layer(layer).output_shape[0])))
        result = maximize_activation_result(run.model, layer, maps, lo=lo, hi=hi)  # patterns preprocessed
        pixels = pattern_pixels(result.patterns, run.preprocessor)  # back to 0..255: (k, H, W) or (k, H, W, 3)
        means = tested.means[layer][:, maps]  # (n, k): the same quantity over the test images
        dead = [m for m in tested.dead.get(layer, []) if m in maps]
        live = np.array([m not in dead for m in maps])
        beats = result.activation > means.max(axis=0)
        shares[layer] = {"live": int(live.sum()), "dead": dead,
                         "beat_every_test_image": int(beats[live].sum())}
        fig = patterns_figure(pixels, maps, result.activation, layer=layer, cols=8,
                              reference=np.percentile(means, 99, axis=0), dead=[not v for v in live])
        line = (f"{int(beats[live].sum())} of {int(live.sum())} live maps beat every test image"
                f"{f'; {len(dead)} dead, left out' if dead else ''}.")
        parts.append(f"<h3>{esc(layer)} — maps 0 to {maps[-1]}</h3><p>{esc(line)}{_dead_note(dead)}</p>"
                     f"{img(figure_uri(fig, dpi=90), layer + ' patterns')}")
    note = ("Inputs found by gradient ascent (cnnscope.inspect.maximize_activation) that make each map's mean "
            "as large as possible, kept inside the training images' pixel range; shown as pixels, 0 black to "
            "255 white" + (", in colour" if run.spec.input_shape[0] == 3 else "") + ". Under each: the map's "
            f"number and the mean it reached; grey: the map's 99th percentile over {len(tested.labels):,} test "
            "images; red \"dead\": the map is 0 on every test image.")
    return section("patterns", "Maximising patterns", "".join(parts), note, shares=shares)


def profiles_section(run, train: tuple[np.ndarray, np.ndarray], tested: TestSet, convs: list[str]):
    """Each conv layer's class profile (cnnscope.inspect.profile.class_means of the one pass's spatial means),
    its dead maps, and series part VI: does the layer's class-mean pattern already classify
    (cnnscope.inspect.classify_by_patterns, the figure of `cnnscope profile --classify` for the last conv layer)."""
    parts = []
    for layer in convs:
        profile = class_means(tested.means[layer], tested.labels, len(tested.class_names))
        dead = tested.dead.get(layer, [])
        fig = profile_figure(profile, tested.class_names, layer=layer, images=len(tested.labels), dead=dead)
        parts.append(img(figure_uri(fig, dpi=80), f"class profile of {layer}", "wide") + _dead_note(dead))
    table, found = classification_part(run, train, tested, convs[-1])
    note = ("Mean activation of each map over the test images of each class, each map divided by its largest "
            "class mean: which class each map prefers.")
    return section("profiles", "Class profiles", "".join(parts) + table, note, classify=found)


def classification_part(run, train: tuple[np.ndarray, np.ndarray], tested: TestSet, layer: str):
    """Series part VI in the report: the table and figure of `cnnscope profile --layer LAYER --classify` (the
    same defaults: a seeded sample of TRAIN_IMAGES training images, every test image)."""
    pick = sample_indices(len(train[1]), TRAIN_IMAGES)
    found = classify_by_patterns(run.model, train[0][pick], train[1][pick], tested.x, tested.labels)
    rows = "".join(
        f"<tr><th>{esc(item.layer)}</th><td>{item.features:,}</td>"
        + "".join(f"<td>{100 * item.accuracy[kind][m]:.2f} %</td>" for kind in ("pattern", "profile")
                  for m in ("nearest_cosine", "nearest_euclidean", "linear")) + "</tr>"
        for item in found.layers)
    head = ("<tr><th rowspan=2>layer</th><th rowspan=2>values</th><th colspan=3>whole output</th>"
            "<th colspan=3>per-map means</th></tr><tr>" + "<th>nearest, cosine</th><th>nearest, Euclidean</th>"
            "<th>linear read-out</th>" * 2 + "</tr>")
    text = (f"<h3>Classification by activation patterns (series part VI)</h3><p>Each test image goes to the class "
            f"whose mean pattern over {found.train_images:,} training images (a seeded sample) is nearest. The whole "
            f"model: <b>{100 * found.model_accuracy:.2f} %</b>; chance {100 * found.chance:.0f} % (the largest "
            f"class {100 * found.majority:.2f} %); the input row knows no network. Linear read-out: "
            f"{esc(found.readout.describe())}. Outputs wider than {found.max_features:,} values are "
            f"average-pooled over space first.</p>")
    fig = classify_figure(found, tested.class_names, layer=layer)
    return (text + f'<div class="scroll"><table class="kv">{head}{rows}</table></div>'
            + img(figure_uri(fig, dpi=80), f"classification by the patterns of {layer}", "wide")), found.to_dict()


def _heat_png(heat: np.ndarray, signed: bool) -> bytes:
    """A heat map enlarged 4× (blue/red around zero when signed, magma otherwise; unseen pixels light grey)."""
    rgb, _, _ = colorize(heat, "RdBu_r" if signed else "magma", symmetric=signed)
    return png_bytes(layout(rgb, 1, 1, min_cell=4 * max(heat.shape)))


def explanation_section(run, tested: TestSet, method_name: str | None = None):
    """Why the model predicts its class for the first test image of each class: heat maps of an attribution
    method (default: cnnscope's default) and the deletion test against a ranking that knows no model (brightness)
    and random rankings: deletion and insertion curves over 0–50 % of the pixels, their AUCs and the verdict."""
    method_name = method_name or DEFAULT_METHOD
    method = get_method(method_name)  # ConfigError listing the valid names
    picks = tested.firsts()[:EXPLAINED]
    x = tested.x[picks]
    blank = run.preprocessor(np.zeros_like(tested.raw[:1]))[0]
    predicted = tested.probs[picks].argmax(axis=1)
    heats = attribute(run.model, x, method_name, predicted, baseline=blank)
    found = deletion_score(run.model, x, heats, raw=tested.raw[picks], blank=blank, target=predicted,
                           random_draws=4)
    names, cells = tested.class_names, []
    for row, i in enumerate(picks):
        one = found.summary(row)["rankings"]
        mark = "passes" if found.passes[row] else "<b>fails</b>"
        cells.append(f'<figure>{img(picture_uri(tested.raw[i]), f"test image {i}", "px")}'
                     f'{png_img(_heat_png(heats[row], method.signed), f"heat map of test image {i}")}'
                     f'<figcaption>#{i} → <b>{esc(names[predicted[row]])}</b><br>deletion AUC '
                     f'{one["method"]["deletion_auc"]:.2f} (brightness {one["brightness"]["deletion_auc"]:.2f}): '
                     f'{mark}</figcaption></figure>')
    summary = found.summary()
    passes, beats = int(found.passes.sum()), int(found.beats_random.sum())
    bright = int(found.brightness_beats_random.sum())
    r = summary["rankings"]
    verdict = (f"<p>Deletion test over 0–50 % of the pixels (AUC: the mean probability of the predicted class "
               f"while they are blanked, most important first; lower is better): "
               f"{esc(method.title.lower())} {r['method']['deletion_auc']:.3f}, pixels ranked by brightness alone "
               f"(no model) {r['brightness']['deletion_auc']:.3f}, random pixels {r['random']['deletion_auc']:.3f}. "
               f"It <b>passes on {passes} of {len(picks)}</b> images (deletion AUC at least "
               f"{summary['margin']} below the brightness ranking's) and beats random on {beats} of "
               f"{len(picks)} (brightness alone, knowing no model, beats random on {bright} of {len(picks)}).</p>")
    curves = deletion_curves_figure(summary, method_name, f"Mean over these {len(picks)} images")
    colours = "red pixels raise its score, blue ones lower it" if method.signed else "bright pixels matter most"
    which = "cnnscope's default attribution method" if method_name == DEFAULT_METHOD else "chosen with --method"
    note = (f"{esc(method.title)} ({which}; every method: cnnscope explain --method all) for the predicted "
            f"class of the first test image of each class: {colours}. Below each: its deletion AUC next to the "
            f"brightness ranking's, and the verdict.")
    channels = channel_note([method_name], int(x.shape[1]))
    note += f" Colour images: {esc(channels)}." if channels else ""
    body = (verdict + img(figure_uri(curves, dpi=90), "deletion and insertion curves", "wide")
            + f'<div class="gallery explain">{"".join(cells)}</div>')
    return section("explanation", "Why it predicts what it does", body, note, method=method_name,
                   deletion=summary, passes=passes, beats_random=beats)
