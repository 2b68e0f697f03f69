"""A project's webhook signing secrets: the current one, and after a rotation the previous
one for a grace period, so receivers can switch without refusing a delivery. Until a
project rotates, its secret is derived from the secret key (it needs no row)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from rota.crypto import Cipher
from rota.domain.errors import NotFound
from rota.store.db import Database
from rota.store.tables import ProjectRow

MAX_GRACE_S = 7 * 86_400


@dataclass(frozen=True)
class SigningSecrets:
    current: str
    previous: str | None = None
    previous_until: float | None = None  # when the previous one stops signing

    def signing(self, now: float) -> list[str]:
        """What a delivery at ``now`` is signed with: the current secret, then the previous
        one while its grace lasts."""
        live = self.previous is not None and self.previous_until is not None and now < self.previous_until
        return [self.current, self.previous] if live else [self.current]  # type: ignore[list-item]


@dataclass
class WebhookSecrets:
    db: Database
    cipher: Cipher
    clock: Callable[[], float] = time.time

    def of(self, project_id: int) -> SigningSecrets:
        with self.db.session() as s:
            return self._of(s, project_id)

    def signing(self, project_id: int) -> list[str]:
        return self.of(project_id).signing(self.clock())

    def rotate(self, project_id: int, grace_s: int) -> SigningSecrets:
        """A new current secret; the one it replaces keeps signing for ``grace_s`` seconds
        (0: it stops at once). A second rotation within the grace drops the oldest."""
        now = self.clock()
        with self.db.session() as s:
            row = s.get(ProjectRow, project_id, with_for_update=True)
            if row is None:
                raise NotFound(f"no project {project_id}", field="project")
            old = self._of(s, project_id).current
            row.webhook_secret = self.cipher.encrypt(secrets.token_hex(32))
            row.webhook_secret_previous = self.cipher.encrypt(old) if grace_s > 0 else None
            row.webhook_secret_previous_until = now + grace_s if grace_s > 0 else None
            s.flush()
            return self._of(s, project_id)

    def _of(self, s: Session, project_id: int) -> SigningSecrets:
        row = s.get(ProjectRow, project_id)
        if row is None or not row.webhook_secret:
            return SigningSecrets(self.cipher.derive(f"webhook-secret/{project_id}"))
        previous = self.cipher.decrypt(row.webhook_secret_previous) if row.webhook_secret_previous else None
        return SigningSecrets(self.cipher.decrypt(row.webhook_secret), previous, row.webhook_secret_previous_until)
