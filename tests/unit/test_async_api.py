"""Async invocations, files and batches on the control plane (real SQLite): submit, read,
cancel and list by project only; batches from JSONL in OpenAI's format; the dispatcher's
store side (claim, record once, retry, not-now, lease lapse, expiry, finalise in input
order); the dispatcher's sends and signed webhooks (an in-memory HTTP transport)."""

import asyncio
import hashlib
import hmac
import json
from datetime import datetime, timezone

import httpx
import pytest
from sqlalchemy import update

from rota.domain.webhooks import SIGNATURE_HEADER, signature, verify
from rota.services.async_queue import Claimed
from rota.services.leadership import Leadership
from rota.services.webhook_secrets import WebhookSecrets
from rota.store.async_tables import AsyncRequestRow
from rota.store.base import DEFAULT_PROJECT_ID
from rota.store.tables import EndpointRow

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def ep(client):
    made = client.post("/api/v1/endpoints", json={"name": "chat", "template": "echo-chat", "routing_key": "chat"})
    assert made.status_code == 201, made.text
    set_status(client, made.json()["id"], "RUNNING")
    return made.json()


def set_status(client, ep_id, status):
    with client.rt.db.session() as s:
        s.execute(update(EndpointRow).where(EndpointRow.id == ep_id).values(status=status))


@pytest.fixture
def other(client):
    key = client.post("/api/v1/keys", json={"name": "b", "project": "team-b"}).json()
    return {"Authorization": f"Bearer {key['key']}"}


def submit(client, body=None, path="/v1/async/chat/completions", **kw):
    return client.post(path, json=body if body is not None else CHAT, **kw)


def jsonl(lines) -> bytes:
    return ("\n".join(json.dumps(x) for x in lines) + "\n").encode()


def line(i, model="chat", url="/v1/chat/completions", **body):
    return {"custom_id": f"req-{i}", "method": "POST", "url": url, "body": {"model": model, "messages": [], **body}}


def upload(client, content: bytes, headers=None):
    r = client.post("/v1/files", files={"file": ("in.jsonl", content)}, data={"purpose": "batch"}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["id"]


def drain(client, answer=lambda c: (200, json.dumps({"echo": c.id}).encode())):
    """One dispatcher look, every claimed request answered by ``answer``."""
    rt = client.rt
    claims, _ = rt.dispatcher.tick()
    for c in claims:
        status, body = answer(c)
        rt.async_queue.record(c, status, body, None, rt.invocations.clock())
    rt.async_queue.housekeeping(rt.invocations.clock())
    return claims


def test_submit_then_the_answer_once_it_is_sent(client, ep):
    r = submit(client)
    assert r.status_code == 202, r.text
    a = r.json()
    assert (a["status"], a["model"], a["url"], a["attempts"]) == ("queued", "chat", "/v1/chat/completions", 0)
    claims = drain(client)
    assert [c.id for c in claims] == [a["id"]] and json.loads(claims[0].body) == CHAT
    done = client.get(f"/v1/async/{a['id']}").json()
    assert (done["status"], done["status_code"], done["attempts"]) == ("succeeded", 200, 1)
    assert done["response"] == {"echo": a["id"]} and done["finished_at"] >= done["started_at"]
    assert client.get("/v1/async").json()["data"][0]["id"] == a["id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": []}, "model"),
        ({**CHAT, "stream": True}, "stream"),
        ({**CHAT, "webhook_url": "ftp://x"}, "webhook_url"),
        ({**CHAT, "webhook_url": "http://x/a\u0000b"}, "webhook_url"),  # no store takes a NUL in text
        ({**CHAT, "run_in_window": "yes"}, "run_in_window"),
        ({**CHAT, "model": "nope"}, "model"),
    ],
)
def test_bad_submissions_name_the_field_and_queue_nothing(client, ep, body, field):
    r = submit(client, body)
    assert r.status_code in (404, 422) and r.json()["error"]["field"] == field, r.text
    assert client.get("/v1/async").json()["data"] == []


def test_a_body_that_is_not_json_is_a_422(client, ep):
    r = client.post("/v1/async/completions", content=b"[1, 2", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "body"


def test_another_projects_key_sees_nothing_and_cannot_reach_our_endpoint(client, ep, other):
    mine = submit(client).json()["id"]
    for method, path in (("GET", f"/v1/async/{mine}"), ("DELETE", f"/v1/async/{mine}")):
        assert client.request(method, path, headers=other).status_code == 404
    assert client.get("/v1/async", headers=other).json()["data"] == []
    r = submit(client, headers=other)  # their "chat" does not exist
    assert r.status_code == 404 and r.json()["error"]["field"] == "model"
    fid = upload(client, jsonl([line(1)]))
    for path in (f"/v1/files/{fid}", f"/v1/files/{fid}/content"):
        assert client.get(path, headers=other).status_code == 404
    batch = client.post("/v1/batches", json={"input_file_id": fid, "endpoint": "/v1/chat/completions"}).json()
    r = client.post("/v1/batches", json={"input_file_id": fid, "endpoint": "/v1/chat/completions"}, headers=other)
    assert r.status_code == 404 and r.json()["error"]["field"] == "input_file_id"
    assert client.get(f"/v1/batches/{batch['id']}", headers=other).status_code == 404
    assert client.post(f"/v1/batches/{batch['id']}/cancel", headers=other).status_code == 404
    assert client.get("/v1/batches", headers=other).json()["data"] == []
    theirs = client.get("/api/v1/async/webhook-secret", headers=other).json()["secret"]
    assert theirs != client.get("/api/v1/async/webhook-secret").json()["secret"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/async/chat/completions"),
        ("POST", "/v1/async/completions"),
        ("GET", "/v1/async"),
        ("GET", "/v1/async/async_x"),
        ("DELETE", "/v1/async/async_x"),
        ("GET", "/api/v1/async/webhook-secret"),
        ("POST", "/api/v1/async/webhook-secret/rotate"),
        ("POST", "/v1/files"),
        ("GET", "/v1/files"),
        ("GET", "/v1/files/file_x/content"),
        ("POST", "/v1/batches"),
        ("GET", "/v1/batches"),
        ("GET", "/v1/batches/batch_x"),
        ("POST", "/v1/batches/batch_x/cancel"),
    ],
)
def test_every_route_needs_a_key(client, method, path):
    assert client.request(method, path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.request(method, path, headers={"Authorization": ""}).status_code == 401


def test_cancel_only_while_queued(client, ep):
    a = submit(client).json()["id"]
    assert client.delete(f"/v1/async/{a}").json()["status"] == "cancelled"
    assert drain(client) == []  # never sent
    r = client.delete(f"/v1/async/{a}")
    assert r.status_code == 409 and r.json()["error"]["field"] == "id"


def test_a_retry_after_a_5xx_then_failed_after_the_last_attempt(client, ep):
    inv, queue = client.rt.invocations, client.rt.async_queue
    a = submit(client).json()["id"]
    for attempt in range(1, client.rt.settings.async_max_attempts + 1):
        with client.rt.db.session() as s:  # no backoff wait in the test
            s.execute(update(AsyncRequestRow).values(not_before=0))
        (c,) = drain(client, lambda c: (500, b'{"error": "boom"}'))
        assert c.attempt == attempt
    got = client.get(f"/v1/async/{a}").json()
    assert (got["status"], got["attempts"], got["status_code"]) == ("failed", 3, 500)
    assert queue.waiting(inv.clock() + 3600) == {}


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (429, b"{}"),
        (503, b'{"error": {"code": "endpoint_waking"}}'),
        (404, b'{"error": {"code": "model_not_found"}}'),  # the gateway's table is a moment behind
    ],
)
def test_not_now_is_not_an_attempt(client, ep, status, body):
    a = submit(client).json()["id"]
    drain(client, lambda c: (status, body))
    got = client.get(f"/v1/async/{a}").json()
    assert (got["status"], got["attempts"]) == ("queued", 0)


def test_a_4xx_of_the_engine_is_the_answer(client, ep):
    a = submit(client).json()["id"]
    with client.rt.db.session() as s:
        s.execute(update(AsyncRequestRow).values(not_before=0))
    drain(client, lambda c: (400, b'{"error": {"message": "bad"}}'))
    got = client.get(f"/v1/async/{a}").json()
    assert (got["status"], got["status_code"], got["response"]) == ("failed", 400, {"error": {"message": "bad"}})


def test_an_answer_is_recorded_once_even_when_a_lapsed_send_comes_back(client, ep):
    inv, queue = client.rt.invocations, client.rt.async_queue
    a = submit(client).json()["id"]
    now = inv.clock()
    (first,) = queue.claim(ep["id"], 5, now, True)
    queue.housekeeping(now + client.rt.settings.async_timeout_s + 31)  # its lease lapsed: queued again
    (second,) = queue.claim(ep["id"], 5, now + 700, True)
    assert second.attempt == 2
    assert queue.record(second, 200, b'{"n": 2}', None, now + 701) == "done"
    assert queue.record(first, 200, b'{"n": 1}', None, now + 702) == "stale"
    assert queue.record(second, 200, b'{"n": 3}', None, now + 703) == "stale"
    assert client.get(f"/v1/async/{a}").json()["response"] == {"n": 2}


def test_stopped_endpoints_hold_their_work_and_deleted_ones_fail_it(client, ep):
    a = submit(client).json()["id"]
    set_status(client, ep["id"], "STOPPED")
    assert drain(client) == [] and client.get(f"/v1/async/{a}").json()["status"] == "queued"
    client.delete("/api/v1/endpoints/chat").raise_for_status()
    drain(client)
    got = client.get(f"/v1/async/{a}").json()
    assert (got["status"], got["error"]) == ("failed", "the endpoint was deleted")


def test_work_is_sent_only_up_to_the_async_limit(client, ep):
    for _ in range(20):
        submit(client)
    limit = client.rt.cluster.targets([ep["id"]])[ep["id"]]["async_limit"]
    rt = client.rt
    claims, _ = rt.dispatcher.tick()
    assert len(claims) == limit < 20
    for c in claims:
        rt.dispatcher.inflight[c.endpoint_id] += 1
    assert rt.dispatcher.tick()[0] == []  # no room until sends end


def test_a_queue_has_a_depth_limit(client, ep):
    client.rt.settings.async_max_depth = 2
    assert submit(client).status_code == submit(client).status_code == 202
    r = submit(client)
    assert r.status_code == 429 and r.json()["error"]["code"] == "queue_full"


def test_expired_requests_are_not_sent(client, ep):
    a = submit(client).json()
    client.rt.async_queue.housekeeping(a["expires_at"] + 1)
    assert client.get(f"/v1/async/{a['id']}").json()["status"] == "expired"


def test_run_in_window_waits_for_the_next_scheduled_window(client, ep):
    client.patch("/api/v1/endpoints/chat", json={"scaling": {"min_replicas": 0, "max_replicas": 1}}).raise_for_status()
    set_status(client, ep["id"], "SLEEPING")
    r = submit(client, {**CHAT, "run_in_window": True})
    assert r.status_code == 422 and r.json()["error"]["field"] == "run_in_window"  # no window ahead
    task = {
        "name": "mornings",
        "endpoint": "chat",
        "type": "daily",
        "timezone": "Europe/Paris",
        "schedule": [
            {"time": "08:00", "min_replicas": 1, "max_replicas": 1},
            {"time": "18:00", "min_replicas": 0, "max_replicas": 1},
        ],
    }
    client.post("/api/v1/tasks", json=task).raise_for_status()
    client.post("/api/v1/tasks/mornings/activate").raise_for_status()
    r = submit(client, {**CHAT, "run_in_window": True})
    assert r.status_code == 202, r.text
    # 08:00 UTC now (the test clock): the next 08:00 in Paris is tomorrow 07:00 UTC.
    now = client.rt.invocations.clock()
    assert r.json()["window_opens_at"] == now - 3600 + 86_400
    plain = submit(client).json()["id"]
    assert [c.id for c in drain(client)] == [plain]  # a plain one wakes the endpoint; the other waits
    set_status(client, ep["id"], "RUNNING")  # the window opened
    assert [c.id for c in drain(client)] == [r.json()["id"]]


def test_a_batch_runs_every_line_and_writes_its_output_in_input_order(client, ep):
    fid = upload(client, jsonl([line(i) for i in range(7)]))
    b = client.post("/v1/batches", json={"input_file_id": fid, "endpoint": "/v1/chat/completions", "metadata": {"k": "v"}})
    assert b.status_code == 200, b.text
    batch = b.json()
    assert (batch["status"], batch["request_counts"], batch["metadata"]) == (
        "in_progress",
        {"total": 7, "completed": 0, "failed": 0},
        {"k": "v"},
    )
    # Answered out of order, one line failing for good with a 400.
    claims = client.rt.dispatcher.tick()[0]
    for c in reversed(claims):
        failed = c.id.endswith("_3")
        client.rt.async_queue.record(c, 400 if failed else 200, json.dumps({"c": c.id}).encode(), None, 1e10)
    while client.get(f"/v1/batches/{batch['id']}").json()["status"] == "in_progress":
        drain(client)
    done = client.get(f"/v1/batches/{batch['id']}").json()
    assert done["status"] == "completed" and done["request_counts"] == {"total": 7, "completed": 6, "failed": 1}
    out = [json.loads(x) for x in client.get(f"/v1/files/{done['output_file_id']}/content").text.splitlines()]
    assert [x["custom_id"] for x in out] == [f"req-{i}" for i in (0, 1, 2, 4, 5, 6)]
    assert all(x["response"]["status_code"] == 200 and x["error"] is None for x in out)
    (err,) = [json.loads(x) for x in client.get(f"/v1/files/{done['error_file_id']}/content").text.splitlines()]
    assert err["custom_id"] == "req-3" and err["response"]["status_code"] == 400 and err["error"]["code"]
    assert client.get("/v1/async").json()["data"] == []  # batch lines are the batch's, not single requests


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([line(1), line(1)], "line 2: custom_id 'req-1' appears twice"),
        ([{**line(1), "custom_id": "a\u0000b"}], "line 1: 'custom_id'"),
        ([line(1), line(2, model="other")], "line 2: every line"),
        ([line(1), {"custom_id": "x", "method": "GET", "url": "/v1/chat/completions", "body": {}}], "line 2: 'method'"),
        ([line(1, stream=True)], "line 1: an async answer"),
        ([], "holds no requests"),
    ],
)
def test_a_bad_batch_file_names_its_line_and_queues_nothing(client, ep, lines, message):
    fid = upload(client, jsonl(lines) if lines else b"\n")
    r = client.post("/v1/batches", json={"input_file_id": fid, "endpoint": "/v1/chat/completions"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "input_file_id" and message in r.json()["error"]["message"]
    assert client.get("/v1/batches").json()["data"] == []


def test_batch_options_are_checked(client, ep):
    fid = upload(client, jsonl([line(1)]))
    for body, field in (
        ({"input_file_id": fid, "endpoint": "/v1/embeddings"}, "endpoint"),
        ({"input_file_id": fid, "endpoint": "/v1/completions"}, "endpoint"),
        ({"input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "2d"}, "completion_window"),
        ({"input_file_id": "file_nope", "endpoint": "/v1/chat/completions"}, "input_file_id"),
    ):
        r = client.post("/v1/batches", json=body)
        assert r.status_code in (404, 422) and r.json()["error"]["field"] == field, r.text
    r = client.post("/v1/files", files={"file": ("x", b"{}")}, data={"purpose": "fine-tune"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "purpose"


def test_cancelling_a_batch_cancels_what_is_queued(client, ep):
    fid = upload(client, jsonl([line(i) for i in range(3)]))
    batch = client.post("/v1/batches", json={"input_file_id": fid, "endpoint": "/v1/chat/completions"}).json()
    assert client.post(f"/v1/batches/{batch['id']}/cancel").json()["status"] == "cancelling"
    drain(client)
    got = client.get(f"/v1/batches/{batch['id']}").json()
    assert got["status"] == "cancelled" and got["output_file_id"] is None
    assert client.post(f"/v1/batches/{batch['id']}/cancel").status_code == 409


def test_a_large_async_body_is_allowed_up_to_its_own_limit(client, ep):
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * (2 * 1024 * 1024)}]}
    assert submit(client, big).status_code == 202  # over the API's 1 MiB, under async's 20 MiB
    assert client.post("/api/v1/endpoints", json={"name": "x" * (2 * 1024 * 1024)}).status_code == 413


def test_the_dispatcher_sends_through_the_base_url_on_behalf_of_the_project(client, ep):
    rt = client.rt
    a = submit(client).json()["id"]
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"choices": []})

    async def run():
        rt.dispatcher._http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        claims, _ = rt.dispatcher.tick()
        await asyncio.gather(*map(rt.dispatcher._send, claims))

    asyncio.run(run())
    (req,) = seen
    assert str(req.url) == f"{rt.settings.serve_url}/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {rt.internal_token}"
    assert (req.headers["x-rota-project"], req.headers["x-rota-priority"], req.headers["x-request-id"]) == ("1", "background", a)
    assert client.get(f"/v1/async/{a}").json()["status"] == "succeeded"


def hooks_through(rt, handler):
    """The dispatcher's webhook client answered by ``handler`` (no network)."""
    rt.dispatcher._hooks_http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    rt.dispatcher._hook_slots = asyncio.Semaphore(4)


def test_webhooks_are_signed_with_their_time_and_retried(client, ep):
    rt = client.rt
    a = submit(client, {**CHAT, "webhook_url": "http://localhost:8999/x?y=1"}).json()["id"]
    drain(client)
    answers = [500, 200]
    got = []

    def handler(request: httpx.Request) -> httpx.Response:
        got.append(request)
        return httpx.Response(answers.pop(0))

    secret = client.get("/api/v1/async/webhook-secret").json()["secret"]
    rt.dispatcher.allow_private = True

    async def deliver(at):
        hooks_through(rt, handler)
        for hook in rt.async_queue.hooks_due(at):
            await rt.dispatcher._deliver(hook)

    now = rt.invocations.clock()
    asyncio.run(deliver(now))
    assert client.get(f"/v1/async/{a}").json()["webhook"]["status"] == "pending"
    asyncio.run(deliver(now + 10))
    hook = client.get(f"/v1/async/{a}").json()["webhook"]
    assert (hook["status"], hook["attempts"]) == ("delivered", 2)
    sent = got[-1]
    # Sent to the address the name resolved to and was checked at; the name kept as Host.
    assert sent.url.host in ("127.0.0.1", "::1") and sent.url.port == 8999 and sent.url.query == b"y=1"
    assert sent.headers["host"] == "localhost:8999"
    at = int(sent.headers[SIGNATURE_HEADER].split(",")[0].removeprefix("t="))
    assert sent.headers[SIGNATURE_HEADER] == signature([secret], sent.content, at) and json.loads(sent.content)["id"] == a
    expected = hmac.new(secret.encode(), f"{at}.".encode() + sent.content, hashlib.sha256).hexdigest()
    assert sent.headers[SIGNATURE_HEADER] == f"t={at},sha256={expected}"  # as a receiver computes it


def delivered_header(client, url="http://localhost:8999/x"):
    """The signature header of one webhook delivery, sent now."""
    rt = client.rt
    submit(client, {**CHAT, "webhook_url": url})
    drain(client)
    got = []
    hooks_through(rt, lambda request: got.append(request) or httpx.Response(200))
    rt.dispatcher.allow_private = True

    async def deliver():
        for hook in rt.async_queue.hooks_due(rt.invocations.clock() + 1):
            await rt.dispatcher._deliver(hook)

    asyncio.run(deliver())
    assert len(got) == 1
    return got[0].headers[SIGNATURE_HEADER], got[0].content


def test_a_rotated_webhook_secret_signs_beside_the_old_one_until_its_grace_ends(client, ep, other):
    rt = client.rt
    old = client.get("/api/v1/async/webhook-secret").json()
    theirs = client.get("/api/v1/async/webhook-secret", headers=other).json()["secret"]
    assert old["previous_valid_until"] is None
    r = client.post("/api/v1/async/webhook-secret/rotate", json={"previous_valid_s": 3600})
    assert r.status_code == 200, r.text
    new = r.json()
    assert new["secret"] != old["secret"] and len(new["secret"]) == 64
    until = datetime.fromisoformat(new["previous_valid_until"]).timestamp()
    assert until == rt.invocations.clock() + 3600
    assert client.get("/api/v1/async/webhook-secret").json() == new  # stored, not made up per call
    assert client.get("/api/v1/async/webhook-secret", headers=other).json()["secret"] == theirs  # only this project's

    header, body = delivered_header(client)
    assert header.count("sha256=") == 2  # receivers on either secret accept it
    now = rt.dispatcher.clock()
    assert verify(new["secret"], header, body, now) and verify(old["secret"], header, body, now)
    assert not verify(theirs, header, body, now)

    # Past the grace the old secret no longer signs.
    rt.webhook_secrets.clock = lambda: until + 1
    header, body = delivered_header(client)
    assert header.count("sha256=") == 1 and verify(new["secret"], header, body, now)
    assert not verify(old["secret"], header, body, now)

    # Rotating again with no grace: only the newest signs, at once; it survives a new runtime.
    newest = client.post("/api/v1/async/webhook-secret/rotate", json={"previous_valid_s": 0}).json()
    assert newest["previous_valid_until"] is None and newest["secret"] not in (new["secret"], old["secret"])
    assert WebhookSecrets(rt.db, rt.cipher).signing(DEFAULT_PROJECT_ID) == [newest["secret"]]
    by_default = client.post("/api/v1/async/webhook-secret/rotate").json()  # no body: a day's grace
    assert datetime.fromisoformat(by_default["previous_valid_until"]).timestamp() == until + 1 + 86_400


@pytest.mark.parametrize("bad", [-1, 604_801, "3600", 1.5, None])
def test_a_bad_rotation_grace_is_a_422_and_the_secret_stays(client, bad):
    before = client.get("/api/v1/async/webhook-secret").json()
    r = client.post("/api/v1/async/webhook-secret/rotate", json={"previous_valid_s": bad})
    assert r.status_code == 422 and r.json()["error"]["field"] == "previous_valid_s", r.text
    assert client.get("/api/v1/async/webhook-secret").json() == before


def test_verify_refuses_old_times_and_malformed_headers():
    body = b'{"id": "async_1"}'
    header = signature(["k"], body, 1_000)
    assert verify("k", header, body, 1_100) and not verify("k", header, body, 1_400)  # 5 minutes' tolerance
    assert not verify("k", header, body + b" ", 1_000)
    for bad in ("", "sha256=x", "t=abc,sha256=x", f"t=1000,t=1000,{header.split(',')[1]}", "t=²,sha256=é", "t=" + "9" * 5000):
        assert not verify("k", bad, body, 1_000), bad


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/hook", "http://localhost/x", "http://[::ffff:10.0.0.1]/", "http://169.254.169.254/latest"]
)
def test_webhooks_to_private_addresses_are_refused(client, ep, url):
    rt = client.rt
    hooks_through(rt, lambda r: pytest.fail("a private address was called"))
    a = submit(client, {**CHAT, "webhook_url": url}).json()["id"]
    drain(client)
    for _ in range(6):
        for hook in rt.async_queue.hooks_due(rt.invocations.clock() + 10_000):
            asyncio.run(rt.dispatcher._deliver(hook))
    hook = client.get(f"/v1/async/{a}").json()["webhook"]
    assert hook["status"] == "failed" and "private address" in hook["last_error"]


def test_a_line_of_a_batch_is_cancelled_with_its_batch_only(client, ep):
    fid = upload(client, jsonl([line(1)]))
    batch = client.post("/v1/batches", json={"input_file_id": fid, "endpoint": "/v1/chat/completions"}).json()
    r = client.delete(f"/v1/async/{batch['id']}_0")
    assert r.status_code == 409 and "cancel the batch" in r.json()["error"]["message"]


def test_a_cancelled_batchs_line_that_failed_is_not_sent_again(client, ep):
    fid = upload(client, jsonl([line(i) for i in range(2)]))
    batch = client.post("/v1/batches", json={"input_file_id": fid, "endpoint": "/v1/chat/completions"}).json()
    rt = client.rt
    claims, _ = rt.dispatcher.tick()
    client.post(f"/v1/batches/{batch['id']}/cancel").raise_for_status()
    for c in claims:  # both were being sent: both fail with a 5xx (a retry, but the batch is cancelled)
        rt.async_queue.record(c, 502, b"{}", None, rt.invocations.clock())
    rt.async_queue.housekeeping(rt.invocations.clock())
    assert rt.dispatcher.tick()[0] == []
    got = client.get(f"/v1/batches/{batch['id']}").json()
    assert got["status"] == "cancelled"


def test_claims_are_plain_values():
    c = Claimed("async_x", 1, 2, "/v1/completions", b"{}", 1)
    assert (c.project_id, c.endpoint_id) == (1, 2)


def test_queues_are_in_the_metrics(client, ep):
    for _ in range(2):
        submit(client)
    text = client.get("/metrics").text
    assert 'rota_async_queued{endpoint="chat",project="default"} 2.0' in text
    assert 'rota_async_running{endpoint="chat",project="default"} 0.0' in text
    assert "rota_async_oldest_queued_seconds" in text


def test_an_endpoints_answer_shows_its_queue_and_throughput(client, ep):
    submit(client)
    q = client.get("/api/v1/endpoints/chat").json()["async_queue"]
    assert (q["queued"], q["running"], q["done_last_min"]) == (1, 0, 0) and q["oldest_queued_s"] is not None
    for _ in range(2):
        submit(client)
    codes = iter([200, 400, 200])
    drain(client, answer=lambda c: (next(codes), b"{}"))
    q = client.get("/api/v1/endpoints/chat").json()["async_queue"]
    assert (q["queued"], q["running"], q["done_last_min"]) == (0, 0, 3)  # answered, a 4xx included
    assert 'rota_async_done_last_minute{endpoint="chat",project="default"} 3.0' in client.get("/metrics").text
    later = datetime.fromtimestamp(client.rt.invocations.clock() + 61, timezone.utc)
    client.rt.endpoints.clock = lambda: later
    assert client.get("/api/v1/endpoints/chat").json()["async_queue"]["done_last_min"] == 0  # a minute later


def test_a_new_leader_requeues_what_the_old_one_was_sending_without_counting_it(client, ep):
    rt = client.rt
    inv, queue = rt.invocations, rt.async_queue
    a = submit(client).json()["id"]
    (cut,) = queue.claim(ep["id"], 5, inv.clock(), True)
    rt._lead()  # this process is elected (after a leader that died sending it)
    rt._follow()
    got = client.get(f"/v1/async/{a}").json()
    assert (got["status"], got["attempts"]) == ("queued", 0)
    assert queue.record(cut, 200, b"{}", None, inv.clock()) == "stale"  # the old leader's answer, if it comes
    (again,) = queue.claim(ep["id"], 5, inv.clock(), True)
    assert again.attempt == 1 and queue.record(again, 200, b"{}", None, inv.clock()) == "done"


def test_an_endpoints_async_queue_is_switched_off_and_sized_by_a_patch(client, ep, other):
    r = client.patch("/api/v1/endpoints/chat", json={"async_invocations": {"max_depth": 1}})
    assert r.status_code == 200 and r.json()["async_invocations"] == {"enabled": True, "max_depth": 1}
    assert client.get("/api/v1/endpoints/chat/events").json()[-1]["data"]["rolling"] is False  # in place
    assert submit(client).status_code == 202
    r = submit(client)
    assert r.status_code == 429 and r.json()["error"]["code"] == "queue_full" and "at most 1" in r.json()["error"]["message"]
    r = client.post(
        "/v1/batches",
        json={"input_file_id": upload(client, jsonl([line(1)])), "endpoint": "/v1/chat/completions", "completion_window": "24h"},
    )
    assert r.status_code == 429 and r.json()["error"]["field"] == "input_file_id"
    # Off: submits are refused; what is queued still runs. Only the fields sent change.
    r = client.patch("/api/v1/endpoints/chat", json={"async_invocations": {"enabled": False}})
    assert r.json()["async_invocations"] == {"enabled": False, "max_depth": 1}
    r = submit(client)
    assert r.status_code == 409 and r.json()["error"]["field"] == "model" and "async_invocations are off" in r.text
    drain(client)
    listed = client.get("/v1/async").json()["data"]
    assert [x["status"] for x in listed] == ["succeeded"]
    # Bad values name their field and change nothing; another project cannot touch it.
    for bad, field in (({"max_depth": -1}, "async_invocations.max_depth"), ({"enabled": "no"}, "async_invocations.enabled")):
        r = client.patch("/api/v1/endpoints/chat", json={"async_invocations": bad})
        assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text
    assert client.patch("/api/v1/endpoints/chat", json={"async_invocations": {"enabled": True}}, headers=other).status_code == 404
    assert client.get("/api/v1/endpoints/chat").json()["async_invocations"] == {"enabled": False, "max_depth": 1}
    # Back on, with the default depth: submits queue again.
    client.patch("/api/v1/endpoints/chat", json={"async_invocations": {"enabled": True, "max_depth": None}})
    assert submit(client).status_code == submit(client).status_code == 202


def test_an_endpoints_own_depth_only_lowers_the_servers_and_off_refuses_batches_too(client, ep):
    client.rt.settings.async_max_depth = 2
    client.patch("/api/v1/endpoints/chat", json={"async_invocations": {"max_depth": 1_000_000}})
    assert submit(client).status_code == submit(client).status_code == 202
    assert "at most 2" in submit(client).json()["error"]["message"]
    for bad in ({"max_depth": 0}, {"max_depth": "5"}):
        r = client.patch("/api/v1/endpoints/chat", json={"async_invocations": bad})
        assert r.status_code == 422 and r.json()["error"]["field"] == "async_invocations.max_depth", r.text
    client.patch("/api/v1/endpoints/chat", json={"async_invocations": {"enabled": False}})
    file_id = upload(client, jsonl([line(1)]))
    r = client.post(
        "/v1/batches", json={"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    )
    assert r.status_code == 409 and r.json()["error"]["field"] == "input_file_id"


def test_applying_a_manifest_that_does_not_mention_the_queue_leaves_it_as_it_is(client, ep):
    from rota.cli.client import Api
    from rota.cli.manifest import apply_manifest
    from rota.domain.manifest import Manifest

    api = Api("http://testserver")
    api.http = client
    client.patch("/api/v1/endpoints/chat", json={"async_invocations": {"enabled": False, "max_depth": 7}})
    plain = {"name": "chat", "template": "echo-chat", "routing_key": "chat"}
    apply_manifest(api, Manifest.model_validate({"endpoints": [plain]}))
    assert client.get("/api/v1/endpoints/chat").json()["async_invocations"] == {"enabled": False, "max_depth": 7}
    said = {**plain, "async_invocations": {"max_depth": None}}  # a manifest that says: the default depth
    apply_manifest(api, Manifest.model_validate({"endpoints": [said]}))
    assert client.get("/api/v1/endpoints/chat").json()["async_invocations"] == {"enabled": False, "max_depth": None}


def test_files_are_listed_newest_first_a_page_at_a_time_by_project(client, ep, other, clock):
    ids = []
    for i in range(5):
        ids.append(upload(client, jsonl([line(i)])))
        clock.advance(seconds=1)
    first = client.get("/v1/files", params={"limit": 2}).json()
    assert [f["id"] for f in first["data"]] == ids[::-1][:2] and first["has_more"] is True
    assert first["first_id"] == ids[-1] and first["last_id"] == ids[-2]
    rest = client.get("/v1/files", params={"limit": 10, "after": first["last_id"]}).json()
    assert [f["id"] for f in rest["data"]] == ids[::-1][2:] and rest["has_more"] is False
    assert client.get("/v1/files", params={"purpose": "batch_output"}).json()["data"] == []
    # Another project sees none of them, and cannot page from one of them.
    assert client.get("/v1/files", headers=other).json()["data"] == []
    r = client.get("/v1/files", params={"after": ids[0]}, headers=other)
    assert r.status_code == 404 and r.json()["error"]["field"] == "after"
    assert client.get("/v1/files", params={"limit": 0}).status_code == 422


def test_only_the_leader_dispatches(client, ep):
    rt = client.rt
    a = submit(client).json()["id"]
    rt.leadership.candidate.alone = False  # as on PostgreSQL: another control plane can lead
    leader = Leadership(rt.db, "the leader", alone=True)
    assert leader.acquire() and not rt.leadership.acquire()
    assert rt.dispatcher.tick() == ([], [])  # a standby sends nothing
    assert client.get(f"/v1/async/{a}").json()["status"] == "queued"
    leader.stop()  # lets the lease go
    assert rt.leadership.acquire()
    (claimed,) = rt.dispatcher.tick()[0]
    assert claimed.id == a
