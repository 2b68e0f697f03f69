"""Converge Ray Serve to the desired applications of all tasks and endpoints, forever.

Each tick: load desired state (database) -> observe (Ray) -> decide (pure) -> apply
(PUT the whole declarative config) -> record what was observed (statuses, events).
Ticks run every ``interval`` seconds and at once when nudged (after a fire or an edit).
A tick never raises out of the loop; Ray being down is an observation, not an error.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import datetime
from typing import Callable, Protocol

from sqlalchemy import select

from rota.domain.endpoints import STARTING, Desired, EndpointStatus, Observed, Phase, Replicas, derive
from rota.domain.errors import RayUnavailable
from rota.domain.reconcile import AppSpec, AppState, Observation, config_matches, decide, observe_app, state_events
from rota.domain.status import AppStatus, EventKind, TaskStatus, TaskType
from rota.services.endpoints import app_name, endpoint_spec
from rota.services.events import record, set_endpoint_status, transition
from rota.services.tasks import app_spec
from rota.store.db import Database
from rota.store.tables import EndpointRow, TaskRow, utcnow

log = logging.getLogger(__name__)


class RayServe(Protocol):
    def observe(self) -> Observation: ...
    def apply(self, specs: list[AppSpec]) -> None: ...


class Reconciler:
    def __init__(
        self, db: Database, ray: RayServe, interval: float = 2.0, clock: Callable[[], datetime] = utcnow,
        internal_token: str = "", gateway: AppSpec | None = None, control_url: str | None = None,
    ):  # fmt: skip
        """``internal_token``: the key endpoints require (the gateway sends it);
        ``gateway``: the OpenAI base URL application, always deployed when given."""
        self.db = db
        self.ray = ray
        self.internal_token = internal_token
        self.gateway = gateway
        self.control_url = control_url
        self.interval = interval
        self.clock = clock
        self._nudge = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks = 0
        self.last_tick_s: float | None = None
        self.last_error: str | None = None
        self.ray_reachable: bool | None = None

    # ------------------------------------------------------------ loop

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="reconciler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._nudge.set()
        if self._thread:
            self._thread.join(timeout=15)

    def nudge(self) -> None:
        self._nudge.set()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self.tick()
                failures = 0
                self.last_error = None
            except Exception as e:  # a bug or the database: log, back off, keep going
                failures += 1
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("reconcile tick failed (%d in a row)", failures)
            self.last_tick_s = time.monotonic() - t0
            delay = self.interval if failures == 0 else min(30.0, self.interval * 2**failures)
            delay *= random.uniform(0.9, 1.1)  # jitter: many instances never tick in lockstep
            self._nudge.wait(delay)
            self._nudge.clear()

    # ------------------------------------------------------------ one tick

    def desired(self) -> list[AppSpec]:
        with self.db.session() as s:
            specs = [app_spec(r) for r in s.scalars(select(TaskRow).where(TaskRow.desired_min.is_not(None))).all()]
            specs += [endpoint_spec(ep, self.internal_token, self.control_url) for ep in s.scalars(select(EndpointRow)).all()]
        if self.gateway is not None:
            specs.append(self.gateway)
        return [spec for spec in specs if spec is not None]

    def tick(self) -> None:
        desired = self.desired()
        observation = self.ray.observe()
        decision = decide(desired, observation)
        applied = False
        if decision.put:
            log.info("applying %d application(s): %s", len(desired), "; ".join(decision.reasons))
            try:
                self.ray.apply(desired)
                applied = True
                observation = self.ray.observe()
            except RayUnavailable as e:
                observation = Observation(False, {}, e.message)
        self.ray_reachable = observation.reachable
        self._record(observation, decision.missing if applied else None)
        self.ticks += 1

    def _record(self, observation: Observation, applied_missing: frozenset[str] | None) -> None:
        """Write what was observed. ``applied_missing``: None if nothing was PUT this tick,
        else the applications the PUT had to (re)create."""
        now = self.clock()
        with self.db.session() as s:
            # Tasks that never fired have no application to observe: at 10,000 mostly idle
            # tasks, looking at all of them on every tick is what would cost.
            for task in s.scalars(select(TaskRow).where(_has_app)).all():
                spec = app_spec(task)
                if applied_missing is not None and spec is not None:
                    self._record_applied(s, task, spec, spec.name in applied_missing, now)
                old = AppState(AppStatus(task.app_status), task.app_message, task.app_target_replicas, tuple(task.app_replica_ids or ()))
                new = observe_app(spec, observation, old)
                moved = self._follow_app(s, task, new, now)
                for ev in state_events(old, new):
                    if moved and ev.kind in (EventKind.FAILED, EventKind.RECOVERED):
                        continue  # the task's own transition event already says it
                    record(s, task, ev.kind, ev.message, ev.data, at=now)
                if new != old or task.app_observed_at is None:
                    # Written on change only: a tick that finds nothing new writes nothing,
                    # so fires never queue behind a write of every row.
                    task.app_status = new.status.value
                    task.app_message = new.message
                    task.app_target_replicas = new.target_replicas
                    task.app_replica_ids = list(new.running_replica_ids)
                    task.app_observed_at = now
            for ep in s.scalars(select(EndpointRow)).all():
                self._record_endpoint(s, ep, observation, applied_missing, now)

    def _record_endpoint(self, s, ep: EndpointRow, observation: Observation, applied_missing: frozenset[str] | None, now: datetime) -> None:
        spec = endpoint_spec(ep, self.internal_token, self.control_url)
        if applied_missing is not None and spec is not None:
            self._record_applied(s, ep, spec, spec.name in applied_missing, now)
        name = app_name(ep)
        obs = observation.apps.get(name)
        observed = Observed(reachable=observation.reachable, message=observation.error)
        if observation.reachable and obs is not None:
            prefix = spec.route_prefix if spec else None
            observed = Observed(
                reachable=True, present=True, app_status=obs.status, message=obs.message or None,
                config_current=spec is not None and config_matches(obs.deployed_config, spec),
                routed=not observation.routes_error and (observation.routes is None or prefix in observation.routes),
                replicas=Replicas(len(obs.running_replica_ids), obs.starting, obs.pending, obs.target_replicas, obs.stopping),
            )  # fmt: skip
        rolling = ep.ready_generation is not None and ep.generation > ep.ready_generation
        reported = Phase(ep.reported_phase) if ep.reported_phase else None
        derived = derive(Desired(ep.desired), EndpointStatus(ep.status), rolling, observed, reported)
        set_endpoint_status(s, ep, derived, now)
        if derived.status not in STARTING:
            ep.reported_phase = None  # the next start reports afresh
        if derived.status is EndpointStatus.RUNNING:
            ep.ready_generation = ep.generation
        if observed.present or observation.reachable:
            target, ids = (obs.target_replicas, list(obs.running_replica_ids)) if obs else (None, [])
            if (target, ids) != (ep.target_replicas, list(ep.replica_ids or [])) or ep.observed_at is None:
                ep.target_replicas, ep.replica_ids, ep.observed_at = target, ids, now
        if derived.status is EndpointStatus.TERMINATED:
            s.delete(ep)  # its events stay
        elif derived.status is EndpointStatus.STOPPED:
            ep.applied_min = ep.applied_max = None  # a start deploys afresh

    @staticmethod
    def _record_applied(s, task: TaskRow | EndpointRow, spec: AppSpec, was_missing: bool, now: datetime) -> None:
        """Events for what Ray Serve just accepted (for a task or an endpoint): a first
        deploy, a redeploy of an application Ray lost (e.g. a restarted cluster), or an
        in-place rescale."""
        new = (spec.min_replicas, spec.max_replicas)
        old = (task.applied_min, task.applied_max)
        bounds = {"min_replicas": new[0], "max_replicas": new[1]}
        if was_missing and task.applied_min is not None:
            # Ray lost it (e.g. a restarted cluster): a fresh deploy, at today's bounds,
            # even if a fire changed them meanwhile (that is not an in-place rescale).
            record(
                s, task, EventKind.DEPLOYING,
                f"redeploying {spec.import_path} with replicas {_bounds(*new)}: Ray Serve no longer had it",
                {**bounds, "redeploy": True}, at=now,
            )  # fmt: skip
        elif old == new:
            return
        elif task.applied_min is None:
            record(
                s, task, EventKind.DEPLOYING,
                f"deploying {spec.import_path} at {spec.route_prefix} with replicas {_bounds(*new)}", bounds, at=now,
            )  # fmt: skip
        else:
            record(
                s, task, EventKind.SCALED, f"scaled {_bounds(*old)} -> {_bounds(*new)} in place",
                {"from": {"min_replicas": old[0], "max_replicas": old[1]}, "to": bounds}, at=now,
            )  # fmt: skip
        task.applied_min, task.applied_max = new

    @staticmethod
    def _follow_app(s, task: TaskRow, new: AppState, now: datetime) -> bool:
        """A failed application fails its task; a recovered one puts it back. True if it moved."""
        status = TaskStatus(task.status)
        if new.status in AppStatus.failed() and status is not TaskStatus.FAILED and status is not TaskStatus.IDLE:
            task_reason = f"application {new.status.value}: {new.message or 'no message from Ray Serve'}"
            transition(s, task, TaskStatus.FAILED, EventKind.FAILED, task_reason, reason=task_reason, at=now)
            return True
        elif new.status is AppStatus.RUNNING and status is TaskStatus.FAILED and task.desired_min is not None:
            back = TaskStatus.COMPLETED if task.type == TaskType.ONE_OFF.value else TaskStatus.ACTIVE
            transition(s, task, back, EventKind.RECOVERED, f"application running again; task is {back.value}", at=now)
            return True
        return False


_has_app = TaskRow.desired_min.is_not(None) | (TaskRow.app_status != AppStatus.NOT_DEPLOYED.value)


def _bounds(lo: int | None, hi: int | None) -> str:
    return f"{lo}" if lo == hi else f"{lo}..{hi}"
