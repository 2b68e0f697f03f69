"""``create_app``: the control plane's FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from rota import __version__, console
from rota.api import cluster, endpoints, errors, events, internal, invocations, keys, logs, requests, tasks, usage
from rota.api.deps import Who, runtime
from rota.api.limits import BodyLimit
from rota.config import Settings
from rota.domain.errors import Forbidden
from rota.runtime import Runtime


def create_app(settings: Settings | None = None, rt: Runtime | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.runtime = rt or Runtime(settings)
        app.state.runtime.start()
        try:
            yield
        finally:
            app.state.runtime.stop()

    app = FastAPI(
        title="Rota", version=__version__, description="Scheduled, dedicated LLM endpoints on Ray Serve.", lifespan=lifespan
    )
    errors.install(app, pages=(console.PREFIX, console.error_page))
    for module in (tasks, endpoints, events, requests, logs, usage, keys, cluster, invocations, internal):
        app.include_router(module.router)
    console.install(app)
    uploads = {"/v1/files": settings.async_max_file_bytes, "/v1/async/": settings.async_max_body_bytes}
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, wider=uploads)

    @app.get("/healthz", tags=["health"], summary="Liveness, and which control plane leads since when (no key needed)")
    def healthz(request: Request) -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "leader": runtime(request).leadership.view()}

    @app.get("/api/v1/status", tags=["health"], summary="Ray reachability and the loops (details for admin keys)")
    def status(request: Request, who: Who) -> dict[str, Any]:
        r: Runtime = runtime(request)
        reachable, error = r.reconciler.ray_view()
        out: dict[str, Any] = {
            "ray": {"embedded": r.settings.embedded_ray, "reachable": reachable},
            "openai_base_url": f"{r.settings.serve_url}/v1",
            "reconciler": {"ticks": r.reconciler.ticks, "last_tick_s": r.reconciler.last_tick_s},
            "scheduler": {"last_catch_up_s": r.scheduler.last_catch_up_s},
            "leader": r.leadership.view(),
        }
        if who.admin:  # these may name any project's applications
            out["ray"].update(dashboard=r.settings.dashboard_url, error=error, start_error=r.ray_start_error)
            out["reconciler"]["last_error"] = r.reconciler.last_error
            out["gateway_error"] = r.reconciler.gateway_error
        return out

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics (admin keys: they name every project's endpoints)")
    def metrics(request: Request, who: Who) -> Response:
        if not who.admin:
            raise Forbidden("the metrics name every project's endpoints: an admin key reads them", field="Authorization")
        return Response(runtime(request).telemetry.exposition(), media_type=CONTENT_TYPE_LATEST)

    return app
