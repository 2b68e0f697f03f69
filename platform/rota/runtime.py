"""Wiring: build the control plane's parts from Settings, start them, stop them.

Start order matters: the database first (everything reads it), then the scheduler's
catch-up (fires that fell due while down are recorded before anything else runs), then
the reconciler. The embedded Ray head starts in the background so the API answers at
once; until Ray is up, tasks show their applications as UNREACHABLE.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from rota.catalog import load_catalog
from rota.config import Settings
from rota.reconciler.loop import RayServe, Reconciler
from rota.scheduler.service import Scheduler
from rota.secretfile import ensure_secret
from rota.serve.client import ServeClient
from rota.serve.cluster import LocalRayHead, ensure_token
from rota.services.auth import AuthService
from rota.services.endpoints import EndpointService, gateway_spec
from rota.services.tasks import Hooks, TaskService
from rota.store.db import Database

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings, ray: RayServe | None = None):
        """``ray`` replaces the Ray Serve client (tests use an in-memory one; no head is started)."""
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        self.db = Database(settings.resolved_database_url)
        self.head = LocalRayHead(settings) if settings.embedded_ray and ray is None else None
        if self.head:
            ensure_token(settings.token_path)
        self.ray = ray or ServeClient(settings.dashboard_url, settings.ray_token(), settings.serve_host, settings.serve_port)
        self.internal_token = ensure_secret(settings.internal_token_path)
        self.reconciler = Reconciler(
            self.db, self.ray, settings.reconcile_interval_s, internal_token=self.internal_token,
            gateway=gateway_spec(settings, self.internal_token), control_url=settings.control_url,
        )  # fmt: skip
        self.scheduler = Scheduler(
            self.db, timedelta(seconds=settings.one_off_grace_s), self.reconciler.nudge, settings.sweep_interval_s
        )
        hooks = Hooks(self.scheduler.sync, self.reconciler.nudge)
        self.tasks = TaskService(self.db, settings, hooks)
        self.catalog = load_catalog(settings.templates_path)
        self.endpoints = EndpointService(self.db, settings, self.catalog, hooks, make_tiny=_make_tiny)
        self.auth = AuthService(self.db)
        self.ray_start_error: str | None = None

    def start(self) -> None:
        self.db.migrate()
        self.auth.bootstrap(self.settings.admin_key_path)
        self.scheduler.start()
        if self.head:
            threading.Thread(target=self._start_head, name="ray-head", daemon=True).start()
        self.reconciler.start()

    def _start_head(self) -> None:
        try:
            self.head.start()
            if isinstance(self.ray, ServeClient):
                self.ray.token = self.settings.ray_token()
            self.reconciler.nudge()
        except Exception as e:
            self.ray_start_error = f"{type(e).__name__}: {e}"
            log.exception("could not start the embedded Ray head")

    def stop(self, stop_ray: bool = True) -> None:
        self.scheduler.shutdown()
        self.reconciler.stop()
        if self.head and stop_ray:
            log.info("stopping the embedded Ray head")
            self.head.stop()
        if isinstance(self.ray, ServeClient):
            self.ray.close()
        self.db.dispose()


def _make_tiny(path):
    # Imported on first use: transformers and tokenizers load in seconds.
    from rota.models.tiny import make_tiny

    return make_tiny(path)
