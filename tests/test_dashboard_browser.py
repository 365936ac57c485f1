"""The dashboard in a real (headless) Chromium: a training in another process shows its new epoch live, and two
selected runs draw two sets of curves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import make_data_dir
from test_catalog import copy_run
from test_serve import CHROMIUM, SAFETY_MS, _free_port, browser_page, wait_until

HOSTILE = 'x<img src=q onerror="document.title=1337">'


def _start(argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "cnnscope", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env)


def _stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    out = proc.stdout.read().decode(errors="replace")
    proc.stdout.close()
    return out


@pytest.fixture
def dashboard(tmp_path, trained_run, data_dir):
    """`cnnscope serve DIR` on a folder of two finished runs (one named like markup); (url, folder)."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    root = tmp_path / "runs"
    copy_run(trained_run, root / "first")
    copy_run(trained_run, root / HOSTILE, train={"lr": 0.01})
    port = _free_port()
    proc = _start(["serve", str(root), "--port", str(port), "--data-dir", str(data_dir)])
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "api/runs", timeout=1) as answer:
                    json.loads(answer.read())
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the dashboard did not start: {_stop(proc)}") from None
                time.sleep(0.1)
        yield url, root
    finally:
        _stop(proc)


def _page(url: str):
    """(page, script errors) of the dashboard at `url` in headless Chromium, closed afterwards."""
    return browser_page(url)


POINTS = "Number((document.querySelector('#chart-loss path[data-run=\"live\"]') || {{dataset: {{}}}})" \
         ".dataset.points || 0) >= {}"


def test_a_training_run_shows_each_new_epoch_live(dashboard, tmp_path):
    url, root = dashboard
    data = make_data_dir(tmp_path / "data", n_train=1000, n_test=100)
    # far more epochs than the test watches (it stops the run): a start-up without torch._dynamo made 40 short epochs
    # finish before the page had seen the first one
    train = _start(["train", "--preset", "tiny", "--epochs", "2000", "--batch-size", "32", "--data-dir", str(data),
                    "--out", str(root / "live"), "--no-report", "--no-plot", "--threads", "1"])
    try:
        with _page(url) as (page, errors):
            wait_until(page, "document.querySelector('tr[data-name=\"live\"]') !== null", timeout=SAFETY_MS)
            page.check('tr[data-name="live"] input[type=checkbox]')
            wait_until(page, POINTS.format(1), timeout=SAFETY_MS)
            seen = int(page.get_attribute('#chart-loss path[data-run="live"]', "data-points"))
            wait_until(page, POINTS.format(seen + 1), timeout=SAFETY_MS)  # the next epoch reaches the page
            row = page.locator('tr[data-name="live"]')
            assert row.get_attribute("data-status") in ("running", "completed")
            assert page.title() == "cnnscope dashboard"  # the run named like markup ran nothing
    finally:
        _stop(train)
    assert not errors, errors


def test_two_selected_runs_draw_both_curves(dashboard):
    url, _ = dashboard
    with _page(url) as (page, errors):
        wait_until(page, "document.querySelectorAll('#runs-body tr').length === 2", timeout=SAFETY_MS)
        for box in page.locator("#runs-body input[type=checkbox]").all():
            box.uncheck()
        wait_until(page, "document.querySelector('#chart-loss').dataset.curves === '0'")
        page.locator('tr[data-name="first"] input[type=checkbox]').check()
        page.locator("#runs-body tr", has_text="onerror").locator("input[type=checkbox]").check()
        wait_until(page, "document.querySelector('#chart-loss').dataset.curves === '4'", timeout=SAFETY_MS)
        runs = page.eval_on_selector_all("#chart-accuracy path.curve", "ps => ps.map(p => p.dataset.run)")
        assert sorted(set(runs)) == sorted(["first", HOSTILE]) and len(runs) == 4
        assert page.locator("#chart-lr path.curve").count() == 2
        assert page.title() == "cnnscope dashboard"
        assert page.locator("#runs-body img").count() == 0  # the name is text, not an element
        page.fill("#filter", "onerror")
        wait_until(page, "document.querySelectorAll('#runs-body tr').length === 1")
        page.click('th[data-key="name"]')  # sorting keeps working with a filter
        log_before = page.get_attribute("#chart-loss path.curve", "d")
        page.check("#logscale")
        assert page.get_attribute("#chart-loss path.curve", "d") != log_before
    assert not errors, errors
