"""``/api/v1/keys``, ``/api/v1/projects`` and ``/api/v1/me``."""

from __future__ import annotations

from fastapi import APIRouter, Path, Query

from rota.api.deps import Auth, Who
from rota.domain.names import MAX_ID, NAME_PATTERN
from rota.services.auth import KeyCreate, KeyCreated, KeyPublic, ProjectCreate, ProjectPublic, ProjectUpdate

router = APIRouter(prefix="/api/v1", tags=["keys"])


@router.post("/keys", status_code=201, response_model=KeyCreated, summary="Create an API key (the secret is shown once)")
def create_key(body: KeyCreate, who: Who, auth: Auth) -> KeyCreated:
    return auth.create_key(who, body)


@router.get("/keys", response_model=list[KeyPublic], summary="List keys (prefixes only; admin keys to admins only)")
def list_keys(who: Who, auth: Auth, project: str | None = Query(None, pattern=NAME_PATTERN)) -> list[KeyPublic]:
    return auth.list_keys(who, project)


@router.delete("/keys/{key_id}", response_model=KeyPublic, summary="Revoke a key (admin keys: by an admin, never the last)")
def revoke_key(who: Who, auth: Auth, key_id: int = Path(ge=1, le=MAX_ID)) -> KeyPublic:
    return auth.revoke(who, key_id)


@router.get("/projects", response_model=list[ProjectPublic], summary="Projects (an admin sees all)")
def list_projects(who: Who, auth: Auth) -> list[ProjectPublic]:
    return auth.list_projects(who)


@router.post("/projects", status_code=201, response_model=ProjectPublic, summary="Create a project (admin)")
def create_project(body: ProjectCreate, who: Who, auth: Auth) -> ProjectPublic:
    return auth.create_project(who, body)


@router.patch("/projects/{name}", response_model=ProjectPublic, summary="Change a project's settings (admin)")
def update_project(body: ProjectUpdate, who: Who, auth: Auth, name: str = Path(pattern=NAME_PATTERN)) -> ProjectPublic:
    return auth.update_project(who, name, body)


@router.get("/me", summary="The calling key's project and role")
def me(who: Who) -> dict[str, object]:
    return {"key_id": who.key_id, "project": who.project, "admin": who.admin}
