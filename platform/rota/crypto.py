"""Secrets: files only their owner can read, and values encrypted at rest.

Endpoint tokens and environment values are stored encrypted (Fernet: AES-128-CBC with
an HMAC-SHA256) with a key kept like the admin key: ``ROTA_SECRET_KEY`` when the
deployment gives one, else ``ROTA_HOME/secret_key`` (mode 0600, created on first start).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken


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


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class Cipher:
    def __init__(self, key: str):
        self._fernet = Fernet(key.encode())
        # Names this Rota (the mark on its applications) without revealing the key.
        self.owner_id = hashlib.sha256(b"rota-owner:" + key.encode()).hexdigest()[:16]
        self._key = key.encode()

    def derive(self, purpose: str) -> str:
        """A secret for ``purpose`` that follows from the key alone: the same after a restart
        on a fresh home directory (the key comes from ROTA_SECRET_KEY there), never the key."""
        return hmac.new(self._key, b"rota:" + purpose.encode(), hashlib.sha256).hexdigest()

    @classmethod
    def load(cls, key: str | None, path: Path) -> Cipher:
        return cls(key or ensure_secret(path, lambda: Fernet.generate_key().decode()))

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ValueError("a stored secret does not decrypt with this secret key (ROTA_SECRET_KEY)") from None

    def encrypt_map(self, values: Mapping[str, str]) -> dict[str, str]:
        return {k: self.encrypt(v) for k, v in values.items()}

    def decrypt_map(self, values: Mapping[str, str]) -> dict[str, str]:
        return {k: self.decrypt(v) for k, v in values.items()}
