"""Endpoint ids to (project name, endpoint name): how metrics label an endpoint."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from rota.store.tables import EndpointRow, ProjectRow


def endpoint_names(s: Session, ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    ids = list(ids)
    if not ids:
        return {}
    rows = s.execute(
        select(EndpointRow.id, ProjectRow.name, EndpointRow.name)
        .join(ProjectRow, ProjectRow.id == EndpointRow.project_id)
        .where(EndpointRow.id.in_(ids))
    ).all()
    return {ep: (project, name) for ep, project, name in rows}
