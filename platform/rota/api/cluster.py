"""The cluster as an operator sees it: every Ray Serve application and whose it is."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from rota.api.deps import Who, runtime

router = APIRouter(prefix="/api/v1/cluster", tags=["cluster"])


@router.get("/apps", summary="Every application on the Ray cluster, with its owner (admin keys only)")
def cluster_apps(request: Request, who: Who) -> list[dict[str, Any]]:
    """``owner.kind``: ``endpoint``, ``task`` (a task's own application), ``gateway`` (the
    OpenAI base URL) or ``foreign`` (not Rota's: never changed, scaled or deleted)."""
    return runtime(request).cluster.apps(who)  # type: ignore[no-any-return]
