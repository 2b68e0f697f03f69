"""Async invocations and the Batch API end to end on a real Ray Serve cluster: the
official ``openai`` client at the base URL, the dispatcher sending through the gateway,
a webhook to a local receiver (signature checked, and again after a rotation), a second
project that sees none of it, and run_in_window work that waits, with its endpoint
asleep, for a task's one-off window."""

import json
import time

import httpx
import pytest
from openai import OpenAI

from rota.domain.webhooks import verify
from support.endpoints import TEST_TEMPLATES, new_key, status_is, wait_endpoint, wait_relayed, wait_routed
from support.procs import rota, wait_until
from support.tasks import local_in, zone_near_noon
from support.webhooks import signed_by, webhook_receiver

pytestmark = pytest.mark.integration


@pytest.fixture
def srv(servers):
    return servers(ROTA_TEMPLATES_PATH=str(TEST_TEMPLATES), ROTA_GATEWAY_REFRESH_S="0.5", ROTA_WEBHOOK_ALLOW_PRIVATE="true")


@pytest.fixture
def receiver():
    with webhook_receiver() as r:
        yield r


def test_a_batch_and_async_calls_through_the_base_url(srv, cluster, receiver):
    create_sleeper(srv)
    srv.api.post("/endpoints", json={"template": "echo-chat", "name": "bulk", "routing_key": "bulk"}).raise_for_status()
    wait_endpoint(srv, "bulk", status_is("RUNNING"), what="READY")
    wait_routed(cluster.serve_url, srv.admin_key, "bulk")
    wait_relayed(cluster.serve_url, srv.admin_key)
    client = OpenAI(base_url=f"{cluster.serve_url}/v1", api_key=srv.admin_key, max_retries=0)

    # A batch of 200 with the official client, unchanged.
    lines = [
        {
            "custom_id": f"q-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "bulk", "messages": [{"role": "user", "content": f"n{i}"}]},
        }
        for i in range(200)
    ]
    uploaded = client.files.create(file=("in.jsonl", "\n".join(map(json.dumps, lines)).encode()), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert batch.status == "in_progress" and batch.request_counts.total == 200
    done = wait_until(
        lambda: (b := client.batches.retrieve(batch.id)).status == "completed" and b, 120, 0.5, what="the batch completed"
    )
    assert (done.request_counts.completed, done.request_counts.failed) == (200, 0) and done.error_file_id is None
    out = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    assert [x["custom_id"] for x in out] == [f"q-{i}" for i in range(200)]
    assert all(x["response"]["body"]["choices"][0]["message"]["content"].endswith(f": n{i}") for i, x in enumerate(out))
    assert [b.id for b in client.batches.list()] == [batch.id]

    # A single async call, polled; another with a webhook, signed with the project's secret.
    auth = {"Authorization": f"Bearer {srv.admin_key}"}
    url, got = receiver
    body = {"model": "bulk", "messages": [{"role": "user", "content": "later"}]}
    polled = httpx.post(f"{cluster.serve_url}/v1/async/chat/completions", json=body, headers=auth)
    hooked = httpx.post(f"{cluster.serve_url}/v1/async/chat/completions", json={**body, "webhook_url": url}, headers=auth)
    assert polled.status_code == hooked.status_code == 202 and polled.json()["status"] == "queued"

    def answered(r):
        a = httpx.get(f"{cluster.serve_url}/v1/async/{r.json()['id']}", headers=auth).json()
        return a if a["status"] == "succeeded" else None

    a = wait_until(lambda: answered(polled), 60, 0.3, what="the async answer")
    assert a["response"]["choices"][0]["message"]["content"].endswith(": later") and a["attempts"] == 1
    wait_until(lambda: got, 60, 0.3, what="the webhook")
    sent, sig = got[0]
    secret = srv.api.get("/async/webhook-secret").json()["secret"]
    assert signed_by(secret, sig, sent)  # as a receiver checks it
    assert json.loads(sent)["id"] == hooked.json()["id"] and json.loads(sent)["status"] == "succeeded"
    assert wait_until(lambda: answered(hooked)["webhook"]["status"] == "delivered", 10, what="delivery recorded")

    # The secret rotated with the CLI: the next delivery is signed with the new secret and,
    # for the grace asked for, with the old one too; a receiver on either accepts it.
    rotated = json.loads(rota(srv, "async", "webhook-secret", "--rotate", "--previous-valid", "600", "-o", "json").stdout)
    assert rotated["secret"] != secret and rotated["previous_valid_until"]
    again = httpx.post(f"{cluster.serve_url}/v1/async/chat/completions", json={**body, "webhook_url": url}, headers=auth)
    wait_until(lambda: len(got) == 2, 60, 0.3, what="the second webhook")
    sent, sig = got[1]
    assert json.loads(sent)["id"] == again.json()["id"] and sig.count("sha256=") == 2
    for key in (secret, rotated["secret"]):
        assert signed_by(key, sig, sent) and verify(key, sig, sent, time.time()), key

    # Every dispatched call is in the request log under its async id.
    logged = wait_until(
        lambda: (r := srv.api.get(f"/requests/{a['id']}")).status_code == 200 and r.json(), 15, what="the request log"
    )
    assert logged["http.response.status_code"] == 200 and logged["rota.key_prefix"] == "async"

    # Another project's key, at the base URL: none of it exists.
    other = {"Authorization": f"Bearer {new_key(srv, 'b', project='team-b')['key']}"}
    time.sleep(1)  # the gateway's next table pull knows the new key
    for path in (f"/v1/async/{a['id']}", f"/v1/batches/{batch.id}", f"/v1/files/{done.output_file_id}/content"):
        assert httpx.get(f"{cluster.serve_url}{path}", headers=other).status_code == 404, path
    r = httpx.post(f"{cluster.serve_url}/v1/async/chat/completions", json=body, headers=other)
    assert r.status_code == 404 and r.json()["error"]["field"] == "model"

    run_in_window_waits_asleep_for_the_window_then_drains(srv, cluster)


def test_the_cli_submits_waits_and_prints_a_batchs_output(srv, cluster, tmp_path):
    srv.api.post("/endpoints", json={"template": "echo-chat", "name": "cli", "routing_key": "cli"}).raise_for_status()
    wait_endpoint(srv, "cli", status_is("RUNNING"), what="READY")
    wait_routed(cluster.serve_url, srv.admin_key, "cli")
    wait_relayed(cluster.serve_url, srv.admin_key)
    got = json.loads(rota(srv, "async", "submit", "cli", "-p", "from the cli", "--wait", "-o", "json").stdout)
    assert got["status"] == "succeeded" and got["response"]["choices"][0]["message"]["content"].endswith("from the cli")
    assert got["id"] in rota(srv, "async", "list").stdout
    lines = [
        {"custom_id": f"c{i}", "url": "/v1/completions", "method": "POST", "body": {"model": "cli", "prompt": f"p{i}"}}
        for i in range(3)
    ]
    (tmp_path / "b.jsonl").write_text("\n".join(map(json.dumps, lines)))
    batch = json.loads(rota(srv, "batches", "create", str(tmp_path / "b.jsonl"), "--wait", "-o", "json").stdout)
    assert batch["status"] == "completed" and batch["request_counts"]["completed"] == 3
    out = [json.loads(x) for x in rota(srv, "batches", "output", batch["id"]).stdout.splitlines()]
    assert [x["custom_id"] for x in out] == ["c0", "c1", "c2"]
    p = rota(srv, "batches", "output", batch["id"], "--errors", check=False)
    assert p.returncode != 0 and "no error file" in p.stdout + p.stderr


def create_sleeper(srv) -> None:
    """An endpoint that loads at deploy (a broken one fails at once), then sleeps after Ray
    Serve's look-back (~30 s: the test's other work runs meanwhile)."""
    body = {
        "template": "echo-chat",
        "name": "nightly",
        "routing_key": "nightly",
        "scaling": {"min_replicas": 0, "max_replicas": 1, "cooldown_period_s": 1},
    }
    srv.api.post("/endpoints", json=body).raise_for_status()


def run_in_window_waits_asleep_for_the_window_then_drains(srv, cluster) -> None:
    """run_in_window work on the sleeping endpoint stays queued, and the endpoint asleep,
    until a task's one-off entry opens a window; then it drains."""
    wait_endpoint(srv, "nightly", status_is("SLEEPING"), timeout=180, what="SLEEPING")
    wait_relayed(cluster.serve_url, srv.admin_key)
    auth = {"Authorization": f"Bearer {srv.admin_key}"}
    call = {"model": "nightly", "messages": [{"role": "user", "content": "later"}], "run_in_window": True}
    r = httpx.post(f"{cluster.serve_url}/v1/async/chat/completions", json=call, headers=auth)
    assert r.status_code == 422 and r.json()["error"]["field"] == "run_in_window"  # no window ahead yet

    # A one-off entry opens a window in a few seconds.
    tz = zone_near_noon()
    opens = local_in(tz, 12)
    entry = {"time": opens.strftime("%Y-%m-%dT%H:%M:%S"), "min_replicas": 1, "max_replicas": 1}
    task = {"name": "window", "endpoint": "nightly", "type": "one_off", "timezone": tz, "schedule": [entry]}
    srv.api.post("/tasks", json=task).raise_for_status()
    srv.api.post("/tasks/window/activate").raise_for_status()
    at = opens.replace(microsecond=0).timestamp()
    ids = []
    for _ in range(4):
        r = httpx.post(f"{cluster.serve_url}/v1/async/chat/completions", json=call, headers=auth)
        assert r.status_code == 202 and r.json()["window_opens_at"] == at, r.text
        ids.append(r.json()["id"])

    def answers():
        return [httpx.get(f"{cluster.serve_url}/v1/async/{i}", headers=auth).json() for i in ids]

    # Until the window: queued, and the endpoint stays asleep.
    while time.time() < at - 2:
        assert {a["status"] for a in answers()} == {"queued"}
        ep = srv.api.get("/endpoints/nightly").json()
        assert ep["status"] == "SLEEPING" and ep["replicas"]["running"] == 0, ep
        time.sleep(1)
    # Then the fire wakes it and they drain, none sent before the window opened.
    done = wait_until(lambda: (x := answers()) and all(a["status"] == "succeeded" for a in x) and x, 120, 0.5, what="drained")
    assert all(a["started_at"] >= at - 1 for a in done), [a["started_at"] - at for a in done]
