"""The request log on the control plane: what the gateway sends is stored once, read by
project only, filtered, paged, followed and pruned."""

import time
import uuid

import pytest
from sqlalchemy import func, select

from rota.store.tables import RequestLogRow

NOW = time.time()


def record(**over) -> dict:
    base = {
        "record_id": uuid.uuid4().hex,
        "request_id": uuid.uuid4().hex,
        "started_at": NOW,
        "project_id": 1,
        "key_id": 1,
        "key_prefix": "rota_abc",
        "endpoint_id": None,
        "model": "chat",
        "route": "/v1/chat/completions",
        "status": 200,
        "duration_ms": 12.5,
    }
    return {**base, **over}


def ingest(client, records, dropped=0):
    return client.post(
        "/internal/v1/requests",
        json={"records": records, "dropped": dropped},
        headers={"Authorization": f"Bearer {client.rt.internal_token}", "x-rota-gateway": "gw-1"},
    )


@pytest.fixture
def ep(client):
    made = client.post("/api/v1/endpoints", json={"name": "chat", "template": "echo-chat", "routing_key": "chat"})
    assert made.status_code == 201, made.text
    return made.json()


@pytest.fixture
def other(client):
    """A key of a second project, and that project's own endpoint."""
    key = client.post("/api/v1/keys", json={"name": "b", "project": "team-b"}).json()
    h = {"Authorization": f"Bearer {key['key']}"}
    made = client.post("/api/v1/endpoints", json={"name": "theirs", "template": "echo-chat", "routing_key": "chat"}, headers=h)
    assert made.status_code == 201, made.text
    assert made.json()["id"] != 1
    return {"headers": h, "endpoint": made.json()}


def count(client) -> int:
    with client.rt.db.session() as s:
        return s.scalar(select(func.count()).select_from(RequestLogRow))


def test_only_the_gateway_may_send_records_and_a_batch_sent_twice_counts_once(client, ep):
    batch = [record(endpoint_id=ep["id"]), record(endpoint_id=ep["id"], status=429, error_code="rate_limit_exceeded")]
    assert ingest(client, batch).json() == {"stored": 2, "rejected": 0}
    assert ingest(client, batch).json() == {"stored": 0, "rejected": 0}  # retried after a lost answer: nothing twice
    assert count(client) == 2 and client.rt.requests.duplicates == 2
    assert client.post("/internal/v1/requests", json={"records": batch}).status_code == 401  # an admin key is not the gateway


def test_a_bad_record_is_left_out_and_never_blocks_the_others(client, ep):
    good = record(endpoint_id=ep["id"], request_id="good", model="ch\x00at", route="/\x00")
    bad = [record(status=99), record(input_tokens=3_000_000_000), record(output_tokens=-1), {"nonsense": True}]
    assert ingest(client, [*bad, good]).json() == {"stored": 1, "rejected": 4}
    stored = client.get("/api/v1/requests/good").json()
    assert stored["gen_ai.request.model"] == "chat" and stored["http.route"] == "/"  # NUL cannot be stored in PostgreSQL


def test_an_endpoints_requests_read_with_opentelemetry_names(client, ep):
    ingest(
        client,
        [
            record(
                endpoint_id=ep["id"],
                request_id="req-1",
                input_tokens=7,
                output_tokens=3,
                finish_reasons=["stop"],
                ttft_ms=4.5,
                wake_ms=900.0,
                replica_id="r-1",
                stream=True,
            )
        ],
    )
    page = client.get("/api/v1/endpoints/chat/requests").json()
    (r,) = page["data"]
    assert r["request_id"] == "req-1" and r["rota.endpoint"] == "chat" and r["rota.project"] == "default"
    assert (r["gen_ai.request.model"], r["gen_ai.operation.name"], r["http.route"]) == ("chat", "chat", "/v1/chat/completions")
    assert (r["gen_ai.usage.input_tokens"], r["gen_ai.usage.output_tokens"]) == (7, 3)
    assert r["gen_ai.response.finish_reasons"] == ["stop"] and r["http.response.status_code"] == 200
    assert r["rota.cold_start"] is True and r["rota.wake_ms"] == 900.0 and r["rota.replica_id"] == "r-1"
    assert r["time"].endswith("Z") or r["time"].endswith("+00:00")
    assert client.get("/api/v1/requests/req-1").json()["rota.time_to_first_token_ms"] == 4.5


def test_a_key_reads_only_its_own_projects_requests(client, ep, other):
    mine = record(endpoint_id=ep["id"], request_id="mine")
    theirs = record(endpoint_id=other["endpoint"]["id"], project_id=2, request_id="theirs")
    stray = record(
        project_id=None, key_id=None, key_prefix=None, model=None, status=401, error_code="invalid_api_key", request_id="stray"
    )
    ingest(client, [mine, theirs, stray])
    h = other["headers"]
    assert [r["request_id"] for r in client.get("/api/v1/requests", headers=h).json()["data"]] == ["theirs"]
    assert client.get("/api/v1/requests/mine", headers=h).status_code == 404
    assert client.get("/api/v1/requests/stray", headers=h).status_code == 404  # calls with no project: admins only
    assert client.get("/api/v1/endpoints/theirs/requests", headers=h).json()["data"][0]["request_id"] == "theirs"
    assert client.get("/api/v1/endpoints/chat/requests", headers=h).status_code == 404  # project a's name
    assert client.get(f"/api/v1/endpoints/{ep['id']}/requests", headers=h).status_code == 404  # not by id either
    admin = {r["request_id"] for r in client.get("/api/v1/requests").json()["data"]}
    assert admin == {"mine", "stray"}  # the admin's own project, and the calls no project was found for
    assert client.get("/api/v1/requests").status_code == 200
    assert client.get("/api/v1/requests", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_filters_by_time_status_key_and_search(client, ep):
    ingest(
        client,
        [
            record(endpoint_id=ep["id"], request_id="old", started_at=NOW - 3600),
            record(endpoint_id=ep["id"], request_id="slow-429", status=429, error_code="rate_limit_exceeded"),
            record(endpoint_id=ep["id"], request_id="other-key", key_prefix="rota_zzz"),
            record(endpoint_id=ep["id"], request_id="100%_done", status=500),
        ],
    )

    def ids(**params):
        r = client.get("/api/v1/endpoints/chat/requests", params=params)
        assert r.status_code == 200, r.text
        return sorted(x["request_id"] for x in r.json()["data"])

    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(NOW - 60))
    assert ids(since=since) == ["100%_done", "other-key", "slow-429"]
    assert ids(until=since) == ["old"]
    assert ids(status="4xx") == ["slow-429"] and ids(status="error") == ["100%_done", "slow-429"]
    assert ids(status="429") == ["slow-429"] and len(ids(status="ok")) == 2
    assert ids(key="rota_zzz") == ["other-key"]
    assert ids(search="rate_limit") == ["slow-429"]
    assert ids(search="100%") == ["100%_done"] and ids(search="%") == ["100%_done"]  # wildcards are literal
    for bad in ({"status": "6xx"}, {"status": "abc"}, {"cursor": "!!"}, {"limit": 0}, {"since": "yesterday"}):
        r = client.get("/api/v1/endpoints/chat/requests", params=bad)
        assert r.status_code in (400, 422) and next(iter(bad)) in r.text, bad


def test_pages_go_back_in_time_and_following_gives_what_arrives_after(client, ep):
    ingest(client, [record(endpoint_id=ep["id"], request_id=f"r{i}", started_at=NOW + i) for i in range(5)])
    first = client.get("/api/v1/endpoints/chat/requests", params={"limit": 2}).json()
    assert [r["request_id"] for r in first["data"]] == ["r4", "r3"]
    second = client.get("/api/v1/endpoints/chat/requests", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    third = client.get("/api/v1/endpoints/chat/requests", params={"limit": 2, "cursor": second["next_cursor"]}).json()
    assert [r["request_id"] for r in second["data"] + third["data"]] == ["r2", "r1", "r0"] and third["next_cursor"] is None
    mark = first["last_seq"]
    assert client.get("/api/v1/endpoints/chat/requests", params={"after": mark}).json()["data"] == []
    ingest(client, [record(endpoint_id=ep["id"], request_id="late", started_at=NOW - 10)])
    follow = client.get("/api/v1/endpoints/chat/requests", params={"after": mark}).json()
    assert [r["request_id"] for r in follow["data"]] == ["late"] and follow["last_seq"] > mark


def test_records_are_pruned_after_their_projects_retention(client, ep, other):
    rt = client.rt
    day = 86_400
    ingest(
        client,
        [
            record(request_id="a-40d", started_at=NOW - 40 * day),
            record(request_id="a-20d", started_at=NOW - 20 * day),
            record(request_id="b-20d", project_id=2, started_at=NOW - 20 * day),
            record(request_id="b-5d", project_id=2, started_at=NOW - 5 * day),
            record(request_id="none-40d", project_id=None, started_at=NOW - 40 * day),
        ],
    )
    r = client.patch("/api/v1/projects/team-b", json={"request_log_retention_days": 7})
    assert r.status_code == 200 and r.json()["request_log_retention_days"] == 7
    assert client.patch("/api/v1/projects/team-b", json={"request_log_retention_days": 0}).status_code == 422
    assert (
        client.patch("/api/v1/projects/team-b", json={"request_log_retention_days": 1}, headers=other["headers"]).status_code
        == 403
    )
    rt.requests.clock = lambda: NOW
    assert rt.requests.prune() == 3  # a-40d and none-40d (default 30 days), b-20d (7 days)
    with rt.db.session() as s:
        assert sorted(s.scalars(select(RequestLogRow.request_id))) == ["a-20d", "b-5d"]


def test_following_goes_on_past_what_does_not_match_and_never_counts_another_project(client, ep, other):
    ingest(client, [record(endpoint_id=ep["id"], request_id="a1")])
    h = other["headers"]
    theirs = client.get("/api/v1/requests", headers=h).json()
    assert theirs["data"] == [] and theirs["last_seq"] == 0  # project a's traffic is not b's to count
    mark = client.get("/api/v1/endpoints/chat/requests", params={"limit": 1}).json()["last_seq"]
    ingest(client, [record(endpoint_id=ep["id"], request_id=f"ok{i}") for i in range(3)])
    quiet = client.get("/api/v1/endpoints/chat/requests", params={"after": mark, "status": "error"}).json()
    assert quiet["data"] == [] and quiet["last_seq"] == mark + 3  # nothing matched, and the follower moves on
    ingest(client, [record(endpoint_id=ep["id"], request_id="bad", status=500)])
    got = client.get("/api/v1/endpoints/chat/requests", params={"after": quiet["last_seq"], "status": "error"}).json()
    assert [r["request_id"] for r in got["data"]] == ["bad"]


def test_a_seq_is_never_given_twice_even_after_a_prune_empties_the_log(client, ep):
    rt = client.rt
    ingest(client, [record(endpoint_id=ep["id"], started_at=NOW - 40 * 86_400) for _ in range(3)])
    mark = client.get("/api/v1/endpoints/chat/requests").json()["last_seq"]
    rt.requests.clock = lambda: NOW
    assert rt.requests.prune() == 3 and count(client) == 0
    ingest(client, [record(endpoint_id=ep["id"], request_id="after-prune")])
    follow = client.get("/api/v1/endpoints/chat/requests", params={"after": mark}).json()
    assert [r["request_id"] for r in follow["data"]] == ["after-prune"]


def test_a_project_can_keep_its_calls_out_of_the_request_log_and_only_an_admin_says_so(client, ep, other):
    """``request_log: false`` on a project: the gateways are told (the routing table), and
    what one sent before it heard is not stored either; other projects are not touched."""
    table = lambda: client.get("/internal/v1/routing", headers={"Authorization": f"Bearer {client.rt.internal_token}"}).json()
    assert table()["unlogged_projects"] == [] and table()["project_max_inflight"] == 20_000
    assert client.get("/api/v1/projects").json()[0]["request_log"] is True  # on unless turned off
    refused = client.patch("/api/v1/projects/team-b", json={"request_log": False}, headers=other["headers"])
    assert refused.status_code == 403  # the project's own ordinary key cannot
    for bad in ("maybe", None):
        r = client.patch("/api/v1/projects/team-b", json={"request_log": bad})
        assert r.status_code == 422 and "request_log" in r.text
    assert table()["unlogged_projects"] == []  # nothing changed
    r = client.patch("/api/v1/projects/team-b", json={"request_log": False})
    assert r.status_code == 200 and r.json()["request_log"] is False
    assert r.json()["request_log_retention_days"] is None  # a partial update: the rest as it was
    assert table()["unlogged_projects"] == [2]
    stored = ingest(client, [record(request_id="b-late", project_id=2), record(request_id="a-1"), record(project_id=None)])
    assert stored.status_code == 200 and stored.json() == {"stored": 2, "rejected": 0}
    assert client.get("/api/v1/requests/b-late", headers=other["headers"]).status_code == 404
    assert client.get("/api/v1/requests/a-1").status_code == 200 and client.rt.requests.kept_out == 1
    assert "rota_request_log_kept_out_total 1.0" in client.get("/metrics").text
    client.patch("/api/v1/projects/team-b", json={"request_log": True})
    ingest(client, [record(request_id="b-on", project_id=2)])
    assert client.get("/api/v1/requests/b-on", headers=other["headers"]).status_code == 200
    made = client.post("/api/v1/projects", json={"name": "team-c", "request_log": False})
    assert made.status_code == 201 and made.json()["request_log"] is False


def test_another_projects_calls_with_the_same_request_id_never_hide_a_projects_own(client, ep, other):
    """Callers choose their ``x-request-id``: a flood of one project's calls reusing another's
    id must not push that project's record out of its own lookup."""
    ingest(client, [record(request_id="req-42", project_id=2, duration_ms=99.0)])
    ingest(client, [record(request_id="req-42", started_at=NOW + 1 + i, duration_ms=float(i)) for i in range(150)])
    theirs = client.get("/api/v1/requests/req-42", headers=other["headers"])
    assert theirs.status_code == 200 and theirs.json()["rota.duration_ms"] == 99.0
    assert client.get("/api/v1/requests/req-42").json()["rota.duration_ms"] == 149.0  # the newest of the caller's own
