"""Use cases on top of the store. They raise domain errors, never HTTP ones; every
method that acts for a caller takes its principal first."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from rota.domain.errors import from_validation


@dataclass
class Hooks:
    """Called after a change is committed: keep the scheduler and reconciler in step."""

    task_changed: Callable[[int], None] = lambda task_id: None
    desired_changed: Callable[[], None] = lambda: None


M = TypeVar("M", bound=BaseModel)


def merge(schema: type[M], current: dict[str, Any], merged: dict[str, Any], sent: Iterable[str]) -> tuple[M, list[str]]:
    """PATCH semantics: validate ``merged`` (the current object with the sent fields
    applied) as a whole, and return it with the sent fields whose value really changes."""
    try:
        new = schema.model_validate(merged)
    except ValidationError as e:
        raise from_validation(e.errors()) from None
    try:
        before = schema.model_validate(current)
    except ValidationError:  # stored under older rules: every field sent counts as changed
        return new, sorted(sent)
    return new, sorted(k for k in sent if getattr(new, k) != getattr(before, k))


def merge_env(current: Mapping[str, str], sent: Mapping[str, str | None]) -> dict[str, str]:
    """Environment variables are write-only: a PATCH replaces the ones it names and
    removes those it sends as null."""
    out = {**current, **{k: v for k, v in sent.items() if v is not None}}
    return {k: v for k, v in out.items() if sent.get(k, "") is not None}
