"""Secrets kept in files only their owner can read (mode 0600)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Callable


def write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    os.chmod(path, 0o600)  # also when the file existed with other bits


def read_secret(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def ensure_secret(path: Path, factory: Callable[[], str] = lambda: secrets.token_hex(32)) -> str:
    """The secret in ``path``, created (0600) on first use."""
    existing = read_secret(path)
    if existing:
        return existing
    value = factory()
    write_secret(path, value)
    return value
