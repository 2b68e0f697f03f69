"""An endpoint's async invocations in the console: one request's status and answer,
cancel, a batch's cancel, and a batch's output and error files."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import Response

from rota.console.web import Form, Who, console_url, render, rt, see_other

router = APIRouter(prefix="/console")


@router.get("/async/{request_id}")
def async_page(request: Request, request_id: str, who: Who) -> Response:
    item = rt(request).invocations.get(who, request_id[:64])
    answer = json.dumps(item.response, indent=2)[:200_000] if item.response is not None else None
    return render(request, "async.html", who, item=item, answer=answer)


@router.post("/async/{request_id}/cancel")
def cancel(request: Request, request_id: str, who: Who, data: Form) -> Response:
    item = rt(request).invocations.cancel(who, request_id[:64])
    return see_other(f"/console/async/{item.id}", request)


@router.post("/batches/{batch_id}/cancel")
def cancel_batch(request: Request, batch_id: str, who: Who, data: Form) -> Response:
    rt(request).invocations.cancel_batch(who, batch_id[:64])
    return see_other(console_url(data.get("back"), "/console/endpoints"), request)


@router.get("/files/{file_id}/content")
def file_content(request: Request, file_id: str, who: Who) -> Response:
    """A batch's output or error file (JSONL), downloaded."""
    r = rt(request)
    meta = r.invocations.file(who, file_id[:64])
    name = "".join(c for c in meta.filename if c.isascii() and (c.isalnum() or c in "._-"))[:100] or f"{meta.id}.jsonl"
    return Response(
        r.invocations.file_content(who, meta.id),
        media_type="application/jsonl",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "X-Content-Type-Options": "nosniff"},
    )
