"""The gateway's request log: one record per call through the base URL, shipped to the
control plane in batches, off the request path (a helper of ``gateway.py``).

- ``Call`` is what one call was: who, which endpoint, how long each part took.
- ``Tap`` is fed the answer chunk by chunk as it is relayed (plain calls, no I/O): it
  times the first token, reads the token usage and finish reasons, and, for a stream whose
  caller did not ask for usage, drops the usage chunk the gateway asked vLLM for. Events
  pass on as soon as they are whole.
- ``Recorder`` buffers records and sends them every ``interval_s`` (a crash of the
  gateway loses at most that much), each encoded once per send, into one JSON body; when
  the control plane is away it keeps up to ``capacity`` records, then drops the oldest and
  counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("ray.serve")

_REQUEST_ID = re.compile(r"^[\x20-\x7e]{1,128}$")  # printable ASCII: what a header may carry, kept whole
# A chunk that carries something generated: text, reasoning, a tool call.
_TOKEN = re.compile(rb'"(?:content|text|reasoning_content)":\s?"[^"]|"tool_calls":\s?\[\{')
_EVENT = re.compile(rb"(.*?)(\r?\n\r?\n)", re.S)  # one server-sent event and the blank line that ends it
MAX_INT = 2**31 - 1
MAX_PENDING = 1 << 20  # bytes of an unfinished event held back at most
_FINISH = re.compile(rb'"finish_reason":\s?"([A-Za-z_]{1,32})"')
_USAGE = re.compile(rb'"usage":\s?(\{[^{}]*\})')
_NOTABLE = re.compile(rb'"finish_reason":\s?"|"usage"')  # what ``Tap._events`` takes from a stream after its first token


_RECORDS = itertools.count()
_PROCESS = uuid.uuid4().hex[:16]  # record ids: this process's random half, then a count (unique, no syscall per call)


def request_id(given: str | None) -> str:
    """The request's ``x-request-id`` (the caller's, or the one Ray Serve's ingress gave it)
    when it is printable and at most 128 characters, else a new one."""
    return given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex


def _count(value: Any) -> int | None:
    """A token count as the store keeps it (the engine's, or a custom application's, may be anything)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INT else None


@dataclass
class Call:
    request_id: str
    route: str
    started_at: float = field(default_factory=time.time)
    t0: float = field(default_factory=time.monotonic)
    project_id: int | None = None
    key_id: int | None = None
    key_prefix: str | None = None
    endpoint_id: int | None = None
    model: str | None = None
    stream: bool = False
    usage_asked: bool = True  # the caller asked for usage on its stream (else it is stripped)
    content_max: int = 0  # >0: prompt and answer are kept, truncated at this many bytes
    queue_ms: float | None = None
    wake_ms: float | None = None
    request_content: str | None = None
    background: bool = False  # queued work sent by the control plane's dispatcher

    def ms(self) -> float:
        return round((time.monotonic() - self.t0) * 1000, 3)

    def record(self, status: int, error_code: str | None = None, tap: Tap | None = None) -> dict[str, Any]:
        out = {
            "record_id": f"{_PROCESS}{next(_RECORDS):016x}",
            "request_id": self.request_id,
            "started_at": self.started_at,
            "project_id": self.project_id,
            "key_id": self.key_id,
            "key_prefix": self.key_prefix,
            "endpoint_id": self.endpoint_id,
            "model": self.model[:200] if self.model else None,
            "route": self.route[:64],
            "status": status,
            "error_code": error_code,
            "stream": self.stream,
            "duration_ms": self.ms(),
            "queue_ms": self.queue_ms,
            "wake_ms": self.wake_ms,
            "request_content": self.request_content,
        }
        if tap is not None:
            out.update(tap.summary())
        return out


class Tap:
    """Watches (and for streams, edits) an answer on its way to the caller."""

    def __init__(self, call: Call, status: int, content_type: str, replica: str | None):
        self.call, self.status, self.replica = call, status, replica
        self.sse = "text/event-stream" in content_type
        self.ttft_ms: float | None = None
        self.usage: dict[str, Any] | None = None
        self.finish: list[str] = []
        self.error_code: str | None = None
        self._pending = b""
        self._kept: list[bytes] = []  # the body (JSON answers, errors, or content logging)
        self._kept_size = 0
        self._tail = b""  # the last bytes of a JSON answer: its usage, when the answer is too long to keep
        self.finished = False  # the whole answer reached the caller
        self.broken = False  # the endpoint's answer broke off (set by whoever reads it)
        self._limit = max(call.content_max, 0 if self.sse and status < 400 else 1 << 20)
        self._keeping = self._limit > 0

    def feed(self, chunk: bytes) -> bytes:
        """What of ``chunk`` goes on to the caller now; a stream whole events at a time (the
        hot path: after the first token, a chunk of whole token events costs one byte
        search, nothing more, unless content is kept)."""
        if not self.sse:
            self._tail = (self._tail + chunk)[-4096:]
            self._keep(chunk)
            return chunk
        plain = self.ttft_ms is not None and not self._keeping and not self._pending and chunk.endswith(b"\n\n")
        if plain and not _NOTABLE.search(chunk):  # whole token events, like those before: nothing to note
            return chunk
        out = self._events(chunk)
        if out and self._keeping:
            self._keep(out)
        return out

    def close(self) -> bytes:
        """The answer ended: what was held back goes on as it is (an unterminated last
        event), and what the answer said is read. ``finished`` is the reader's to set,
        once that last part has reached the caller."""
        rest, self._pending = self._pending, b""
        if rest:
            self._keep(rest)
        self._finish()
        return rest

    def _events(self, chunk: bytes) -> bytes:
        """The whole events received so far (``\n\n`` or ``\r\n\r\n`` ends one); the rest waits."""
        data = self._pending + chunk if self._pending else chunk
        if data.endswith(b"\n\n"):  # the usual chunk: whole events
            whole, self._pending = data, b""
        else:
            lf, crlf = data.rfind(b"\n\n"), data.rfind(b"\r\n\r\n")
            end = max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)
            if len(data) - end > MAX_PENDING:  # no end of event in sight: passed on as it is, not held
                self._pending = b""
                return data
            whole, self._pending = data[:end], data[end:]
            if not whole:
                return b""
        if self.ttft_ms is None and _TOKEN.search(whole):
            self.ttft_ms = self.call.ms()
        if finished := _FINISH.findall(whole):
            self.finish.extend(m.decode() for m in finished)
        if b'"usage"' not in whole:
            return whole
        return b"".join(m.group(0) for m in _EVENT.finditer(whole) if not self._usage_event(m.group(1)))

    def _usage_event(self, event: bytes) -> bool:
        """Takes the usage from a usage-only chunk; True if the caller should not see it."""
        if b'"choices":[]' not in event.replace(b" ", b""):
            return False
        try:
            body = json.loads(event.partition(b"data:")[2])
        except (ValueError, RecursionError):
            return False
        if isinstance(body, dict) and isinstance(body.get("usage"), dict):
            self.usage = body["usage"]
            return not self.call.usage_asked
        return False

    def _keep(self, data: bytes) -> None:
        if self._kept_size < self._limit:
            self._kept.append(data[: self._limit - self._kept_size])
            self._kept_size += len(self._kept[-1])

    def _finish(self) -> None:
        if self.sse:
            return
        try:
            body = json.loads(b"".join(self._kept))
        except (ValueError, RecursionError):  # longer than kept (e.g. many embeddings): vLLM puts usage last
            m = _USAGE.search(self._tail)
            with contextlib.suppress(ValueError, RecursionError):
                self.usage = json.loads(m.group(1)) if m else None
            return
        if not isinstance(body, dict):
            return
        if isinstance(body.get("usage"), dict):
            self.usage = body["usage"]
        for choice in body.get("choices") or []:
            if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
                self.finish.append(choice["finish_reason"])
        err = body.get("error") if isinstance(body.get("error"), dict) else body if body.get("object") == "error" else None
        if err is not None:
            code = err.get("code") if isinstance(err.get("code"), str) else err.get("type")
            self.error_code = str(code)[:64] if code else None

    def summary(self) -> dict[str, Any]:
        usage = self.usage if isinstance(self.usage, dict) else {}
        content = None
        if self.call.content_max:
            content = b"".join(self._kept)[: self.call.content_max].decode("utf-8", "replace")
        return {
            "ttft_ms": self.ttft_ms,
            "input_tokens": _count(usage.get("prompt_tokens")),
            "output_tokens": _count(usage.get("completion_tokens")),
            "finish_reasons": self.finish[:128],
            "replica_id": self.replica[:128] if self.replica else None,
            "error_code": self.error_code,
            "response_content": content,
        }


class Recorder:
    """Records waiting to be sent; sent every ``interval_s``, at most ``batch`` (and
    ``batch_bytes``) at a time, to ``send`` as the body ``{"records": [...], "dropped": n}``."""

    def __init__(
        self,
        send: Callable[[bytes], Awaitable[None]],
        interval_s: float = 1.0,
        capacity: int = 50_000,
        batch: int = 2_000,
        batch_bytes: int = 512 * 1024,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self.send, self.interval_s, self.capacity = send, interval_s, capacity
        self.clock, self.sleep = clock, sleep
        self.batch, self.batch_bytes = batch, batch_bytes
        self.buffer: deque[dict[str, Any]] = deque()
        self.dropped = 0  # records lost: the buffer was full (the control plane away too long), or a batch refused
        self.sampled_out = 0  # records of calls no project was found for, beyond the gateway's rate for them
        self.sent = 0
        self._task: asyncio.Task[None] | None = None
        self._sending = asyncio.Lock()  # one batch in flight: a drain waits for the background send

    def add(self, record: dict[str, Any]) -> None:
        if len(self.buffer) >= self.capacity:
            self.buffer.popleft()
            self.dropped += 1
        self.buffer.append(record)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        """Send on a fixed beat: a slow send does not push the next one back, so a record
        waits at most ``interval_s`` before it is on its way."""
        due = self.clock()
        while True:
            due += self.interval_s
            await self.sleep(max(0.0, due - self.clock()))
            while self.buffer and await self.flush():
                pass
            due = max(due, self.clock() - self.interval_s)  # after a long outage: no burst of catch-up beats

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Send what is waiting (the replica is going away), for at most ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self.buffer and time.monotonic() < deadline:
            try:
                sent = await asyncio.wait_for(self.flush(), timeout=max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            if not sent:
                break
        if self.buffer:
            log.warning("request log: %d records not sent before the gateway stopped", len(self.buffer))

    async def flush(self) -> bool:
        """Send one batch; on failure it goes back to the front. True if one was sent."""
        async with self._sending:
            return await self._flush()

    async def _flush(self) -> bool:
        taken: list[dict[str, Any]] = []
        encoded: list[str] = []  # ASCII JSON: a CJK character takes six bytes
        size = 0
        while self.buffer and len(taken) < self.batch:
            text = json.dumps(self.buffer[0])
            if taken and size + len(text) + 1 > self.batch_bytes:
                break
            taken.append(self.buffer.popleft())
            encoded.append(text)
            size += len(text) + 1
        if not taken:
            return False
        body = f'{{"records":[{",".join(encoded)}],"dropped":{self.dropped}}}'.encode()
        try:
            await self.send(body)
        except asyncio.CancelledError:  # cut short (a drain's deadline): kept for whoever sends next
            self.buffer.extendleft(reversed(taken))
            raise
        except Exception as e:
            status = getattr(e, "status", None)
            if status == 413 and len(taken) > 1:  # too large at once: half as many at a time
                self.batch = max(1, len(taken) // 2)
                self.buffer.extendleft(reversed(taken))
                return True
            if isinstance(status, int) and 400 <= status < 500:  # refused as it is: sending it again would not help
                log.warning("request log: a batch of %d records was refused (%s): dropped", len(taken), status)
                self.dropped += len(taken)
                return True
            # The control plane is away: keep them (bounded) and try again later.
            log.warning("request log: %d records not sent (%s); %d waiting", len(taken), e, len(self.buffer) + len(taken))
            room = max(0, self.capacity - len(self.buffer))
            keep = taken[len(taken) - room :] if room < len(taken) else taken  # the oldest go first
            self.dropped += len(taken) - len(keep)
            self.buffer.extendleft(reversed(keep))
            return False
        self.sent += len(taken)
        return True
