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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rota.console import access, create, endpoints, invocations, launch, live, playground, tasks
from rota.console.web import STATIC, SignInRequired, error_page, sign_in_redirect

PREFIX = "/console/"


# The pages load only their own scripts and styles (no inline script, no eval), post only
# to themselves, and are never framed.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
]


class ConsoleHeaders:
    """The console's security headers on its responses (plain ASGI: streams stay streams,
    and the API's responses are not touched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (scope["path"].rstrip("/") + "/").startswith(PREFIX):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


def install(app: FastAPI) -> None:
    app.add_middleware(ConsoleHeaders)
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
