"""Replica log lines: parsed from what Ray's log API returns, merged in time order.

A replica writes to two files (``out``, ``err``). Lines that start with a timestamp (Ray
Serve's ``INFO 2026-11-23 17:56:30,769 ...``, vLLM's ``INFO 11-23 17:56:30 [...]``) carry
it; the others (a traceback, a ``print``) take the time of the line before them in the
same file. Ray writes local time on each node; nodes are taken to run in UTC.
"""

from __future__ import annotations

import contextlib
import heapq
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel

Stream = Literal["out", "err"]
_SERVE = re.compile(r"^(?:\(\S+ pid=\d+\) )?([A-Z]+) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:[,.](\d{1,6}))?\b")
_VLLM = re.compile(r"^(?:\(\S+ pid=\d+\) )?([A-Z]+) (\d\d-\d\d \d\d:\d\d:\d\d)(?:[,.](\d{1,6}))?\b")
_RAY_MARKERS = (":job_id:", ":actor_name:", ":task_name:", ":task_attempt_start:", ":task_attempt_end:")
MAX_LINE = 4000  # characters of one line kept


class LogLine(BaseModel):
    time: datetime | None
    replica: str
    stream: Stream
    level: str | None = None
    line: str


@dataclass(frozen=True)
class Source:
    replica: str
    stream: Stream


def _stamp(day: str, fraction: str | None) -> datetime:
    micro = int((fraction or "0").ljust(6, "0")[:6])
    return datetime.strptime(day, "%Y-%m-%d %H:%M:%S").replace(microsecond=micro, tzinfo=timezone.utc)


def parse(text: str, source: Source, year: int) -> list[LogLine]:
    """One file's lines, each with a time (its own, or the one before it), Ray's markers left out."""
    out: list[LogLine] = []
    last: datetime | None = None
    for raw in text.splitlines():
        if not raw.strip() or raw.startswith(_RAY_MARKERS):
            continue
        level = None
        if m := _SERVE.match(raw):
            with contextlib.suppress(ValueError):  # a replica may print anything, 2026-13-45 included
                level, last = m.group(1), _stamp(m.group(2), m.group(3))
        elif m := _VLLM.match(raw):
            with contextlib.suppress(ValueError):  # e.g. 02-29 of a year that has none
                level, last = m.group(1), _stamp(f"{year}-{m.group(2)}", m.group(3))
        out.append(LogLine(time=last, replica=source.replica, stream=source.stream, level=level, line=raw[:MAX_LINE]))
    return out


def merge(files: list[list[LogLine]]) -> list[LogLine]:
    """Every file's lines in time order; lines of one file keep their order. Lines before
    a file's first timestamp come first."""
    floor = datetime.min.replace(tzinfo=timezone.utc)
    keyed = [[((ln.time or floor), i, n, ln) for n, ln in enumerate(lines)] for i, lines in enumerate(files)]
    return [item[3] for item in heapq.merge(*keyed, key=lambda t: (t[0], t[1], t[2]))]


def select(lines: list[LogLine], since: datetime | None, search: str | None, limit: int) -> list[LogLine]:
    """The last ``limit`` lines at or after ``since`` that contain ``search``."""
    kept = [
        ln for ln in lines if (since is None or (ln.time is not None and ln.time >= since)) and (not search or search in ln.line)
    ]
    return kept[-limit:]


def redact(line: str, secrets: list[str]) -> str:
    """A line with the endpoint's own secrets (its token, its env values) replaced; a line
    cut at ``MAX_LINE`` also loses the start of one it was cut in (4 characters or more)."""
    cut = len(line) >= MAX_LINE
    for secret in (s for s in secrets if len(s) >= 6):
        if secret in line:
            line = line.replace(secret, "***")
        if cut:
            head = next((k for k in range(min(len(secret) - 1, len(line)), 3, -1) if line.endswith(secret[:k])), 0)
            line = line[:-head] + "***" if head else line
    return line
