"""What the tests of the pages share: a static file server (as a course page or `python -m http.server` would
serve a folder) and the checks every script of a page passes (text only, short functions)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path

SINKS = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
         'setAttribute("style"')  # markup or code from text; styles go through el()'s style object (CSP)
MAX_LINES = 40


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the test's output stays readable
        pass


@contextlib.contextmanager
def static_server(root: Path) -> Iterator[str]:
    """http://127.0.0.1:PORT/ serving `root` from a thread; stopped afterwards."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def script_faults(source: str) -> list[str]:
    """The sinks a script uses and its functions over MAX_LINES lines (top-level `function`, exported or not,
    ending at a column-0 '}')."""
    faults = [sink for sink in SINKS if sink in source]
    start = None
    for number, line in enumerate(source.splitlines(), 1):
        found = re.match(r"(?:export )?(?:async )?function (\w+)\(", line)
        if found:
            start, name = number, found.group(1)
        elif line == "}" and start is not None:
            if number - start + 1 > MAX_LINES:
                faults.append(f"{name}: {number - start + 1} lines")
            start = None
    return faults
