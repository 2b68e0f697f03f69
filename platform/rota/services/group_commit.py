"""Rows that many threads write at once, in one transaction.

Each caller queues its row and waits for the write lock. Whoever holds it writes every
row queued so far, its own and the others', in one transaction, and marks them written.
A caller whose row a previous holder wrote returns at once. So a burst of N concurrent
inserts costs a few transactions instead of N of them contending for SQLite's write lock
(whose busy handler backs off by sleeping). A caller returns only once its row is
committed: nothing is acknowledged before it is stored. A group that fails is written
again a row at a time, so one bad row fails its own caller only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert

from rota.store.base import Base
from rota.store.db import Database


@dataclass(eq=False)  # one caller's row: the same values twice are two tickets
class _Ticket:
    values: dict[str, Any]
    written: bool = False
    error: BaseException | None = None


@dataclass
class GroupCommit:
    db: Database
    table: type[Base]  # an ORM row class
    max_rows: int = 512
    max_bytes: int = 64 * 1024 * 1024  # a group's bytes and strings, together (one INSERT on PostgreSQL)
    _pending: list[_Ticket] = field(default_factory=list)
    _queue_lock: threading.Lock = field(default_factory=threading.Lock)
    _write_lock: threading.Lock = field(default_factory=threading.Lock)
    groups: int = 0  # transactions written (for tests and metrics)

    def write(self, values: dict[str, Any]) -> None:
        """Insert ``values``; returns once it is committed (raises what the insert raised)."""
        ticket = _Ticket(values)
        with self._queue_lock:
            self._pending.append(ticket)
        while True:
            with self._write_lock:
                if not ticket.written and ticket.error is None:
                    with self._queue_lock:
                        group = self._take()
                    try:
                        self._write(group)
                    except BaseException:  # not an error of the rows (an interrupt): the others stay queued
                        with self._queue_lock:
                            back = [t for t in group if t is not ticket and not t.written and t.error is None]
                            self._pending[:0] = back
                            if ticket in self._pending:  # its caller is gone: its row is not written later
                                self._pending.remove(ticket)
                        raise
            if ticket.error is not None:
                raise ticket.error
            if ticket.written:
                return

    def _take(self) -> list[_Ticket]:
        """The oldest queued rows, up to ``max_rows`` and ``max_bytes`` (at least one)."""
        size, n = 0, 0
        for t in self._pending[: self.max_rows]:
            size += sum(len(v) for v in t.values.values() if isinstance(v, (bytes, str)))
            if n and size > self.max_bytes:
                break
            n += 1
        group, self._pending = self._pending[:n], self._pending[n:]
        return group

    def _write(self, group: list[_Ticket]) -> None:
        try:
            self._insert(group)
        except Exception as e:
            if len(group) == 1:
                group[0].error = e
                return
            for t in group:  # which row was it: each alone, so only a bad one fails
                try:
                    self._insert([t])
                except Exception as one:
                    t.error = one

    def _insert(self, group: list[_Ticket]) -> None:
        with self.db.session() as s:
            s.execute(insert(self.table), [t.values for t in group])
        self.groups += 1
        for t in group:
            t.written = True
