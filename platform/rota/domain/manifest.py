"""Schedules as code: a YAML manifest of endpoints and the tasks that drive them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rota.domain.endpoints import EndpointCreate
from rota.domain.models import TaskManifest


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoints: list[EndpointCreate] = Field(default_factory=list, description="created or updated (by name) first")
    tasks: list[TaskManifest] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_empty(self) -> "Manifest":
        if not self.endpoints and not self.tasks:
            raise ValueError("a manifest has at least one endpoint or task")
        return self
