"""Task use cases: create, list, get, partial update, activate, deactivate, delete."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from rota.config import Settings
from rota.domain.errors import Conflict, InvalidInput, NotFound
from rota.domain.models import AppPublic, EndpointRef, FireTime, RunPublic, TaskCreate, TaskPublic, TaskUpdate, by_id_or_name
from rota.domain.reconcile import AppSpec
from rota.domain.schedule import ScheduleSpec, next_occurrence, next_occurrences, to_local
from rota.domain.status import AppStatus, EventKind, TaskStatus, TaskType
from rota.serve.apps import AppInfo, inspect_app
from rota.services.events import record, transition
from rota.services.fires import SCHEDULABLE, spec_of
from rota.services.patching import merge
from rota.store.db import Database
from rota.store.tables import DEFAULT_PROJECT_ID, EndpointRow, EventRow, ProjectRow, RunRow, TaskRow, utcnow

APP_FIELDS = ("file_path", "deployment_name", "args", "endpoint")
_EPS = timedelta(microseconds=1)


def task_app_name(task: TaskRow) -> str:
    """Ray Serve application (and route prefix) of a task: names are unique per project."""
    return task.name if task.project_id == DEFAULT_PROJECT_ID else f"p{task.project_id}-{task.name}"


def app_spec(task: TaskRow) -> AppSpec | None:
    """The desired Ray Serve application of a task: None until its first fire, and for a
    task that drives an endpoint (the endpoint's application is the endpoint's)."""
    if task.desired_min is None or task.desired_max is None or task.endpoint_id is not None:
        return None
    actor = {k: v for k, v in (task.resources or {}).items() if v is not None}
    return AppSpec(
        name=task_app_name(task), import_path=f"{task.file_path}:{task.deployment_name}",
        ingress=task.ingress, min_replicas=task.desired_min, max_replicas=task.desired_max,
        args=dict(task.args or {}), env=dict(task.env or {}), ray_actor_options=actor,
    )  # fmt: skip


@dataclass
class Hooks:
    """Called after a change is committed: keep the scheduler and reconciler in step."""

    task_changed: Callable[[int], None] = lambda task_id: None
    desired_changed: Callable[[], None] = lambda: None


@dataclass
class TaskService:
    db: Database
    settings: Settings
    hooks: Hooks = field(default_factory=Hooks)
    clock: Callable[[], datetime] = utcnow
    inspector: Callable[..., AppInfo] = inspect_app

    # ------------------------------------------------------------ reads

    def _get(self, s: Session, ref: str | int, project_id: int) -> TaskRow:
        id_, ref = by_id_or_name(ref)
        stmt = select(TaskRow).where(TaskRow.project_id == project_id)
        stmt = stmt.where(TaskRow.id == id_) if id_ is not None else stmt.where(TaskRow.name == ref)
        task = s.scalar(stmt)
        if task is None:
            raise NotFound(f"no task {ref!r}", field="task")
        return task

    def get(self, ref: str | int, project_id: int = DEFAULT_PROJECT_ID) -> TaskPublic:
        with self.db.session() as s:
            return self.to_public(s, self._get(s, ref, project_id))

    def list(
        self, search: str | None = None, status: TaskStatus | None = None, type_: TaskType | None = None,
        limit: int = 50, offset: int = 0, project_id: int = DEFAULT_PROJECT_ID,
    ) -> tuple[list[TaskPublic], int]:  # fmt: skip
        with self.db.session() as s:
            stmt = select(TaskRow).where(TaskRow.project_id == project_id)
            if search:
                stmt = stmt.where(TaskRow.name.contains(search, autoescape=True))
            if status:
                stmt = stmt.where(TaskRow.status == status.value)
            if type_:
                stmt = stmt.where(TaskRow.type == type_.value)
            total = s.scalar(select(func.count()).select_from(stmt.subquery()))
            rows = s.scalars(stmt.order_by(TaskRow.id).limit(limit).offset(offset)).all()
            last = self._last_runs(s, [r.id for r in rows])
            return [self.to_public(s, r, last.get(r.id)) for r in rows], total

    @staticmethod
    def _last_runs(s: Session, task_ids: list[int]) -> dict[int, RunRow]:
        """The latest run of each task, in one query (a page of tasks, not one query each)."""
        if not task_ids:
            return {}
        latest = (
            select(RunRow.task_id, func.max(RunRow.scheduled_at).label("at"))
            .where(RunRow.task_id.in_(task_ids)).group_by(RunRow.task_id).subquery()
        )  # fmt: skip
        rows = s.scalars(select(RunRow).join(latest, (RunRow.task_id == latest.c.task_id) & (RunRow.scheduled_at == latest.c.at)))
        return {r.task_id: r for r in rows}

    def events(self, ref: str | int, limit: int = 1000, after_id: int = 0, project_id: int = DEFAULT_PROJECT_ID) -> list[EventRow]:
        with self.db.session() as s:
            task = self._get(s, ref, project_id)
            return self._events(s, or_(EventRow.task_id == task.id), limit, after_id)

    def all_events(
        self, task_name: str | None = None, limit: int = 1000, after_id: int = 0, project_id: int = DEFAULT_PROJECT_ID,
        endpoint_name: str | None = None,
    ) -> list[EventRow]:  # fmt: skip
        """The project's events (deleted tasks' and endpoints' included)."""
        with self.db.session() as s:
            cond = EventRow.project_id == project_id
            if task_name:
                cond = cond & (EventRow.task_name == task_name)
            if endpoint_name:
                cond = cond & (EventRow.endpoint_name == endpoint_name)
            return self._events(s, cond, limit, after_id)

    @staticmethod
    def _events(s: Session, cond, limit: int, after_id: int) -> list[EventRow]:
        stmt = select(EventRow).where(cond, EventRow.id > after_id).order_by(EventRow.id).limit(limit)
        return list(s.scalars(stmt).all())

    # ------------------------------------------------------------ writes

    def _endpoint(self, s: Session, ref: str, project_id: int) -> EndpointRow:
        stmt = select(EndpointRow).where(EndpointRow.project_id == project_id, EndpointRow.desired != "deleted")
        id_, ref = by_id_or_name(ref)
        stmt = stmt.where(EndpointRow.id == id_) if id_ is not None else stmt.where(EndpointRow.name == ref)
        ep = s.scalar(stmt)
        if ep is None:
            raise InvalidInput(f"no endpoint {ref!r} in this project", field="endpoint")
        return ep

    def _ingress(self, data: TaskCreate) -> str | None:
        if data.endpoint is not None:
            return None
        return self.inspector(self.settings.serve_apps_dirs, data.file_path, data.deployment_name, data.args).ingress

    def create(self, data: TaskCreate, project_id: int = DEFAULT_PROJECT_ID) -> TaskPublic:
        ingress = self._ingress(data)
        now = self.clock()
        with self.db.session() as s:
            if s.scalar(select(TaskRow.id).where(TaskRow.project_id == project_id, TaskRow.name == data.name)) is not None:
                raise Conflict(f"a task named {data.name!r} already exists", field="name")
            ep = self._endpoint(s, data.endpoint, project_id) if data.endpoint is not None else None
            task = TaskRow(
                project_id=project_id, endpoint_id=ep.id if ep else None,
                name=data.name, file_path=data.file_path, deployment_name=data.deployment_name, ingress=ingress,
                type=data.type.value, timezone=data.timezone, schedule=[e.model_dump() for e in data.schedule],
                args=data.args, env=data.env, resources=data.resources.model_dump(exclude_none=True),
                status=TaskStatus.IDLE.value, created_at=now, updated_at=now, app_replica_ids=[],
            )  # fmt: skip
            s.add(task)
            s.flush()
            what = f"to drive endpoint {ep.name}" if ep else f"{data.file_path}:{data.deployment_name} as /{task_app_name(task)}"
            record(s, task, EventKind.CREATED, f"created {what} ({task.type}, {task.timezone})", at=now)
            out = self.to_public(s, task)
        self.hooks.task_changed(out.id)
        return out

    def update(self, ref: str | int, patch: TaskUpdate, project_id: int = DEFAULT_PROJECT_ID) -> TaskPublic:
        changes = patch.model_dump(exclude_unset=True)
        now = self.clock()
        with self.db.session() as s:
            task = self._get(s, ref, project_id)
            current = self._as_create(s, task)
            merged = {**current, **{k: v for k, v in patch.model_dump(exclude_unset=True, mode="json").items()}}
            # Switching between an inline application and an endpoint drops the other side.
            if changes.get("endpoint") is not None:
                for k in {"file_path", "deployment_name"} - changes.keys():
                    merged.pop(k, None)
            elif {"file_path", "deployment_name"} & changes.keys() and "endpoint" not in changes:
                merged.pop("endpoint", None)
            new, changed = merge(TaskCreate, current, merged, changes)
            if not changed:
                return self.to_public(s, task)
            if any(k in changed for k in APP_FIELDS):
                task.ingress = self._ingress(new)
                ep = self._endpoint(s, new.endpoint, project_id) if new.endpoint is not None else None
                task.endpoint_id = ep.id if ep else None
            schedule_changed = any(k in changed for k in ("type", "timezone", "schedule"))
            if schedule_changed and task.status in SCHEDULABLE:
                nxt = next_occurrence(spec_of_create(new), now)
                if nxt is None:
                    raise InvalidInput("the new schedule has no fire in the future", field="schedule")
            task.file_path, task.deployment_name = new.file_path, new.deployment_name
            task.type, task.timezone = new.type.value, new.timezone
            task.schedule = [e.model_dump() for e in new.schedule]
            task.args, task.env = new.args, new.env
            task.resources = new.resources.model_dump(exclude_none=True)
            task.updated_at = now
            if schedule_changed and task.status in SCHEDULABLE:
                task.due_since = now  # future fires follow the new schedule; none are back-filled
                task.next_fire_at = nxt.at
            record(s, task, EventKind.UPDATED, f"updated {', '.join(changed)}", {"fields": changed}, at=now)
            out = self.to_public(s, task)
        self.hooks.task_changed(out.id)
        self.hooks.desired_changed()
        return out

    def activate(self, ref: str | int, project_id: int = DEFAULT_PROJECT_ID) -> TaskPublic:
        now = self.clock()
        with self.db.session() as s:
            task = self._get(s, ref, project_id)
            if task.status == TaskStatus.ACTIVE.value:
                return self.to_public(s, task)
            spec = spec_of(task)
            nxt = next_occurrence(spec, now)
            if nxt is None:
                raise InvalidInput(
                    f"the one-off time {task.schedule[0]['time']} ({task.timezone}) has passed; PATCH the schedule first",
                    field="schedule",
                )
            task.activated_at = task.due_since = now
            task.next_fire_at = nxt.at
            transition(
                s, task, TaskStatus.ACTIVE, EventKind.ACTIVATED,
                f"activated; next fire at {nxt.at.strftime('%Y-%m-%dT%H:%M:%SZ')} "
                f"({to_local(spec.tz, nxt.at).strftime('%Y-%m-%d %H:%M:%S %Z')})",
                at=now,
            )  # fmt: skip
            out = self.to_public(s, task)
        self.hooks.task_changed(out.id)
        return out

    def deactivate(self, ref: str | int, project_id: int = DEFAULT_PROJECT_ID) -> TaskPublic:
        now = self.clock()
        with self.db.session() as s:
            task = self._get(s, ref, project_id)
            if task.status == TaskStatus.IDLE.value:
                return self.to_public(s, task)
            task.next_fire_at = None
            transition(
                s, task, TaskStatus.IDLE, EventKind.DEACTIVATED,
                "deactivated: no more fires; a deployed application keeps its current replicas", at=now,
            )  # fmt: skip
            out = self.to_public(s, task)
        self.hooks.task_changed(out.id)
        return out

    def delete(self, ref: str | int, project_id: int = DEFAULT_PROJECT_ID) -> None:
        now = self.clock()
        with self.db.session() as s:
            task = self._get(s, ref, project_id)
            task_id = task.id
            deployed = task.desired_min is not None
            if task.endpoint_id is not None:
                message = "deleted"
                others = s.scalar(select(func.count()).where(TaskRow.endpoint_id == task.endpoint_id, TaskRow.id != task.id))
                ep = s.get(EndpointRow, task.endpoint_id)
                if ep is not None and not others and ep.scheduled_min is not None:
                    ep.scheduled_min = ep.scheduled_max = None
                    record(s, ep, EventKind.SCHEDULED, f"task {task.name} deleted: replica bounds follow the endpoint's scaling again", at=now)
            else:
                message = "deleted; its Ray Serve application is being removed" if deployed else "deleted"
            record(s, task, EventKind.DELETED, message, at=now)
            s.delete(task)
        self.hooks.task_changed(task_id)
        self.hooks.desired_changed()

    # ------------------------------------------------------------ mapping

    @staticmethod
    def _as_create(s: Session, task: TaskRow) -> dict[str, Any]:
        out = {
            "name": task.name, "file_path": task.file_path, "deployment_name": task.deployment_name,
            "type": task.type, "timezone": task.timezone, "schedule": task.schedule, "args": task.args or {},
            "env": task.env or {}, "resources": task.resources or {},
        }  # fmt: skip
        if task.endpoint_id is not None:
            out["endpoint"] = str(task.endpoint_id)
        return {k: v for k, v in out.items() if v is not None}

    def to_public(self, s: Session, task: TaskRow, run: RunRow | None | bool = False) -> TaskPublic:
        """``run``: the task's latest run if the caller fetched it already (None: it has none)."""
        spec = spec_of(task)
        tz = spec.tz
        fires: list[FireTime] = []
        if task.status in SCHEDULABLE and task.next_fire_at is not None:
            for occ in next_occurrences(spec, task.next_fire_at - _EPS, 3):
                fires.append(
                    FireTime(
                        utc=occ.at, local=to_local(tz, occ.at).isoformat(), entry=occ.entry.index,
                        min_replicas=occ.entry.min_replicas, max_replicas=occ.entry.max_replicas,
                    )
                )  # fmt: skip
        if run is False:
            run = s.scalars(select(RunRow).where(RunRow.task_id == task.id).order_by(RunRow.scheduled_at.desc()).limit(1)).first()
        last_run = (
            RunPublic(
                scheduled_at=run.scheduled_at, fired_at=run.fired_at, entry=run.entry,
                min_replicas=run.min_replicas, max_replicas=run.max_replicas, trigger=run.trigger,
            )
            if run
            else None
        )  # fmt: skip
        app, endpoint = None, None
        if task.endpoint_id is not None:
            ep = s.get(EndpointRow, task.endpoint_id)
            endpoint = EndpointRef(id=ep.id, name=ep.name, routing_key=ep.routing_key) if ep else None
        else:
            app = self._app_public(task)
        project = s.get(ProjectRow, task.project_id)
        return TaskPublic(
            id=task.id, name=task.name, project=project.name if project else "?", file_path=task.file_path,
            deployment_name=task.deployment_name, endpoint=endpoint,
            type=TaskType(task.type), timezone=task.timezone, schedule=task.schedule, args=task.args or {},
            env=task.env or {}, resources=task.resources or {}, status=TaskStatus(task.status),
            status_reason=task.status_reason, created_at=task.created_at, updated_at=task.updated_at,
            activated_at=task.activated_at, next_fire_at=task.next_fire_at if task.status in SCHEDULABLE else None,
            next_fire_local=to_local(tz, task.next_fire_at).isoformat() if task.next_fire_at and task.status in SCHEDULABLE else None,
            next_fires=fires, last_run=last_run, app=app,
        )  # fmt: skip

    def _app_public(self, task: TaskRow) -> AppPublic:
        name = task_app_name(task)
        return AppPublic(
            name=name, import_path=f"{task.file_path}:{task.deployment_name}", route_prefix=f"/{name}",
            url=f"{self.settings.serve_url}/{name}", status=AppStatus(task.app_status), message=task.app_message,
            desired_min_replicas=task.desired_min, desired_max_replicas=task.desired_max,
            target_replicas=task.app_target_replicas, running_replicas=len(task.app_replica_ids or []),
            replica_ids=list(task.app_replica_ids or []), observed_at=task.app_observed_at,
        )  # fmt: skip


def spec_of_create(data: TaskCreate) -> ScheduleSpec:
    return ScheduleSpec.build(data.type, data.timezone, [e.model_dump() for e in data.schedule])
