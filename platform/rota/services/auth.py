"""Projects and API keys.

A key is ``rota_`` + 43 random URL-safe characters; only its SHA-256 is stored, and
lists show its first 12 characters. A key belongs to a project and sees only that
project's tasks and endpoints. Admin keys also manage projects, other projects' keys
and admin keys; an ordinary key sees and revokes its project's ordinary keys only. The
last admin key cannot be revoked; ``rota keys bootstrap`` (on the control-plane host)
mints a new one. The first admin key is written to ``ROTA_HOME/admin_key`` (0600).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from rota.crypto import digest, read_secret, write_secret
from rota.domain.errors import Conflict, Forbidden, NotFound, Unauthorized
from rota.domain.names import NAME_PATTERN, Strict
from rota.store.db import Database
from rota.store.tables import DEFAULT_PROJECT_ID, ApiKeyRow, ProjectRow, utcnow

log = logging.getLogger(__name__)

KEY_PREFIX = "rota_"
SHOWN = 12  # characters of a key that lists show


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    """Who is calling: resolved from the Bearer key on every request."""

    key_id: int
    project_id: int
    project: str
    admin: bool


class KeyCreate(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="what the key is for")
    project: str | None = Field(None, pattern=NAME_PATTERN, description="admin keys only: another project's (created if new)")
    admin: bool = Field(False, description="admin keys only: the new key may manage projects and keys")


class KeyPublic(BaseModel):
    id: int
    name: str
    project: str
    prefix: str = Field(description="the key's first characters")
    admin: bool
    created_at: datetime
    revoked_at: datetime | None = None


class KeyCreated(KeyPublic):
    key: str = Field(description="the secret: shown once, store it now")


RETENTION = Field(None, ge=1, le=3650, description="days its request log is kept; unset: ROTA_REQUEST_LOG_RETENTION_DAYS")
REQUEST_LOG = Field(True, description="record its calls in the request log (false: none of their records, content or tokens)")


class ProjectCreate(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    request_log_retention_days: int | None = RETENTION
    request_log: bool = REQUEST_LOG


PriceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")]


class ProjectUpdate(Strict):
    request_log_retention_days: int | None = RETENTION
    request_log: bool = REQUEST_LOG
    prices: dict[PriceName, Annotated[float, Field(ge=0, le=1_000_000)]] | None = Field(
        None, max_length=64, description="USD per unit-hour by GPU type (or cpu), over the price book; null: the book's"
    )


class ProjectPublic(BaseModel):
    id: int
    name: str
    created_at: datetime
    request_log_retention_days: int | None = None
    request_log: bool = True
    prices: dict[str, float] | None = None

    @classmethod
    def of(cls, row: ProjectRow) -> ProjectPublic:
        return cls.model_validate(row, from_attributes=True)


@dataclass
class AuthService:
    db: Database
    clock: Callable[[], datetime] = utcnow

    def authenticate(self, authorization: str | None) -> Principal:
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'", field="Authorization")
        return self._principal(ApiKeyRow.key_hash == digest(key.strip()))

    def principal_of(self, key_id: int, issued: datetime | None = None) -> Principal:
        """The key's principal by its id, for a console session ``issued`` then: 401 once the
        key is revoked, or the session was issued before the key's last sign-out."""
        return self._principal(ApiKeyRow.id == key_id, issued)

    def end_sessions(self, who: Principal) -> None:
        """Sign-out: every console session of this key issued until now is over."""
        with self.db.session() as s:
            s.execute(update(ApiKeyRow).where(ApiKeyRow.id == who.key_id).values(sessions_after=self.clock()))

    def _principal(self, which: ColumnElement[bool], issued: datetime | None = None) -> Principal:
        with self.db.session() as s:  # one query, plain columns: every API call starts here
            row = s.execute(
                select(
                    ApiKeyRow.id,
                    ApiKeyRow.project_id,
                    ApiKeyRow.admin,
                    ApiKeyRow.revoked_at,
                    ApiKeyRow.sessions_after,
                    ProjectRow.name,
                )
                .outerjoin(ProjectRow, ProjectRow.id == ApiKeyRow.project_id)
                .where(which)
            ).first()
        if row is None or row.revoked_at is not None:
            raise Unauthorized("invalid or revoked API key", field="Authorization")
        if issued is not None and row.sessions_after is not None and issued <= row.sessions_after:
            raise Unauthorized("this session was signed out", field="session")
        return Principal(row.id, row.project_id, row.name or "?", row.admin)

    def key_prefix(self, who: Principal) -> str:
        with self.db.session() as s:
            return s.scalar(select(ApiKeyRow.prefix).where(ApiKeyRow.id == who.key_id)) or "console"

    # ------------------------------------------------------------ keys

    def create_key(self, who: Principal, data: KeyCreate) -> KeyCreated:
        if (data.project and data.project != who.project or data.admin) and not who.admin:
            raise Forbidden("only an admin key can create keys for another project or admin keys", field="project")
        with self.db.session() as s:
            project = self._project(s, data.project or who.project, create=True)
            return self._mint(s, project, data.name, data.admin)

    def _mint(self, s: Session, project: ProjectRow, name: str, admin: bool) -> KeyCreated:
        secret = new_key()
        row = ApiKeyRow(
            project_id=project.id, name=name, prefix=secret[:SHOWN], key_hash=digest(secret), admin=admin, created_at=self.clock()
        )
        s.add(row)
        s.flush()
        return KeyCreated(**self._public(row, project.name).model_dump(), key=secret)

    def list_keys(self, who: Principal, project: str | None = None) -> list[KeyPublic]:
        with self.db.session() as s:
            stmt = select(ApiKeyRow, ProjectRow.name).join(ProjectRow, ProjectRow.id == ApiKeyRow.project_id)
            if not who.admin:
                stmt = stmt.where(ApiKeyRow.project_id == who.project_id, ApiKeyRow.admin.is_(False))
            elif project:
                stmt = stmt.where(ProjectRow.name == project)
            return [self._public(k, p) for k, p in s.execute(stmt.order_by(ApiKeyRow.id)).all()]

    def revoke(self, who: Principal, key_id: int) -> KeyPublic:
        with self.db.session() as s:
            row = s.get(ApiKeyRow, key_id)
            if row is None or (not who.admin and (row.project_id != who.project_id or row.admin)):
                raise NotFound(f"no key {key_id}", field="key")
            if row.admin and row.revoked_at is None and self._admins(s) <= 1:
                raise Conflict("this is the last admin key: create another admin key before revoking it", field="key")
            if row.revoked_at is None:
                row.revoked_at = self.clock()
            return self._public(row, s.get(ProjectRow, row.project_id).name)  # type: ignore[union-attr]

    @staticmethod
    def _admins(s: Session) -> int:
        """Active admin keys, locked until the unit of work ends (two revokes at once
        cannot both see another one left)."""
        active = select(ApiKeyRow.id).where(ApiKeyRow.admin.is_(True), ApiKeyRow.revoked_at.is_(None)).with_for_update()
        return len(s.scalars(active).all())

    @staticmethod
    def _public(row: ApiKeyRow, project: str) -> KeyPublic:
        return KeyPublic(
            id=row.id,
            name=row.name,
            project=project,
            prefix=row.prefix,
            admin=row.admin,
            created_at=row.created_at,
            revoked_at=row.revoked_at,
        )

    def active_keys(self) -> list[dict[str, Any]]:
        """What the gateway knows of each working key: its hash, project, id and prefix."""
        with self.db.session() as s:
            cols = (ApiKeyRow.key_hash, ApiKeyRow.project_id, ApiKeyRow.id, ApiKeyRow.prefix)
            rows = s.execute(select(*cols).where(ApiKeyRow.revoked_at.is_(None))).all()
            return [{"hash": h, "project_id": p, "key_id": i, "prefix": x} for h, p, i, x in rows]

    # ------------------------------------------------------------ projects

    def _project(self, s: Session, name: str, create: bool = False) -> ProjectRow:
        row = s.scalar(select(ProjectRow).where(ProjectRow.name == name))
        if row is None:
            if not create:
                raise NotFound(f"no project {name!r}", field="project")
            row = ProjectRow(name=name, created_at=self.clock())
            s.add(row)
            s.flush()
        return row

    def create_project(self, who: Principal, data: ProjectCreate) -> ProjectPublic:
        if not who.admin:
            raise Forbidden("only an admin key can create projects", field="name")
        with self.db.session() as s:
            if s.scalar(select(ProjectRow.id).where(ProjectRow.name == data.name)) is not None:
                raise Conflict(f"a project named {data.name!r} already exists", field="name")
            row = self._project(s, data.name, create=True)
            row.request_log_retention_days, row.request_log = data.request_log_retention_days, data.request_log
            return ProjectPublic.of(row)

    def update_project(self, who: Principal, name: str, data: ProjectUpdate) -> ProjectPublic:
        if not who.admin:
            raise Forbidden("only an admin key can change a project", field="name")
        with self.db.session() as s:
            row = self._project(s, name)
            for field_name in data.model_fields_set:
                setattr(row, field_name, getattr(data, field_name))
            return ProjectPublic.of(row)

    def list_projects(self, who: Principal) -> list[ProjectPublic]:
        with self.db.session() as s:
            stmt = select(ProjectRow).order_by(ProjectRow.id)
            if not who.admin:
                stmt = stmt.where(ProjectRow.id == who.project_id)
            return [ProjectPublic.of(p) for p in s.scalars(stmt).all()]

    def project_names(self) -> dict[int, str]:
        with self.db.session() as s:
            return {i: n for i, n in s.execute(select(ProjectRow.id, ProjectRow.name)).all()}

    # ------------------------------------------------------------ bootstrap

    def bootstrap(self, path: Path) -> None:
        """Make sure an admin key exists: the one in ``path`` (registered if this store
        has not seen it), or a new one written there when the store has none."""
        existing = read_secret(path)
        try:
            self._bootstrap(path, existing)
        except Conflict:  # another control plane registered the same shared key just now
            log.info("the admin key in %s was registered by another control plane", path)

    def _bootstrap(self, path: Path, existing: str | None) -> None:
        with self.db.session() as s:
            if existing:
                if s.scalar(select(ApiKeyRow.id).where(ApiKeyRow.key_hash == digest(existing))) is None:
                    s.add(
                        ApiKeyRow(
                            project_id=DEFAULT_PROJECT_ID,
                            name="admin",
                            prefix=existing[:SHOWN],
                            key_hash=digest(existing),
                            admin=True,
                            created_at=self.clock(),
                        )
                    )
                    log.info("registered the admin key in %s", path)
                return
            if self._admins(s):
                return  # keys are managed elsewhere: do not mint another admin key
        self.mint_admin(path, "admin")

    def mint_admin(self, path: Path, name: str) -> KeyCreated:
        """A new admin key of the default project, written to ``path`` (0600): what an
        operator on the control-plane host does when no admin key works any more."""
        with self.db.session() as s:
            created = self._mint(s, self._project(s, "default"), name, admin=True)
        write_secret(path, created.key)
        log.info("created an admin key in %s", path)
        return created
