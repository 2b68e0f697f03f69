"""Rows that many threads write at once, in one transaction.

Each caller queues its row and waits for the write lock. Whoever holds it writes every
row queued so far, its own and the others', in one transaction, and marks them written.
A caller whose row a previous holder wrote returns at once. So a burst of N concurrent
inserts costs a few transactions instead of N of them contending for SQLite's write lock
(whose busy handler backs off by sleeping). A caller returns only once its row is
committed: nothing is acknowledged before it is stored.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert

from rota.store.base import Base
from rota.store.db import Database


@dataclass
class _Ticket:
    values: dict[str, Any]
    written: bool = False
    error: BaseException | None = None


@dataclass
class GroupCommit:
    db: Database
    table: type[Base]  # an ORM row class
    max_rows: int = 512
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
                        group, self._pending = self._pending[: self.max_rows], self._pending[self.max_rows :]
                    self._write(group)
            if ticket.error is not None:
                raise ticket.error
            if ticket.written:
                return

    def _write(self, group: list[_Ticket]) -> None:
        try:
            with self.db.session() as s:
                s.execute(insert(self.table), [t.values for t in group])
        except BaseException as e:
            for t in group:
                t.error = e
            return
        self.groups += 1
        for t in group:
            t.written = True
