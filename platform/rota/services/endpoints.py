"""Endpoint use cases: create, list, get, partial update, stop, start, delete.

Commands write what is desired and nudge the reconciler; they never call Ray or set a
status (``rota.domain.status.derive`` does). Another project's endpoint is a 404.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rota.config import Settings
from rota.crypto import Cipher, digest
from rota.domain.endpoints import ROLLING_FIELDS, Desired, EndpointCreate, EndpointKind, EndpointPublic, EndpointUpdate, Scaling
from rota.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from rota.domain.events import EventKind
from rota.domain.names import by_id_or_name
from rota.domain.reconcile import ObservedApp
from rota.domain.status import EndpointStatus, Phase
from rota.services import Hooks, merge, merge_env, views
from rota.services.async_depths import EMPTY_QUEUE, queues
from rota.services.auth import Principal
from rota.services.builds import Build, Builder, llm_defaults
from rota.services.coldstarts import ReadyBy, cold_start
from rota.services.events import record
from rota.store.db import Database
from rota.store.tables import EndpointRow, TaskRow, utcnow


@dataclass
class EndpointService:
    db: Database
    settings: Settings
    builder: Builder
    cipher: Cipher
    hooks: Hooks = field(default_factory=Hooks)
    clock: Callable[[], datetime] = utcnow
    held: Callable[[], Mapping[str, ObservedApp]] = dict  # applications on the cluster that are not Rota's
    ready: ReadyBy = field(default_factory=ReadyBy)  # cold-start figures and ready_by leads

    # ------------------------------------------------------------ reads

    @staticmethod
    def find(s: Session, who: Principal, ref: str | int, live: bool = True) -> EndpointRow:
        id_, name = by_id_or_name(ref)
        stmt = select(EndpointRow).where(EndpointRow.project_id == who.project_id)
        stmt = stmt.where(EndpointRow.id == id_) if id_ is not None else stmt.where(EndpointRow.name == name)
        if live:
            stmt = stmt.where(EndpointRow.desired != Desired.DELETED.value)
        ep = s.scalar(stmt)
        if ep is None:
            raise NotFound(f"no endpoint {name[:100]!r}", field="endpoint")
        return ep

    def public(self, s: Session, ep: EndpointRow, project: str) -> EndpointPublic:
        owner = s.scalar(select(TaskRow.name).where(TaskRow.id == ep.owner_task_id)) if ep.owner_task_id else None
        out = views.endpoint(ep, project, self.settings.serve_url, owner)
        out.async_queue = queues(s, self.clock().timestamp(), [ep.id]).get(ep.id, dict(EMPTY_QUEUE))
        return out

    def statuses(self, ids: Sequence[int]) -> dict[int, EndpointPublic]:
        """Endpoints by id in one read, for streams that checked access (missing: gone)."""
        with self.db.session() as s:
            rows = s.scalars(select(EndpointRow).where(EndpointRow.id.in_(list(ids)))).all()
            return {ep.id: views.endpoint(ep, "", self.settings.serve_url, None) for ep in rows}

    def get(self, who: Principal, ref: str | int) -> EndpointPublic:
        with self.db.session() as s:
            ep = self.find(s, who, ref, live=False)
            return self.public(s, ep, who.project).model_copy(update={"cold_start": cold_start(s, ep, self.ready)})

    def list(
        self,
        who: Principal,
        search: str | None = None,
        status: EndpointStatus | None = None,
        limit: int = 50,
        offset: int = 0,
        template: str | None = None,
    ) -> tuple[list[EndpointPublic], int]:
        with self.db.session() as s:
            stmt = select(EndpointRow).where(EndpointRow.project_id == who.project_id)
            if search:
                stmt = stmt.where(EndpointRow.name.contains(search, autoescape=True))
            for column, value in ((EndpointRow.status, status.value if status else None), (EndpointRow.template, template)):
                stmt = stmt.where(column == value) if value else stmt
            total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
            rows = s.scalars(stmt.order_by(EndpointRow.id).limit(limit).offset(offset)).all()
            return [self.public(s, r, who.project) for r in rows], total

    # ------------------------------------------------------------ writes

    def create(self, who: Principal, data: EndpointCreate) -> EndpointPublic:
        self.builder.policy.check_env(data.env, who.admin)
        routing_key = data.routing_key or f"{data.name}-{secrets.token_hex(3)}"
        build = self.builder.endpoint(who, data, routing_key)
        now = self.clock()
        with self.db.session() as s:
            if s.scalar(
                select(EndpointRow.desired).where(EndpointRow.project_id == who.project_id, EndpointRow.name == data.name)
            ):
                raise Conflict(f"an endpoint named {data.name!r} exists (or is being deleted)", field="name")
            ep = self.insert(s, who, build, data.name, routing_key, data.env, now)
            ep.async_settings = data.async_invocations.model_dump(exclude_none=True)
            out = self.public(s, ep, who.project)
        self.hooks.desired_changed()
        return out

    def insert(
        self,
        s: Session,
        who: Principal,
        build: Build,
        name: str,
        routing_key: str,
        env: dict[str, str],
        now: datetime,
        owner: TaskRow | None = None,
        route: str | None = None,
    ) -> EndpointRow:
        """A new endpoint row: its Ray Serve name is generated (``ep-<id>``, a namespace no
        user name reaches) and its route is ``/ep/<id>`` unless given. Ordinary keys fill a
        project up to ``ROTA_MAX_ENDPOINTS`` (all of them travel in every config Rota PUTs)."""
        project_id = who.project_id
        held = s.scalar(select(func.count()).select_from(EndpointRow).where(EndpointRow.project_id == project_id)) or 0
        if held >= self.settings.max_endpoints and not who.admin:
            raise Forbidden(
                f"this project holds {held} endpoints (task applications included); "
                f"the limit is {self.settings.max_endpoints} (ROTA_MAX_ENDPOINTS): delete one first"
            )
        token, temp = secrets.token_urlsafe(32), secrets.token_hex(8)
        ep = EndpointRow(
            project_id=project_id,
            name=name,
            routing_key=routing_key,
            owner_task_id=owner.id if owner else None,
            env=self.cipher.encrypt_map(env),
            app_name=f"new-{temp}",
            route_prefix=f"/new/{temp}",
            token=self.cipher.encrypt(token),
            token_hash=digest(token),
            desired=Desired.RUNNING.value,
            generation=1,
            status=EndpointStatus.PENDING.value if build.scaling is None else EndpointStatus.INITIALIZING.value,
            phase=None if build.scaling is None else Phase.REQUESTING_RESOURCES.value,
            replica_ids=[],
            created_at=now,
            updated_at=now,
        )
        self._apply(ep, build)
        s.add(ep)
        s.flush()
        ep.app_name, ep.route_prefix = self._free(f"ep-{ep.id}", route or f"/ep/{ep.id}")
        s.flush()  # a route another endpoint serves is a 409 here
        source = (
            f"template {build.template} ({build.flavor}, {build.gpu_count}x {build.gpu_type})"
            if build.template
            else (build.model or f"{build.file_path}:{build.deployment_name}")
        )
        b = views.bounds(ep)
        size = f"replicas {b.min}..{b.max}" if b else "replicas set by its schedule"
        message = f"created from {source} as model {routing_key!r} at {ep.route_prefix}, {size}"
        record(s, ep, EventKind.CREATED, message, {"routing_key": routing_key, "route": ep.route_prefix}, at=now)
        return ep

    def _free(self, name: str, route: str) -> tuple[str, str]:
        """A name and route no application Rota did not deploy holds (on a shared cluster)."""
        held = self.held()
        while name in held or route in {a.route_prefix for a in held.values()}:
            suffix = secrets.token_hex(2)
            name, route = f"{name}-{suffix}", f"{route}-{suffix}"
        return name, route

    @staticmethod
    def _apply(ep: EndpointRow, b: Build) -> None:
        ep.kind, ep.template, ep.flavor, ep.gpu_type, ep.gpu_count = b.kind.value, b.template, b.flavor, b.gpu_type, b.gpu_count
        ep.model, ep.revision, ep.file_path, ep.deployment_name = b.model, b.revision, b.file_path, b.deployment_name
        ep.ingress, ep.per_replica, ep.token_arg = b.app.ingress, b.app.per_replica, b.app.token_arg
        ep.args, ep.resources, ep.engine, ep.scaling = b.args, b.resources, b.engine, b.scaling

    def update(self, who: Principal, ref: str | int, patch: EndpointUpdate) -> EndpointPublic:
        sent = patch.model_dump(exclude_unset=True)
        now = self.clock()
        with self.db.session() as s:
            ep = self.find(s, who, ref)
            current = self.as_create(ep)
            merged = {**current, **patch.model_dump(exclude_unset=True, mode="json")}
            for part in ("engine", "async_invocations"):  # partial inside these too: only the settings sent change
                if (given := getattr(patch, part)) is not None:
                    merged[part] = {**current[part], **given.model_dump(exclude_unset=True)}
            if patch.env is not None:
                self.builder.policy.check_env({k: v for k, v in patch.env.items() if v is not None}, who.admin)
                merged["env"] = merge_env(current["env"], patch.env)
            if {"hf_model_repo", "model_path"} & sent.keys():  # a custom model may switch between Hub and directory
                merged = {k: v for k, v in merged.items() if k in sent or k not in ("hf_model_repo", "model_path", "revision")}
            if isinstance(merged.get("args"), dict):
                merged["args"] = llm_defaults(merged.get("file_path"), merged["args"], ep.routing_key)
            new, changed = merge(EndpointCreate, current, merged, sent)
            if ep.kind == EndpointKind.APPLICATION.value and "engine" in changed:
                raise InvalidInput("a custom application takes args, not engine settings", field="engine")
            if "scaling" in changed and new.scaling is None and ep.owner_task_id is None:
                raise InvalidInput("an endpoint no task owns needs its scaling", field="scaling")
            if not changed:
                return self.public(s, ep, who.project)
            rolling = [k for k in changed if k in ROLLING_FIELDS]
            if rolling:
                self._apply(ep, self.rebuild(who, new, ep))
                ep.env = self.cipher.encrypt_map(new.env)
                ep.generation += 1
            else:
                if new.scaling is not None:
                    self.builder.check_replicas(new.scaling.bounds[1], "scaling.max_replicas")
                ep.scaling = new.scaling.model_dump(exclude_none=True) if new.scaling else None
            ep.name, ep.updated_at, ep.async_settings = new.name, now, new.async_invocations.model_dump(exclude_none=True)
            how = "replicas roll to the new settings" if rolling else "applied in place"
            data = {"fields": changed, "rolling": bool(rolling), "generation": ep.generation}
            record(s, ep, EventKind.UPDATED, f"updated {', '.join(changed)}: {how}", data, at=now)
            out = self.public(s, ep, who.project)
        self.hooks.desired_changed()
        return out

    def rebuild(self, who: Principal, new: EndpointCreate, ep: EndpointRow) -> Build:
        if new.kind is EndpointKind.APPLICATION:  # keeps a schedule-sized application's scaling unset
            assert new.file_path and new.deployment_name
            return self.builder.application(
                who, new.file_path, new.deployment_name, new.args or {}, new.resources, ep.routing_key, new.scaling
            )
        return self.builder.endpoint(who, new, ep.routing_key)

    def update_application(self, s: Session, who: Principal, ep: EndpointRow, new: Any, now: datetime) -> None:
        """A task changed its own application (``new``: the task's TaskCreate): roll it."""
        scaling = Scaling.model_validate(ep.scaling) if ep.scaling else None
        self._apply(
            ep,
            self.builder.application(who, new.file_path, new.deployment_name, new.args, new.resources, ep.routing_key, scaling),
        )
        ep.env, ep.updated_at = self.cipher.encrypt_map(new.env), now
        ep.generation += 1
        change = {"rolling": True, "generation": ep.generation}
        record(s, ep, EventKind.UPDATED, "its task changed the application: replicas roll", change, at=now)

    def as_create(self, ep: EndpointRow) -> dict[str, Any]:
        """The endpoint as the request that would create it (secrets decrypted)."""
        return views.as_create(ep, self.cipher.decrypt_map(ep.env or {}))

    def _set_desired(self, who: Principal, ref: str | int, desired: Desired, kind: EventKind, message: str) -> EndpointPublic:
        now = self.clock()
        with self.db.session() as s:
            ep = self.find(s, who, ref)
            if ep.desired != desired.value:
                ep.desired, ep.updated_at, ep.taken_mark = desired.value, now, None
                record(s, ep, kind, message, at=now)
            out = self.public(s, ep, who.project)
        self.hooks.desired_changed()
        return out

    def stop(self, who: Principal, ref: str | int) -> EndpointPublic:
        return self._set_desired(who, ref, Desired.STOPPED, EventKind.STOP, "stop requested: the application is removed")

    def start(self, who: Principal, ref: str | int) -> EndpointPublic:
        return self._set_desired(who, ref, Desired.RUNNING, EventKind.START, "start requested: deploying the application")

    def delete(self, who: Principal, ref: str | int) -> None:
        now = self.clock()
        with self.db.session() as s:
            ep = self.find(s, who, ref)
            if ep.owner_task_id is not None:
                raise Conflict("this is a task's own application: delete the task", field="endpoint")
            drivers = s.scalars(select(TaskRow.name).where(TaskRow.endpoint_id == ep.id)).all()
            if drivers:
                raise Conflict(f"tasks {', '.join(drivers)} drive this endpoint: delete them first", field="endpoint")
            self.mark_deleted(s, ep, now)
        self.hooks.desired_changed()

    @staticmethod
    def mark_deleted(s: Session, ep: EndpointRow, now: datetime) -> None:
        ep.desired, ep.updated_at, ep.taken_mark = Desired.DELETED.value, now, None
        record(s, ep, EventKind.DELETED, "deleted: the application is removed; the endpoint goes away once it is", at=now)
