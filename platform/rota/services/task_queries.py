"""Task reads: find, get, list (search and filters), and a task's run history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rota.domain.errors import NotFound
from rota.domain.names import by_id_or_name
from rota.domain.schedule import TaskType
from rota.domain.tasks import Readiness, RunPublic, TaskPublic, TaskStatus
from rota.services import views
from rota.services.auth import Principal
from rota.services.coldstarts import ReadyBy, cold_starts
from rota.store.db import Database
from rota.store.tables import EndpointRow, RunRow, TaskRow


@dataclass(frozen=True)
class TaskFilter:
    search: str | None = None  # a substring of the name
    status: TaskStatus | None = None
    type: TaskType | None = None
    timezone: str | None = None
    endpoint_id: int | None = None  # the tasks that drive this endpoint


WINDOWS = 30  # ready_by windows the on-time rate is over


def readiness(s: Session, task_ids: Sequence[int]) -> dict[int, Readiness]:
    """How many of each task's last ``WINDOWS`` judged ready_by windows had their replicas
    serving in time (one query for any number of tasks)."""
    judged = (RunRow.task_id.in_(task_ids)) & RunRow.ready_state.is_not(None) & (RunRow.ready_state != "pending")
    rank = func.row_number().over(partition_by=RunRow.task_id, order_by=RunRow.scheduled_at.desc()).label("rank")
    ranked = select(RunRow.task_id, RunRow.ready_state, rank).where(judged).subquery()
    counts: dict[int, list[int]] = {}
    for task_id, state in s.execute(select(ranked.c.task_id, ranked.c.ready_state).where(ranked.c.rank <= WINDOWS)):
        c = counts.setdefault(task_id, [0, 0])
        c[0], c[1] = c[0] + 1, c[1] + (state == "on_time")
    return {t: Readiness(windows=n, on_time=k, rate=round(k / n, 4)) for t, (n, k) in counts.items()}


@dataclass
class TaskQueries:
    db: Database
    ready = ReadyBy()  # how early ready_by entries fire (TaskService sets the configured one)

    @staticmethod
    def find(s: Session, who: Principal, ref: str | int) -> TaskRow:
        id_, name = by_id_or_name(ref)
        stmt = select(TaskRow).where(TaskRow.project_id == who.project_id)
        task = s.scalar(stmt.where(TaskRow.id == id_) if id_ is not None else stmt.where(TaskRow.name == name))
        if task is None:
            raise NotFound(f"no task {name[:100]!r}", field="task")
        return task

    def named(self, who: Principal, name: str) -> bool:
        """Whether the project has a task of this name."""
        with self.db.session() as s:
            return s.scalar(select(TaskRow.id).where(TaskRow.project_id == who.project_id, TaskRow.name == name)) is not None

    def get(self, who: Principal, ref: str | int) -> TaskPublic:
        with self.db.session() as s:
            return self._public(s, who, self.find(s, who, ref))

    def list(
        self, who: Principal, f: TaskFilter = TaskFilter(), limit: int = 50, offset: int = 0
    ) -> tuple[Sequence[TaskPublic], int]:
        with self.db.session() as s:
            stmt = select(TaskRow).where(TaskRow.project_id == who.project_id)
            if f.search:
                stmt = stmt.where(TaskRow.name.contains(f.search, autoescape=True))
            for column, value in (
                (TaskRow.status, f.status.value if f.status else None),
                (TaskRow.type, f.type.value if f.type else None),
                (TaskRow.timezone, f.timezone),
                (TaskRow.endpoint_id, f.endpoint_id),
            ):
                if value is not None:
                    stmt = stmt.where(column == value)
            total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
            rows = s.scalars(stmt.order_by(TaskRow.id).limit(limit).offset(offset)).all()
            # A page's endpoints and last runs in one query each, not one per task.
            eps = {e.id: e for e in s.scalars(select(EndpointRow).where(EndpointRow.id.in_([r.endpoint_id for r in rows])))}
            ids = [r.id for r in rows]
            latest = select(RunRow.task_id, func.max(RunRow.scheduled_at).label("at")).where(RunRow.task_id.in_(ids))
            sub = latest.group_by(RunRow.task_id).subquery()
            runs = {
                r.task_id: r
                for r in s.scalars(
                    select(RunRow).join(sub, (RunRow.task_id == sub.c.task_id) & (RunRow.scheduled_at == sub.c.at))
                )
            }
            return self._views(s, who, rows, eps, runs), total

    def runs(self, who: Principal, ref: str | int, limit: int = 100) -> Sequence[RunPublic]:
        """The task's applied fires, newest first (caught-up ones say so in ``trigger``)."""
        with self.db.session() as s:
            stmt = select(RunRow).where(RunRow.task_id == self.find(s, who, ref).id)
            return [views.run_public(r) for r in s.scalars(stmt.order_by(RunRow.scheduled_at.desc()).limit(limit))]

    def _public(self, s: Session, who: Principal, task: TaskRow) -> TaskPublic:
        run = s.scalars(select(RunRow).where(RunRow.task_id == task.id).order_by(RunRow.scheduled_at.desc()).limit(1)).first()
        ep = s.get(EndpointRow, task.endpoint_id)
        return self._views(s, who, [task], {ep.id: ep} if ep else {}, {task.id: run} if run else {})[0]

    def _views(
        self, s: Session, who: Principal, tasks: Sequence[TaskRow], eps: dict[int, EndpointRow], runs: dict[int, RunRow]
    ) -> Sequence[TaskPublic]:
        """Tasks as the API shows them; ready_by ones with their endpoint's cold starts and
        their readiness (looked up for the whole page at once)."""
        ready = {t.id for t in tasks if views.spec_of(t).ready_by}
        mine = {e.id: e for t in tasks if t.id in ready and (e := eps.get(t.endpoint_id)) is not None}
        figures = cold_starts(s, [*mine.values()], self.ready) if ready else {}
        rates = readiness(s, [*ready]) if ready else {}
        return [
            views.task(t, eps.get(t.endpoint_id), who.project, runs.get(t.id), figures.get(t.endpoint_id), rates.get(t.id))
            if t.id in ready
            else views.task(t, eps.get(t.endpoint_id), who.project, runs.get(t.id))
            for t in tasks
        ]
