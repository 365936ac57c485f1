"""No silent waits (issue 23): long commands say what they do and how far on a terminal, never in a pipe; `serve`
prints its address only once it answers. Synchronised on output, never on time."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import urllib.request

import pytest

from cnnscope.cli import main


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def _run(monkeypatch, capsys, argv: list, tty: bool) -> tuple[int, str, str]:
    stderr = Terminal() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().out, stderr.getvalue()


def test_compare_shows_progress_on_a_terminal_only(trained_run, data_dir, tmp_path, monkeypatch, capsys):
    argv = ["compare", trained_run, trained_run, trained_run, "--layer", "all", "--data-dir", data_dir,
            "--out", tmp_path / "c.png"]
    code, out, err = _run(monkeypatch, capsys, argv, tty=True)
    assert code == 0, err
    assert "loading 3 runs" in err and "matching the maps of 3 runs on 300 test images, layer by layer" in err
    assert "test images: all 300" in out  # the synthetic test set is smaller than the default limit
    code, out, err = _run(monkeypatch, capsys, argv, tty=False)
    assert code == 0 and "loading" not in err and "matching" not in err  # a pipe gets results, not progress


def test_compare_states_its_default_limit(trained_run, data_dir, tmp_path, monkeypatch, capsys):
    from cnnscope.cli.analyze import COMPARE_LIMIT

    monkeypatch.setattr("cnnscope.cli.analyze.COMPARE_LIMIT", 120)  # the parser reads it when it is built
    code, out, _ = _run(monkeypatch, capsys, ["compare", trained_run, trained_run, "--layer", "Conv2D_1",
                                              "--data-dir", data_dir, "--out", tmp_path / "c.png"], tty=False)
    assert code == 0 and "test images: the first 120 (the default); --limit N to change" in out
    assert "over 120 test images" in out
    assert COMPARE_LIMIT == 2000


def test_progress_goes_through_logging(trained_run, data_dir, tmp_path, caplog):
    """Scripts and notebooks see the same steps as log records of cnnscope.progress."""
    from cnnscope.report import build_report

    with caplog.at_level(logging.INFO, logger="cnnscope.progress"):
        build_report(trained_run, tmp_path / "r.html", data_dir=data_dir)
    steps = [r.getMessage() for r in caplog.records if r.name == "cnnscope.progress"]
    assert steps[0].startswith("loading the run ")
    assert "report: test pass (1 of 11)" in steps and "report: explanation (11 of 11)" in steps
    assert "report: maximising patterns, layer by layer" in steps


def test_report_command_shows_its_sections_on_a_terminal(trained_run, data_dir, tmp_path, monkeypatch, capsys):
    code, out, err = _run(monkeypatch, capsys, ["report", trained_run, "--out", tmp_path / "r.html",
                                                "--data-dir", data_dir], tty=True)
    assert code == 0 and out.startswith("report: ")
    assert "report: profiles (10 of 11)" in err


def test_serve_prints_its_address_once_it_answers(trained_run, data_dir):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cnnscope", "serve", str(trained_run), "--port", "0",
                             "--data-dir", str(data_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, text=True)
    try:
        line = proc.stdout.readline()  # waits for the line, however long the loading takes
        assert line.startswith(f"cnnscope viewer for {trained_run}: http://127.0.0.1:"), line
        url = line.split(": ", 1)[1].split()[0]
        with urllib.request.urlopen(url + "api/info", timeout=30) as answer:  # at once: no retry needed
            assert json.loads(answer.read())["run"] == trained_run.name
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()


def test_serve_is_quiet_once_it_answers(trained_run, monkeypatch, capsys):
    """Before the address, serve says what it loads; after it, the page's requests (a card's patterns, the
    dashboard's matrix) draw no bars and say no lines in the console."""
    import cnnscope.serve.server as server

    progress = logging.getLogger("cnnscope.progress")
    seen = {}

    def fake_serve(run, *, on_ready, **kwargs):
        seen["before"] = progress.isEnabledFor(logging.INFO)
        on_ready("http://127.0.0.1:1/")
        seen["after"] = progress.isEnabledFor(logging.INFO)

    monkeypatch.setattr(server, "serve", fake_serve)
    level = progress.level
    try:
        assert _run(monkeypatch, capsys, ["serve", trained_run], tty=True)[0] == 0
    finally:
        progress.setLevel(level)  # setLevel, not an attribute: it also clears logging's cache of the answer
    assert seen == {"before": True, "after": False}


@pytest.mark.parametrize("quiet", [True, False])
def test_quiet_hides_progress_even_on_a_terminal(trained_run, data_dir, tmp_path, monkeypatch, capsys, quiet):
    argv = ["activations", trained_run, "--layer", "Conv2D_1", "--index", "0", "--data-dir", data_dir,
            "--out", tmp_path / "a.png", *(["--quiet"] if quiet else [])]
    code, _, err = _run(monkeypatch, capsys, argv, tty=True)
    assert code == 0
    assert ("loading the run" in err) is not quiet
