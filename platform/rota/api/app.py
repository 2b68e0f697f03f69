"""``create_app``: the control plane's FastAPI application."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from rota import __version__
from rota.api import endpoints, errors, internal, keys, tasks
from rota.config import Settings
from rota.runtime import Runtime


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        rt = runtime or Runtime(settings)
        app.state.runtime = rt
        rt.start()
        try:
            yield
        finally:
            rt.stop()

    app = FastAPI(
        title="Rota",
        version=__version__,
        description="Scheduled, dedicated LLM endpoints on Ray Serve.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.include_router(tasks.router)
    app.include_router(endpoints.router)
    app.include_router(keys.router)
    app.include_router(internal.router)

    # Open on purpose (liveness probes carry no key); it says nothing about tasks or endpoints.
    @app.get("/healthz", tags=["health"], summary="Liveness and the state of the loops")
    def healthz(request: Request) -> dict:
        rt: Runtime = request.app.state.runtime
        return {
            "status": "ok",
            "version": __version__,
            "ray": {
                "dashboard": rt.settings.dashboard_url,
                "embedded": rt.settings.embedded_ray,
                "reachable": rt.reconciler.ray_reachable,
                "start_error": rt.ray_start_error,
            },
            "serve_url": rt.settings.serve_url,
            "openai_base_url": f"{rt.settings.serve_url}/v1",
            "reconciler": {
                "ticks": rt.reconciler.ticks,
                "last_tick_s": rt.reconciler.last_tick_s,
                "last_error": rt.reconciler.last_error,
            },
            "scheduler": {"last_catch_up_s": rt.scheduler.last_catch_up_s},
        }

    return app
