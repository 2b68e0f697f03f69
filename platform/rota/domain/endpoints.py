"""Endpoints: every Ray Serve application Rota runs. Schemas per direction.

Kinds: from a template, a custom model (a Hugging Face repo, or a local directory: the
kind says which, nothing guesses it from the string), or a custom application (a script
in serve_apps/ with its args and resources, e.g. what a task owns). Statuses and phases
are derived from what Ray Serve reports: ``rota.domain.status``.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field, StrictBool, StrictInt, ValidationInfo, field_validator, model_validator

from rota.domain.coldstart import ColdStartStats
from rota.domain.names import IDENT_PATTERN, NAME_PATTERN, ROUTING_KEY_PATTERN, Strict
from rota.domain.status import EndpointStatus, ErrorCode, Phase
from rota.domain.values import REVISION, EnvMap, EnvName, EnvValue, check_args_size, check_directory, check_hub_id

MASK = "***"


class EndpointKind(str, Enum):
    TEMPLATE = "template"
    HF_MODEL = "hf_model"  # a Hugging Face repo id (downloaded by the replica)
    LOCAL_MODEL = "local_model"  # a directory on the worker nodes
    APPLICATION = "application"  # a script in serve_apps/: file_path:deployment_name with args


class Desired(str, Enum):
    RUNNING = "running"
    STOPPED = "stopped"
    DELETED = "deleted"


class Resources(Strict):
    """Resources of each replica of a custom application (Ray actor options)."""

    num_cpus: float | None = Field(None, gt=0, le=1024, description="CPUs per replica")
    num_gpus: float | None = Field(None, ge=0, le=64, description="GPUs per replica")
    accelerator_type: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,32}$", description="e.g. A100, L4, H100")


class Scaling(Strict):
    """Either a fixed number of ``replicas`` or an autoscaling policy."""

    replicas: int | None = Field(None, ge=1, le=10_000, description="fixed replica count (no autoscaling)")
    min_replicas: int | None = Field(None, ge=0, le=10_000, description="0: scale to zero when idle (SLEEPING)")
    max_replicas: int | None = Field(None, ge=1, le=10_000, description="at most ROTA_MAX_REPLICAS (default 10)")
    cooldown_period_s: float = Field(300.0, ge=0, le=86_400, description="idle time before scaling down (and to zero)")
    target_ongoing_requests: float | None = Field(None, gt=0, le=100_000, description="per replica; default: half its capacity")

    @field_validator("max_replicas")
    @classmethod
    def _max_at_least_min(cls, v: int | None, info: ValidationInfo) -> int | None:
        lo = info.data.get("min_replicas")
        if v is not None and lo is not None and lo > v:
            raise ValueError(f"max_replicas ({v}) must be >= min_replicas ({lo})")
        return v

    @model_validator(mode="after")
    def _one_mode(self) -> Scaling:
        auto = self.min_replicas is not None or self.max_replicas is not None
        if self.replicas is not None and auto:
            raise ValueError("give either replicas (fixed) or min_replicas/max_replicas (autoscaling), not both")
        if self.replicas is None and not auto:
            raise ValueError("give replicas (fixed) or min_replicas and max_replicas (autoscaling)")
        if auto and (self.min_replicas is None or self.max_replicas is None):
            raise ValueError("autoscaling needs both min_replicas and max_replicas")
        return self

    @property
    def bounds(self) -> tuple[int, int]:
        if self.replicas is not None:
            return self.replicas, self.replicas
        assert self.min_replicas is not None and self.max_replicas is not None
        return self.min_replicas, self.max_replicas


class Engine(Strict):
    """Engine settings of every replica; unset ones come from the template and flavor."""

    max_batch_size: int | None = Field(None, ge=1, le=65_536, description="sequences a replica processes at once")
    max_token_count: int | None = Field(None, ge=16, le=10_000_000, description="context length: prompt + output tokens")
    max_input_length: int | None = Field(None, ge=1, le=10_000_000, description="longer prompts get a 400")
    skip_special_tokens: bool | None = None
    add_special_tokens: bool | None = None
    max_queued_requests: int | None = Field(None, ge=0, le=1_000_000, description="requests held beyond capacity before 429s")
    enable_content_logging: bool | None = Field(
        None, description="keep prompts and answers in the request log (truncated; ROTA_REQUEST_CONTENT_MAX_BYTES). Default: off"
    )

    @field_validator("max_input_length")
    @classmethod
    def _within_context(cls, v: int | None, info: ValidationInfo) -> int | None:
        ctx = info.data.get("max_token_count")
        if v and ctx and v > ctx:
            raise ValueError(f"max_input_length ({v}) exceeds max_token_count ({ctx})")
        return v


class AsyncSettings(Strict):
    """The endpoint's async queue (``/v1/async/...`` and batches): on or off, and how deep."""

    enabled: StrictBool = Field(True, description="off: submits are refused (409); queued work still runs")
    max_depth: StrictInt | None = Field(None, ge=1, description="requests waiting at most (never above ROTA_ASYNC_MAX_DEPTH)")


# A model, engine, args or env change rolls the replicas; these fields do.
ROLLING_FIELDS = tuple("flavor gpu_type gpu_count hf_model_repo revision model_path engine env args resources".split())
# What each kind of endpoint is made from (what a PATCH may change, and what it keeps).
SOURCE_FIELDS: dict[EndpointKind, tuple[str, ...]] = {
    EndpointKind.TEMPLATE: ("template", "flavor", "gpu_type", "gpu_count"),
    EndpointKind.HF_MODEL: ("hf_model_repo", "revision", "gpu_type", "gpu_count"),
    EndpointKind.LOCAL_MODEL: ("model_path", "gpu_type", "gpu_count"),
    EndpointKind.APPLICATION: ("file_path", "deployment_name", "args", "resources"),
}


class EndpointCreate(Strict):
    # Field order matters: cross-field checks are field validators (so errors name a
    # field) and see only the fields declared before theirs.
    name: str = Field(pattern=NAME_PATTERN, description="unique in the project")
    routing_key: str | None = Field(
        None, pattern=ROUTING_KEY_PATTERN, description="the `model` clients send; default: <name>-<6 hex>. Unique in the project"
    )
    hf_model_repo: str | None = Field(None, max_length=200, description="custom model: a Hugging Face repo id (org/name)")
    revision: str | None = Field(None, max_length=128, description="with hf_model_repo: branch, tag or commit")
    model_path: str | None = Field(None, max_length=1024, description="custom model: a directory on the worker nodes")
    file_path: str | None = Field(None, pattern=IDENT_PATTERN, description="custom application: a script in serve_apps/")
    deployment_name: str | None = Field(None, pattern=IDENT_PATTERN, description="with file_path: the attribute it exposes")
    args: dict[str, Any] | None = Field(None, description="with file_path: the application's arguments")
    resources: Resources | None = Field(None, description="with file_path: Ray actor options of each replica")
    template: str | None = Field(None, max_length=63, validate_default=True, description="a template (GET /api/v1/templates)")
    flavor: str | None = Field(None, max_length=32, description="a flavor of the template; default: the template's")
    gpu_type: str | None = Field(None, max_length=32, description="one the template supports; 'cpu' for none")
    gpu_count: int | None = Field(None, ge=0, le=64, description="GPUs per replica, one the template supports")
    scaling: Scaling | None = Field(None, description="default: the template's")
    engine: Engine = Field(default_factory=Engine)
    env: EnvMap = Field(default_factory=dict, description="environment variables of the replicas (write-only)")
    async_invocations: AsyncSettings = Field(default_factory=AsyncSettings, description="its async queue (in place)")

    @field_validator("hf_model_repo")
    @classmethod
    def _hub_id(cls, v: str | None) -> str | None:
        return None if v is None else check_hub_id(v)

    @field_validator("revision")
    @classmethod
    def _revision_of_a_repo(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and not info.data.get("hf_model_repo"):
            raise ValueError("revision goes with hf_model_repo")
        if v is not None and (not REVISION.match(v) or ".." in v):
            raise ValueError(f"{v[:100]!r} is not a branch, tag or commit")
        return v

    @field_validator("model_path")
    @classmethod
    def _directory(cls, v: str | None) -> str | None:
        return None if v is None else check_directory(v)

    @field_validator("args")
    @classmethod
    def _args_of_an_app(cls, v: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        if v is not None and not info.data.get("file_path"):
            raise ValueError("args go with file_path (a custom application)")
        return None if v is None else check_args_size(v)

    @field_validator("template")
    @classmethod
    def _one_source(cls, v: str | None, info: ValidationInfo) -> str | None:
        given = [f for f in ("hf_model_repo", "model_path", "file_path") if info.data.get(f)] + (["template"] if v else [])
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of template, hf_model_repo, model_path, file_path (got {', '.join(given) or 'none'})"
            )
        if info.data.get("file_path") and not info.data.get("deployment_name"):
            raise ValueError("file_path needs deployment_name")
        return v

    @field_validator("flavor")
    @classmethod
    def _flavor_of_a_template(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v and not info.data.get("template"):
            raise ValueError("flavor goes with template")
        return v

    @field_validator("gpu_type", "gpu_count")
    @classmethod
    def _gpus_of_a_model(cls, v: Any, info: ValidationInfo) -> Any:
        if v is not None and info.data.get("file_path"):
            raise ValueError("a custom application asks for GPUs in resources")
        return v

    @field_validator("engine")
    @classmethod
    def _engine_of_a_model(cls, v: Engine, info: ValidationInfo) -> Engine:
        if v.model_fields_set and info.data.get("file_path"):
            raise ValueError("a custom application takes args, not engine settings")
        return v

    @field_validator("resources")
    @classmethod
    def _resources_of_an_app(cls, v: Resources | None, info: ValidationInfo) -> Resources | None:
        if v is not None and not info.data.get("file_path"):
            raise ValueError("resources go with file_path (a model endpoint takes gpu_type and gpu_count)")
        return v

    @property
    def kind(self) -> EndpointKind:
        if self.template:
            return EndpointKind.TEMPLATE
        if self.hf_model_repo:
            return EndpointKind.HF_MODEL
        if self.model_path:
            return EndpointKind.LOCAL_MODEL
        return EndpointKind.APPLICATION


class EndpointUpdate(Strict):
    """PATCH: only the fields sent change. Scaling changes rescale in place; a model,
    engine, args or env change rolls the replicas. ``env`` merges by name (null removes)."""

    name: str | None = Field(None, pattern=NAME_PATTERN)
    flavor: str | None = Field(None, max_length=32)
    gpu_type: str | None = Field(None, max_length=32)
    gpu_count: int | None = Field(None, ge=0, le=64)
    hf_model_repo: str | None = Field(None, max_length=200)
    revision: str | None = Field(None, max_length=128)
    model_path: str | None = Field(None, max_length=1024)
    args: dict[str, Any] | None = None
    resources: Resources | None = None
    scaling: Scaling | None = None
    engine: Engine | None = None
    env: dict[EnvName, EnvValue | None] | None = None
    async_invocations: AsyncSettings | None = None


class ReplicasPublic(BaseModel):
    min: int | None = Field(description="lower bound in force")
    max: int | None = Field(description="upper bound in force")
    source: str = Field(description="scaling (the endpoint's own), schedule (a task's last fire) or none (waiting for one)")
    target: int | None = None
    running: int = 0
    ids: list[str] = Field(default_factory=list)


class EndpointBrief(BaseModel):
    id: int
    name: str
    routing_key: str
    status: EndpointStatus
    phase: Phase | None = None
    error_code: ErrorCode | None = None
    message: str | None = None
    replicas: ReplicasPublic
    converged: bool = Field(
        False, description="Ray Serve runs its latest settings: status and phase describe them, not older ones"
    )


class EndpointPublic(EndpointBrief):
    project: str
    async_queue: dict[str, Any] | None = Field(
        None,
        description="async requests queued and running, the oldest queued one's age (s), and how many were "
        "answered in the last minute (done_last_min)",
    )
    kind: EndpointKind
    template: str | None = None
    flavor: str | None = None
    gpu_type: str | None = None
    gpu_count: int = 0
    model: str | None = None
    revision: str | None = None
    file_path: str
    deployment_name: str
    args: dict[str, Any] | None = Field(None, description="a custom application's arguments")
    resources: dict[str, Any] = Field(default_factory=dict)
    scaling: Scaling | None = Field(None, description="none: replicas only as a task's schedule sets them")
    engine: Engine
    async_invocations: AsyncSettings = Field(default_factory=AsyncSettings)
    env: dict[str, str] = Field(description=f"names only: values are write-only ({MASK})")
    desired: Desired
    owner_task: str | None = Field(None, description="the task that owns this application (deleted with it)")
    authenticated: bool = Field(description="its routes require its own token (the base URL sends it)")
    base_url: str = Field(description="the OpenAI base URL (route by `model`)")
    url: str = Field(description="its own prefix on the Serve port")
    created_at: datetime
    updated_at: datetime
    observed_at: datetime | None = Field(None, description="when Rota saw the replicas last change")
    cold_start: ColdStartStats | None = Field(None, description="its measured cold starts (GET of one endpoint)")
