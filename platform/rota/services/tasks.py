"""Task use cases: create, list, get, partial update, activate, deactivate, delete.

A task is a schedule over an endpoint: one it drives, or an application it owns, created
in the same transaction (same name) and deleted with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from rota.config import Settings
from rota.domain.errors import Conflict, InvalidInput, NotFound
from rota.domain.events import EventKind
from rota.domain.schedule import Occurrence, next_occurrence, to_local
from rota.domain.tasks import ScheduleEntry, TaskCreate, TaskPublic, TaskStatus, TaskUpdate
from rota.services import Hooks, merge, merge_env, views
from rota.services.auth import Principal
from rota.services.builds import llm_defaults
from rota.services.coldstarts import spec_for
from rota.services.endpoints import EndpointService
from rota.services.events import record, transition
from rota.services.task_queries import TaskQueries
from rota.store.tables import EndpointRow, RunRow, TaskRow, utcnow

APP_FIELDS = ("file_path", "deployment_name", "args", "env", "resources")


@dataclass
class TaskService(TaskQueries):
    settings: Settings
    endpoints: EndpointService
    hooks: Hooks = field(default_factory=Hooks)
    clock: Callable[[], datetime] = utcnow

    def __post_init__(self) -> None:
        self.ready = self.endpoints.ready

    # ------------------------------------------------------------ writes

    def check(self, who: Principal, data: TaskCreate) -> None:
        """What only the service checks of a new task (the platform's replica limit, the
        env policy): run before anything is created for it."""
        for i, e in enumerate(data.schedule):
            self.endpoints.builder.check_replicas(e.max_replicas, f"schedule.{i}.max_replicas")
        self.endpoints.builder.policy.check_env(data.env, who.admin)

    def _own_application(self, s: Session, who: Principal, task: TaskRow, data: TaskCreate, now: datetime) -> EndpointRow:
        """Create the endpoint holding the task's own application (same transaction)."""
        taken = select(EndpointRow.id).where(EndpointRow.project_id == who.project_id)
        if s.scalar(taken.where((EndpointRow.name == data.name) | (EndpointRow.routing_key == data.name))) is not None:
            raise Conflict(
                f"an endpoint named {data.name!r} exists: name the task differently, or drive it (endpoint)", field="name"
            )
        assert data.file_path and data.deployment_name
        build = self.endpoints.builder.application(
            who, data.file_path, data.deployment_name, data.args, data.resources, data.name, None
        )
        return self.endpoints.insert(s, who, build, data.name, data.name, data.env, now, owner=task)

    @staticmethod
    def _names(s: Session, who: Principal, ref: str, ep: EndpointRow) -> bool:
        try:
            return EndpointService.find(s, who, ref).id == ep.id
        except NotFound:
            return False

    @staticmethod
    def _target(s: Session, who: Principal, ref: str, task: TaskRow | None = None) -> EndpointRow:
        """The endpoint a task is to drive: one of the project's, and no other task's own
        application (that one lives and dies with its task)."""
        try:
            ep = EndpointService.find(s, who, ref)
        except NotFound:
            raise InvalidInput(f"no endpoint {ref[:100]!r} in this project", field="endpoint") from None
        if ep.owner_task_id is not None and (task is None or ep.owner_task_id != task.id):
            raise InvalidInput(f"endpoint {ep.name!r} is a task's own application: drive it from that task", field="endpoint")
        return ep

    def create(self, who: Principal, data: TaskCreate) -> TaskPublic:
        self.check(who, data)
        now = self.clock()
        with self.db.session() as s:
            if s.scalar(select(TaskRow.id).where(TaskRow.project_id == who.project_id, TaskRow.name == data.name)):
                raise Conflict(f"a task named {data.name!r} already exists", field="name")
            target = self._target(s, who, data.endpoint) if data.endpoint is not None else None
            task = TaskRow(
                project_id=who.project_id,
                name=data.name,
                endpoint_id=target.id if target else 0,
                type=data.type.value,
                timezone=data.timezone,
                schedule=[e.model_dump(exclude_none=True) for e in data.schedule],
                ready_by=data.ready_by,
                status=TaskStatus.IDLE.value,
                created_at=now,
                updated_at=now,
            )
            s.add(task)
            s.flush()
            ep = target or self._own_application(s, who, task, data, now)
            task.endpoint_id = ep.id
            what = (
                f"its own application {ep.file_path}:{ep.deployment_name} at {ep.route_prefix}"
                if not target
                else f"endpoint {ep.name}"
            )
            record(s, task, EventKind.CREATED, f"created to drive {what} ({task.type}, {task.timezone})", at=now)
            out = self._public(s, who, task)
        self.hooks.task_changed(out.id)
        return out

    def update(self, who: Principal, ref: str | int, patch: TaskUpdate) -> TaskPublic:
        sent = patch.model_dump(exclude_unset=True)
        now = self.clock()
        with self.db.session() as s:
            task = self.find(s, who, ref)
            ep = s.get(EndpointRow, task.endpoint_id)
            if ep is None:
                raise Conflict(f"task {task.name} drives an endpoint that no longer exists: delete it", field="endpoint")
            owned = ep.owner_task_id == task.id
            current = self._as_create(task, ep, owned)
            sent_json = patch.model_dump(exclude_unset=True, mode="json")
            if owned and sent.get("endpoint") is not None and self._names(s, who, sent["endpoint"], ep):
                del sent["endpoint"], sent_json["endpoint"]  # its own application by name: nothing to switch
            merged = {**current, **sent_json}
            if patch.env is not None:
                merged["env"] = merge_env(current.get("env", {}), patch.env)
            if sent.get("endpoint") is not None:  # switching targets drops the other side
                merged = {k: v for k, v in merged.items() if k in sent or k not in APP_FIELDS}
            elif {"file_path", "deployment_name"} & sent.keys():
                merged.pop("endpoint", None)
            if isinstance(merged.get("args"), dict):
                merged["args"] = llm_defaults(
                    merged.get("file_path"), merged["args"], ep.routing_key if owned else merged["name"]
                )
            new, changed = merge(TaskCreate, current, merged, sent)
            self.check(who, new)
            target = self._target(s, who, new.endpoint, task) if new.endpoint else None
            if target is not None and target.id == ep.id:  # the same endpoint by another name (e.g. a manifest's)
                changed = [k for k in changed if k != "endpoint"]
            if not changed:
                return self._public(s, who, task)
            if new.owns_application != owned or "endpoint" in changed:
                self._release(s, task, ep, now)
                ep = target or self._own_application(s, who, task, new, now)
                task.endpoint_id = ep.id
            elif owned and any(k in changed for k in APP_FIELDS):
                self.endpoints.update_application(s, who, ep, new, now)
            self._set_schedule(s, task, new, changed, now)
            record(s, task, EventKind.UPDATED, f"updated {', '.join(changed)}", {"fields": changed}, at=now)
            out = self._public(s, who, task)
        self.hooks.task_changed(out.id)
        self.hooks.desired_changed()
        return out

    def _set_schedule(self, s: Session, task: TaskRow, new: TaskCreate, changed: Sequence[str], now: datetime) -> None:
        if not any(k in changed for k in ("type", "timezone", "schedule", "ready_by", "endpoint")):
            return
        task.type, task.timezone, task.updated_at, task.ready_by = new.type.value, new.timezone, now, new.ready_by
        task.schedule = [e.model_dump(exclude_none=True) for e in new.schedule]
        if task.status == TaskStatus.ACTIVE.value:
            # A window fired early and not reached yet follows the new schedule: planned again.
            s.execute(delete(RunRow).where(RunRow.task_id == task.id, RunRow.scheduled_at > now))
            nxt = self._next(s, task, now)
            if nxt is None:
                raise InvalidInput("the new schedule has no fire in the future", field="schedule")
            task.due_since, task.next_fire_at = now, nxt.at  # future fires follow the new schedule; none are back-filled

    def _next(self, s: Session, task: TaskRow, now: datetime) -> Occurrence | None:
        """The first fire written after ``now`` (a ready_by one may be due at once: it starts late)."""
        return next_occurrence(spec_for(s, task, self.ready)[0], now)

    def _as_create(self, task: TaskRow, ep: EndpointRow, owned: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": task.name,
            "type": task.type,
            "timezone": task.timezone,
            "schedule": task.schedule,
            "ready_by": bool(task.ready_by),
        }
        if not owned:
            return {**out, "endpoint": str(ep.id)}
        app = self.endpoints.as_create(ep)
        return {**out, **{k: app[k] for k in APP_FIELDS if k in app}}

    @staticmethod
    def _release(s: Session, task: TaskRow, ep: EndpointRow, now: datetime) -> None:
        """The task lets go of its endpoint: its own application goes; another endpoint's
        bounds follow its own scaling again once no task drives it."""
        if ep.owner_task_id == task.id:
            EndpointService.mark_deleted(s, ep, now)
            return
        others = s.scalar(select(func.count()).where(TaskRow.endpoint_id == ep.id, TaskRow.id != task.id))
        if not others and ep.scheduled_min is not None:
            ep.scheduled_min = ep.scheduled_max = None
            record(
                s, ep, EventKind.SCHEDULED, f"task {task.name} let go: replica bounds follow the endpoint's scaling again", at=now
            )

    def activate(self, who: Principal, ref: str | int) -> TaskPublic:
        now = self.clock()
        with self.db.session() as s:
            task = self.find(s, who, ref)
            if task.status != TaskStatus.ACTIVE.value:
                spec = views.spec_of(task)
                nxt = self._next(s, task, now)
                if nxt is None:
                    when = ScheduleEntry.model_validate(task.schedule[0]).time
                    raise InvalidInput(
                        f"the one-off time {when} ({task.timezone}) has passed; PATCH the schedule first", field="schedule"
                    )
                task.activated_at = task.due_since = now
                task.next_fire_at = nxt.at
                local = to_local(spec.tz, nxt.at).strftime("%Y-%m-%d %H:%M:%S %Z")
                transition(
                    s,
                    task,
                    TaskStatus.ACTIVE,
                    EventKind.ACTIVATED,
                    f"activated; next fire at {nxt.at.strftime('%Y-%m-%dT%H:%M:%SZ')} ({local})",
                    at=now,
                )
            out = self._public(s, who, task)
        self.hooks.task_changed(out.id)
        return out

    def deactivate(self, who: Principal, ref: str | int) -> TaskPublic:
        now = self.clock()
        with self.db.session() as s:
            task = self.find(s, who, ref)
            if task.status != TaskStatus.IDLE.value:
                task.next_fire_at = None
                transition(
                    s,
                    task,
                    TaskStatus.IDLE,
                    EventKind.DEACTIVATED,
                    "deactivated: no more fires; its endpoint keeps the bounds of the last one",
                    at=now,
                )
            out = self._public(s, who, task)
        self.hooks.task_changed(out.id)
        return out

    def delete(self, who: Principal, ref: str | int) -> None:
        now = self.clock()
        with self.db.session() as s:
            task = self.find(s, who, ref)
            task_id = task.id
            ep = s.get(EndpointRow, task.endpoint_id)
            if ep is not None:
                self._release(s, task, ep, now)
            owned = ep is not None and ep.owner_task_id == task.id
            record(s, task, EventKind.DELETED, "deleted; its own application is being removed" if owned else "deleted", at=now)
            s.execute(delete(RunRow).where(RunRow.task_id == task.id))  # its fires go with it (its events stay)
            s.delete(task)
        self.hooks.task_changed(task_id)
        self.hooks.desired_changed()
