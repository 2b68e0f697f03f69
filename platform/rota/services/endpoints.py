"""Dedicated endpoint use cases: create, list, get, partial update, stop, start, delete.

Commands write what is desired (bounds, args, running/stopped/deleted) and nudge the
reconciler; they never call Ray and never set a status (``rota.domain.endpoints.derive``
does, from what Ray Serve reports). Every request is scoped to the caller's project:
another project's endpoint is a 404.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rota.catalog import TINY, Catalog, Resolved, actor_options, resolve, serve_args
from rota.config import Settings
from rota.domain.endpoints import (
    STARTING, Derived, Desired, EndpointCreate, EndpointPublic, EndpointStatus, EndpointUpdate, Engine, Phase, Scaling,
)  # fmt: skip
from rota.domain.errors import Conflict, InvalidInput, InvalidTransition, NotFound
from rota.domain.models import by_id_or_name
from rota.domain.reconcile import AppSpec
from rota.domain.status import EventKind
from rota.serve.apps import AppInfo, inspect_app
from rota.services.auth import Principal
from rota.services.events import record, set_endpoint_status
from rota.services.patching import merge
from rota.services.tasks import Hooks
from rota.store.db import Database
from rota.store.tables import EndpointRow, EventRow, TaskRow, utcnow

GATEWAY_APP = "rota-gateway"
ENDPOINT_PREFIX = "/ep/"
# A model or engine change rolls the replicas; these fields do.
ROLLING_FIELDS = ("flavor", "gpu_type", "gpu_count", "hf_model_repo", "revision", "model_path", "engine", "env")


def app_name(ep: EndpointRow) -> str:
    return f"ep-{ep.id}"


def bounds(ep: EndpointRow) -> tuple[int, int, str]:
    """Replica bounds in force: a driving task's last fire, else the endpoint's scaling."""
    if ep.scheduled_min is not None and ep.scheduled_max is not None:
        return ep.scheduled_min, ep.scheduled_max, "schedule"
    lo, hi = Scaling.model_validate(ep.scaling).bounds
    return lo, hi, "scaling"


def max_concurrency(ep: EndpointRow) -> int:
    """Requests the gateway admits at once: every replica's capacity plus the queue."""
    per_replica = int((ep.args or {}).get("max_ongoing_requests", 64))
    _, hi, _ = bounds(ep)
    capacity = per_replica * max(1, hi)
    queue = Engine.model_validate(ep.engine).max_queued_requests
    return capacity + (capacity if queue is None else queue)


def endpoint_spec(ep: EndpointRow, internal_token: str, control_url: str | None = None) -> AppSpec | None:
    """The desired Ray Serve application of an endpoint (None unless it should run)."""
    if ep.desired != Desired.RUNNING.value:
        return None
    lo, hi, _ = bounds(ep)
    scaling = Scaling.model_validate(ep.scaling)
    per_replica = int((ep.args or {}).get("max_ongoing_requests", 64))
    autoscaling = {
        # Load the model at deploy even with min 0, so a broken model fails at once and
        # the endpoint is READY before it sleeps.
        "initial_replicas": max(lo, 1),
        "target_ongoing_requests": scaling.target_ongoing_requests or max(1, per_replica // 2),
        "downscale_delay_s": scaling.cooldown_period_s,
    }
    if lo == 0:
        autoscaling["downscale_to_zero_delay_s"] = scaling.cooldown_period_s
    return AppSpec(
        name=app_name(ep), import_path=f"{ep.file_path}:{ep.deployment_name}", ingress=ep.ingress,
        min_replicas=lo, max_replicas=hi, args={**(ep.args or {}), **_cluster_args(internal_token, control_url)}, env=dict(ep.env or {}),
        ray_actor_options=dict(ep.resources or {}), prefix=ENDPOINT_PREFIX + ep.routing_key, autoscaling=autoscaling,
    )  # fmt: skip


def _cluster_args(internal_token: str, control_url: str | None) -> dict[str, str]:
    """What every endpoint replica gets from Rota: the key its /v1 routes require, and
    where to report its phase while it starts."""
    out = {"api_key": internal_token}
    if control_url:
        out["report_url"] = f"{control_url}/internal/v1/phase"
    return out


def gateway_spec(settings: Settings, internal_token: str) -> AppSpec:
    """The OpenAI base URL: ``serve_apps/gateway.py`` at ``/`` of the Serve port."""
    return AppSpec(
        name=GATEWAY_APP, import_path="gateway:app", ingress="Gateway", min_replicas=1, max_replicas=1,
        args={
            "control_url": settings.control_url, "token": internal_token,
            "upstream": f"http://127.0.0.1:{settings.serve_port}", "refresh_s": settings.gateway_refresh_s,
            "wake_timeout_s": settings.wake_timeout_s,
        },
        prefix="/",
    )  # fmt: skip


@dataclass
class EndpointService:
    db: Database
    settings: Settings
    catalog: Catalog
    hooks: Hooks = field(default_factory=Hooks)
    clock: Callable[[], datetime] = utcnow
    inspector: Callable[..., AppInfo] = inspect_app
    make_tiny: Callable[[Path], Any] | None = None  # generates the rota:tiny model (rota.models.tiny)

    # ------------------------------------------------------------ reads

    def _get(self, s: Session, who: Principal, ref: str | int, include_deleted: bool = False) -> EndpointRow:
        id_, ref = by_id_or_name(ref)
        stmt = select(EndpointRow).where(EndpointRow.project_id == who.project_id)
        stmt = stmt.where(EndpointRow.id == id_) if id_ is not None else stmt.where(EndpointRow.name == ref)
        if not include_deleted:
            stmt = stmt.where(EndpointRow.desired != Desired.DELETED.value)
        ep = s.scalar(stmt)
        if ep is None:
            raise NotFound(f"no endpoint {ref!r}", field="endpoint")
        return ep

    def get(self, who: Principal, ref: str | int) -> EndpointPublic:
        with self.db.session() as s:
            return self.to_public(self._get(s, who, ref, include_deleted=True), who.project)

    def list(
        self, who: Principal, search: str | None = None, status: EndpointStatus | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[EndpointPublic], int]:
        with self.db.session() as s:
            stmt = select(EndpointRow).where(EndpointRow.project_id == who.project_id)
            if search:
                stmt = stmt.where(EndpointRow.name.contains(search, autoescape=True))
            if status:
                stmt = stmt.where(EndpointRow.status == status.value)
            total = s.scalar(select(func.count()).select_from(stmt.subquery()))
            rows = s.scalars(stmt.order_by(EndpointRow.id).limit(limit).offset(offset)).all()
            return [self.to_public(r, who.project) for r in rows], total

    def events(self, who: Principal, ref: str | int, limit: int = 1000, after_id: int = 0) -> list[EventRow]:
        with self.db.session() as s:
            ep = self._get(s, who, ref, include_deleted=True)
            stmt = select(EventRow).where(EventRow.endpoint_id == ep.id, EventRow.id > after_id).order_by(EventRow.id).limit(limit)
            return list(s.scalars(stmt).all())

    # ------------------------------------------------------------ writes

    def _resolve(self, data: EndpointCreate) -> Resolved:
        return resolve(
            self.catalog, template=data.template, flavor=data.flavor, gpu_type=data.gpu_type, gpu_count=data.gpu_count,
            hf_model_repo=data.hf_model_repo, revision=data.revision, model_path=data.model_path, scaling=data.scaling,
            engine=data.engine, max_replicas_limit=self.settings.max_replicas,
        )  # fmt: skip

    def _model_dir(self, model: str) -> str:
        if model != TINY:
            return model
        path = self.settings.home / "models" / "tiny"
        if not (path / "config.json").exists():
            if self.make_tiny is None:
                raise InvalidInput("this control plane cannot generate the rota:tiny model", field="template")
            self.make_tiny(path)
        return str(path)

    def _build(self, r: Resolved, routing_key: str) -> tuple[dict[str, Any], str]:
        """The application's args, validated by building it (as Ray Serve will)."""
        args = serve_args(r, self._model_dir(r.model), routing_key, api_key="validation")
        info = self.inspector(self.settings.serve_apps_dirs, r.file_path, r.deployment_name, args)
        args.pop("api_key")
        return args, info.ingress

    def create(self, who: Principal, data: EndpointCreate) -> EndpointPublic:
        r = self._resolve(data)
        routing_key = data.routing_key or f"{data.name}-{secrets.token_hex(3)}"
        args, ingress = self._build(r, routing_key)
        now = self.clock()
        with self.db.session() as s:
            self._check_unique(s, who, data.name, routing_key)
            ep = EndpointRow(
                project_id=who.project_id, name=data.name, routing_key=routing_key, template=r.template, flavor=r.flavor,
                gpu_type=r.gpu_type, gpu_count=r.gpu_count, model=r.model, revision=r.revision, file_path=r.file_path,
                deployment_name=r.deployment_name, ingress=ingress, engine=r.engine.model_dump(exclude_none=True),
                args=args, resources=actor_options(r), scaling=r.scaling.model_dump(exclude_none=True), env=data.env,
                desired=Desired.RUNNING.value, generation=1, status=EndpointStatus.INITIALIZING.value,
                phase="REQUESTING_RESOURCES", replica_ids=[], created_at=now, updated_at=now,
            )  # fmt: skip
            s.add(ep)
            s.flush()
            lo, hi, _ = bounds(ep)
            source = f"template {r.template} ({r.flavor}, {r.gpu_count}x {r.gpu_type})" if r.template else f"model {r.model}"
            record(s, ep, EventKind.CREATED, f"created from {source} as model {routing_key!r}, replicas {lo}..{hi}",
                   {"routing_key": routing_key, "min_replicas": lo, "max_replicas": hi}, at=now)  # fmt: skip
            out = self.to_public(ep, who.project)
        self.hooks.desired_changed()
        return out

    def _check_unique(self, s: Session, who: Principal, name: str, routing_key: str | None, own_id: int | None = None) -> None:
        same = select(EndpointRow.id).where(
            EndpointRow.project_id == who.project_id, EndpointRow.name == name, EndpointRow.desired != Desired.DELETED.value
        )
        if s.scalar(same.where(EndpointRow.id != (own_id or 0))) is not None:
            raise Conflict(f"an endpoint named {name!r} already exists", field="name")
        if routing_key and s.scalar(select(EndpointRow.id).where(EndpointRow.routing_key == routing_key)) is not None:
            raise Conflict(f"the routing_key {routing_key!r} is taken", field="routing_key")

    def update(self, who: Principal, ref: str | int, patch: EndpointUpdate) -> EndpointPublic:
        sent = patch.model_dump(exclude_unset=True)
        now = self.clock()
        with self.db.session() as s:
            ep = self._get(s, who, ref)
            current = self._as_create(ep)
            merged = {**current, **patch.model_dump(exclude_unset=True, mode="json")}
            if sent.get("engine") is not None:  # partial inside engine too: only the settings sent change
                merged["engine"] = {**current["engine"], **patch.engine.model_dump(exclude_unset=True)}
            if {"hf_model_repo", "model_path"} & sent.keys():
                for k in ("hf_model_repo", "model_path", "revision"):
                    if k not in sent:
                        merged.pop(k, None)
            new, changed = merge(EndpointCreate, current, merged, sent)
            if not changed:
                return self.to_public(ep, who.project)
            if "name" in changed:
                self._check_unique(s, who, new.name, None, own_id=ep.id)
            r = self._resolve(new)
            rolling = [k for k in changed if k in ROLLING_FIELDS]
            if rolling:
                args, ep.ingress = self._build(r, ep.routing_key)
                ep.args, ep.resources, ep.env = args, actor_options(r), new.env
                ep.flavor, ep.gpu_type, ep.gpu_count, ep.model, ep.revision = r.flavor, r.gpu_type, r.gpu_count, r.model, r.revision
                ep.engine = r.engine.model_dump(exclude_none=True)
                ep.generation += 1
            ep.name = new.name
            ep.scaling = r.scaling.model_dump(exclude_none=True)
            ep.updated_at = now
            how = "replicas roll to the new settings" if rolling else "applied in place"
            record(s, ep, EventKind.UPDATED, f"updated {', '.join(changed)}: {how}",
                   {"fields": changed, "rolling": bool(rolling), "generation": ep.generation}, at=now)  # fmt: skip
            out = self.to_public(ep, who.project)
        self.hooks.desired_changed()
        return out

    def _set_desired(self, who: Principal, ref: str | int, desired: Desired, kind: EventKind, message: str) -> EndpointPublic:
        now = self.clock()
        with self.db.session() as s:
            ep = self._get(s, who, ref)
            if ep.desired != desired.value:
                ep.desired, ep.updated_at = desired.value, now
                record(s, ep, kind, message, at=now)
            out = self.to_public(ep, who.project)
        self.hooks.desired_changed()
        return out

    def stop(self, who: Principal, ref: str | int) -> EndpointPublic:
        return self._set_desired(who, ref, Desired.STOPPED, EventKind.STOP,
                                 "stop requested: the application is removed and its replicas released")  # fmt: skip

    def start(self, who: Principal, ref: str | int) -> EndpointPublic:
        return self._set_desired(who, ref, Desired.RUNNING, EventKind.START, "start requested: deploying the application")

    def delete(self, who: Principal, ref: str | int) -> None:
        now = self.clock()
        with self.db.session() as s:
            ep = self._get(s, who, ref)
            drivers = s.scalars(select(TaskRow.name).where(TaskRow.endpoint_id == ep.id)).all()
            if drivers:
                raise InvalidTransition(f"tasks {', '.join(drivers)} drive this endpoint: delete them first", field="endpoint")
            ep.desired, ep.updated_at = Desired.DELETED.value, now
            record(s, ep, EventKind.DELETED, "deleted: the application is removed; the endpoint goes away once it is", at=now)
        self.hooks.desired_changed()

    def report_phase(self, routing_key: str, phase: Phase) -> bool:
        """A starting replica says what it is doing (e.g. downloading the model)."""
        with self.db.session() as s:
            ep = s.scalar(select(EndpointRow).where(EndpointRow.routing_key == routing_key))
            if ep is None or phase not in (Phase.DOWNLOADING_MODEL, Phase.ENGINE_INITIALIZING):
                return False
            ep.reported_phase = phase.value
            if EndpointStatus(ep.status) in STARTING:
                set_endpoint_status(s, ep, Derived(EndpointStatus(ep.status), phase), self.clock())
            return True

    # ------------------------------------------------------------ the gateway's view

    def routing_table(self, keys: list[tuple[str, int]], projects: dict[int, str]) -> dict[str, Any]:
        with self.db.session() as s:
            rows = s.scalars(select(EndpointRow).where(EndpointRow.desired != Desired.DELETED.value)).all()
            endpoints = [
                {
                    "routing_key": ep.routing_key, "project_id": ep.project_id, "project": projects.get(ep.project_id),
                    "app": app_name(ep), "route_prefix": ENDPOINT_PREFIX + ep.routing_key,
                    "status": EndpointStatus.STOPPED.value if ep.desired == Desired.STOPPED.value else ep.status,
                    "message": ep.message, "max_concurrency": max_concurrency(ep), "created": int(ep.created_at.timestamp()),
                }
                for ep in rows
            ]  # fmt: skip
        return {"keys": [{"hash": h, "project_id": p} for h, p in keys], "endpoints": endpoints}

    # ------------------------------------------------------------ mapping

    @staticmethod
    def _as_create(ep: EndpointRow) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": ep.name, "routing_key": ep.routing_key, "scaling": ep.scaling, "engine": ep.engine or {},
            "env": ep.env or {}, "gpu_type": ep.gpu_type, "gpu_count": ep.gpu_count,
        }  # fmt: skip
        if ep.template:
            out.update(template=ep.template, flavor=ep.flavor)
        elif not ep.model.startswith(("/", ".", "~")):
            out.update(hf_model_repo=ep.model, revision=ep.revision)
        else:
            out["model_path"] = ep.model
        return {k: v for k, v in out.items() if v is not None}

    def to_public(self, ep: EndpointRow, project: str) -> EndpointPublic:
        lo, hi, source = bounds(ep)
        return EndpointPublic(
            id=ep.id, name=ep.name, project=project, routing_key=ep.routing_key, template=ep.template, flavor=ep.flavor,
            gpu_type=ep.gpu_type, gpu_count=ep.gpu_count, model=ep.model, revision=ep.revision, scaling=ep.scaling,
            engine=ep.engine or {}, env=ep.env or {}, status=EndpointStatus(ep.status), phase=ep.phase,
            error_code=ep.error_code, message=ep.message, desired=Desired(ep.desired),
            replicas={"min": lo, "max": hi, "source": source, "target": ep.target_replicas,
                      "running": len(ep.replica_ids or []), "ids": list(ep.replica_ids or [])},
            base_url=f"{self.settings.serve_url}/v1", url=f"{self.settings.serve_url}{ENDPOINT_PREFIX}{ep.routing_key}",
            created_at=ep.created_at, updated_at=ep.updated_at, observed_at=ep.observed_at,
        )  # fmt: skip
