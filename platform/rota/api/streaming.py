"""Long-lived responses that hold a slot (a log follower, a status stream, a chat): the
slot is given back exactly once, when the response ends however it ends, including a
client gone before its body started (the body's own clean-up never runs then)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterable, Callable
from typing import Any

from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

SSE = {"media_type": "text/event-stream", "headers": {"Cache-Control": "no-cache"}}


class Once:
    """``release`` called at most once, from any of the places a response may end."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release, self._lock, self.done = release, threading.Lock(), False

    def __call__(self) -> None:
        with self._lock:
            if self.done:
                return
            self.done = True
        self._release()


class HeldStream(StreamingResponse):
    """A streaming response that gives its slot back when it ends."""

    def __init__(self, body: AsyncIterable[Any], release: Once, **kw: Any) -> None:
        super().__init__(body, **kw)
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            try:
                if close is not None:  # a body that never started is closed too (no-op then)
                    await close()
            finally:
                self.release()
