"""An OpenAI-shaped Ray Serve application without an engine, for the integration tier.

It has what Rota expects of an endpoint application (``serve:app`` in production):
``/v1/chat/completions`` (streamed or not), ``/v1/completions``, ``/v1/models``, the
cluster-internal ``api_key`` on ``/v1`` routes, ``served_model_name`` as the model id and
a ``wake`` method for scale-from-zero. Replies name the replica and echo the last user
message; ``delay_s`` (arg or request field) holds each request, so tests can have
requests in flight; ``start_delay_s`` makes a replica slow to start.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from ray import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

ROTA_TOKEN_ARG = "api_key"  # Rota passes the endpoint's own token as this argument


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
@serve.ingress()
class OpenAIEcho:
    def __init__(self, args: dict[str, Any]):
        self.args = args
        self.model = args.get("served_model_name") or args.get("model")
        self.api_key = args.get("api_key")
        self.replica = serve.get_replica_context().replica_id.unique_id
        if args.get("fail"):
            raise ValueError(args["fail"])
        time.sleep(float(args.get("start_delay_s", 0)))  # a slow engine start
        self._asgi = Starlette(
            routes=[
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/completions", self.chat, methods=["POST"]),
                Route("/invocations", self.chat, methods=["POST"]),  # like vLLM's: outside /v1
                Route("/{path:path}", self.other, methods=["GET", "POST"]),
            ]
        )

    def __serve_build_asgi_app__(self):
        return self._asgi

    async def wake(self) -> str:
        return self.replica

    def _denied(self, request: Request) -> JSONResponse | None:
        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"error": {"message": "Unauthorized"}}, status_code=401)
        return None

    async def other(self, request: Request):
        return self._denied(request) or JSONResponse({"path": request.url.path, "replica": self.replica})

    async def models(self, request: Request):
        return self._denied(request) or JSONResponse({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    async def chat(self, request: Request):
        if denied := self._denied(request):
            return denied
        body = await request.json()
        if body.get("model") != self.model:
            return JSONResponse({"error": {"message": f"The model `{body.get('model')}` does not exist."}}, status_code=404)
        await asyncio.sleep(float(body.get("delay_s", self.args.get("delay_s", 0))))
        messages = body.get("messages") or [{"content": body.get("prompt", "")}]
        text = f"{self.replica}: {messages[-1].get('content')}"
        if body.get("print"):  # what a replica prints shows in its endpoint's logs
            print(f"echo replica {self.replica} printed: {body['print']}", flush=True)
        base = {"id": f"chatcmpl-{time.time_ns()}", "created": int(time.time()), "model": self.model}
        if not body.get("stream"):
            return JSONResponse(
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
            )

        async def events():
            for word in text.split(" "):
                chunk = {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}],
                }
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")


def app(args: dict[str, Any]):
    return OpenAIEcho.options(
        max_ongoing_requests=int(args.get("max_ongoing_requests", 8)),
        max_queued_requests=int(args.get("max_queued_requests", -1)),
    ).bind(args)
