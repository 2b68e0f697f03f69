"""The Playground: a chat with an endpoint through the base URL, streamed.

The browser never holds an API key: the control plane sends the call to the gateway with
the cluster-internal token on behalf of the signed-in key's project, naming the key, so
the call is admitted, routed and logged exactly as that key's own call would be.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from rota.api.streaming import HeldStream, Once
from rota.console.live import Limit
from rota.console.web import Form, Who, rt
from rota.domain.errors import InvalidInput

router = APIRouter(prefix="/console")
MAX_MESSAGE = 8_000
MAX_TOKENS = 256
chats = Limit("chats", per_key=2, per_project=4, total=16)  # each holds a call on an endpoint for a while


def deltas(line: str) -> str:
    """The text of one server-sent line of a chat completion stream ("" for none)."""
    if not line.startswith("data:") or line.strip() == "data: [DONE]":
        return ""
    try:
        chunk = json.loads(line[5:])
    except ValueError:
        return ""
    if not isinstance(chunk, dict):
        return ""
    if chunk.get("error") is not None:
        error = chunk["error"]
        return f"\n[error: {error.get('message', error) if isinstance(error, dict) else error}]"
    choices = chunk.get("choices")
    first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    delta = first.get("delta")
    return str(delta.get("content") or "") if isinstance(delta, dict) else ""


@router.post("/endpoints/{ref}/chat")
async def chat(request: Request, ref: str, who: Who, data: Form) -> StreamingResponse:
    r = rt(request)
    ep = await run_in_threadpool(r.endpoints.get, who, ref)  # a 404 for another project's endpoint, before any call
    message = data.get("message", "").strip()
    if not message or len(message) > MAX_MESSAGE:
        raise InvalidInput(f"message: write 1 to {MAX_MESSAGE} characters", field="message")
    prefix = await run_in_threadpool(r.auth.key_prefix, who)
    body = {"model": ep.routing_key, "messages": [{"role": "user", "content": message}], "stream": True, "max_tokens": MAX_TOKENS}
    headers = {
        "authorization": f"Bearer {r.internal_token}",
        "x-rota-project": str(who.project_id),
        "x-rota-key-id": str(who.key_id),
        "x-rota-key-prefix": prefix,
    }

    chats.admit(who)
    release = Once(lambda: chats.release(who))

    async def answer() -> AsyncIterator[str]:
        try:
            async for text in _relay(r.settings.serve_url, body, headers):
                yield text
        except httpx.HTTPError as e:  # the base URL did not answer, or broke off
            yield f"\n[the base URL did not answer: {type(e).__name__}]"
        finally:
            release()

    return HeldStream(answer(), release, media_type="text/plain; charset=utf-8", headers={"Cache-Control": "no-cache"})


async def _relay(serve_url: str, body: dict[str, object], headers: dict[str, str]) -> AsyncIterator[str]:
    """The answer's text as the base URL streams it (an error as ``[status: message]``)."""
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=5.0), trust_env=False) as client,
        client.stream("POST", f"{serve_url}/v1/chat/completions", json=body, headers=headers) as resp,
    ):
        if resp.status_code >= 400:
            raw = (await resp.aread()).decode(errors="replace")
            try:
                text = json.loads(raw)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                text = raw[:500]
            yield f"[{resp.status_code}: {text}]"
            return
        async for line in resp.aiter_lines():
            if text := deltas(line):
                yield text
