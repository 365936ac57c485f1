"""The notebook widget's Python side against the HTTP viewer's, per interaction (issue 24).

Both answer through the same Starlette app (cnnscope.serve.app.create_app): the widget by an in-memory ASGI call
on its own event loop (serve/widget.Dispatcher), the HTTP viewer here through Starlette's TestClient (in process,
no sockets). So the figures are the Python side of one interaction; the page's JavaScript is the same file in
both. Usage (a trained run; the data directory for its test images):

    .venv/bin/python benchmarks/bench_widget.py runs/seed-iv --data-dir ../shared/data [--repeats 20]
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import time

import numpy as np
from PIL import Image
from starlette.testclient import TestClient

from cnnscope.serve.app import create_app
from cnnscope.serve.widget import Dispatcher


def drawing() -> str:
    """A white stroke on black, as the page sends a drawing (a PNG data URI)."""
    img = np.zeros((280, 280), np.uint8)
    img[60:220, 130:150] = 255
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


REQUESTS = {  # interaction -> (method, path, query, body)
    "draw -> prediction": ("POST", "/api/predict", {}, {"image": drawing()}),
    "pick test image": ("GET", "/api/sample", {"index": "3"}, None),
    "layer grid (JSON)": ("GET", "/api/activations", {"layer": "Conv2D_2", "format": "json", "index": "3"}, None),
    "click -> card": ("GET", "/api/card", {"layer": "Conv2D_2", "map": "5", "index": "3"}, None),
}


def timed(call, repeats: int) -> list[float]:
    call()  # the first answer fills caches: not counted
    found = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        found.append(1000 * (time.perf_counter() - start))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run")
    parser.add_argument("--data-dir")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    start = time.perf_counter()
    app = create_app(args.run, args.data_dir, warm_up=False)
    dispatcher = Dispatcher(app)
    status = dispatcher.answer({"id": 1, "method": "GET", "path": "/api/info"})[0]["status"]
    print(f"widget's Python side ready (app made, first /api/info answered {status}): "
          f"{1000 * (time.perf_counter() - start):.0f} ms")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        print("| interaction | widget (ms, median / p90) | HTTP viewer (ms, median / p90) |\n| --- | --- | --- |")
        for name, (method, path, query, body) in REQUESTS.items():
            content = {"id": 2, "method": method, "path": path, "query": query, "body": body}
            w = timed(lambda content=content: dispatcher.answer(content), args.repeats)
            h = timed(lambda m=method, p=path, q=query, b=body: client.request(m, p, params=q, json=b), args.repeats)
            q = lambda xs: f"{statistics.median(xs):.1f} / {np.percentile(xs, 90):.1f}"  # noqa: E731
            print(f"| {name} | {q(w)} | {q(h)} |")
    dispatcher.close()


if __name__ == "__main__":
    main()
