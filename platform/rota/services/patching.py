"""PATCH semantics shared by tasks and endpoints: merge, validate the whole, diff."""

from __future__ import annotations

from typing import Any, Iterable, TypeVar

from pydantic import BaseModel, ValidationError

from rota.domain.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)


def validation_error(e: ValidationError) -> InvalidInput:
    """The first pydantic error as a domain error naming its field (e.g. schedule.0.max_replicas)."""
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
    msg = err.get("msg", "invalid").removeprefix("Value error, ")
    return InvalidInput(f"{loc}: {msg}" if loc else msg, field=loc or None)


def merge(schema: type[M], current: dict[str, Any], merged: dict[str, Any], sent: Iterable[str]) -> tuple[M, list[str]]:
    """Validate ``merged`` (the current object with the sent fields applied) as a whole,
    and return it with the sent fields whose value really changes."""
    try:
        new = schema.model_validate(merged)
    except ValidationError as e:
        raise validation_error(e) from None
    before = schema.model_validate(current)
    return new, sorted(k for k in sent if getattr(new, k) != getattr(before, k))
