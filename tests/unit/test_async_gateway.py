"""The base URL's side of async invocations (serve_apps/gateway.py): async, file and batch
calls go to the control plane with the caller's own key, on those paths only; the
dispatcher's calls (the gateway's token, on behalf of a project) are admitted only up to
the endpoint's async limit, so synchronous calls keep their room."""

import pytest

from support.gateway import KEY_A, chat, running_gateway


@pytest.fixture
def gw():
    with running_gateway() as client:
        for ep in client.cp.endpoints:
            ep["async_limit"] = 1
        client.app.table.endpoints[(1, "chat")]["async_limit"] = 1
        yield client


def dispatched(gw, project="1", priority="background", token="gw"):
    headers = {"x-rota-project": project, "x-rota-priority": priority, "x-request-id": "async_abc"}
    return chat(gw, key=token, headers=headers)


def test_async_files_and_batches_are_relayed_with_the_callers_key_only(gw):
    r = gw.post(
        "/v1/async/chat/completions",
        json={"model": "chat", "messages": []},
        headers={"Authorization": f"Bearer {KEY_A}", "x-rota-project": "2", "x-rota-priority": "background"},
    )
    assert r.status_code == 202 and r.json()["id"] == "async_1"
    method, url, headers = gw.upstream.relayed[-1]
    assert (method, url) == ("POST", "http://cp/v1/async/chat/completions")
    assert headers["authorization"] == f"Bearer {KEY_A}"
    assert "x-rota-project" not in headers and "x-rota-priority" not in headers  # never the caller's to say
    assert b'"model":"chat"' in gw.upstream.relayed_bodies[-1].replace(b" ", b"")

    gw.get("/v1/batches/batch_1?limit=5", headers={"Authorization": f"Bearer {KEY_A}"})
    assert gw.upstream.relayed[-1][:2] == ("GET", "http://cp/v1/batches/batch_1?limit=5")
    gw.post("/v1/files", files={"file": ("in.jsonl", b"{}")}, data={"purpose": "batch"})
    assert gw.upstream.relayed[-1][1] == "http://cp/v1/files"


@pytest.mark.parametrize("path", ["/v1/files/a.b", "/v1/asyncx", "/v1/batches/x%2F..%2Finternal"])
def test_nothing_else_is_relayed(gw, path):
    r = gw.get(path, headers={"Authorization": f"Bearer {KEY_A}"})
    assert r.status_code == 404 and gw.upstream.relayed == []


def test_the_dispatcher_speaks_for_one_project_with_the_gateways_token(gw):
    assert dispatched(gw).status_code == 200
    url, headers = gw.upstream.sent[-1]
    assert url.endswith("/ep/1/v1/chat/completions") and headers["x-request-id"] == "async_abc"
    record = gw.app.recorder.buffer[-1]
    assert record["project_id"] == 1 and record["key_prefix"] == "async" and record["request_id"] == "async_abc"
    assert dispatched(gw, project="2").status_code == 200  # project 2's own "chat"
    assert gw.upstream.sent[-1][0].endswith("/ep/2/v1/chat/completions")
    assert dispatched(gw, project="").status_code == 401
    assert dispatched(gw, token="not-the-token").status_code == 401


def test_a_users_key_cannot_claim_another_project(gw):
    r = chat(gw, headers={"x-rota-project": "2"})
    assert r.status_code == 200 and gw.upstream.sent[-1][0].endswith("/ep/1/v1/chat/completions")


def test_background_work_leaves_room_for_synchronous_calls(gw):
    adm = gw.app.admission
    assert gw.portal.call(adm.enter, "1/chat", 2)  # one synchronous call in flight: the async limit (1) is reached
    r = dispatched(gw)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
    assert chat(gw).status_code == 200  # a synchronous call still gets the second slot
    adm.leave("1/chat")
    assert dispatched(gw).status_code == 200


def test_the_console_speaks_for_its_signed_in_key_and_a_users_key_cannot_claim_one(gw):
    """The console's Playground sends with the gateway's token for the signed-in key: the
    record names that key. A user's own key cannot name another key that way."""
    headers = {"x-rota-project": "1", "x-rota-key-id": "7", "x-rota-key-prefix": "rota_abcdefg"}
    assert chat(gw, key="gw", headers=headers).status_code == 200
    record = gw.app.recorder.buffer[-1]
    assert (record["project_id"], record["key_id"], record["key_prefix"]) == (1, 7, "rota_abcdefg")
    assert chat(gw, key="gw", headers=headers | {"x-rota-key-prefix": "x" * 40, "x-rota-key-id": "7; drop"}).status_code == 200
    record = gw.app.recorder.buffer[-1]
    assert record["key_prefix"] == "x" * 16 and record["key_id"] is None  # bounded, and only a number
    assert chat(gw, headers={"x-rota-key-id": "99", "x-rota-key-prefix": "rota_forged"}).status_code == 200
    record = gw.app.recorder.buffer[-1]
    assert record["key_prefix"] != "rota_forged" and record["key_id"] != 99  # a user's key is who it is
