"""Helpers to drive endpoints and the OpenAI base URL in tests."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import httpx

from support.procs import REPO, RotaServer, wait_until

TEST_TEMPLATES = REPO / "tests" / "apps" / "templates.yaml"


def wait_endpoint(server: RotaServer, ref, predicate, timeout: float = 90, what: str = "endpoint state", key: str | None = None):
    headers = {"Authorization": f"Bearer {key}"} if key else None

    def check():
        e = server.api.get(f"/endpoints/{ref}", headers=headers).json()
        return e if predicate(e) else None

    try:
        return wait_until(check, timeout, interval=0.3, what=what)
    except AssertionError:
        print(server.log_tail())
        print(server.api.get(f"/endpoints/{ref}/events", headers=headers).json())
        raise


def status_is(*statuses: str):
    return lambda e: e["status"] in statuses


def chat(serve_url: str, key: str, model: str, content: str = "hi", timeout: float = 60, **extra) -> httpx.Response:
    return httpx.post(
        f"{serve_url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": content}], **extra},
        headers={"Authorization": f"Bearer {key}"},
        timeout=timeout,
    )


def wait_routed(serve_url: str, key: str, model: str, timeout: float = 60, **extra) -> httpx.Response:
    """Chat until the base URL answers 200 for ``model`` (a new endpoint, or a gateway that
    is rolling to a new version after a control plane restart); a timeout names the last answer."""
    last: dict[str, httpx.Response] = {}

    def answered():
        last["r"] = r = chat(serve_url, key, model, **extra)
        return r if r.status_code == 200 else None

    try:
        return wait_until(answered, timeout, what=f"{model!r} routed at the base URL")
    except AssertionError as e:
        r = last.get("r")
        raise AssertionError(f"{e}; last answer: {r.status_code} {r.text[:300]}" if r is not None else str(e)) from None


def wait_relayed(serve_url: str, key: str, timeout: float = 60) -> None:
    """Until the base URL relays to this control plane (a gateway rolled by a new server
    relays to the old one, gone, until Serve replaces it)."""
    headers = {"Authorization": f"Bearer {key}"}
    wait_until(lambda: httpx.get(f"{serve_url}/v1/batches", headers=headers).status_code == 200, timeout, what="relayed")


def new_key(server: RotaServer, name: str, project: str | None = None) -> dict:
    r = server.api.post("/keys", json={"name": name, "project": project})
    assert r.status_code == 201, r.text
    return r.json()


def logged_request(server: RotaServer, request_id: str, timeout: float = 15, key: str | None = None) -> dict:
    """A call's record in the request log, once the gateway has shipped it (every second)."""
    headers = {"Authorization": f"Bearer {key}"} if key else None

    def check():
        r = server.api.get(f"/requests/{request_id}", headers=headers)
        return r.json() if r.status_code == 200 else None

    return wait_until(check, timeout, interval=0.3, what=f"request {request_id} in the request log")


def logged_ids(server: RotaServer) -> Counter:
    """How many times each request id is in the request log (every page of it)."""
    ids: Counter = Counter()
    cursor = None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = server.api.get("/requests", params=params).json()
        ids.update(r["request_id"] for r in page["data"])
        cursor = page["next_cursor"]
        if not cursor:
            return ids


class ChatLoad:
    """Threads that call ``model`` through the base URL back to back, each call with its
    own ``x-request-id``: the ids answered 200 with when (monotonic), and when calls failed."""

    def __init__(self, serve_url: str, key: str, model: str, threads: int = 2):
        self.serve_url, self.key, self.model = serve_url, key, model
        self.answered: list[tuple[str, float]] = []
        self.failed: list[float] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self._stop.is_set():
                rid = f"load-{uuid.uuid4().hex}"
                try:
                    resp = http.post(
                        f"{self.serve_url}/v1/chat/completions",
                        json={"model": self.model, "messages": [{"role": "user", "content": "x"}]},
                        headers={"Authorization": f"Bearer {self.key}", "x-request-id": rid},
                    )
                except httpx.HTTPError:
                    self.failed.append(time.monotonic())
                    time.sleep(0.05)
                    continue
                if resp.status_code == 200:
                    self.answered.append((rid, time.monotonic()))
                else:
                    self.failed.append(time.monotonic())
                    time.sleep(0.05)

    def __enter__(self) -> ChatLoad:
        for th in self._threads:
            th.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(60)


def routed_echo(server: RotaServer, serve_url: str, name: str) -> str:
    """An echo-chat endpoint ``name`` (routing key the same), RUNNING and answering at the
    base URL: the admin key that calls it."""
    r = server.api.post("/endpoints", json={"name": name, "template": "echo-chat", "routing_key": name})
    assert r.status_code == 201, r.text
    wait_endpoint(server, name, lambda e: e["status"] == "RUNNING", what="RUNNING")
    wait_routed(serve_url, server.admin_key, name)
    return server.admin_key
