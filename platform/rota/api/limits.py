"""A request body limit: larger bodies are refused with a 413 before anything reads them."""

from __future__ import annotations

import json
from typing import Any

Message = dict[str, Any]


class BodyLimit:
    """ASGI middleware: at most ``limit`` bytes of request body (declared or sent); paths
    under a prefix of ``wider`` take that prefix's limit instead (uploads)."""

    def __init__(self, app: Any, limit: int, wider: dict[str, int] | None = None):
        self.app, self.default, self.wider = app, limit, wider or {}

    def limit_for(self, path: str) -> int:
        return next((n for prefix, n in self.wider.items() if path.startswith(prefix)), self.default)

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)  # type: ignore[no-any-return]
        limit = self.limit_for(scope.get("path", ""))
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > limit:
            return await self._refuse(send, limit)
        chunks, size, more = [], 0, True
        while more:  # buffered here (at most `limit` bytes), then replayed to the app
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message], receive), send)  # type: ignore[no-any-return]
            size += len(message.get("body", b""))
            if size > limit:
                return await self._refuse(send, limit)
            chunks.append(message)
            more = message.get("more_body", False)
        await self.app(scope, _replay(chunks, receive), send)

    async def _refuse(self, send: Any, limit: int) -> None:
        body = json.dumps(
            {"error": {"code": "too_large", "message": f"the request body is over the limit of {limit} bytes", "field": None}}
        ).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


def _replay(messages: list[Message], receive: Any) -> Any:
    queue = list(messages)

    async def replay() -> Message:
        return queue.pop(0) if queue else await receive()

    return replay
