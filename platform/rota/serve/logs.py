"""Replica logs through the Ray dashboard: the state API lists an application's replica
actors (alive and, while Ray keeps them, dead), the log API reads or streams their
``out`` and ``err`` files. The unit tier replaces it (tests/support/fake_ray.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import httpx

from rota.domain.errors import RayUnavailable


@dataclass(frozen=True)
class ReplicaActor:
    replica_id: str
    actor_id: str
    deployment: str
    alive: bool


class RayLogs(Protocol):
    def replicas(self, app: str) -> list[ReplicaActor]: ...

    def read(self, actor_id: str, stream: str, lines: int) -> str: ...

    def follow(self, actor_id: str, stream: str, lines: int) -> AsyncIterator[str]:
        """The file's last ``lines`` lines, then its new text as it is written (Ray's stream
        API), until closed."""


class DashboardLogs:
    def __init__(self, dashboard_url: str, token: str | None, timeout: float = 30.0):
        self.base = dashboard_url.rstrip("/")
        self.token = token
        self._http = httpx.Client(timeout=timeout)

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _get(self, path: str, params: dict[str, str | int]) -> httpx.Response:
        try:
            r = self._http.get(self.base + path, params=params, headers=self._headers)
        except httpx.HTTPError as e:
            raise RayUnavailable(f"Ray dashboard unreachable for logs: {type(e).__name__}: {e}") from None
        if r.status_code >= 400:
            raise RayUnavailable(f"Ray's log API answered {r.status_code}")  # its text may name other applications
        return r

    def replicas(self, app: str) -> list[ReplicaActor]:
        """Replica actors of every deployment of ``app``, the living first."""
        params: dict[str, str | int] = {
            "filter_keys": "ray_namespace",
            "filter_predicates": "=",
            "filter_values": "serve",
            "limit": 10_000,
        }
        found = self._get("/api/v0/actors", params).json()["data"]["result"]["result"]
        prefix = f"ServeReplica:{app}:"
        out = [
            ReplicaActor(
                replica_id=str(a.get("name", "")).rsplit("#", 1)[-1],
                actor_id=a["actor_id"],
                deployment=a["class_name"][len(prefix) :],
                alive=a.get("state") == "ALIVE",
            )
            for a in found
            if str(a.get("class_name", "")).startswith(prefix)
        ]
        return sorted(out, key=lambda r: not r.alive)

    def read(self, actor_id: str, stream: str, lines: int) -> str:
        params: dict[str, str | int] = {"actor_id": actor_id, "suffix": stream, "lines": lines}
        return self._get("/api/v0/logs/file", params).text

    async def follow(self, actor_id: str, stream: str, lines: int) -> AsyncIterator[str]:
        params: dict[str, str | int | float] = {"actor_id": actor_id, "suffix": stream, "lines": lines, "interval": 0.5}
        url = self.base + "/api/v0/logs/stream"
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None)) as http,
            http.stream("GET", url, params=params, headers=self._headers) as r,
        ):
            if r.status_code >= 400:
                return
            async for text in r.aiter_text():
                yield text

    def close(self) -> None:
        self._http.close()
