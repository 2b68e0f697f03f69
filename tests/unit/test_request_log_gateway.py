"""The gateway's request log (serve_apps/_request_log.py): what a call leaves behind, what
the caller gets back, and how records reach the control plane (or wait for it)."""

import asyncio
import contextlib
import json
import sys
import time

import pytest
from starlette.requests import ClientDisconnect

from support.gateway import KEY_A, KEY_B, Reply, chat, gateway, running_gateway, unpacked

SSE = "text/event-stream"
USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def events(*bodies) -> list[bytes]:
    return [f"data: {json.dumps(b) if isinstance(b, dict) else b}\n\n".encode() for b in bodies]


def stream_reply(split: bool = False):
    chunks = events(
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "length"}]},
        {"choices": [], "usage": USAGE},
        "[DONE]",
    )
    if split:  # TCP may cut events anywhere and join them
        raw = b"".join(chunks)
        chunks = [raw[i : i + 7] for i in range(0, len(raw), 7)]
    return (200, SSE, chunks, {"x-rota-replica": "replica-abc"})


@pytest.fixture
def gw():
    with running_gateway() as client:
        yield client


def records(gw) -> list[dict]:
    return list(gw.app.recorder.buffer)


def test_a_call_is_recorded_with_who_what_and_how_long_and_the_caller_gets_its_id(gw):
    gw.upstream.replies = [
        (
            200,
            "application/json",
            json.dumps({"choices": [{"finish_reason": "stop"}], "usage": USAGE}).encode(),
            {"x-rota-replica": "r-1"},
        )
    ]
    r = chat(gw)
    (rec,) = records(gw)
    assert r.headers["x-request-id"] == rec["request_id"] and rec["request_id"]  # one Ray Serve gave it
    assert gw.upstream.sent[0][1]["x-request-id"] == rec["request_id"]  # the engine logs the same id
    assert "x-rota-replica" not in r.headers  # the replica's name stays inside
    assert rec["status"] == 200 and rec["error_code"] is None and rec["route"] == "/v1/chat/completions"
    assert (rec["project_id"], rec["key_id"], rec["key_prefix"], rec["endpoint_id"], rec["model"]) == (1, 11, "rota_1", 1, "chat")
    assert (rec["input_tokens"], rec["output_tokens"], rec["finish_reasons"], rec["replica_id"]) == (7, 3, ["stop"], "r-1")
    assert rec["duration_ms"] >= rec["queue_ms"] >= 0 and rec["wake_ms"] is None and rec["stream"] is False
    assert rec["request_content"] is None and rec["response_content"] is None  # content logging is off by default


def test_the_callers_own_request_id_is_kept_and_an_unusable_one_replaced(gw):
    r = chat(gw, headers={"x-request-id": "trace 42"})
    assert r.headers["x-request-id"] == "trace 42"  # one value: Ray Serve's ingress returns it, the gateway adds none
    chat(gw, headers={"x-request-id": "x" * 200})
    kept, replaced = (r["request_id"] for r in records(gw))
    assert kept == "trace 42" and len(replaced) == 32 and replaced != "x" * 200


def test_refused_calls_are_recorded_with_their_openai_error_code(gw):
    assert chat(gw, "rota_wrong").status_code == 401
    assert chat(gw, model="nope").status_code == 404
    assert gw.get("/v1/nothing-here", headers={"Authorization": f"Bearer {KEY_A}"}).status_code == 404
    gw.portal.call(gw.app.admission.enter, "1/chat", 2), gw.portal.call(gw.app.admission.enter, "1/chat", 2)
    assert chat(gw).status_code == 429
    gw.upstream.replies = [
        (400, "application/json", b'{"object":"error","message":"too long","type":"BadRequestError","code":400}')
    ]
    gw.app.admission.leave("1/chat")
    assert chat(gw).status_code == 400
    got = [(r["status"], r["error_code"], r["project_id"], r["model"]) for r in records(gw)]
    assert got == [
        (401, "invalid_api_key", None, None),  # no project is known for a wrong key
        (404, "model_not_found", 1, "nope"),
        (404, "unknown_url", None, None),  # an unknown route is refused before any key is read
        (429, "rate_limit_exceeded", 1, "chat"),
        (400, "BadRequestError", 1, "chat"),  # the engine's own error, by its type
    ]


@pytest.mark.parametrize("split", [False, True])
def test_a_stream_gets_its_usage_asked_for_and_stripped_when_the_caller_did_not_ask(gw, split):
    gw.upstream.replies = [stream_reply(split)]
    r = chat(gw, json={"model": "chat", "messages": [], "stream": True})
    sent = json.loads(gw.upstream.bodies[0])
    assert sent["stream_options"] == {"include_usage": True} and sent["stream"] is True
    assert b'"usage"' not in r.content and r.content.endswith(b"data: [DONE]\n\n")
    assert r.content.count(b"data: ") == 4  # every other event passed, whole and in order
    (rec,) = records(gw)
    assert rec["stream"] is True and (rec["input_tokens"], rec["output_tokens"]) == (7, 3)
    assert rec["finish_reasons"] == ["length"] and rec["replica_id"] == "replica-abc"
    assert 0 <= rec["ttft_ms"] <= rec["duration_ms"]


def test_usage_is_asked_for_without_losing_what_the_body_said(gw):
    raw = b'  \n {"model": "chat", "messages": [{"role": "user", "content": "{x}"}], "stream": true}'
    gw.post("/v1/chat/completions", content=raw, headers={"Authorization": f"Bearer {KEY_A}"})
    options = {"continuous_usage_stats": False}
    chat(gw, json={"model": "chat", "messages": [], "stream": True, "stream_options": options})
    # An explicit null, and a body that starts with a byte-order mark: re-encoded, not spliced.
    chat(gw, json={"model": "chat", "messages": [], "stream": True, "stream_options": None})
    bom = b"\xef\xbb\xbf" + json.dumps({"model": "chat", "messages": [], "stream": True}).encode()
    gw.post("/v1/chat/completions", content=bom, headers={"Authorization": f"Bearer {KEY_A}"})
    first, second, null, marked = (json.loads(b) for b in gw.upstream.bodies)
    assert first == {**json.loads(raw), "stream_options": {"include_usage": True}}
    assert second["stream_options"] == {"continuous_usage_stats": False, "include_usage": True}
    assert null["stream_options"] == marked["stream_options"] == {"include_usage": True}


def test_with_the_request_log_off_answers_pass_through_untouched_and_nothing_is_recorded(gw):
    """The control plane's switch arrives with the routing table: the same gateway follows it."""
    assert gw.get("/-/healthz").json()["request_log"]["on"] is True
    gw.cp.request_log = False
    asyncio.run(gw.app.table.refresh())
    assert gw.get("/-/healthz").json()["request_log"]["on"] is False
    gw.upstream.replies = [stream_reply()]
    body = {"model": "chat", "messages": [], "stream": True}
    r = chat(gw, json=body)
    assert json.loads(gw.upstream.bodies[0]) == body  # no usage asked for
    assert r.content == b"".join(stream_reply()[2]) and r.headers["x-request-id"]  # every byte, as sent
    assert chat(gw, json={"model": "nope", "messages": []}).status_code == 404
    assert records(gw) == []
    assert not any(gw.app.admission.inflight.values())  # the slot of the stream given back
    gw.cp.request_log = True  # switched back on: recorded again
    asyncio.run(gw.app.table.refresh())
    gw.upstream.replies = [stream_reply()]
    chat(gw, json=body)
    assert json.loads(gw.upstream.bodies[1])["stream_options"] == {"include_usage": True}
    assert [r["status"] for r in records(gw)] == [200]


def test_a_project_that_keeps_its_calls_out_leaves_no_record_and_the_others_still_do(gw):
    """Project a turns its request log off: none of its calls (answered, refused, streamed)
    is recorded nor has usage asked for; project b's and keyless calls still are."""
    gw.cp.unlogged = [1]
    asyncio.run(gw.app.table.refresh())
    gw.upstream.replies = [stream_reply(), stream_reply()]
    body = {"model": "chat", "messages": [], "stream": True}
    r = chat(gw, json=body)
    assert json.loads(gw.upstream.bodies[0]) == body  # no usage asked for: passed through as it came
    assert r.content == b"".join(stream_reply()[2]) and r.headers["x-request-id"]
    assert chat(gw, json={"model": "nope", "messages": []}).status_code == 404
    assert records(gw) == []
    assert chat(gw, KEY_B, json=body).status_code == 200  # project b: still recorded
    assert chat(gw, "rota_wrong").status_code == 401  # no project: still recorded
    assert [(r["project_id"], r["status"]) for r in records(gw)] == [(2, 200), (None, 401)]
    gw.cp.unlogged = []  # turned back on
    asyncio.run(gw.app.table.refresh())
    chat(gw)
    assert [r["project_id"] for r in records(gw)] == [2, None, 1]


def test_a_stream_whose_caller_asked_for_usage_keeps_it(gw):
    gw.upstream.replies = [stream_reply()]
    body = {"model": "chat", "messages": [], "stream": True, "stream_options": {"include_usage": True}}
    r = chat(gw, json=body)
    assert json.loads(gw.upstream.bodies[0]) == body  # sent as it came
    assert b'"usage"' in r.content and records(gw)[0]["output_tokens"] == 3


def test_content_is_logged_only_where_the_endpoint_turned_it_on_and_truncated():
    with running_gateway(content_max_bytes=40) as gw:
        gw.app.table.endpoints[(1, "chat")]["content_logging"] = True
        gw.upstream.replies = [(200, "application/json", b'{"choices": [{"message": {"content": "' + b"x" * 100 + b'"}}]}')]
        chat(gw)
        chat(gw, KEY_B)  # project b's endpoint: off
        on, off = records(gw)
        assert on["request_content"].startswith('{"model":"chat"') and len(on["request_content"]) == 40
        assert on["response_content"].startswith('{"choices"') and len(on["response_content"]) == 40
        assert off["request_content"] is None and off["response_content"] is None


def test_a_call_that_woke_its_endpoint_says_how_long_it_waited(gw):
    gw.app.table.endpoints[(1, "chat")]["status"] = "SLEEPING"
    gw.upstream.replies = [(503, None, b"no server")]
    assert chat(gw).status_code == 200
    assert records(gw)[0]["wake_ms"] >= 200  # one retry after a wake: at least the 0.2 s pause


def test_records_wait_for_a_control_plane_that_is_away_within_a_bound_and_go_once_it_is_back():
    async def run():
        sent, up = [], {"ok": False}

        async def ship(records, dropped):
            if not up["ok"]:
                raise ConnectionError("control plane down")
            sent.append((len(records), dropped))

        rec = gateway.Recorder(unpacked(ship), interval_s=3600, capacity=5, batch=2)
        rec._task = asyncio.get_running_loop().create_future()  # no background loop: flushed by hand
        for i in range(4):
            rec.buffer.append({"record_id": str(i)})
        assert await rec.flush() is False and [r["record_id"] for r in rec.buffer] == ["0", "1", "2", "3"]
        for i in range(4, 8):
            rec.add({"record_id": str(i)})
        assert rec.dropped == 3 and [r["record_id"] for r in rec.buffer] == ["3", "4", "5", "6", "7"]  # the oldest went
        up["ok"] = True
        while await rec.flush():
            pass
        assert sent == [(2, 3), (2, 3), (1, 3)] and rec.sent == 5 and not rec.buffer

    asyncio.run(run())


def test_records_are_sent_on_a_fixed_beat_that_a_slow_send_does_not_push_back():
    """A gateway crash loses at most one beat of records: the next send is due one
    interval after the last was due, not one interval after a slow send ended."""
    clock = {"t": 0.0}
    waits, sends = [], []

    async def sleep(d):
        waits.append(round(d, 6))
        clock["t"] += d
        if len(waits) == 6:
            raise asyncio.CancelledError
        rec.buffer.append({"record_id": str(len(waits))})  # a call answered since the last beat

    async def ship(records, dropped):
        sends.append(round(clock["t"], 6))
        clock["t"] += 2.5 if len(sends) == 4 else 0.3  # a slow control plane, stalled once

    rec = gateway.Recorder(unpacked(ship), interval_s=1.0, clock=lambda: clock["t"], sleep=sleep)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(rec._loop())
    assert sends == [1.0, 2.0, 3.0, 4.0, 6.5]  # on the beat; after the stall at once, then on a new beat
    assert waits == [1.0, 0.7, 0.7, 0.7, 0.0, 0.7]


def test_an_event_that_never_ends_is_passed_on_not_held_without_bound():
    mod = sys.modules[gateway.Recorder.__module__]
    tap = mod.Tap(mod.Call("r", "/v1/chat/completions"), 200, "text/event-stream", None)
    piece = b"data: " + b"x" * (600 * 1024)  # no blank line ever: not server-sent events as they should be
    assert tap._events(piece) == b""  # held while an end may still come
    passed = tap._events(piece)
    assert passed == piece + piece and tap._pending == b""  # past 1 MiB: on its way at once
    assert tap._events(b"data: [DONE]\n\n") == b"data: [DONE]\n\n"


def test_the_gateway_ships_its_records_to_the_control_plane_in_the_background():
    with running_gateway(log_interval_s=0.05) as gw:
        chat(gw)
        deadline = time.monotonic() + 5
        while not gw.shipped and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [r["status"] for r in gw.shipped] == [200] and not gw.app.recorder.buffer


def test_a_custom_applications_stream_is_sent_as_it_came_and_crlf_events_are_split(gw):
    gw.app.table.endpoints[(1, "chat")]["stream_usage"] = False  # not Rota's vLLM application
    events_crlf = [b'data: {"choices":[{"delta":{"content":"Hi"}}]}\r\n\r\n', b"data: [DONE]\r\n\r\n"]
    gw.upstream.replies = [(200, SSE, events_crlf)]
    body = {"model": "chat", "messages": [], "stream": True}
    r = chat(gw, json=body)
    assert json.loads(gw.upstream.bodies[0]) == body and r.content == b"".join(events_crlf)
    (rec,) = records(gw)
    assert rec["ttft_ms"] is not None and rec["stream"] is True and rec["input_tokens"] is None


class Broken(Reply):
    async def iter_any(self):
        yield b"data: {}\n\n"
        raise ConnectionResetError("the replica died")


class Slow(Reply):
    async def iter_any(self):
        yield b"data: {}\n\n"
        await asyncio.sleep(3600)
        yield b"data: [DONE]\n\n"


def relayed(reply, spec, send, receive=None):
    """``reply`` relayed to a caller speaking ASGI ``spec``: its tap, and whether the
    call's end (slot back, record made) ran."""

    async def run():
        tap = gateway.Tap(gateway.Call("r", "/v1/chat/completions"), 200, SSE, None)
        done = []
        relay = gateway.Relay(reply, tap, lambda: done.append(True))

        async def stays():
            await asyncio.sleep(3600)

        # Starlette says ClientDisconnect for an OSError while streaming (2.4), else it passes it on.
        with contextlib.suppress(ClientDisconnect, OSError):
            await relay({"type": "http", "asgi": {"spec_version": spec}}, receive or stays, send)
        return tap, done

    return asyncio.run(run())


# Ray Serve's replicas give no spec version (2.0): Starlette then streams in a task group
# beside a task listening for the caller's disconnect.
@pytest.mark.parametrize("spec", ["2.0", "2.4"])
def test_a_broken_answer_and_a_caller_gone_are_not_logged_as_successes(spec):
    sent = []

    async def take(message):
        sent.append(message)

    reply = Broken(200, SSE, None)
    tap, done = relayed(reply, spec, take)
    assert (tap.broken, tap.finished, done, reply.released) == (True, False, [True], True)  # the replica died
    assert [m.get("body") for m in sent[1:]] == [b"data: {}\n\n"]  # what came before went on; no end of answer

    if spec == "2.4":  # the caller went away after the answer's first bytes: sending to it fails

        async def send(message):
            if message["type"] == "http.response.body":
                raise OSError("the caller left")

        reply, receive = Reply(200, SSE, [b"data: {}\n\n", b"data: [DONE]\n\n"]), None
    else:  # its disconnect arrives while the answer is still coming
        first = asyncio.Event()

        async def send(message):
            if message["type"] == "http.response.body":
                first.set()

        async def receive():
            await first.wait()
            return {"type": "http.disconnect"}

        reply = Slow(200, SSE, None)
    tap, done = relayed(reply, spec, send, receive)
    assert (tap.broken, tap.finished, done, reply.released) == (False, False, [True], True)

    async def last_fails(message):  # the held-back end of the answer never reaches the caller
        if message["type"] == "http.response.body" and not message["more_body"]:
            raise OSError("the caller left")

    tap, done = relayed(Reply(200, SSE, [b"data: {}\n\n", b"data: [DONE]"]), spec, last_fails)
    assert (tap.broken, tap.finished, done) == (False, False, [True])


def test_a_refused_batch_is_dropped_and_counted_and_a_too_large_one_is_halved():
    class Refused(Exception):
        def __init__(self, status):
            self.status = status

    async def run():
        sent, answers = [], [Refused(413), Refused(422), None, None, None]

        async def ship(records, dropped):
            answer = answers.pop(0)
            if answer is not None:
                raise answer
            sent.append(len(records))

        rec = gateway.Recorder(unpacked(ship), interval_s=3600, batch=4)
        rec._task = asyncio.get_running_loop().create_future()
        rec.buffer.extend({"record_id": str(i)} for i in range(6))
        while rec.buffer and await rec.flush():
            pass
        assert rec.batch == 2  # 413: half as many at a time
        assert rec.dropped == 2 and sent == [2, 2]  # 422: that batch is dropped, the rest go

    asyncio.run(run())


def test_a_flood_of_wrong_keys_keeps_only_a_few_records_a_second(gw):
    for _ in range(gateway.UNATTRIBUTED_PER_S + 15):
        assert chat(gw, "rota_wrong").status_code == 401
    assert len(records(gw)) == gateway.UNATTRIBUTED_PER_S and gw.app.recorder.sampled_out == 15
    assert chat(gw).status_code == 200 and len(records(gw)) == gateway.UNATTRIBUTED_PER_S + 1  # a project's call is kept


def test_a_gateway_going_away_sends_what_it_holds_first():
    with running_gateway(log_interval_s=3600) as gw:  # no background send during the test
        chat(gw)
        chat(gw, KEY_B)
        assert len(records(gw)) == 2 and gw.shipped == []
        gw.portal.call(gw.app.close)  # what the deployment's __del__ awaits when Ray Serve stops the replica
        assert [r["project_id"] for r in gw.shipped] == [1, 2] and not gw.app.recorder.buffer


def test_a_drain_waits_for_the_batch_in_flight_and_keeps_what_it_could_not_send():
    async def run():
        release, shipped = asyncio.Event(), []

        async def ship(records, dropped):
            await release.wait()
            shipped.extend(records)

        rec = gateway.Recorder(unpacked(ship), interval_s=3600, batch=2)
        rec._task = asyncio.get_running_loop().create_future()
        rec.buffer.extend({"record_id": str(i)} for i in range(4))
        background = asyncio.create_task(rec.flush())  # the background send has taken a batch
        await asyncio.sleep(0.01)
        draining = asyncio.create_task(rec.drain(timeout_s=5))
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(background, draining)
        assert [r["record_id"] for r in shipped] == ["0", "1", "2", "3"] and not rec.buffer

        stuck = gateway.Recorder(lambda batch: asyncio.sleep(3600), interval_s=3600)
        stuck._task = asyncio.get_running_loop().create_future()
        stuck.buffer.extend({"record_id": str(i)} for i in range(3))
        await stuck.drain(timeout_s=0.1)  # the control plane does not answer in time
        assert len(stuck.buffer) == 3  # kept (and counted as waiting), not silently lost

    asyncio.run(run())
