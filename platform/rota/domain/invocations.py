"""Async invocations and OpenAI batches: what a caller submits, the states a request goes
through, the batch file format, and the retry rule. Pure: no store, no network. An async
request is an OpenAI request body (``/v1/chat/completions`` or ``/v1/completions``) kept in
the store and sent to its endpoint later, by the dispatcher, when it has room. A batch is a
JSONL file of such requests (OpenAI's Batch API format), one per line."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeAlias, TypeVar

from pydantic import BaseModel, Field

from rota.domain.errors import InvalidInput
from rota.domain.webhooks import webhook_url

Item = TypeVar("Item")

ROUTES = ("/v1/chat/completions", "/v1/completions")  # what an async request or a batch line may call
MAX_BATCH_LINES = 50_000
WINDOW = re.compile(r"^([1-9][0-9]{0,2})h$")  # a batch's completion window: "24h"
MAX_WINDOW_H = 168
ROTA_FIELDS = ("webhook_url", "run_in_window")  # taken off the body: Rota's, not the engine's


class AsyncStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


FINAL = frozenset({AsyncStatus.SUCCEEDED, AsyncStatus.FAILED, AsyncStatus.CANCELLED, AsyncStatus.EXPIRED})


class BatchStatus(StrEnum):
    """OpenAI's batch statuses (``validating`` passes within the create call here)."""

    VALIDATING = "validating"
    FAILED = "failed"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


@dataclass(frozen=True)
class Submission:
    """An async request as submitted: the body the engine gets, and Rota's options."""

    model: str
    body: bytes
    webhook_url: str | None
    run_in_window: bool


def submission(raw: bytes, route: str, max_bytes: int) -> Submission:
    """Check a submitted body: a JSON object with a ``model``, not streamed; Rota's own
    fields (``webhook_url``, ``run_in_window``) are taken off what the engine will get."""
    if route not in ROUTES:
        raise InvalidInput(f"async calls go to {', '.join(ROUTES)}", field="url")
    if len(raw) > max_bytes:
        raise InvalidInput(f"the request body is over the limit of {max_bytes} bytes", field="body")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object", field="body")
    return _checked(body, "")


def _checked(body: dict[str, Any], where: str) -> Submission:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidInput(f"{where}'model' is required: the routing_key of one of your endpoints", field="model")
    if body.get("stream") not in (None, False):
        raise InvalidInput(f"{where}an async answer is one JSON body: 'stream' must be false or left out", field="stream")
    hook = body.pop("webhook_url", None)
    if hook is not None:
        hook = webhook_url(hook)
    in_window = body.pop("run_in_window", False)
    if not isinstance(in_window, bool):
        raise InvalidInput(f"{where}'run_in_window' must be true or false", field="run_in_window")
    return Submission(model, json.dumps(body, separators=(",", ":")).encode(), hook, in_window)


@dataclass(frozen=True)
class BatchLine:
    line: int
    custom_id: str
    route: str
    submission: Submission


def batch_lines(content: bytes, max_bytes: int, max_lines: int = MAX_BATCH_LINES) -> list[BatchLine]:
    """Parse an OpenAI batch input file: one ``{"custom_id", "method": "POST", "url",
    "body"}`` per line, custom ids unique, every line for one model and one URL. An error
    names its line."""
    lines: list[BatchLine] = []
    seen: set[str] = set()
    for n, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        if len(lines) >= max_lines:
            raise InvalidInput(f"a batch holds at most {max_lines} requests", field="input_file_id")
        at = f"line {n}: "
        try:
            item = json.loads(raw)
        except (ValueError, RecursionError):
            item = None
        if not isinstance(item, dict):
            raise InvalidInput(f"{at}not a JSON object", field="input_file_id")
        custom_id, body = item.get("custom_id"), item.get("body")
        if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= 512 or "\x00" in custom_id:
            raise InvalidInput(f"{at}'custom_id' must be a string of 1 to 512 characters, no NUL", field="input_file_id")
        if custom_id in seen:
            raise InvalidInput(f"{at}custom_id {custom_id[:64]!r} appears twice", field="input_file_id")
        seen.add(custom_id)
        if item.get("method", "POST") != "POST" or item.get("url") not in ROUTES:
            raise InvalidInput(f"{at}'method' must be POST and 'url' one of {', '.join(ROUTES)}", field="input_file_id")
        if not isinstance(body, dict):
            raise InvalidInput(f"{at}'body' must be a JSON object", field="input_file_id")
        if len(raw) > max_bytes:
            raise InvalidInput(f"{at}over the limit of {max_bytes} bytes per request", field="input_file_id")
        try:
            sub = _checked(body, at)
        except InvalidInput as e:
            raise InvalidInput(e.message, field="input_file_id") from None
        if sub.webhook_url:
            raise InvalidInput(f"{at}batch lines take no 'webhook_url'", field="input_file_id")
        first = lines[0] if lines else None
        if first and (sub.model, item["url"]) != (first.submission.model, first.route):
            raise InvalidInput(f"{at}every line of a batch calls the same model and url", field="input_file_id")
        lines.append(BatchLine(n, custom_id, item["url"], sub))
    if not lines:
        raise InvalidInput("the input file holds no requests", field="input_file_id")
    return lines


def window_hours(value: str) -> int:
    m = WINDOW.match(value or "")
    if not m or int(m.group(1)) > MAX_WINDOW_H:
        raise InvalidInput(f"'completion_window' must be like '24h' (at most {MAX_WINDOW_H}h)", field="completion_window")
    return int(m.group(1))


def output_line(request_id: str, custom_id: str, status_code: int | None, body: Any, error: str | None) -> dict[str, Any]:
    """One line of a batch's output or error file, in OpenAI's format."""
    response = None if status_code is None else {"status_code": status_code, "request_id": request_id, "body": body}
    failed = error is not None or status_code is None or status_code >= 400
    err = {"code": "request_failed", "message": error or f"the endpoint answered {status_code}"} if failed else None
    return {"id": request_id, "custom_id": custom_id, "response": response, "error": err}


# What an attempt's outcome means for the request.
RETRY, DONE, NOT_NOW = "retry", "done", "not_now"


# The gateway's own answers that say "not now" rather than "this request failed": no room,
# waking past its timeout or down, a routing table that does not know the endpoint yet.
NOT_NOW_CODES = frozenset(
    {"rate_limit_exceeded", "endpoint_waking", "endpoint_unavailable", "model_not_found", "invalid_api_key"}
)


def outcome(status_code: int | None, error_code: str | None = None) -> str:
    """``None`` (no answer: a connection broke, a replica died) and 5xx are retried (up to
    the limit); 429, 503 and the gateway's "not now" codes (its routing table is a moment
    behind, the endpoint is waking) are sent again later, not counted as an attempt;
    anything else is the answer."""
    if status_code in (429, 503) or (status_code is not None and error_code in NOT_NOW_CODES):
        return NOT_NOW
    if status_code is None or status_code >= 500:
        return RETRY
    return DONE


def error_code_of(body: bytes) -> str | None:
    """An OpenAI-shaped error body's ``error.code`` (the gateway's, or the engine's)."""
    try:
        err = json.loads(body).get("error")
    except (ValueError, AttributeError, RecursionError):
        return None
    code = err.get("code") if isinstance(err, dict) else None
    return code if isinstance(code, str) else None


def backoff_s(attempt: int, base_s: float = 1.0, cap_s: float = 60.0) -> float:
    """Wait before attempt ``attempt + 1``: 1, 2, 4 ... seconds, at most ``cap_s``."""
    return float(min(cap_s, base_s * 2 ** max(0, attempt - 1)))


class AsyncPublic(BaseModel):
    id: str
    object: str = "async.request"
    status: AsyncStatus
    model: str
    url: str = Field(description="the OpenAI route it calls")
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    expires_at: float = Field(description="a request not done by then is expired; its record is kept until then too")
    attempts: int
    status_code: int | None = Field(None, description="the endpoint's HTTP status")
    response: Any = Field(None, description="the endpoint's answer (the OpenAI response body)")
    error: str | None = None
    run_in_window: bool = False
    window_opens_at: float | None = Field(None, description="run_in_window: when the endpoint's next scheduled window opens")
    webhook: dict[str, Any] | None = Field(None, description="url, delivery status, attempts, last error")
    batch_id: str | None = None
    custom_id: str | None = None


class AsyncPage(BaseModel):
    object: str = "list"
    data: list[AsyncPublic]
    has_more: bool


class FilePublic(BaseModel):
    """OpenAI's file object."""

    id: str
    object: str = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: str = "processed"
    expires_at: int | None = None


class BatchCreate(BaseModel):
    input_file_id: str = Field(max_length=64)
    endpoint: str = Field(description="the route every line calls: /v1/chat/completions or /v1/completions")
    completion_window: str = "24h"
    metadata: dict[str, str] | None = Field(None, max_length=16)
    run_in_window: bool = Field(False, description="Rota: wait for the endpoint's next scheduled window, do not wake it")


class BatchPublic(BaseModel):
    """OpenAI's batch object (times in Unix seconds)."""

    id: str
    object: str = "batch"
    endpoint: str
    model: str
    errors: Any = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: dict[str, int]
    metadata: dict[str, str] | None = None
    run_in_window: bool = False
    window_opens_at: float | None = None


class Page(BaseModel, Generic[Item]):  # a page of a list, newest first, as OpenAI's (after: the last id seen)
    object: str = "list"
    data: list[Item]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool


BatchPage: TypeAlias = Page[BatchPublic]
FilePage: TypeAlias = Page[FilePublic]


def background_limit(limit: int, reserve: float) -> int:
    """Requests in flight up to which queued work is sent to an endpoint admitting ``limit``
    at once: the ``reserve`` share (at least one slot) stays for synchronous calls; an
    endpoint that admits one at a time shares its one slot."""
    return max(1, min(limit - 1, int(limit * (1 - reserve)))) if limit > 1 else 1
