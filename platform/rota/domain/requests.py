"""Request logs: what the gateway records of every call through the base URL.

Field names follow OpenTelemetry's semantic conventions where one exists (``gen_ai.*``,
``http.*``, ``error.type``); Rota's own are under ``rota.*``. The gateway sends
``GatewayRecord``s in batches; readers get ``RequestPublic``.
"""

from __future__ import annotations

import base64
import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, model_validator

from rota.domain.errors import InvalidInput
from rota.domain.names import Strict

MAX_CONTENT = 1_000_000  # characters of prompt or answer a record may carry (content logging)
MAX_INT = 2**31 - 1  # what every store's INTEGER holds


class GatewayRecord(Strict):
    """One call, as the gateway saw it. ``record_id`` is the gateway's own (unique: a batch
    sent twice is stored once); ``request_id`` is the caller's or the gateway's."""

    record_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    request_id: str = Field(min_length=1, max_length=128)
    started_at: float = Field(ge=0, description="Unix time the call arrived")
    project_id: int | None = Field(None, ge=0, le=MAX_INT)
    key_id: int | None = Field(None, ge=0, le=MAX_INT)
    key_prefix: str | None = Field(None, max_length=16)
    endpoint_id: int | None = Field(None, ge=0, le=MAX_INT)
    model: str | None = Field(None, max_length=200)
    route: str = Field(max_length=64)
    status: int = Field(ge=100, le=599)
    error_code: str | None = Field(None, max_length=64)
    stream: bool = False
    duration_ms: float = Field(ge=0, le=1e10)
    ttft_ms: float | None = Field(None, ge=0, le=1e10)
    queue_ms: float | None = Field(None, ge=0, le=1e10)
    wake_ms: float | None = Field(None, ge=0, le=1e10)
    input_tokens: int | None = Field(None, ge=0, le=MAX_INT)
    output_tokens: int | None = Field(None, ge=0, le=MAX_INT)
    finish_reasons: list[Annotated[str, StringConstraints(max_length=64)]] = Field(default_factory=list, max_length=128)
    replica_id: str | None = Field(None, max_length=128)
    request_content: str | None = Field(None, max_length=MAX_CONTENT)
    response_content: str | None = Field(None, max_length=MAX_CONTENT)

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        """NUL cannot be stored in PostgreSQL text: what a caller sent (a path, a model) loses
        it. One look per record (this runs for every call through the base URL)."""
        if not isinstance(data, dict):
            return data
        reasons = data.get("finish_reasons")
        texts = [v for v in data.values() if isinstance(v, str)]
        if isinstance(reasons, list):
            texts += [x for x in reasons if isinstance(x, str)]
        if not any("\x00" in v for v in texts):
            return data
        out = {k: v.replace("\x00", "") if isinstance(v, str) else v for k, v in data.items()}
        if isinstance(reasons, list):
            out["finish_reasons"] = [x.replace("\x00", "") if isinstance(x, str) else x for x in reasons]
        return out


RECORDS = TypeAdapter(list[GatewayRecord])  # a batch checked in one pass (record by record only when one is bad)


class GatewayBatch(Strict):
    """Records are checked one by one (``GatewayRecord``): a bad one is left out and counted,
    never the reason a whole batch is refused and sent again forever."""

    records: list[dict[str, Any]] = Field(max_length=10_000)
    dropped: int = Field(0, ge=0, description="records this gateway dropped since it started (buffer full)")


class RequestPublic(BaseModel):
    """A request log record, named as OpenTelemetry names them where it does."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    request_id: str
    time: datetime = Field(description="when the call arrived (UTC)")
    endpoint: str | None = Field(None, alias="rota.endpoint")
    endpoint_id: int | None = Field(None, alias="rota.endpoint_id")
    project: str | None = Field(None, alias="rota.project")
    key_prefix: str | None = Field(None, alias="rota.key_prefix")
    model: str | None = Field(None, alias="gen_ai.request.model", description="the routing key the caller sent")
    operation: str | None = Field(None, alias="gen_ai.operation.name")
    route: str = Field(alias="http.route")
    status: int = Field(alias="http.response.status_code")
    error_code: str | None = Field(None, alias="error.type", description="the OpenAI error code, on errors")
    stream: bool = Field(alias="rota.stream")
    duration_ms: float = Field(alias="rota.duration_ms", description="until the last byte was sent")
    ttft_ms: float | None = Field(None, alias="rota.time_to_first_token_ms", description="streams: until the first token")
    queue_ms: float | None = Field(None, alias="rota.queue_ms", description="at the gateway before it was sent on")
    wake_ms: float | None = Field(None, alias="rota.wake_ms", description="waiting for a sleeping endpoint to wake")
    woke: bool = Field(alias="rota.cold_start", description="it waited for a replica to start")
    input_tokens: int | None = Field(None, alias="gen_ai.usage.input_tokens")
    output_tokens: int | None = Field(None, alias="gen_ai.usage.output_tokens")
    finish_reasons: list[str] = Field(default_factory=list, alias="gen_ai.response.finish_reasons")
    replica_id: str | None = Field(None, alias="rota.replica_id")
    request_content: str | None = Field(None, alias="rota.request_content")
    response_content: str | None = Field(None, alias="rota.response_content")


class RequestPage(BaseModel):
    data: list[RequestPublic]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next (older) page")
    last_seq: int = Field(0, description="pass as `after` to follow: only records stored after this one")


OPERATIONS = {"/v1/chat/completions": "chat", "/v1/completions": "text_completion", "/v1/embeddings": "embeddings"}


def operation(route: str) -> str | None:
    return OPERATIONS.get(route)


_STATUS = re.compile(r"^([1-5])xx$|^([1-5][0-9]{2})$")


def status_range(text: str | None) -> tuple[int, int] | None:
    """``200``, ``4xx``, ``error`` (>= 400) or ``ok`` (< 400) as an inclusive range."""
    if text is None or text == "":
        return None
    if text == "error":
        return 400, 599
    if text == "ok":
        return 100, 399
    m = _STATUS.match(text)
    if not m:
        raise InvalidInput("status is a code (429), a class (4xx), `ok` or `error`", field="status")
    if m.group(1):
        return int(m.group(1)) * 100, int(m.group(1)) * 100 + 99
    return int(text), int(text)


def encode_cursor(started_at: float, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{started_at!r}:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, seq = raw.split(":")
        return float(at), int(seq)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("not a cursor this API gave", field="cursor") from None


def like_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, its wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
