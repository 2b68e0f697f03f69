"""The web console at ``/console``: server-rendered pages (Jinja2) over the same services
as the REST API, htmx for partial updates, signed in with an API key.

Its browser libraries come from the npm registry (``platform/web/package.json``) and are
copied into ``static/vendor/`` by ``make console``; the pages work without them (plain
forms and links), only the live refresh needs htmx.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from rota.console import access, create, endpoints, invocations, launch, live, playground, tasks
from rota.console.web import STATIC, SignInRequired, error_page, sign_in_redirect

PREFIX = "/console/"


def install(app: FastAPI) -> None:
    for module in (access, launch, tasks, create, endpoints, playground, live, invocations):
        app.include_router(module.router, include_in_schema=False)
    app.mount("/console/static", StaticFiles(directory=STATIC, check_dir=False), name="console-static")

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, _: SignInRequired) -> Response:
        return sign_in_redirect(request)

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/console/", status_code=307)


__all__ = ["PREFIX", "error_page", "install"]
