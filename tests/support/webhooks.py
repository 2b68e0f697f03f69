"""A webhook receiver on a free port, as a user would run one: what it got, with the
signature header."""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from hashlib import sha256
from http.server import BaseHTTPRequestHandler, HTTPServer

from support.procs import free_port


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[tuple[bytes, str]]]]:
    """(its URL, the (body, x-rota-signature) pairs it got so far)."""
    got: list[tuple[bytes, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            got.append((body, self.headers.get("x-rota-signature", "")))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", got
    finally:
        server.shutdown()
        server.server_close()


def signed_by(secret: str, header: str, body: bytes, within_s: float = 120) -> bool:
    """What a receiver checks, written here from the README (not Rota's code): the header
    is ``t=<unix time>,sha256=<hex>[,sha256=<hex>]``; ``t`` is recent, and one ``sha256``
    is the HMAC-SHA256 of ``"<t>." + body`` with the receiver's secret."""
    parts = [p.split("=", 1) for p in header.split(",")]
    t = next(v for k, v in parts if k == "t")
    want = hmac.new(secret.encode(), f"{t}.".encode() + body, sha256).hexdigest()
    return abs(time.time() - int(t)) < within_s and any(k == "sha256" and hmac.compare_digest(v, want) for k, v in parts)
