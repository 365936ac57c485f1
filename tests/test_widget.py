"""The viewer in a notebook cell (cnnscope.serve.widget): messages in, the HTTP viewer's own answers out; hostile
messages get 4xx answers; the page's scripts run in a shadow root with the widget's back end."""

from __future__ import annotations

import base64
import json
import threading
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
from starlette.testclient import TestClient  # noqa: E402

from cnnscope.base.errors import RequestError  # noqa: E402
from cnnscope.serve import create_app  # noqa: E402
from cnnscope.serve.widget import Dispatcher, esm_source, parse_message  # noqa: E402
from conftest import budget  # noqa: E402
from test_serve import SAFETY_MS, browser_page, stroke_png, wait_until  # noqa: E402


@pytest.fixture(scope="module")
def app(trained_run, data_dir):
    return create_app(trained_run, data_dir, warm_up=False, max_upload_bytes=200_000)


@pytest.fixture(scope="module")
def dispatcher(app):
    dispatcher = Dispatcher(app)
    yield dispatcher
    dispatcher.close()


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app, base_url="http://127.0.0.1") as test_client:
        yield test_client


def ask(dispatcher, method, path, query=None, body=None, ident=7):
    message, buffers = dispatcher.answer({"id": ident, "method": method, "path": path, "query": query, "body": body})
    assert message["id"] == ident
    return message, buffers


def drawing_uri() -> str:
    return "data:image/png;base64," + base64.b64encode(stroke_png()).decode()


@pytest.mark.parametrize(("path", "query"), [
    ("/api/info", {}), ("/api/layers", {}), ("/api/sample", {"index": "3"}),
    ("/api/card", {"layer": "Conv2D_2", "map": "1", "index": "0"}),
    ("/api/units", {"layer": "Dense_2", "index": "5"}),
    ("/api/explain", {"method": "gradcam", "index": "2"}),
    ("/api/activations", {"layer": "Conv2D_1", "format": "json", "index": "1"}),
])
def test_json_answers_are_the_http_viewers(dispatcher, client, path, query):
    message, buffers = ask(dispatcher, "GET", path, query)
    http = client.get(path, params=query)
    assert message["status"] == http.status_code == 200 and not buffers
    assert message["json"] == http.json()


def test_the_grid_comes_as_png_bytes_with_its_geometry(dispatcher, client):
    query = {"layer": "Conv2D_1", "cols": "4", "index": "2"}
    message, buffers = ask(dispatcher, "GET", "/api/activations", query)
    http = client.get("/api/activations", params=query)
    assert buffers == [http.content] and buffers[0].startswith(b"\x89PNG")
    assert message["headers"]["x-grid-cols"] == "4" == http.headers["x-grid-cols"]
    assert message["headers"]["x-grid-maps"] == http.headers["x-grid-maps"]


def test_a_drawing_is_prepared_as_the_server_prepares_it(dispatcher, client):
    body = {"image": drawing_uri()}
    message, _ = ask(dispatcher, "POST", "/api/predict", {}, body)
    http = client.post("/api/predict", json=body)
    assert message["status"] == 200 and message["json"] == http.json()
    # then its pixels are enough, as in the page
    card, _ = ask(dispatcher, "POST", "/api/card", {"layer": "Conv2D_1", "map": "0"},
                  {"pixels": message["json"]["pixels"]})
    assert card["status"] == 200 and card["json"]["shape"]


@pytest.mark.parametrize(("method", "path", "query", "body", "status", "needle"), [
    ("GET", "/api/sample", {"index": "99999"}, None, 400, "out of range"),
    ("GET", "/api/card", {"layer": "Dense_1", "map": "0"}, None, 400, "activation maps exist"),
    ("GET", "/api/nothing", {}, None, 404, "no such page"),
    ("POST", "/api/info", {}, {"pixels": "x"}, 405, "not allowed"),
    ("POST", "/api/predict", {}, {"pixels": [[1]]}, 400, "'pixels' must be"),
    ("POST", "/api/predict", {}, {"image": "data:image/png;base64,AAAA"}, 400, ""),
    ("GET", "/api/explain", {"method": "magic"}, None, 400, "magic"),
])
def test_bad_requests_get_the_http_viewers_4xx(dispatcher, client, method, path, query, body, status, needle):
    message, buffers = ask(dispatcher, method, path, query, body)
    http = client.request(method, path, params=query, json=body)
    assert message["status"] == http.status_code == status and not buffers
    assert needle in message["json"]["error"] and message["json"] == http.json()


def test_a_picture_over_the_limit_gets_413(dispatcher):
    huge = "data:image/png;base64," + base64.b64encode(b"\x89PNG" + bytes(300_000)).decode()
    message, _ = ask(dispatcher, "POST", "/api/predict", {}, {"image": huge})
    assert message["status"] == 413 and "limit" in message["json"]["error"]


def test_a_route_the_app_does_not_have_is_its_404(dispatcher):
    """Paths of the API's shape (hyphens too, for routes to come) reach the app, which answers 404 to unknown ones."""
    message, _ = ask(dispatcher, "GET", "/api/no-such-route", {}, None)
    assert message["status"] == 404


@pytest.mark.parametrize(("content", "needle"), [
    (None, "whole-number 'id'"), ({"id": "1"}, "whole-number 'id'"), ({"id": True}, "whole-number 'id'"),
    ({"id": 1, "method": "DELETE", "path": "/api/info"}, "GET or POST"),
    ({"id": 1, "method": "GET", "path": "/static/viewer.js"}, "API route"),
    ({"id": 1, "method": "GET", "path": "/"}, "API route"),
    ({"id": 1, "method": "GET", "path": "/api/../static/viewer.js"}, "API route"),
    ({"id": 1, "method": "GET", "path": "/api/-info"}, "API route"),
    ({"id": 1, "method": "GET", "path": "/api/info", "query": {"a": 1}}, "must be text"),
    ({"id": 1, "method": "GET", "path": "/api/info", "query": ["a"]}, "'query' must be"),
    ({"id": 1, "method": "POST", "path": "/api/predict", "body": [1]}, "'body' must be"),
    ({"id": 1, "method": "POST", "path": "/api/predict", "body": {"pixels": float("nan")}}, "NaN"),
])
def test_hostile_messages_get_400_answers(dispatcher, content, needle):
    message, buffers = dispatcher.answer(content)
    assert message["status"] == 400 and needle in message["json"]["error"] and not buffers
    assert message["id"] == (1 if content and type(content.get("id")) is int else None)


def test_answers_in_the_background_reach_the_reply(dispatcher):
    answers = []
    arrived = threading.Event()

    def reply(message, buffers):
        answers.append((message, buffers))
        arrived.set()

    dispatcher.submit({"id": 3, "method": "GET", "path": "/api/layers"}, reply)
    assert arrived.wait(60)
    assert answers[0][0]["id"] == 3 and answers[0][0]["json"]["layers"]


TEXT = st.text(max_size=12)
VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                      max_leaves=8)
MESSAGES = st.dictionaries(st.sampled_from(["id", "method", "path", "query", "body"]) | TEXT, VALUES, max_size=6) | \
    st.fixed_dictionaries({"id": st.integers(0, 10), "method": st.sampled_from(["GET", "POST", "PUT"]),
                           "path": st.sampled_from(["/api/info", "/api/sample", "/api/card", "/api/x"]) | TEXT,
                           "query": st.dictionaries(TEXT, TEXT | st.integers(), max_size=3) | VALUES,
                           "body": st.none() | st.dictionaries(st.sampled_from(["pixels", "image"]), VALUES)})


@settings(max_examples=200, deadline=None)
@given(MESSAGES)
def test_the_message_parser_accepts_or_says_why(content):
    try:
        call = parse_message(content)
    except RequestError as exc:
        assert 400 <= exc.status < 500 and str(exc)
        return
    assert call.method in ("GET", "POST") and call.path.startswith("/api/")
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in call.query.items())
    assert call.body is None or isinstance(json.loads(call.body), dict)


@settings(max_examples=budget(25), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(MESSAGES)
def test_any_message_gets_an_answer_never_a_server_error(dispatcher, content):
    message, _ = dispatcher.answer(content)
    assert message["status"] < 500, message
    if message["status"] >= 400:
        assert message["json"]["error"]


# --- in a browser: the widget's module with a model object that routes to Python --------------------------------
FAKE_MODEL = """
window.fakeModel = {
  listeners: [],
  on(name, fn) { if (name === "msg:custom") this.listeners.push(fn); },
  send(content) {
    window.cnnscopeAsk(content).then(([message, buffers]) => {
      const views = buffers.map((b) => { const s = atob(b), a = new Uint8Array(s.length);
        for (let i = 0; i < s.length; i++) a[i] = s.charCodeAt(i); return new DataView(a.buffer); });
      for (const fn of this.listeners) fn(message, views);
    });
  },
};
"""


def test_the_widget_draws_predicts_and_opens_a_card_in_a_browser(dispatcher, client):
    def route(content):
        message, buffers = dispatcher.answer(content)
        return [message, [base64.b64encode(b).decode() for b in buffers]]

    shadow = "document.querySelector('#cell').shadowRoot"
    idle = (f"{shadow} && {shadow}.querySelector('.cnnscope-body').dataset.busy === '0' && "
            f"Number({shadow}.getElementById('grid').dataset.renders) >= {{}}")
    with browser_page("about:blank") as (page, errors):
        page.expose_function("cnnscopeAsk", route)
        page.set_content("<h2 id='outside'>notebook</h2><div id='cell'></div>")
        page.add_script_tag(content=FAKE_MODEL)
        page.add_script_tag(type="module", content=esm_source().replace(
            "export default { render };", "render({ model: window.fakeModel, el: document.getElementById('cell') });"))
        wait_until(page, idle.format(1))
        first = client.get("/api/sample", params={"index": "0"}).json()
        assert page.locator("#pred-label").inner_text() == first["predicted_name"]  # locators pierce the shadow root
        assert page.evaluate("getComputedStyle(document.getElementById('outside')).textTransform") == "none"
        renders = int(page.locator("#grid").get_attribute("data-renders"))
        box = page.locator("#draw").bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.15)
        page.mouse.down()
        for i in range(1, 12):
            page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * (0.15 + 0.06 * i))
        page.mouse.up()
        wait_until(page, idle.format(renders + 1) + f" && {shadow}.getElementById('source-label')"
                                                     ".textContent.includes('drawing')")
        assert page.locator("#true-label").inner_text() == "your drawing"
        grid = page.locator("#grid").bounding_box()
        page.mouse.click(grid["x"] + 5, grid["y"] + 5)
        page.locator("#card .kernels").wait_for(timeout=SAFETY_MS)
        assert page.locator("#card-title").inner_text().startswith("Conv2D_1 · map 0")
        wait_until(page, f"{shadow}.querySelector('.pattern').src.startsWith('data:image/png')")
        page.select_option("#method", "gradcam")
        wait_until(page, f"{shadow}.getElementById('explain-text').textContent.startsWith('Grad-CAM')")
    assert not errors, errors


def test_the_widget_answers_a_page_message_through_its_comm(app, dispatcher):
    pytest.importorskip("anywidget", reason="the notebook extra is not installed")
    from cnnscope.serve.widget import widget_class

    view = widget_class()(dispatcher, app.state.viewer)
    sent, arrived = [], threading.Event()

    def comm_send(data=None, buffers=None, **kwargs):
        if data and data.get("method") == "custom":
            sent.append((data["content"], buffers))
            arrived.set()

    view.comm.send = comm_send  # no kernel here: the comm's send is where a kernel would put the message
    view._handle_custom_msg({"id": 5, "method": "GET", "path": "/api/info"}, [])
    assert arrived.wait(60)
    assert sent[0][0]["id"] == 5 and sent[0][0]["json"]["run"]
    assert "function startViewer(window, document)" in view._esm
