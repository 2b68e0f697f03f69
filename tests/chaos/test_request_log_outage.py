"""The control plane is SIGKILLed while calls flow through the base URL: the gateway keeps
serving and keeps their records; after the restart every answered call is in the request
log, and none twice. Restarted with ``ROTA_REQUEST_LOG=false``, the same gateway replica
(no roll) records nothing more."""

import time
import uuid

import httpx
import pytest

from support.endpoints import TEST_TEMPLATES, ChatLoad, logged_ids, routed_echo
from support.procs import free_port, wait_until

pytestmark = pytest.mark.integration


def test_records_of_calls_answered_while_the_control_plane_was_down_arrive_once(servers, cluster, tmp_path, full):
    env = {"ROTA_TEMPLATES_PATH": str(TEST_TEMPLATES), "ROTA_PORT": str(free_port())}  # the gateway's address stays
    home = tmp_path / "rota"
    srv = servers(home, **env)
    key = routed_echo(srv, cluster.serve_url, "busy")

    with ChatLoad(cluster.serve_url, key, "busy") as load:
        time.sleep(2)
        srv.kill()
        down_from = len(load.answered)
        time.sleep(15 if full else 4)
        during = len(load.answered) - down_from
        srv = servers(home, **env)
        time.sleep(2)
    answered = [rid for rid, _ in load.answered]

    assert during > 0, "the base URL kept serving while the control plane was down"
    wait_until(lambda: set(answered) <= set(logged_ids(srv)), 60, what="every answered call in the request log")
    counts = logged_ids(srv)
    assert [rid for rid in answered if counts[rid] != 1] == []
    print(f"{len(answered)} calls answered ({during} while the control plane was down), each logged once")

    # Restarted with the log off: the same gateway replica follows, and records nothing
    # (switching back on is in the gateway's unit tests).
    gateway = cluster.gateway_replicas()
    srv.stop()
    srv = servers(home, **env, ROTA_REQUEST_LOG="false")
    switched(srv, cluster.serve_url, key, on=False)
    ids = [call(cluster.serve_url, key, "busy") for _ in range(5)]
    time.sleep(3)  # records go every second: any would be stored by now
    logged = logged_ids(srv)
    assert [logged[i] for i in ids] == [0] * 5
    assert cluster.gateway_replicas() == gateway  # the switch did not roll the gateway


def switched(srv, serve_url: str, key: str, on: bool) -> None:
    """Wait until the gateway follows the restarted control plane's switch (its routing
    table is pulled every second): a probe call is logged (on), or is not (off)."""

    def followed() -> bool:
        probe = call(serve_url, key, "busy")
        time.sleep(2.5)  # a record is sent within a second, and stored at once
        return bool(logged_ids(srv)[probe]) == on

    wait_until(followed, 60, 0, what=f"the gateway following ROTA_REQUEST_LOG={on}")


def call(serve_url: str, key: str, model: str) -> str:
    rid = f"switch-{uuid.uuid4().hex}"
    body = {"model": model, "messages": [{"role": "user", "content": "x"}]}
    r = httpx.post(f"{serve_url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}", "x-request-id": rid})
    assert r.status_code == 200 and r.headers["x-request-id"] == rid, r.text
    return rid
