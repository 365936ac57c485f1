"""What shields the viewer: a Host/Origin check against DNS rebinding and cross-site posts, security headers on
every answer, and JSON answers that never carry NaN."""

from __future__ import annotations

import ipaddress
import json
import math
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SafeJSONResponse(JSONResponse):
    """JSON without NaN or infinities: they become null, and a "warning" field says how many there were."""

    def render(self, content: Any) -> bytes:
        """Compact JSON bytes, NaN and infinities replaced by null with a warning count."""
        try:
            return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
        except ValueError:  # a NaN or an infinity somewhere (a model whose weights hold NaN)
            pass
        counter = [0]
        cleaned = _finite(content, counter)
        if isinstance(cleaned, dict):
            cleaned["warning"] = (f"{counter[0]:,} values were NaN or infinite and are sent as null: the model "
                                  f"(its weights or this input) produces non-finite numbers")
        return json.dumps(cleaned, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _finite(value: Any, counter: list[int]) -> Any:
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        counter[0] += 1
        return None
    if isinstance(value, dict):
        return {k: _finite(v, counter) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v, counter) for v in value]
    return value


def host_name(value: str) -> str | None:
    """The name in a Host header ('127.0.0.1:8000', '[::1]:8000', 'localhost'), lower-case; None if malformed."""
    try:
        parts = urlsplit(f"//{value}")
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return None
    return parts.hostname


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostGuard:
    """ASGI middleware: refuse requests whose Host (or Origin) is not this server, add security headers.

    A web page on another site cannot read the API through DNS rebinding (its Host header names its own domain)
    nor post to it from a browser (its Origin names its own site). `hosts` are the names the server answers to
    besides 127.0.0.1, localhost and [::1]; a wildcard bind (0.0.0.0, ::) also answers to IP addresses and this
    machine's host name, which an attacker's domain cannot be.
    """

    def __init__(self, app: ASGIApp, hosts: Iterable[str] = ()) -> None:
        self.app = app
        given = {h.strip("[]").lower() for h in hosts}
        self.wildcard = bool(given & set(WILDCARD_HOSTS))
        self.allowed = frozenset(set(LOCAL_HOSTS) | (given - set(WILDCARD_HOSTS)))
        if self.wildcard:
            names = {socket.gethostname(), socket.getfqdn()}
            self.allowed |= {n.lower() for n in names if n}

    def allows(self, name: str | None) -> bool:
        """Whether a request addressed to host `name` may be answered."""
        return name is not None and (name in self.allowed or (self.wildcard and _is_ip(name)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v.decode("latin-1") for k, v in scope["headers"]}
        problem = self.problem(headers.get(b"host"), headers.get(b"origin"))
        if problem is not None:
            status, message = problem
            await SafeJSONResponse({"error": message}, status_code=status)(scope, receive, self._secured(send))
            return
        await self.app(scope, receive, self._secured(send))

    def problem(self, host: str | None, origin: str | None) -> tuple[int, str] | None:
        """(status, message) when the request must be refused, else None."""
        shown = sorted(self.allowed)
        if host is None or not self.allows(host_name(host)):
            return 400, (f"this viewer only answers requests addressed to {', '.join(shown)}; the Host header was "
                         f"{host!r:.80} (open the address `cnnscope serve` printed, or pass --host)")
        if origin is not None and urlsplit(origin).netloc.lower() != host.lower():
            return 403, f"requests from other sites are refused (Origin {origin!r:.80}, Host {host!r:.80})"
        return None

    @staticmethod
    def _secured(send: Send) -> Send:
        async def wrapped(message: dict) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)
        return wrapped
