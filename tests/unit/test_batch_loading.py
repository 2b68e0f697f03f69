"""A batch's lines go in a chunk per transaction (real SQLite): in order, resumed where a
load was cut short (by whoever holds its lease, on a thread of its own), failed after its
tries, stopped by a cancel, never finalised before they are all in, and its input file
kept until then."""

import threading

import pytest
from sqlalchemy import select, update

from rota.services import batch_loader
from rota.store.async_tables import AsyncRequestRow, BatchRow
from support.procs import wait_until
from unit.test_async_api import drain, jsonl, line, upload
from unit.test_async_api import ep as ep

CHAT = "/v1/chat/completions"


def lines_of(client, batch_id):
    with client.rt.db.session() as s:
        return s.execute(
            select(AsyncRequestRow.line, AsyncRequestRow.custom_id, AsyncRequestRow.status)
            .where(AsyncRequestRow.batch_id == batch_id)
            .order_by(AsyncRequestRow.line)
        ).all()


def batch_id_of(client):
    with client.rt.db.session() as s:
        return s.scalar(select(BatchRow.id))


@pytest.fixture
def chunks(monkeypatch):
    """Chunks of 100 lines; ``fail_at[0] = n`` makes the n-th chunk's insert and every one
    after it fail (the store going away mid-load), ``before[n]`` runs just before the n-th."""
    monkeypatch.setattr(batch_loader, "LINES_PER_TX", 100)
    real = batch_loader.insert
    seen = {"n": 0}
    fail_at = [0]
    before: dict[int, object] = {}

    def insert(table):
        seen["n"] += 1
        if seen["n"] in before:
            before[seen["n"]]()
        if fail_at[0] and seen["n"] >= fail_at[0]:
            raise RuntimeError("the store went away")
        return real(table)

    monkeypatch.setattr(batch_loader, "insert", insert)
    return fail_at, before


def test_a_large_batch_goes_in_a_chunk_at_a_time_in_order(client, ep, chunks):
    fid = upload(client, jsonl([line(i) for i in range(250)]))
    b = client.post("/v1/batches", json={"input_file_id": fid, "endpoint": CHAT})
    assert b.status_code == 200, b.text
    assert b.json()["status"] == "in_progress" and b.json()["request_counts"]["total"] == 250
    got = lines_of(client, b.json()["id"])
    assert [(n, c) for n, c, _ in got] == [(i, f"req-{i}") for i in range(250)]
    assert {st for *_, st in got} == {"queued"}


def set_lease(client, batch_id, until):
    with client.rt.db.session() as s:
        s.execute(update(BatchRow).where(BatchRow.id == batch_id).values(loading_until=until))


@pytest.fixture
def loader(client):
    """The batch loader, resumed by the test itself (housekeeping would on a thread)."""
    loader = client.rt.invocations.loader
    loader.resume_soon = lambda: None
    return loader


def test_a_load_cut_short_resumes_where_it_stopped_and_the_batch_completes(client, ep, chunks, loader):
    fail_at, _ = chunks
    fail_at[0] = 2  # the second chunk of 100 fails, and every one after it
    fid = upload(client, jsonl([line(i) for i in range(250)]))
    r = client.post("/v1/batches", json={"input_file_id": fid, "endpoint": CHAT})
    assert r.status_code == 200 and r.json()["status"] == "validating", r.text  # stored: the caller has it
    bid = r.json()["id"]
    b = client.get(f"/v1/batches/{bid}").json()
    assert b["request_counts"]["total"] == 250 and len(lines_of(client, bid)) == 100
    r = client.delete(f"/v1/files/{fid}")  # its lines are not all in: the file stays
    assert r.status_code == 409 and bid in r.json()["error"]["message"]
    # Lines in can be sent already, but the batch is not finalised before the rest are in;
    # a resume while the store is still away fails, and lets go for the next.
    assert len(drain(client)) > 0 and client.get(f"/v1/batches/{bid}").json()["status"] == "validating"
    assert loader.resume() == 0 and len(lines_of(client, bid)) == 100

    fail_at[0] = 0
    assert loader.resume() == 1
    got = lines_of(client, bid)
    assert [n for n, *_ in got] == list(range(250)) and len({c for _, c, _ in got}) == 250
    assert client.get(f"/v1/batches/{bid}").json()["status"] == "in_progress"
    while client.get(f"/v1/batches/{bid}").json()["status"] == "in_progress":
        assert drain(client)
    done = client.get(f"/v1/batches/{bid}").json()
    assert done["status"] == "completed" and done["request_counts"] == {"total": 250, "completed": 250, "failed": 0}
    out = client.get(f"/v1/files/{done['output_file_id']}/content").text.splitlines()
    assert len(out) == 250 and out[0].count('"req-0"') == 1 and '"req-249"' in out[-1]
    assert client.delete(f"/v1/files/{fid}").status_code == 200


def test_a_batch_whose_lines_cannot_go_in_fails_after_its_tries_and_sends_nothing_more(client, ep, chunks, loader):
    fail_at, _ = chunks
    fail_at[0] = 2
    fid = upload(client, jsonl([line(i) for i in range(250)]))
    bid = client.post("/v1/batches", json={"input_file_id": fid, "endpoint": CHAT}).json()["id"]  # try 1
    for _ in range(batch_loader.MAX_LOADS - 1):
        assert loader.resume() == 0  # tries 2 to 5, each failing
    assert client.get(f"/v1/batches/{bid}").json()["status"] == "validating"
    (sent,) = client.rt.async_queue.claim(ep["id"], 1, client.rt.invocations.clock(), True)  # one line on its way
    assert loader.resume() == 0  # the sixth: given up
    b = client.get(f"/v1/batches/{bid}").json()
    assert b["status"] == "failed" and b["failed_at"] and "5 tries" in b["errors"]["data"][0]["message"]
    assert {st for *_, st in lines_of(client, bid)} == {"cancelled", "running"}
    # The line on its way lapses back to the queue: it is not sent again.
    client.rt.async_queue.housekeeping(client.rt.invocations.clock() + client.rt.settings.async_timeout_s + 31)
    assert {st for *_, st in lines_of(client, bid)} == {"cancelled"} and drain(client) == []
    assert client.delete(f"/v1/files/{fid}").status_code == 200


def test_a_loader_whose_lease_was_taken_over_writes_nothing_more(client, ep, chunks, loader):
    _, before = chunks

    def taken_over():  # another control plane claims it while this one stalls
        with client.rt.db.session() as s:
            s.execute(update(BatchRow).values(load_tries=BatchRow.load_tries + 1))

    before[2] = taken_over
    fid = upload(client, jsonl([line(i) for i in range(250)]))
    bid = client.post("/v1/batches", json={"input_file_id": fid, "endpoint": CHAT}).json()["id"]
    assert len(lines_of(client, bid)) == 100  # its second chunk rolled back with its failed renewal
    assert client.get(f"/v1/batches/{bid}").json()["status"] == "validating"  # the other loader's now
    set_lease(client, bid, client.rt.invocations.clock() - 1)  # which died too
    assert loader.resume() == 1 and len(lines_of(client, bid)) == 250


def test_a_batch_another_loader_holds_is_left_to_it_until_its_lease_lapses(client, ep, chunks, loader):
    fail_at, _ = chunks
    fail_at[0] = 1
    fid = upload(client, jsonl([line(i) for i in range(3)]))
    bid = client.post("/v1/batches", json={"input_file_id": fid, "endpoint": CHAT}).json()["id"]
    fail_at[0] = 0
    now = client.rt.invocations.clock()
    set_lease(client, bid, now + 10)  # another control plane is loading it
    assert loader.resume() == 0 and lines_of(client, bid) == []
    set_lease(client, bid, now - 1)  # it died: its lease lapsed
    assert loader.resume() == 1
    assert len(lines_of(client, bid)) == 3 and client.get(f"/v1/batches/{bid}").json()["status"] == "in_progress"


def test_housekeeping_resumes_on_a_thread_of_its_own(client, ep, chunks):
    fail_at, before = chunks
    fail_at[0] = 1
    fid = upload(client, jsonl([line(i) for i in range(3)]))
    bid = client.post("/v1/batches", json={"input_file_id": fid, "endpoint": CHAT}).json()["id"]
    fail_at[0] = 0
    go = threading.Event()
    before[2] = lambda: go.wait(10)  # the resume's first chunk waits until told
    client.rt.async_queue.housekeeping(client.rt.invocations.clock())  # returns while the resume waits
    assert client.get(f"/v1/batches/{bid}").json()["status"] == "validating"
    go.set()
    wait_until(lambda: client.get(f"/v1/batches/{bid}").json()["status"] == "in_progress", 10, 0.05, what="resumed")
    assert len(lines_of(client, bid)) == 3


def test_a_batch_cancelled_while_its_lines_go_in_stops_loading_and_ends_cancelled(client, ep, chunks):
    _, before = chunks
    fid = upload(client, jsonl([line(i) for i in range(350)]))
    cancelled = []

    def cancel():  # lands between the second and the third chunk
        with client.rt.db.session() as s:
            bid = s.scalar(select(BatchRow.id))
        cancelled.append(client.post(f"/v1/batches/{bid}/cancel").json()["status"])

    before[3] = cancel
    b = client.post("/v1/batches", json={"input_file_id": fid, "endpoint": CHAT}).json()
    assert cancelled == ["cancelling"] and b["status"] == "cancelling"
    got = lines_of(client, b["id"])
    assert len(got) in (200, 300) and {st for *_, st in got} == {"cancelled"}  # nothing left to send
    assert drain(client) == []
    end = client.get(f"/v1/batches/{b['id']}").json()
    assert end["status"] == "cancelled" and end["output_file_id"] is None


def test_the_lines_of_a_batch_still_going_in_count_in_its_endpoints_depth(client, ep, chunks, loader):
    fail_at, _ = chunks
    fail_at[0] = 2
    client.rt.settings.async_max_depth = 300
    client.rt.invocations.depths.fresh_s = 0  # counted in the store at every submit
    fid = upload(client, jsonl([line(i) for i in range(250)]))
    bid = client.post("/v1/batches", json={"input_file_id": fid, "endpoint": CHAT}).json()["id"]
    assert len(lines_of(client, bid)) == 100  # 150 more to come
    fail_at[0] = 0
    more = upload(client, jsonl([line(i) for i in range(60)]))
    r = client.post("/v1/batches", json={"input_file_id": more, "endpoint": CHAT})
    assert r.status_code == 429 and "has 250 async requests" in r.json()["error"]["message"], r.text
    assert client.post("/v1/async/chat/completions", json={"model": "chat", "messages": []}).status_code == 202
