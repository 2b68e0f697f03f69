"""SQLite is one process's store: a second `rota server` on the same file is refused.

Two control planes on one SQLite file would both run the scheduler and the reconciler
(every fire applied twice, PUTs racing); several processes need PostgreSQL. The first
server holds an exclusive lock on ``<file>.lock`` for as long as it lives; the kernel
drops it when the process ends, however it ends (a SIGKILL included), so a restart after
a crash is never refused.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from rota.domain.errors import Conflict


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None: another database, or SQLite in memory)."""
    if not url.startswith("sqlite") or "///" not in url:
        return None
    path = url.split("///", 1)[-1].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def hold(url: str) -> IO[str] | None:
    """Take the store for this process (keep what it returns open for its lifetime);
    a Conflict naming the other process if one has it already."""
    path = sqlite_path(url)
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(f"{path}.lock", "a+")  # noqa: SIM115 (held open for the process's life)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        other = lock.read().strip() or "?"
        lock.close()
        raise Conflict(
            f"another rota server (pid {other}) runs on the SQLite store {path}: SQLite is one process's store. "
            "Stop it, give this one its own ROTA_HOME, or run several on PostgreSQL (ROTA_DATABASE_URL)",
            field="ROTA_DATABASE_URL",
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock
