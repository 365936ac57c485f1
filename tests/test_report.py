"""The self-contained HTML report: what it holds, that it needs no network, that it is written atomically."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnscope.base.errors import ConfigError, RunError
from cnnscope.cli import main
from cnnscope.model.summary import summary_table
from cnnscope.report import REPORT, WORST, build_report
from cnnscope.runs.load import load_run

PNG_URI = "data:image/png;base64,"
SECTIONS = ["summary", "config", "preprocessing", "training", "results", "activations", "output", "filters",
            "patterns", "profiles", "explanation"]
MAP_LAYERS = ["Conv2D_1", "Max_Pool_1", "Conv2D_2", "Max_Pool_2", "Conv2D_3"]  # the tiny_spec fixture's
CONVS = ["Conv2D_1", "Conv2D_2", "Conv2D_3"]


class Tags(HTMLParser):
    """Every start tag with its attributes, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def tags_of(text: str) -> list[tuple[str, dict[str, str]]]:
    parser = Tags()
    parser.feed(text)
    return parser.tags


def images_of(text: str) -> list[dict[str, str]]:
    return [attrs for tag, attrs in tags_of(text) if tag == "img"]


def sections_of(text: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="(\w+)">(.*?)</section>', text, flags=re.S))


def decode_png(uri: str) -> Image.Image:
    assert uri.startswith(PNG_URI), uri[:40]
    data = base64.b64decode(uri[len(PNG_URI):], validate=True)
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG"
    return image


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


def copy_run(trained_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


@pytest.fixture(scope="module")
def report(trained_run, data_dir, tmp_path_factory) -> str:
    """The report of the session's tiny run, written with --out (the run directory stays read-only)."""
    before = snapshot(trained_run)
    out = tmp_path_factory.mktemp("report") / "tiny.html"
    assert build_report(trained_run, out=out, data_dir=data_dir) == out
    assert snapshot(trained_run) == before  # --out writes nothing into the run
    return out.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def test_labels(data_dir) -> np.ndarray:
    import cnnscope

    return np.asarray(cnnscope.load_dataset("mnist", data_dir=data_dir).test_y)


# --- self-contained ----------------------------------------------------------------------------------------
def test_report_needs_no_network(report):
    assert "http://" not in report and "https://" not in report
    tags = tags_of(report)
    names = {tag for tag, _ in tags}
    assert not names & {"script", "link", "iframe", "object", "embed", "video", "audio", "source"}
    for tag, attrs in tags:
        if "src" in attrs:
            assert attrs["src"].startswith(PNG_URI), (tag, attrs["src"][:60])
        if "href" in attrs:
            assert attrs["href"].startswith("#"), (tag, attrs["href"])
    style = re.search(r"<style>(.*?)</style>", report, flags=re.S).group(1)
    assert "url(" not in style and "@import" not in style


def test_every_image_is_an_embedded_png(report):
    images = images_of(report)
    # summary-free count: preprocessing, curves, confusion, 10 classes × (input + 5 layers), the output layer for
    # 10 classes, filters, 3 pattern grids, 3 profiles and the part VI figure, the deletion curves and 10 explained
    # images × (input + heat map)
    assert len(images) == (1 + 1 + 1 + 10 * (1 + len(MAP_LAYERS)) + 10 + 1 + len(CONVS) + len(CONVS) + 1
                           + 1 + 10 * 2)
    for attrs in images:
        image = decode_png(attrs["src"])
        assert image.width > 0 and image.height > 0
        assert attrs.get("alt"), "every picture has a text alternative"


def test_navigation_points_at_the_sections(report):
    sections = sections_of(report)
    assert list(sections) == SECTIONS
    nav = re.search(r"<nav>(.*?)</nav>", report).group(1)
    targets = [attrs["href"][1:] for tag, attrs in tags_of(nav) if tag == "a"]
    assert targets == SECTIONS[1:]


# --- the sections ------------------------------------------------------------------------------------------
def test_configuration_and_model_summary(report, trained_run, tiny_spec):
    config = sections_of(report)["config"]
    assert "<h2>Configuration and model</h2>" in config
    assert html.escape(summary_table(tiny_spec)) in config  # the whole Keras-like table, verbatim
    assert "<th>optimizer</th><td>adam</td>" in config and "<th>batch_size</th><td>32</td>" in config
    assert "<th>dataset</th><td>mnist</td>" in config


def test_configuration_lists_only_the_settings_that_apply(report, trained_run):
    """Adam reads no momentum and no nesterov; the device is the one used (metrics.json), not 'auto'."""
    config = sections_of(report)["config"]
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert "<th>momentum</th>" not in config and "<th>nesterov</th>" not in config
    assert "<th>schedule_args</th>" not in config  # no schedule
    assert f"<th>device</th><td>{metrics['device']}</td>" in config and "<td>auto</td>" not in config


def test_settings_rows_follow_the_optimizer_and_derive_the_device(trained_run):
    import dataclasses
    from types import SimpleNamespace

    from cnnscope.trainer.loop import pick_device
    from cnnscope.views.report_sections import training_settings

    config = dataclasses.replace(load_run(trained_run).config, optimizer="sgd", momentum=0.9, nesterov=True)
    run = SimpleNamespace(config=config, metrics={})  # an imported or older run: no device recorded
    rows = dict(training_settings(run))
    assert rows["momentum"] == 0.9 and rows["nesterov"] is True
    assert rows["device"] == str(pick_device("auto")) != "auto"


def test_importing_the_report_loads_no_web_framework():
    import subprocess
    import sys

    code = ("import sys, cnnscope.report; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn', 'anyio') "
            "or m.startswith('cnnscope.serve')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_curves_and_learning_rate(report):
    training = sections_of(report)["training"]
    assert "Training curves and learning rate" in training
    (curves,) = images_of(training)
    assert curves["alt"] == "training curves"
    image = decode_png(curves["src"])
    assert image.width > 2 * image.height  # loss, accuracy and LR side by side
    assert "Watching it learn" not in training  # this run has no probe


def test_accuracy_shown_equals_metrics_json(report, trained_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    results = sections_of(report)["results"]
    accuracy = f"{100 * metrics['test_accuracy']:.2f} %"
    mistakes = round((1 - metrics["test_accuracy"]) * metrics["test_images"])
    assert f"Test accuracy <b>{accuracy}</b> on {metrics['test_images']:,} images ({mistakes:,} mistakes)." in results
    assert f"<b>{accuracy}</b><span>test accuracy</span>" in sections_of(report)["summary"]
    assert f"<b>{metrics['test_loss']:.4f}</b><span>test loss</span>" in sections_of(report)["summary"]
    shown = re.findall(r'<td class="num">([\d.]+) %</td>', results)
    assert shown == [f"{100 * a:.2f}" for a in metrics["per_class_accuracy"]]


def test_per_class_counts_and_confusion_matrix(report, test_labels):
    results = sections_of(report)["results"]
    counts = [int(c.replace(",", "")) for c in re.findall(r'<td class="num muted">([\d,]+)</td>', results)]
    assert counts == np.bincount(test_labels, minlength=10).tolist()
    assert "<h3>Confusion matrix</h3>" in results
    assert [a["alt"] for a in images_of(results)] == ["confusion matrix"]  # no mistakes: no gallery images
    assert "None: every test image is classified correctly." in results


def test_one_image_per_class_through_every_map_layer(report, test_labels):
    activations = sections_of(report)["activations"]
    rows = re.findall(r"<tr>(.*?)</tr>", activations, flags=re.S)
    header, body = rows[0], rows[1:]
    assert re.findall(r"<th>(\w+)<br>", header) == MAP_LAYERS
    assert "6×26×26" in header and "16×3×3" in header
    assert len(body) == 10
    for label, row in enumerate(body):
        first = int(np.flatnonzero(test_labels == label)[0])
        alts = [a["alt"] for a in images_of(row)]
        assert alts == [f"test image {first}", *MAP_LAYERS]
        assert f"#{first} {label}" in row


def test_map_grids_have_the_layer_geometry(report):
    """Conv2D_1 of the tiny run has 6 maps of 26×26: the grid tiles them with 2-pixel gutters."""
    row = re.findall(r"<tr>(.*?)</tr>", sections_of(report)["activations"], flags=re.S)[1]
    grids = {a["alt"]: decode_png(a["src"]) for a in images_of(row)[1:]}
    conv1 = grids["Conv2D_1"]  # 3 columns (about square), 26-pixel cells (already >= 24)
    assert conv1.size == (3 * 26 + 2 * 2, 2 * 26 + 2)
    conv3 = grids["Conv2D_3"]  # 16 maps of 3×3 enlarged to 24×24, 4 columns
    assert conv3.size == (4 * 24 + 3 * 2, 4 * 24 + 3 * 2)


def test_filters_patterns_and_profiles(report, tiny_spec):
    sections = sections_of(report)
    assert "<h2>Filters of Conv2D_1</h2>" in sections["filters"]
    assert [a["alt"] for a in images_of(sections["filters"])] == ["filters"]

    patterns = sections["patterns"]
    maps = {layer.name: layer.output_shape[0] for layer in tiny_spec.layers()}
    assert re.findall(r"<h3>(\w+) — maps 0 to (\d+)</h3>", patterns) == [(c, str(min(32, maps[c]) - 1))
                                                                          for c in CONVS]
    for attrs, conv in zip(images_of(patterns), CONVS, strict=True):
        assert attrs["alt"] == f"{conv} patterns"
        assert decode_png(attrs["src"]).width > 300  # a labelled grid: map numbers, values, p99 or "dead"
    shares = re.findall(r"(\d+) of (\d+) live maps beat every test image(?:; (\d+) dead, left out)?", patterns)
    assert [int(live) + int(dead or 0) for _, live, dead in shares] == [min(32, maps[c]) for c in CONVS]
    assert "the map's number and the mean it reached" in patterns

    profiles = sections["profiles"]
    assert [a["alt"] for a in images_of(profiles)] == [f"class profile of {c}" for c in CONVS] + [
        f"classification by the patterns of {CONVS[-1]}"]
    assert "Classification by activation patterns (series part VI)" in profiles and "The whole model: <b>" in profiles


def test_explanation_uses_the_default_method_and_states_the_deletion_result(report, test_labels):
    from cnnscope.inspect.methods import DEFAULT_METHOD, METHODS

    explanation = sections_of(report)["explanation"]
    assert METHODS[DEFAULT_METHOD].title in explanation
    firsts = [int(np.flatnonzero(test_labels == c)[0]) for c in range(10)]
    alts = [a["alt"] for a in images_of(explanation)]
    assert alts == ["deletion and insertion curves"] + [
        alt for i in firsts for alt in (f"test image {i}", f"heat map of test image {i}")]
    verdict = re.search(r"lower is better\): [^,]+ ([\d.]+), pixels ranked by brightness alone \(no model\) "
                        r"([\d.]+), random pixels ([\d.]+). It <b>passes on (\d+) of 10</b> images \(deletion AUC "
                        r"at least 0.01 below the brightness ranking's\) and beats random on (\d+) of 10 "
                        r"\(brightness alone, knowing no model, beats random on (\d+) of 10\)", explanation)
    assert verdict, explanation[:900]
    method, bright, random, passes, beats, _ = (float(g) for g in verdict.groups())
    assert 0 <= method <= 1 and 0 <= bright <= 1 and 0 <= random <= 1 and 0 <= passes <= beats + passes <= 20
    captions = re.findall(r"deletion AUC ([\d.]+) \(brightness ([\d.]+)\): (passes|<b>fails</b>)", explanation)
    assert len(captions) == 10 and sum(c[2] == "passes" for c in captions) == passes
    heat = decode_png(images_of(explanation)[2]["src"])
    assert heat.size == (4 * 28, 4 * 28)


def test_worst_mistakes_of_an_untrained_model(trained_run, data_dir, tmp_path):
    """With the initial weights the model errs a lot: the gallery shows its 24 most confident mistakes, in order."""
    import cnnscope

    run_dir = copy_run(trained_run, tmp_path)
    shutil.copyfile(run_dir / "initial.safetensors", run_dir / "model.safetensors")
    text = build_report(run_dir, out=tmp_path / "r.html", data_dir=data_dir).read_text(encoding="utf-8")

    ds = cnnscope.load_dataset("mnist", data_dir=data_dir)
    probs = load_run(run_dir).predict(ds.test_raw)
    pred, labels = probs.argmax(1), np.asarray(ds.test_y)
    wrong = np.flatnonzero(pred != labels)
    assert len(wrong) > WORST
    expected = sorted(wrong.tolist(), key=lambda i: (-probs[i, pred[i]], i))[:WORST]
    results = sections_of(text)["results"]
    assert f"Test accuracy <b>{100 * (pred == labels).mean():.2f} %</b>" in results  # this model, not metrics.json
    assert f"<h3>The {WORST} most confident mistakes</h3>" in results
    captions = re.findall(r"<figcaption>#(\d+)<br><b>(\w+)</b> → <span class=\"bad\">(\w+)</span>", results)
    assert [int(i) for i, _, _ in captions] == expected
    assert [(int(t), int(p)) for _, t, p in captions] == [(labels[i], pred[i]) for i in expected]
    for attrs in images_of(results)[1:]:  # after the confusion matrix: the mistaken images themselves
        i = int(attrs["alt"].split()[-1])
        assert np.array_equal(np.asarray(decode_png(attrs["src"]).convert("L")), ds.test_raw[i])


# --- writing -----------------------------------------------------------------------------------------------
def test_default_report_goes_into_the_run_atomically(trained_run, data_dir, tmp_path):
    run_dir = copy_run(trained_run, tmp_path)
    before = set(snapshot(run_dir))
    path = build_report(run_dir, data_dir=data_dir)
    assert path == run_dir / REPORT
    assert set(snapshot(run_dir)) == before | {REPORT}  # no temp file left behind
    assert path.read_text(encoding="utf-8").endswith("</footer></body></html>")
    assert (path.stat().st_mode & 0o777) != 0o600  # not the private mode of the temp file


def test_a_failed_write_keeps_the_previous_report(trained_run, data_dir, tmp_path, monkeypatch):
    run_dir = copy_run(trained_run, tmp_path)
    (run_dir / REPORT).write_text("the previous report", encoding="utf-8")
    before = set(snapshot(run_dir))
    import os

    def disk_full(fd):  # the temp file is written, then flushing it to disk fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(RunError, match=rf"cannot write the report to {re.escape(str(run_dir / REPORT))} "
                                       r"\(No space left on device\)"):
        build_report(run_dir, data_dir=data_dir)
    monkeypatch.undo()
    assert (run_dir / REPORT).read_text(encoding="utf-8") == "the previous report"
    assert set(snapshot(run_dir)) == before


def test_out_that_is_a_directory_is_refused_before_any_work(trained_run, tmp_path):
    with pytest.raises(ConfigError, match=f"cannot write the report to {re.escape(str(tmp_path))}: it is a "
                                          "directory; give a file name such as"):
        build_report(trained_run, out=tmp_path, data_dir=tmp_path / "no-data-needed-yet")


# --- the command -------------------------------------------------------------------------------------------
def test_report_command(trained_run, data_dir, tmp_path, capsys):
    out = tmp_path / "x.html"
    assert main(["report", str(trained_run), "--out", str(out), "--data-dir", str(data_dir)]) == 0
    assert capsys.readouterr().out == f"report: {out}\n"
    assert out.read_text(encoding="utf-8").startswith("<!doctype html>")


def test_report_command_errors(trained_run, tmp_path, capsys):
    missing = tmp_path / "missing"
    assert main(["report", str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: run directory not found: {missing}\n" and captured.out == ""

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(trained_run), "--out", str(tmp_path / "r.html"), "--data-dir", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: missing file {empty / 'mnist'}") and err.count("\n") == 1
    assert not (tmp_path / "r.html").exists()

    assert main(["report", str(trained_run), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --out {tmp_path} is a directory; give a file name inside it\n"  # checked by the CLI


def test_train_writes_a_report_unless_told_not_to(data_dir, tmp_path, capsys):
    common = ["train", "--preset", "tiny", "--epochs", "1", "--limit-train", "300", "--limit-test", "100",
              "--data-dir", str(data_dir), "--no-plot", "--seed", "0"]
    assert main([*common, "--out", str(tmp_path / "with")]) == 0
    out = capsys.readouterr().out
    assert f"report: {tmp_path / 'with' / REPORT}\n" in out
    text = (tmp_path / "with" / REPORT).read_text(encoding="utf-8")
    assert list(sections_of(text)) == SECTIONS
    assert "on 100 images" in sections_of(text)["results"]  # the run's own data settings (--limit-test)

    assert main([*common, "--out", str(tmp_path / "without"), "--no-report"]) == 0
    assert "report:" not in capsys.readouterr().out
    assert not (tmp_path / "without" / REPORT).exists()


def test_the_preprocessing_section_says_what_preprocessing_does(report):
    section = re.search(r'<section id="preprocessing">(.*?)</section>', report, flags=re.S).group(1)
    assert "preprocess " in section and "test inputs range" in section
    assert "training range" in section and PNG_URI in section


def test_the_explanation_section_can_use_any_method(trained_run, data_dir, tmp_path, capsys):
    from cnnscope.cli import main

    out = tmp_path / "saliency.html"
    assert main(["report", str(trained_run), "--data-dir", str(data_dir), "--out", str(out),
                 "--method", "saliency", "-q"]) == 0
    section = re.search(r'<section id="explanation">(.*?)</section>', out.read_text(), flags=re.S).group(1)
    assert "Saliency" in section and "chosen with --method" in section
    capsys.readouterr()
    assert main(["report", str(trained_run), "--out", str(tmp_path / "x.html"), "--method", "gradcm"]) == 2
    err = capsys.readouterr().err
    assert "error: unknown method 'gradcm'" in err and "gradcam" in err and not (tmp_path / "x.html").exists()


def test_the_headline_loss_and_the_curves_say_what_they_hold():
    from types import SimpleNamespace

    from cnnscope.data.dataset import DataConfig
    from cnnscope.model.spec import RegularizerSpec
    from cnnscope.views.report_sections import loss_card, validation_note

    def run(metrics, reg="none", history=None, data=None):
        spec = SimpleNamespace(regularizer=RegularizerSpec(reg, 0.01 if reg != "none" else 0.0))
        return SimpleNamespace(metrics=metrics, spec=spec, history=history or {}, data_config=data or DataConfig())

    assert loss_card(run({"test_loss": 0.0857, "test_objective": 0.2})) == ("test loss", "0.0857")
    # a metrics.json written before issue 18 kept the penalty in test_loss: an old run with L2 says so
    assert loss_card(run({"test_loss": 0.0857}, "l2")) == ("test loss + L2 penalty", "0.0857")
    assert loss_card(run({"test_loss": 0.0857})) == ("test loss", "0.0857")  # no penalty: the same number
    assert loss_card(run({})) == ("test loss", "–")
    assert "measured on the test set" in validation_note(run({}, history={"val_source": "test"}))
    held = validation_note(run({}, history={"val_source": "validation"}, data=DataConfig(val_fraction=0.1, seed=3)))
    assert held == "The validation curves are measured on 10 % of each class held out of the training set (seed 3)."
