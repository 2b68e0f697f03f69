"""``/api/v1/keys`` and ``/api/v1/projects``."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request

from rota.api.deps import Who
from rota.domain.models import MAX_ID
from rota.services.auth import (
    AuthService,
    KeyCreate,
    KeyCreated,
    KeyPublic,
    ProjectCreate,
    ProjectPublic,
)

router = APIRouter(prefix="/api/v1", tags=["keys"])


def _svc(request: Request) -> AuthService:
    return request.app.state.runtime.auth


@router.post("/keys", status_code=201, response_model=KeyCreated, summary="Create an API key (the secret is shown once)")
def create_key(body: KeyCreate, request: Request, who: Who) -> KeyCreated:
    return _svc(request).create_key(who, body)


@router.get("/keys", response_model=list[KeyPublic], summary="List keys (prefixes only)")
def list_keys(request: Request, who: Who, project: str | None = None) -> list[KeyPublic]:
    return _svc(request).list_keys(who, project)


@router.delete("/keys/{key_id}", response_model=KeyPublic, summary="Revoke a key")
def revoke_key(request: Request, who: Who, key_id: int = Path(ge=1, le=MAX_ID)) -> KeyPublic:
    return _svc(request).revoke(who, key_id)


@router.get("/projects", response_model=list[ProjectPublic], summary="Projects (an admin sees all)")
def list_projects(request: Request, who: Who) -> list[ProjectPublic]:
    return _svc(request).list_projects(who)


@router.post("/projects", status_code=201, response_model=ProjectPublic, summary="Create a project (admin)")
def create_project(body: ProjectCreate, request: Request, who: Who) -> ProjectPublic:
    return _svc(request).create_project(who, body)


@router.get("/me", summary="The calling key's project and role")
def me(who: Who) -> dict:
    return {"key_id": who.key_id, "project": who.project, "admin": who.admin}
