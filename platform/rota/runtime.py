"""Wiring: build the control plane's parts from Settings, start them, stop them.

Start order matters: the database first (everything reads it), then, on the control plane
that holds the lease (``rota.services.leadership``: any number serve the API, one runs the
loops), the scheduler's catch-up (fires that fell due while down are recorded before
anything else runs), then the reconciler. The embedded Ray head starts in the background so the API answers at
once; until Ray is up, endpoints keep the status they had.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import timedelta

from rota.catalog import load_catalog
from rota.config import Settings
from rota.crypto import Cipher, read_secret
from rota.domain.reconcile import Observation
from rota.domain.specs import EndpointState, gateway_spec
from rota.reconciler.loop import Reconciler
from rota.scheduler.service import Scheduler
from rota.serve.client import RayServe, ServeClient
from rota.serve.cluster import LocalRayHead, ensure_token
from rota.serve.logs import DashboardLogs, RayLogs
from rota.services import Hooks
from rota.services.async_queue import AsyncQueue
from rota.services.auth import AuthService
from rota.services.builds import Builder
from rota.services.cluster import ClusterService
from rota.services.coldstarts import ReadyBy
from rota.services.dispatcher import Dispatcher
from rota.services.endpoints import EndpointService
from rota.services.events import EventService
from rota.services.invocations import InvocationService
from rota.services.leadership import Leadership, identity
from rota.services.logs import LogService
from rota.services.monitoring import Counts, MonitoringService, ReplicaSampler, counts
from rota.services.prometheus import Prometheus
from rota.services.requests import RequestLogService
from rota.services.suggestions import SuggestionService
from rota.services.tasks import TaskService
from rota.services.usage import UsageMeter, UsageService, load_prices
from rota.services.webhook_secrets import WebhookSecrets
from rota.store.db import Database
from rota.store.single import sqlite_path
from rota.telemetry import AsyncCollector, ReplicaCollector, StateCollector, Telemetry

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings, ray: RayServe | None = None, ray_logs: RayLogs | None = None):
        """``ray`` and ``ray_logs`` replace the Ray clients (tests use in-memory ones; no head is started)."""
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        os.chmod(settings.home, 0o700)  # keys, tokens and the store live here
        self.cipher = Cipher.load(
            settings.secret_key.get_secret_value() if settings.secret_key else None, settings.secret_key_path
        )
        self.db = Database(settings.resolved_database_url)
        self.head = LocalRayHead(settings) if settings.embedded_ray and ray is None else None
        if self.head:
            ensure_token(settings.token_path)
        self.client = (
            ServeClient(
                settings.dashboard_url, settings.ray_token(), settings.serve_listen_host, settings.serve_port, settings.serve_url
            )
            if ray is None
            else None
        )
        self.ray: RayServe = ray or self.client  # type: ignore[assignment]
        # The gateway's token is part of its arguments: it must not change on a restart (a
        # new one would roll the gateway). Derived from the secret key; a home directory
        # from before keeps the token it has.
        self.internal_token = read_secret(settings.internal_token_path) or self.cipher.derive("internal-token")
        gateway = gateway_spec(
            settings.control_url,
            self.internal_token,
            settings.serve_port,
            settings.gateway_refresh_s,
            settings.wake_timeout_s,
            settings.gateway_max_body_bytes,
            settings.request_content_max_bytes,
            (settings.gateway_min_replicas, settings.gateway_max_replicas),
            settings.gateway_target_ongoing,
        )
        self.reconciler = Reconciler(
            self.db,
            self.ray,
            self.cipher,
            settings.reconcile_interval_s,
            gateway=gateway,
            report_url=f"{settings.control_url}/internal/v1/phase",
            owner=self.cipher.owner_id,
            own_cluster=settings.owns_cluster,
        )
        self.scheduler = Scheduler(
            self.db, timedelta(seconds=settings.one_off_grace_s), self.reconciler.nudge, settings.sweep_interval_s
        )
        # Several control planes on one store: the scheduler and the reconciler run on the
        # one holding the lease; a change made through another one's API nudges it.
        self.leadership = Leadership(
            self.db,
            settings.instance_id or identity(),
            settings.leader_lease_s,
            settings.leader_renew_s,
            alone=sqlite_path(self.db.url) is not None,
        )
        self.reconciler.leadership = self.leadership
        self.scheduler.may_act = lambda: self.leadership.leading
        hooks = Hooks(self._task_changed, self._desired_changed)
        self.catalog = load_catalog(settings.templates_path)
        builder = Builder(settings, self.catalog, settings.policy())
        ready = ReadyBy.of(settings, self.catalog)  # how early ready_by entries fire
        self.endpoints = EndpointService(
            self.db, settings, builder, self.cipher, hooks, held=self.reconciler.held_now, ready=ready
        )
        self.tasks = TaskService(self.db, settings, self.endpoints, hooks)
        self.scheduler.ready = self.tasks.ready
        self.events = EventService(self.db)
        self.telemetry = Telemetry()
        self.requests = RequestLogService(self.db, settings.request_log_retention_days, telemetry=self.telemetry)
        self.scheduler.observe = lambda r, now, trigger: self.telemetry.fired(
            now if r.applied else None, r.applied.at if r.applied else None, trigger, r.missed
        )
        self.telemetry.watch(
            StateCollector(self.db, self.reconciler, lambda: dict(self.requests.gateway_dropped), self.leadership)
        )
        self.cluster = ClusterService(
            self.db,
            self.cipher,
            ray=self.ray,
            not_rotas=self.reconciler.not_rotas,
            async_reserve=settings.async_reserve,
            request_log=settings.request_log,
            project_max_inflight=settings.gateway_project_max_inflight,
        )
        self.invocations = InvocationService(self.db, settings)
        self.async_queue = AsyncQueue(self.db, settings, loader=self.invocations.loader)
        self.webhook_secrets = WebhookSecrets(self.db, self.cipher)
        self.dispatcher = Dispatcher(
            self.async_queue,
            self.cluster.targets,
            lambda: settings.serve_url,
            self.internal_token,
            self.webhook_secrets.signing,
            settings.async_interval_s,
            settings.async_timeout_s,
            settings.webhook_allow_private,
        )
        self.invocations.nudge = self.dispatcher.nudge
        self.dispatcher.active = lambda: self.leadership.leading
        self.telemetry.watch(AsyncCollector(self.async_queue.named_depths, self.dispatcher))
        self.auth = AuthService(self.db)
        self.ray_logs = ray_logs or DashboardLogs(settings.dashboard_url, settings.ray_token())
        self.logs = LogService(self.db, self.cipher, self.endpoints, self.ray_logs)
        self.usage = UsageService(self.db, load_prices(settings.prices_path))
        self.suggestions = SuggestionService(self.db, self.endpoints, self.usage, self.tasks.ready)
        self.meter = UsageMeter(self.db)
        self.sampler = ReplicaSampler(self.db)
        self._seen: tuple[float, dict[int, Counts]] = (0.0, {})
        self.telemetry.watch(ReplicaCollector(self.db, self._last_seen, lambda: self.leadership.leading))
        prometheus = (
            Prometheus(
                settings.prometheus_url,
                settings.prometheus_timeout_s,
                settings.prometheus_token_path,
                settings.prometheus_scrape_s,
            )
            if settings.prometheus_url
            else None
        )
        self.monitoring = MonitoringService(self.db, self.endpoints, prometheus)
        self.reconciler.metered = self._metered
        self.ray_start_error: str | None = None

    def _metered(self, states: list[EndpointState], observation: Observation) -> None:
        """Usage (replicas that hold resources) and monitoring samples; a failure here (a
        busy store) is logged and never holds the reconciler back."""
        try:
            seen = counts(states, observation)
            self._seen = (time.time(), seen)
            self.meter.observe({ep: c.holding for ep, c in seen.items()})
            self.sampler.observe(seen)
        except Exception:
            log.exception("metering replicas failed; the next look counts on")

    def _last_seen(self) -> dict[int, Counts]:
        """The replicas of the reconciler's last look at Ray, if it was in the last minute."""
        at, seen = self._seen
        return seen if time.time() - at < 60 else {}

    def start(self) -> None:
        self.db.migrate(self.cipher)
        self.auth.bootstrap(self.settings.admin_key_path)
        self.scheduler.start()
        self.scheduler.every("prune-request-logs", self.settings.request_log_prune_interval_s, self.requests.prune)
        self.scheduler.every("prune-async", self.settings.request_log_prune_interval_s, self.async_queue.prune)
        self.dispatcher.start()
        if self.head:
            threading.Thread(target=self._start_head, name="ray-head", daemon=True).start()
        self.leadership.start(elected=self._lead, deposed=self._follow, nudged=self._nudged)

    # ------------------------------------------------------------ leadership
    def _lead(self) -> None:
        """This process holds the lease: async sends a previous leader left running go back
        to the queue (a deposed one still sending has its answer discarded as stale), then
        catch up and schedule from the store, and reconcile."""
        if n := self.async_queue.recover(self.async_queue.clock()):
            log.info("async: %d requests a previous leader was sending are queued again", n)
        self.scheduler.lead()
        self.reconciler.start()

    def _follow(self) -> None:
        self.scheduler.follow()
        self.reconciler.stop()

    def _nudged(self, task_ids: list[int]) -> None:
        for task_id in task_ids:
            self.scheduler.sync(task_id)
        self.reconciler.nudge()

    def _task_changed(self, task_id: int) -> None:
        if self.leadership.leading:
            self.scheduler.sync(task_id)
        else:
            self.leadership.nudge(task_id)

    def _desired_changed(self) -> None:
        if self.leadership.leading:
            self.reconciler.nudge()
        else:
            self.leadership.nudge(None)

    def _start_head(self) -> None:
        assert self.head is not None
        try:
            self.head.start()
            if self.client:
                self.client.token = self.settings.ray_token()
            if isinstance(self.ray_logs, DashboardLogs):
                self.ray_logs.token = self.settings.ray_token()
            self.reconciler.nudge()
        except Exception as e:
            self.ray_start_error = f"{type(e).__name__}: {e}"
            log.exception("could not start the embedded Ray head")

    def stop(self, stop_ray: bool = True) -> None:
        self.dispatcher.stop()
        self.leadership.stop(loops_stopped=lambda: not self.reconciler.running)  # a standby takes over at once
        self.scheduler.shutdown()
        self.reconciler.stop()
        if self.head and stop_ray:
            log.info("stopping the embedded Ray head")
            self.head.stop()
        if self.client:
            self.client.close()
        if isinstance(self.ray_logs, DashboardLogs):
            self.ray_logs.close()
        self.db.dispose()
