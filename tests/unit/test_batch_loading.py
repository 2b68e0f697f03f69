"""A batch's lines go in a chunk per transaction (real SQLite): in order, resumed where a
load was cut short, stopped by a cancel, never finalised before they are all in, and
its input file kept until then."""

import pytest
from sqlalchemy import select

from rota.services import batch_loader
from rota.store.async_tables import AsyncRequestRow, BatchRow
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


def test_a_load_cut_short_resumes_where_it_stopped_and_the_batch_completes(client, ep, chunks):
    fail_at, _ = chunks
    fail_at[0] = 2  # the second chunk of 100 fails
    fid = upload(client, jsonl([line(i) for i in range(250)]))
    with pytest.raises(RuntimeError):
        client.post("/v1/batches", json={"input_file_id": fid, "endpoint": CHAT})
    bid = batch_id_of(client)
    b = client.get(f"/v1/batches/{bid}").json()
    assert b["status"] == "validating" and b["request_counts"]["total"] == 250 and len(lines_of(client, bid)) == 100
    r = client.delete(f"/v1/files/{fid}")  # its lines are not all in: the file stays
    assert r.status_code == 409 and bid in r.json()["error"]["message"]
    # Lines in can be sent already, but the batch is not finalised before the rest are in
    # (the store is still away: housekeeping's resume fails, and does not stop the sends).
    assert len(drain(client)) > 0 and client.get(f"/v1/batches/{bid}").json()["status"] == "validating"

    fail_at[0] = 0
    client.rt.async_queue.housekeeping(client.rt.invocations.clock())  # resumes the load
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


def test_housekeeping_leaves_a_batch_a_thread_of_this_process_is_loading(client, ep, chunks):
    fail_at, _ = chunks
    fail_at[0] = 1
    fid = upload(client, jsonl([line(i) for i in range(3)]))
    with pytest.raises(RuntimeError):
        client.post("/v1/batches", json={"input_file_id": fid, "endpoint": CHAT})
    bid, loader, now = batch_id_of(client), client.rt.invocations.loader, client.rt.invocations.clock()
    fail_at[0] = 0
    with loader.claim(bid) as mine:
        assert mine
        with loader.claim(bid) as again:
            assert not again  # one loader per batch
        client.rt.async_queue.housekeeping(now)
        assert lines_of(client, bid) == [] and client.get(f"/v1/batches/{bid}").json()["status"] == "validating"
    client.rt.async_queue.housekeeping(now)
    assert len(lines_of(client, bid)) == 3 and client.get(f"/v1/batches/{bid}").json()["status"] == "in_progress"
