"""What every console page shares: templates, the signed-in principal, checked forms,
and errors shown as pages (in words, with the field they name)."""

from __future__ import annotations

import contextlib
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from rota.console.session import CSRF_FIELD, CSRF_HEADER, PRESESSION_COOKIE, SESSION_COOKIE, Session, Signer
from rota.domain.errors import Forbidden, RotaError, Unauthorized
from rota.services.auth import Principal

HERE = Path(__file__).parent
STATIC = HERE / "static"
VENDOR = STATIC / "vendor"
templates = Jinja2Templates(directory=HERE / "templates")  # autoescape: on for .html


def _unix(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc)


templates.env.globals["unix"] = _unix  # Unix seconds (the OpenAI objects' times) as UTC datetimes


class SignInRequired(Exception):
    """No session, an expired or forged one, or its key was revoked."""


def signer(request: Request) -> Signer:
    rt = request.app.state.runtime
    return Signer(rt.cipher.derive("console-session").encode(), int(rt.settings.console_session_hours * 3600))


def now(request: Request) -> float:
    """Sessions are issued, read and signed out on one clock: the key store's."""
    return float(request.app.state.runtime.auth.clock().timestamp())


def session(request: Request) -> Session:
    s = signer(request).read(request.cookies.get(SESSION_COOKIE), now(request))
    if s is None:
        raise SignInRequired()
    return s


def still_valid(request: Request, s: Session) -> Principal:
    """The session's principal, looked up again: SignInRequired once its key is revoked or
    it was signed out (long-lived responses ask again as they go)."""
    try:
        return request.app.state.runtime.auth.principal_of(s.key_id, datetime.fromtimestamp(s.issued, timezone.utc))  # type: ignore[no-any-return]
    except Unauthorized:
        raise SignInRequired() from None


def user(request: Request) -> Principal:
    return still_valid(request, session(request))


async def form(request: Request) -> dict[str, str]:
    """The posted form, once its CSRF token matches this browser's session (or, before
    sign-in, its pre-session cookie)."""
    data = await request.form()
    bound = request.cookies.get(SESSION_COOKIE) or request.cookies.get(PRESESSION_COOKIE)
    token = str(data.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or "")
    if not signer(request).csrf_ok(bound, token):
        raise Forbidden(
            "this form was not sent from this console (its CSRF token is missing or stale): reload the page", field="csrf_token"
        )
    return {k: v for k, v in data.items() if isinstance(v, str)}


Who = Annotated[Principal, Depends(user)]
Form = Annotated[dict[str, str], Depends(form)]


def rt(request: Request) -> Any:
    return request.app.state.runtime


def render(request: Request, name: str, who: Principal | None, status_code: int = 200, **context: Any) -> HTMLResponse:
    bound = request.cookies.get(SESSION_COOKIE) or request.cookies.get(PRESESSION_COOKIE) or ""
    context.update(
        who=who,
        csrf=signer(request).csrf(bound) if bound else "",
        csrf_field=CSRF_FIELD,
        assets=(VENDOR / "htmx.min.js").exists(),
        base_url=f"{rt(request).settings.serve_url}/v1",
    )
    return templates.TemplateResponse(request, name, context, status_code=status_code)


E = TypeVar("E", bound=Enum)


def choice(enum: type[E], raw: str) -> E | None:
    """The member a filter's query value names, or None (any)."""
    return next((m for m in enum if m.value == raw), None)


def console_url(url: str | None, default: str) -> str:
    """``url`` if it is a console page, else ``default``: never another site (no open redirect)."""
    if url and url.startswith("/console/") and "\\" not in url and all(32 < ord(c) < 127 for c in url):
        return url  # printable ASCII only: nothing that could end a header line
    return default


def see_other(url: str, request: Request | None = None) -> Response:
    """After a post: go to ``url`` (htmx follows HX-Redirect, a plain form the 303)."""
    if request is not None and request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def sign_in_redirect(request: Request) -> Response:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return see_other(f"/console/sign-in?next={quote(here, safe='')}", request)


def error_page(request: Request, exc: RotaError) -> Response:
    """A domain error on a console page: the page says what went wrong, in words."""
    who = None
    with contextlib.suppress(SignInRequired):
        who = user(request)
    return render(request, "error.html", who, status_code=exc.status_code, error=exc)
