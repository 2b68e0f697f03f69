"""A key reaches only its own project, at every port of a real Ray Serve: the base URL, the
endpoints' own prefixes, and names users choose."""

import httpx
import pytest

from support.endpoints import TEST_TEMPLATES, chat, new_key, status_is, wait_endpoint
from support.procs import wait_until
from support.tasks import running_with, start_one_off, wait_task


@pytest.fixture
def srv(servers):
    return servers(ROTA_TEMPLATES_PATH=str(TEST_TEMPLATES), ROTA_GATEWAY_REFRESH_S="0.5")


def replica_of(r: httpx.Response) -> str:
    return r.json()["choices"][0]["message"]["content"].split(":")[0]


def test_each_project_has_its_own_routing_keys_and_only_openai_routes_are_forwarded(srv, cluster):
    b = new_key(srv, "b", project="team-b")
    hb = {"Authorization": f"Bearer {b['key']}"}
    a_ep = srv.api.post("/endpoints", json={"name": "chat", "template": "echo-chat", "routing_key": "chat"}).json()
    r = srv.api.post("/endpoints", json={"name": "chat", "template": "echo-chat", "routing_key": "chat"}, headers=hb)
    assert r.status_code == 201, r.text  # the same routing key in another project: not "taken"
    b_ep = r.json()
    a_ep = wait_endpoint(srv, "chat", status_is("RUNNING"), what="A ready")
    b_ep = wait_endpoint(srv, "chat", status_is("RUNNING"), what="B ready", key=b["key"])
    assert a_ep["url"] != b_ep["url"]
    ra = wait_until(lambda: (r := chat(cluster.serve_url, srv.admin_key, "chat")).status_code == 200 and r, 30, what="A routed")
    rb = wait_until(lambda: (r := chat(cluster.serve_url, b["key"], "chat")).status_code == 200 and r, 30, what="B routed")
    assert replica_of(ra) in a_ep["replicas"]["ids"] and replica_of(rb) in b_ep["replicas"]["ids"]

    # Paths that climb out of /v1 never reach anything: the gateway forwards its allow-list only.
    for path in (
        f"/v1/%2e%2e/%2e%2e/%2e%2e/ep/{a_ep['id']}/invocations",
        f"/v1/..%2f..%2fep%2f{a_ep['id']}%2finvocations",
        "/v1/tokenize",
        "/v1/chat/completions/%2e%2e/%2e%2e/invocations",
    ):
        r = httpx.post(cluster.serve_url + path, json={"model": "chat", "messages": []}, headers=hb)
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url", (path, r.text)
    # Straight to A's prefix with B's key (or with A's admin key): refused on every path.
    for key in (b["key"], srv.admin_key):
        for path in ("/invocations", "/v1/chat/completions", "/anything"):
            r = httpx.post(a_ep["url"] + path, json={"model": "chat", "messages": []}, headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 401, (path, r.text)


def test_names_users_choose_never_clash_with_rotas_own(srv, cluster):
    # In 0.1, a task named like one of Rota's applications made Ray refuse every PUT.
    ep = srv.api.post("/endpoints", json={"name": "chat", "template": "echo-chat", "routing_key": "chat"}).json()
    tasks = [start_one_off(srv, name) for name in ("rota-gateway", f"ep-{ep['id']}")]
    for t in tasks:
        wait_task(srv, t["id"], running_with(1), what=f"{t['name']} deployed")
    wait_endpoint(srv, "chat", status_is("RUNNING"), what="the endpoint deployed alongside")
    assert wait_until(lambda: chat(cluster.serve_url, srv.admin_key, "chat").status_code == 200, 30, what="the base URL works")
    ours = {f"ep-{t['endpoint']['id']}" for t in tasks} | {"rota-gateway", f"ep-{ep['id']}"}
    wait_until(
        lambda: {a: s["status"] for a, s in cluster.applications().items() if a in ours} == dict.fromkeys(ours, "RUNNING"),
        30,
        what="every application RUNNING together",
    )
