"""Async invocations (``/v1/async``) and the OpenAI Files and Batch APIs (``/v1/files``,
``/v1/batches``). Served here, on the control plane, and at the base URL: the gateway
relays these paths here with the caller's key, so the official ``openai`` client works
against either. Every answer is about the key's own project only."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from rota.api.deps import Who, runtime
from rota.domain.invocations import AsyncPage, AsyncPublic, BatchCreate, BatchPage, BatchPublic, FilePage, FilePublic
from rota.domain.names import Strict
from rota.domain.webhooks import SIGNATURE_HEADER
from rota.services.auth import Principal
from rota.services.invocations import InvocationService
from rota.services.webhook_secrets import MAX_GRACE_S, SigningSecrets

router = APIRouter(tags=["async"])


def _service(request: Request) -> InvocationService:
    return runtime(request).invocations  # type: ignore[no-any-return]


Invocations = Annotated[InvocationService, Depends(_service)]


@router.post("/v1/async/chat/completions", status_code=202, response_model=AsyncPublic, summary="Queue a chat completion")
async def submit_chat(request: Request, who: Who, inv: Invocations) -> AsyncPublic:
    """The body of ``/v1/chat/completions`` (not streamed), plus optional ``webhook_url``
    and ``run_in_window``. Answers at once with the request's id; ``GET /v1/async/{id}``
    has the answer when it is done."""
    return await run_in_threadpool(inv.submit, who, "/v1/chat/completions", await request.body())


@router.post("/v1/async/completions", status_code=202, response_model=AsyncPublic, summary="Queue a completion")
async def submit_completion(request: Request, who: Who, inv: Invocations) -> AsyncPublic:
    return await run_in_threadpool(inv.submit, who, "/v1/completions", await request.body())


@router.get("/v1/async", response_model=AsyncPage, summary="The project's async requests, newest first")
def list_async(
    who: Who,
    inv: Invocations,
    limit: int = Query(20, ge=1, le=1000),
    after: str | None = Query(None, max_length=64, description="the last id of the previous page"),
    status: str | None = Query(None, max_length=16),
    model: str | None = Query(None, max_length=200),
) -> AsyncPage:
    return inv.requests(who, limit, after, status, model)


@router.get("/v1/async/{request_id}", response_model=AsyncPublic, summary="An async request: its status and answer")
def get_async(request_id: str, who: Who, inv: Invocations) -> AsyncPublic:
    return inv.get(who, request_id)


@router.delete("/v1/async/{request_id}", response_model=AsyncPublic, summary="Cancel a queued async request")
def cancel_async(request_id: str, who: Who, inv: Invocations) -> AsyncPublic:
    return inv.cancel(who, request_id)


class Rotation(Strict):
    previous_valid_s: int = Field(
        86_400, ge=0, le=MAX_GRACE_S, strict=True, description="how long the replaced secret keeps signing (0: not at all)"
    )


def _secret(who: Principal, secrets: SigningSecrets) -> dict[str, Any]:
    until = secrets.previous_until if secrets.previous is not None else None
    return {
        "project": who.project,
        "secret": secrets.current,
        "header": SIGNATURE_HEADER,
        "algorithm": "HMAC-SHA256",
        "signs": 't=<unix time>,sha256=<HMAC of "<t>." + body>, one sha256= per live secret',
        "previous_valid_until": None if until is None else datetime.fromtimestamp(until, timezone.utc).isoformat(),
    }


@router.get("/api/v1/async/webhook-secret", summary="The project's webhook signing secret")
def webhook_secret(who: Who, request: Request) -> dict[str, Any]:
    """Webhooks carry ``x-rota-signature: t=<unix time>,sha256=<HMAC-SHA256 of "<t>." +
    body>``; after a rotation, a second ``sha256=`` with the previous secret until
    ``previous_valid_until``."""
    return _secret(who, runtime(request).webhook_secrets.of(who.project_id))


@router.post("/api/v1/async/webhook-secret/rotate", summary="A new webhook signing secret for the project")
def rotate_webhook_secret(who: Who, request: Request, body: Rotation | None = None) -> dict[str, Any]:
    """The new secret signs every delivery from now on; the replaced one signs them too for
    ``previous_valid_s`` (default a day), so receivers can switch without refusing any."""
    grace = (body or Rotation()).previous_valid_s
    return _secret(who, runtime(request).webhook_secrets.rotate(who.project_id, grace))


@router.post("/v1/files", response_model=FilePublic, summary="Upload a batch input file (JSONL)")
async def upload_file(who: Who, inv: Invocations, file: UploadFile = File(...), purpose: str = Form(...)) -> FilePublic:
    content = await file.read()
    return await run_in_threadpool(inv.create_file, who, purpose, file.filename or "file.jsonl", content)


@router.get("/v1/files", response_model=FilePage, summary="The project's files, newest first")
def list_files(
    who: Who,
    inv: Invocations,
    limit: int = Query(100, ge=1, le=10_000),
    after: str | None = Query(None, max_length=64, description="the last id of the previous page"),
    purpose: str | None = Query(None, max_length=32),
) -> FilePage:
    return inv.files(who, limit, after, purpose)


@router.get("/v1/files/{file_id}", response_model=FilePublic, summary="A file")
def get_file(file_id: str, who: Who, inv: Invocations) -> FilePublic:
    return inv.file(who, file_id)


@router.get("/v1/files/{file_id}/content", summary="A file's content (a batch's output or errors)")
def file_content(file_id: str, who: Who, inv: Invocations) -> Response:
    return Response(inv.file_content(who, file_id), media_type="application/jsonl")


@router.delete("/v1/files/{file_id}", summary="Delete a file")
def delete_file(file_id: str, who: Who, inv: Invocations) -> dict[str, Any]:
    return inv.delete_file(who, file_id)


@router.post("/v1/batches", response_model=BatchPublic, summary="Run a batch of requests from an uploaded file")
def create_batch(body: BatchCreate, who: Who, inv: Invocations) -> BatchPublic:
    return inv.create_batch(who, body)


@router.get("/v1/batches", response_model=BatchPage, summary="The project's batches, newest first")
def list_batches(
    who: Who, inv: Invocations, limit: int = Query(20, ge=1, le=100), after: str | None = Query(None, max_length=64)
) -> BatchPage:
    return inv.batches(who, limit, after)


@router.get("/v1/batches/{batch_id}", response_model=BatchPublic, summary="A batch: its status and request counts")
def get_batch(batch_id: str, who: Who, inv: Invocations) -> BatchPublic:
    return inv.batch(who, batch_id)


@router.post("/v1/batches/{batch_id}/cancel", response_model=BatchPublic, summary="Cancel a batch")
def cancel_batch(batch_id: str, who: Who, inv: Invocations) -> BatchPublic:
    return inv.cancel_batch(who, batch_id)
