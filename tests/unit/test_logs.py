"""Replica logs: parsed and merged in time order (pure), then read through the API with
Ray's state and log APIs faked at the boundary."""

import json
import threading
import time
from datetime import datetime, timezone

import pytest

from rota.domain.logs import Source, merge, parse

SERVE_A = """:job_id:01000000
:actor_name:ServeReplica:ep-1:Echo
INFO 2026-11-23 10:00:01,500 ep-1_Echo aaa -- Started HTTP server on port 30000
INFO 2026-11-23 10:00:05,000 ep-1_Echo aaa 7655 -- POST /ep/1/v1/chat/completions 200 0.7ms
"""
VLLM_A = """INFO 11-23 10:00:02 [engine.py:42] engine ready
Traceback (most recent call last):
  File "x.py", line 1
ERROR 11-23 10:00:06 [serving.py:9] boom
"""
VLLM_B = "(APIServer pid=77) INFO 11-23 10:00:03 [engine.py:42] second replica ready\n"


def test_lines_take_their_own_time_or_the_one_before_and_merge_in_order():
    a_err = parse(SERVE_A, Source("aaa", "err"), 2026)
    a_out = parse(VLLM_A, Source("aaa", "out"), 2026)
    b_out = parse(VLLM_B, Source("bbb", "out"), 2026)
    assert [ln.line[:4] for ln in a_err] == ["INFO", "INFO"]  # Ray's markers are not lines
    assert a_out[1].time == a_out[2].time == datetime(2026, 11, 23, 10, 0, 2, tzinfo=timezone.utc)  # a traceback
    assert (a_out[0].level, a_out[3].level, b_out[0].level) == ("INFO", "ERROR", "INFO")
    merged = merge([a_err, a_out, b_out])
    assert [(ln.replica, ln.line.split()[-1]) for ln in merged] == [
        ("aaa", "30000"),
        ("aaa", "ready"),
        ("aaa", "last):"),
        ("aaa", "1"),
        ("bbb", "ready"),
        ("aaa", "0.7ms"),
        ("aaa", "boom"),
    ]


@pytest.fixture
def ep(client):
    made = client.post("/api/v1/endpoints", json={"name": "chat", "template": "echo-chat", "routing_key": "chat"})
    assert made.status_code == 201, made.text
    return made.json()


def token_of(client, name: str) -> str:
    table = client.get("/internal/v1/routing", headers={"Authorization": f"Bearer {client.rt.internal_token}"}).json()
    return next(e["token"] for e in table["endpoints"] if e["routing_key"] == name)


def test_an_endpoints_logs_merged_filtered_and_without_its_secrets(client, ep, ray_logs):
    app = f"ep-{ep['id']}"
    secret = token_of(client, "chat")
    ray_logs.add(app, "aaa", out=VLLM_A + f"INFO 11-23 10:00:07 [x.py:1] args: api_key={secret}\n", err=SERVE_A)
    ray_logs.add(app, "bbb", out=VLLM_B)
    ray_logs.add("ep-999", "zzz", out="INFO 11-23 10:00:04 [x.py:1] another endpoint's line\n")
    r = client.get("/api/v1/endpoints/chat/logs")
    assert r.status_code == 200, r.text
    lines = r.json()["lines"]
    assert [ln["replica"] for ln in lines] == ["aaa", "aaa", "aaa", "aaa", "bbb", "aaa", "aaa", "aaa"]
    assert "another endpoint" not in r.text and secret not in r.text and lines[-1]["line"].endswith("api_key=***")
    assert lines[0]["stream"] == "err" and lines[0]["time"].startswith("2026-11-23T10:00:01.5")

    def got(**params):
        return [ln["line"] for ln in client.get("/api/v1/endpoints/chat/logs", params=params).json()["lines"]]

    assert got(search="boom") == ["ERROR 11-23 10:00:06 [serving.py:9] boom"]
    assert got(search=secret[:12]) == got(search="api_key=" + secret[:4]) == []  # a search tells nothing of what is masked
    assert got(replica="bbb") == [VLLM_B.strip()]
    assert len(got(since="2026-11-23T10:00:05")) == 3 and len(got(limit=2)) == 2
    assert client.get("/api/v1/endpoints/chat/logs", params={"limit": 0}).status_code == 422


def test_another_projects_key_reads_no_logs(client, ep, ray_logs):
    ray_logs.add(f"ep-{ep['id']}", "aaa", out=VLLM_A)
    other = client.post("/api/v1/keys", json={"name": "b", "project": "team-b"}).json()["key"]
    h = {"Authorization": f"Bearer {other}"}
    assert client.get("/api/v1/endpoints/chat/logs", headers=h).status_code == 404
    assert client.get(f"/api/v1/endpoints/{ep['id']}/logs", headers=h).status_code == 404
    assert client.get("/api/v1/endpoints/chat/logs", headers={"Authorization": ""}).status_code == 401


def test_ray_unreachable_is_a_503_that_names_no_other_application(client, ep, ray_logs):
    from rota.domain.errors import RayUnavailable

    def down(app):
        raise RayUnavailable("Ray's log API answered 500")

    ray_logs.replicas = down
    r = client.get("/api/v1/endpoints/chat/logs")
    assert r.status_code == 503 and "log API" in r.json()["error"]["message"]


@pytest.mark.timeout(30)
def test_follow_sends_the_tail_then_each_new_line_as_server_sent_events(client, ep, ray_logs):
    actor = ray_logs.add(f"ep-{ep['id']}", "aaa", out="INFO 11-23 10:00:02 [engine.py:42] engine ready\n")
    client.rt.logs.settle_s = 0.2
    got: list[dict] = []

    def later():
        import time

        time.sleep(1.0)  # after the tail was sent
        ray_logs.write(actor, "out", "INFO 11-23 10:00:09 [x.py:1] printed after\n")

    threading.Thread(target=later, daemon=True).start()
    with client.stream("GET", "/api/v1/endpoints/chat/logs", params={"follow": "true"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for raw in r.iter_lines():
            if raw.startswith("data: "):
                got.append(json.loads(raw[6:]))
            if len(got) == 2:
                break
    assert [g["line"].split("] ")[-1] for g in got] == ["engine ready", "printed after"]
    assert got[1]["time"] == "2026-11-23T10:00:09Z" or got[1]["time"].startswith("2026-11-23T10:00:09")


def test_a_replica_whose_files_cannot_be_read_is_noted_and_the_others_still_read(client, ep, ray_logs):
    from rota.domain.errors import RayUnavailable

    app = f"ep-{ep['id']}"
    ray_logs.add(app, "aaa", out=VLLM_A)
    pending = ray_logs.add(app, "ppp")  # e.g. waiting for a GPU: Ray has no file for it yet
    read = ray_logs.read

    def flaky(actor_id, stream, lines):
        if actor_id == pending:
            raise RayUnavailable("Ray's log API answered 500")
        return read(actor_id, stream, lines)

    ray_logs.read = flaky
    lines = client.get("/api/v1/endpoints/chat/logs").json()["lines"]
    assert {ln["replica"] for ln in lines if "engine ready" in ln["line"]} == {"aaa"}
    notes = [ln for ln in lines if ln["replica"] == "ppp"]
    assert len(notes) == 2 and all("cannot be read" in ln["line"] and ln["level"] == "WARNING" for ln in notes)


def test_following_is_bounded_per_key(client, ep, ray_logs, monkeypatch):
    import rota.services.logs as logs_service

    monkeypatch.setattr(logs_service, "MAX_FOLLOWERS_PER_KEY", 0)
    r = client.get("/api/v1/endpoints/chat/logs", params={"follow": "true"})
    assert r.status_code == 429 and r.json()["error"]["field"] == "follow"
    assert client.get("/api/v1/endpoints/chat/logs").status_code == 200  # reading without follow is not limited


def test_following_is_bounded_per_project_so_a_project_cannot_take_every_slot(client, ep, ray_logs, monkeypatch):
    """A project can mint keys: its followers together stop at MAX_FOLLOWERS_PER_PROJECT,
    and another project still gets in."""
    import rota.services.logs as logs_service

    monkeypatch.setattr(logs_service, "MAX_FOLLOWERS_PER_PROJECT", 1)
    second = {"Authorization": f"Bearer {client.post('/api/v1/keys', json={'name': 'second'}).json()['key']}"}
    other = {"Authorization": f"Bearer {client.post('/api/v1/keys', json={'name': 'b', 'project': 'team-b'}).json()['key']}"}
    client.post("/api/v1/endpoints", json={"name": "theirs", "template": "echo-chat", "routing_key": "chat"}, headers=other)
    follow = {"follow": "true"}
    with client.stream("GET", "/api/v1/endpoints/chat/logs", params=follow) as held:
        assert held.status_code == 200
        refused = client.get("/api/v1/endpoints/chat/logs", params=follow, headers=second)
        assert refused.status_code == 429 and refused.json()["error"]["field"] == "follow"
        with client.stream("GET", "/api/v1/endpoints/theirs/logs", params=follow, headers=other) as theirs:
            assert theirs.status_code == 200
    assert client.rt.logs.following() == 0  # every slot given back


def test_a_follower_whose_key_is_revoked_reads_no_further(client, ep, ray_logs, monkeypatch):
    import rota.api.logs as logs_api

    monkeypatch.setattr(logs_api, "RECHECK_S", 0.2)
    created = client.post("/api/v1/keys", json={"name": "leaving"}).json()
    h = {"Authorization": f"Bearer {created['key']}"}
    actor = ray_logs.add(f"ep-{ep['id']}", "aaa", out=VLLM_A)
    client.rt.logs.settle_s = 0.1
    got: list[str] = []

    def revoke_then_write():
        time.sleep(0.5)
        assert client.delete(f"/api/v1/keys/{created['id']}").status_code in (200, 204)
        for i in range(5):
            time.sleep(0.3)
            ray_logs.write(actor, "out", f"INFO 11-23 10:00:1{i} [x.py:1] written after the revocation {i}\n")

    writer = threading.Thread(target=revoke_then_write, daemon=True)
    writer.start()
    with client.stream("GET", "/api/v1/endpoints/chat/logs", params={"follow": "true"}, headers=h) as r:
        got = [line for line in r.iter_lines() if line.startswith("data: ")]  # ends by itself
    writer.join()
    assert got and not any("after the revocation" in line for line in got)
    assert client.rt.logs.following() == 0


def test_a_line_cut_inside_a_secret_keeps_none_of_it():
    from rota.domain.logs import MAX_LINE, redact

    secret = "s3cr3t-t0ken-of-forty-characters-123456"
    (cut,) = parse("x" * (MAX_LINE - 10) + secret + " and more\n", Source("r", "out"), 2026)
    assert len(cut.line) == MAX_LINE and cut.line.endswith(secret[:10])
    masked = redact(cut.line, [secret])
    assert masked == "x" * (MAX_LINE - 10) + "***" and secret[:4] not in masked
    assert redact("x" * MAX_LINE, [secret]) == "x" * MAX_LINE  # nothing of it there: nothing masked
    assert redact("short " + secret, [secret]) == "short ***"
