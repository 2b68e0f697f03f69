"""Schedules as code: a YAML manifest of endpoints and the tasks that drive them."""

from __future__ import annotations

from pydantic import Field, model_validator

from rota.domain.endpoints import EndpointCreate
from rota.domain.names import Strict
from rota.domain.tasks import TaskManifest


class Manifest(Strict):
    endpoints: list[EndpointCreate] = Field(default_factory=list, description="created or updated (by name) first")
    tasks: list[TaskManifest] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_empty(self) -> Manifest:
        if not self.endpoints and not self.tasks:
            raise ValueError("a manifest has at least one endpoint or task")
        return self
