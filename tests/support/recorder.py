"""A recording relay in front of a real Ray dashboard: each control plane of a fault test
reaches Ray through its own, and every PUT of Serve's config is written down, in the order
they reached Ray, with who sent it (the control plane and epoch in its User-Agent).
Ray Serve keeps no history of the configs it was given; this is that history."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

SENT_BY = re.compile(r"\((?P<who>[^;]+); epoch (?P<epoch>\d+)\)")


@dataclass
class Put:
    at: float  # monotonic, when it was forwarded to Ray (in the order Ray got them)
    relay: str  # which control plane's relay
    who: str
    epoch: int
    status: int | None = None  # Ray's answer (None: none came, e.g. the relay's own timeout)


class History:
    def __init__(self) -> None:
        self.puts: list[Put] = []
        self.order = threading.Lock()  # held while a PUT is recorded and forwarded: Ray sees them in this order

    def add(self, relay: str, agent: str) -> Put:
        m = SENT_BY.search(agent)
        put = Put(time.monotonic(), relay, m["who"] if m else agent, int(m["epoch"]) if m else -1)
        self.puts.append(put)
        return put

    def late(self) -> list[tuple[Put, Put]]:
        """PUTs that reached Ray after one of a newer epoch (a deposed leader's), each with
        the newer one before it."""
        out, newest = [], None
        for p in self.puts:
            if newest and p.epoch < newest.epoch:
                out.append((p, newest))
            elif newest is None or p.epoch > newest.epoch:
                newest = p
        return out


class Relay:
    """Forwards every request to ``target`` (a Ray dashboard); records PUTs in ``history``."""

    def __init__(self, name: str, target: str, history: History):
        relay = self
        self.name, self.target, self.history = name, target.rstrip("/"), history
        self.http = httpx.Client(timeout=60)

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
                try:
                    if self.command == "PUT":
                        with relay.history.order:  # recorded and forwarded at once: Ray sees them in this order
                            put = relay.history.add(relay.name, self.headers.get("User-Agent", ""))
                            r = relay.http.request(self.command, relay.target + self.path, headers=headers, content=body)
                            put.status = r.status_code
                    else:
                        r = relay.http.request(self.command, relay.target + self.path, headers=headers, content=body)
                except httpx.HTTPError:
                    self.send_error(502)
                    return
                try:
                    self.send_response(r.status_code)
                    for k, v in r.headers.items():
                        if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(r.content)))
                    self.end_headers()
                    self.wfile.write(r.content)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the control plane gave up (its PUT's time ran out) or was killed

            do_GET = do_PUT = do_POST = do_DELETE = _forward

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.http.close()
