"""Sign-in, sign-out, and the keys page (projects' keys for admin keys)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from rota.console.forms import field_error, validation_errors
from rota.console.session import PRESESSION_COOKIE, SESSION_COOKIE, presession
from rota.console.web import Form, Who, console_url, now, render, rt, see_other, signer
from rota.domain.errors import RotaError, Unauthorized
from rota.services.auth import KeyCreate, Principal, ProjectCreate

router = APIRouter(prefix="/console")


def _safe_next(url: str | None) -> str:
    return console_url(url, "/console/endpoints")


def _cookie(request: Request, response: Response, name: str, value: str, max_age: int | None = None) -> None:
    # Secure whenever the browser reached us over TLS: directly, through a proxy that says
    # so, or at a public URL that is https (a TLS ingress on another host).
    secure = (
        request.url.scheme == "https"
        or request.headers.get("x-forwarded-proto") == "https"
        or (rt(request).settings.public_url or "").startswith("https://")
    )
    response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="strict", secure=secure, path="/console")


@router.get("/sign-in")
def sign_in_page(request: Request, next: str | None = None) -> Response:
    pre = request.cookies.get(PRESESSION_COOKIE)
    if not pre:  # the sign-in form's CSRF token is bound to this browser's pre-session
        pre = presession()
        request.cookies[PRESESSION_COOKIE] = pre
    response = render(request, "sign_in.html", None, next=_safe_next(next), error=None)
    _cookie(request, response, PRESESSION_COOKIE, pre, max_age=3600)
    return response


@router.post("/sign-in")
def sign_in(request: Request, data: Form) -> Response:
    key = data.get("key", "").strip()
    try:
        who = rt(request).auth.authenticate(f"Bearer {key}")
    except Unauthorized:
        return render(
            request, "sign_in.html", None, 401, next=_safe_next(data.get("next")), error="This key is not valid or was revoked."
        )
    response = see_other(_safe_next(data.get("next")))
    s = signer(request)
    _cookie(request, response, SESSION_COOKIE, s.issue(who.key_id, now(request)), max_age=s.lifetime_s)
    response.delete_cookie(PRESESSION_COOKIE, path="/console")
    return response


@router.post("/sign-out")
def sign_out(request: Request, who: Who, data: Form) -> Response:
    """Ends this key's console sessions (every browser signed in with it), not the key."""
    rt(request).auth.end_sessions(who)
    response = see_other("/console/sign-in")
    response.delete_cookie(SESSION_COOKIE, path="/console")
    return response


def _keys_page(request: Request, who: Principal, status_code: int = 200, **context: Any) -> Response:
    auth = rt(request).auth
    context = {"created": None, "errors": {}, "values": {}, "project_errors": {}, "project_values": {}} | context
    return render(request, "keys.html", who, status_code, keys=auth.list_keys(who), projects=auth.list_projects(who), **context)


@router.get("/keys")
def keys_page(request: Request, who: Who) -> Response:
    return _keys_page(request, who)


@router.post("/projects")
def create_project(request: Request, who: Who, data: Form) -> Response:
    """Admin keys: a new project (its keys are made on this page too)."""
    values = {
        "name": data.get("name", "").strip(),
        "request_log_retention_days": data.get("request_log_retention_days", "").strip(),
        "request_log_off": data.get("request_log_off") == "on",
    }
    try:
        given = {k: v for k, v in values.items() if v and k != "request_log_off"}
        body = ProjectCreate.model_validate({**given, "request_log": not values["request_log_off"]})
        rt(request).auth.create_project(who, body)
    except ValidationError as e:
        return _keys_page(request, who, 422, project_errors=validation_errors(e), project_values=values)
    except RotaError as e:
        return _keys_page(request, who, e.status_code, project_errors=field_error(e), project_values=values)
    return see_other("/console/keys", request)


@router.post("/keys")
def create_key(request: Request, who: Who, data: Form) -> Response:
    values = {
        "name": data.get("name", "").strip(),
        "project": data.get("project", "").strip(),
        "admin": data.get("admin") == "on",
    }
    errors: dict[str, str] = {}
    created = None
    try:
        body = KeyCreate.model_validate({"name": values["name"], "project": values["project"] or None, "admin": values["admin"]})
        created = rt(request).auth.create_key(who, body)
    except RotaError as e:
        errors = field_error(e)
    except ValidationError as e:
        errors = validation_errors(e)
    return _keys_page(request, who, 422 if errors else 201, created=created, errors=errors, values=values)


@router.post("/keys/{key_id}/revoke")
def revoke_key(request: Request, key_id: int, who: Who, data: Form) -> Response:
    rt(request).auth.revoke(who, key_id)
    return see_other("/console/keys", request)
