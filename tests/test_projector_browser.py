"""The viewer and the dashboard on a projector-sized window (1,400 × 900) in headless Chromium (issue 23): what can be
measured is measured — the runs table fits the window, text is at least 12 px (9 pt), the image being analysed is
on the big canvas, the attribution heat map is large, the output layer shows its logits and probabilities, and
no empty block stands where the compare matrix is being computed."""

from __future__ import annotations

from test_dashboard_browser import dashboard  # noqa: F401  (fixture)
from test_serve import SAFETY_MS, browser_page, served, wait_until  # noqa: F401  (served: fixture)

WINDOW = {"width": 1400, "height": 900}


def _page(url: str):
    return browser_page(url, WINDOW)


SMALLEST_TEXT = """sel => Math.min(...[...document.querySelectorAll(sel)]
  .filter(e => e.offsetParent && e.textContent.trim()).map(e => parseFloat(getComputedStyle(e).fontSize)))"""


def test_viewer_shows_the_image_and_a_large_heat_map(served):  # noqa: F811
    with _page(served) as (page, errors):
        wait_until(page, "document.querySelector('#draw').dataset.showing === 'test image 0'", timeout=SAFETY_MS)
        assert page.locator("#draw-hint").is_hidden()
        inked = page.evaluate("""() => { const c = document.querySelector('#draw');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] > 128) n++; return n / (d.length / 4); }""")
        assert 0.02 < inked < 0.6, inked  # a digit's strokes, not a blank or a white canvas
        wait_until(page, "document.querySelector('#explain-img').naturalWidth > 0", timeout=SAFETY_MS)
        box = page.locator("#explain-img").bounding_box()
        assert box["width"] >= 200 and box["height"] >= 200, box  # was 84 px: 3 screen pixels per input pixel
        page.select_option("#layer", "Dense_2")
        wait_until(page, "document.querySelectorAll('#units .units-bars .r').length === 20", timeout=SAFETY_MS)
        assert page.locator("#grid").is_hidden()
        text = page.inner_text("#units")
        assert "logits (the layer's output)" in text and "probabilities (softmax of the logits)" in text
        assert page.evaluate(SMALLEST_TEXT, "#units span, #units h3") >= 12
    assert not errors, errors


def test_dashboard_table_fits_a_projector_window(dashboard):  # noqa: F811
    url, _ = dashboard
    with _page(url) as (page, errors):
        wait_until(page, "document.querySelectorAll('#runs-body tr').length === 2", timeout=SAFETY_MS)
        wrap = page.evaluate("() => { const w = document.querySelector('.table-wrap'); "
                             "return [w.scrollWidth, w.clientWidth, document.querySelector('#runs').offsetWidth]; }")
        assert wrap[0] <= wrap[1] and wrap[2] <= WINDOW["width"], wrap  # no sideways scrolling
        for key in ("epochs", "seconds", "test_accuracy"):
            right = page.locator(f'th[data-key="{key}"]').bounding_box()
            assert right["x"] + right["width"] <= WINDOW["width"], key  # the last columns are on screen
        assert page.evaluate(SMALLEST_TEXT, "#runs th, #runs td") >= 12
        hidden = page.evaluate("""() => { const node = document.createElement('div');
            node.className = 'compare'; node.dataset.state = 'loading';
            node.innerHTML = '<p data-role="status">computing…</p><svg class="heatmap" viewBox="0 0 10 10"></svg>';
            document.querySelector('main').append(node);
            const out = [getComputedStyle(node.querySelector('.heatmap')).display,
                         node.querySelector('svg').getBoundingClientRect().height];
            node.remove(); return out; }""")
        assert hidden == ["none", 0], hidden  # no empty square while the first matrix computes
    assert not errors, errors
