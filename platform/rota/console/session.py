"""Console sessions and CSRF tokens: pure functions of a server secret.

A session cookie names the API key that signed in (its id, never the key) and when it
signed in, signed with HMAC-SHA256; every page request resolves the key again, so a
revoked key's sessions end at once, and so do those issued before the key's last sign-out. The CSRF token is a second HMAC of the session (or,
before sign-in, of a random pre-session value kept in its own cookie): every form and
htmx request sends it back, and a post without the right one is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

SESSION_COOKIE = "rota_session"
PRESESSION_COOKIE = "rota_presession"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class Session:
    key_id: int
    issued: float  # Unix seconds (to the millisecond): sign-out ends the sessions issued before it


@dataclass(frozen=True)
class Signer:
    secret: bytes
    lifetime_s: int = 12 * 3600

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self.secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def issue(self, key_id: int, now: float) -> str:
        body = f"{key_id}.{int(now * 1000)}"
        return f"{body}.{self._mac('session', body)}"

    def read(self, cookie: str | None, now: float) -> Session | None:
        """The session a cookie carries, or None (absent, forged, malformed or expired)."""
        if not cookie or len(cookie) > 200 or not cookie.isascii():
            return None
        body, _, mac = cookie.rpartition(".")
        if not hmac.compare_digest(mac.encode(), self._mac("session", body).encode()):
            return None
        key_id, _, issued_ms = body.partition(".")
        if not (key_id.isdecimal() and issued_ms.isdecimal()):
            return None
        issued = int(issued_ms) / 1000
        if not issued <= now < issued + self.lifetime_s:
            return None
        return Session(int(key_id), issued)

    def csrf(self, bound_to: str) -> str:
        """The CSRF token of a session cookie (or of a pre-session value)."""
        return self._mac("csrf", bound_to)[:40]

    def csrf_ok(self, bound_to: str | None, token: str | None) -> bool:
        if not (bound_to and token and bound_to.isascii() and token.isascii()):
            return False
        return hmac.compare_digest(self.csrf(bound_to).encode(), token.encode())


def presession() -> str:
    return secrets.token_urlsafe(24)
