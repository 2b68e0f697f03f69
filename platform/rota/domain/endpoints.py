"""Dedicated endpoints: schemas, statuses and phases, and how they are derived.

Pure: no database, no Ray. An endpoint's status is never set by a command; commands set
what is *desired* (running, stopped, deleted) and ``derive`` computes the status and
phase from that and from what Ray Serve reports. ``rota.reconciler`` calls it on every
tick and records each change as an event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from rota.domain.models import NAME_PATTERN


class Desired(str, Enum):
    RUNNING = "running"
    STOPPED = "stopped"
    DELETED = "deleted"


class EndpointStatus(str, Enum):
    INITIALIZING = "INITIALIZING"  # first replicas starting (see the phase)
    RUNNING = "RUNNING"  # at least one replica serves (phase READY)
    UPDATING = "UPDATING"  # a model or engine change is rolling the replicas
    SLEEPING = "SLEEPING"  # scaled to zero; a request wakes it
    AWAKING = "AWAKING"  # scaling up from zero
    FAILED = "FAILED"  # see error_code and message
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"  # no replicas, not woken by requests; POST .../start
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"  # deleted; the row goes away

    @classmethod
    def serving(cls) -> frozenset["EndpointStatus"]:
        return frozenset({cls.RUNNING, cls.UPDATING})


# Statuses in which replicas are coming up (and a phase says how far).
STARTING = frozenset({EndpointStatus.INITIALIZING, EndpointStatus.UPDATING, EndpointStatus.AWAKING})


class Phase(str, Enum):
    REQUESTING_RESOURCES = "REQUESTING_RESOURCES"  # replicas wait for a node with the GPUs/CPUs
    DOWNLOADING_MODEL = "DOWNLOADING_MODEL"
    ENGINE_INITIALIZING = "ENGINE_INITIALIZING"  # a replica is loading the model into the engine
    READY = "READY"


class ErrorCode(str, Enum):
    MODEL_DOWNLOAD_FAILED = "MODEL_DOWNLOAD_FAILED"  # not found, gated, no network, missing directory
    INVALID_ARGUMENT = "INVALID_ARGUMENT"  # the engine rejected a setting
    OUT_OF_MEMORY = "OUT_OF_MEMORY"  # weights or KV cache do not fit
    INSUFFICIENT_RESOURCES = "INSUFFICIENT_RESOURCES"
    DEPLOYMENT_FAILED = "DEPLOYMENT_FAILED"  # anything else; the message says what


_CODES: list[tuple[ErrorCode, re.Pattern]] = [
    (ErrorCode.OUT_OF_MEMORY, re.compile(
        r"out of memory|OutOfMemory|OOM|No available memory for the cache blocks|insufficient memory|"
        r"KV cache is needed|larger than the available KV cache|MemoryError", re.I)),
    (ErrorCode.MODEL_DOWNLOAD_FAILED, re.compile(
        r"FileNotFoundError|RepositoryNotFound|GatedRepo|RevisionNotFound|EntryNotFound|LocalEntryNotFound|"
        r"HFValidationError|huggingface|does not appear to have a file|does not exist on this node|"
        r"couldn't connect to|not a valid model identifier|No such file or directory", re.I)),
    (ErrorCode.INSUFFICIENT_RESOURCES, re.compile(r"insufficient resources|cannot be scheduled|infeasible", re.I)),
    (ErrorCode.INVALID_ARGUMENT, re.compile(r"ValueError|ValidationError|TypeError|invalid|unrecognized argument|not supported", re.I)),
]  # fmt: skip


def classify_error(message: str | None) -> ErrorCode:
    """The error code users act on, from Ray Serve's failure message (first match wins:
    an OOM inside a ValueError is an OOM)."""
    for code, pattern in _CODES:
        if message and pattern.search(message):
            return code
    return ErrorCode.DEPLOYMENT_FAILED


# ---------------------------------------------------------------- schemas


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class Scaling(_Strict):
    """Either a fixed number of ``replicas`` or an autoscaling policy."""

    replicas: int | None = Field(None, ge=1, description="fixed replica count (no autoscaling)")
    min_replicas: int | None = Field(None, ge=0, description="0: scale to zero when idle (SLEEPING)")
    max_replicas: int | None = Field(None, ge=1, description="at most ROTA_MAX_REPLICAS (default 10)")
    cooldown_period_s: float = Field(300.0, ge=0, description="idle time before scaling down (and to zero)")
    target_ongoing_requests: float | None = Field(None, gt=0, description="per replica; default: the engine's batch size / 2")

    @field_validator("max_replicas")
    @classmethod
    def _max_at_least_min(cls, v: int | None, info: ValidationInfo) -> int | None:
        lo = info.data.get("min_replicas")
        if v is not None and lo is not None and lo > v:
            raise ValueError(f"max_replicas ({v}) must be >= min_replicas ({lo})")
        return v

    @model_validator(mode="after")
    def _one_mode(self) -> "Scaling":
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
        return self.min_replicas, self.max_replicas  # type: ignore[return-value]


class Engine(_Strict):
    """Engine settings of every replica; unset ones come from the template and flavor."""

    max_batch_size: int | None = Field(None, ge=1, description="sequences a replica processes at once")
    max_token_count: int | None = Field(None, ge=16, description="context length: prompt + output tokens")
    max_input_length: int | None = Field(None, ge=1, description="longer prompts get a 400")
    skip_special_tokens: bool | None = None
    add_special_tokens: bool | None = None
    max_queued_requests: int | None = Field(None, ge=0, description="requests held beyond capacity before 429s")

    @field_validator("max_input_length")
    @classmethod
    def _within_context(cls, v: int | None, info: ValidationInfo) -> int | None:
        ctx = info.data.get("max_token_count")
        if v and ctx and v > ctx:
            raise ValueError(f"max_input_length ({v}) exceeds max_token_count ({ctx})")
        return v


ROUTING_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,94}$"


class EndpointCreate(_Strict):
    # Field order matters: cross-field checks are field validators (so errors name a
    # field) and see only the fields declared before theirs.
    name: str = Field(pattern=NAME_PATTERN, description="unique in the project")
    routing_key: str | None = Field(
        None, pattern=ROUTING_KEY_PATTERN,
        description="the `model` clients send; default: <name>-<6 hex>. Unique across the cluster",
    )  # fmt: skip
    hf_model_repo: str | None = Field(None, min_length=1, description="custom model: a Hugging Face repo id")
    revision: str | None = Field(None, min_length=1, description="with hf_model_repo: branch, tag or commit")
    model_path: str | None = Field(None, min_length=1, description="custom model: a directory on the worker nodes")
    template: str | None = Field(None, validate_default=True, description="a template name (GET /api/v1/templates)")
    flavor: str | None = Field(None, description="a flavor of the template; default: the template's")
    gpu_type: str | None = Field(None, description="one the template supports; 'cpu' for none")
    gpu_count: int | None = Field(None, ge=0, description="GPUs per replica, one the template supports")
    scaling: Scaling | None = Field(None, description="default: the template's")
    engine: Engine = Field(default_factory=Engine)
    env: dict[str, str] = Field(default_factory=dict, description="environment variables of the replicas")

    @field_validator("revision")
    @classmethod
    def _revision_of_a_repo(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v and not info.data.get("hf_model_repo"):
            raise ValueError("revision goes with hf_model_repo")
        return v

    @field_validator("template")
    @classmethod
    def _one_source(cls, v: str | None, info: ValidationInfo) -> str | None:
        given = [f for f in ("hf_model_repo", "model_path") if info.data.get(f)] + (["template"] if v else [])
        if len(given) != 1:
            raise ValueError(f"give exactly one of template, hf_model_repo, model_path (got {', '.join(given) or 'none'})")
        return v

    @field_validator("flavor")
    @classmethod
    def _flavor_of_a_template(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v and not info.data.get("template"):
            raise ValueError("flavor goes with template")
        return v


class EndpointUpdate(_Strict):
    """PATCH: only the fields sent change. Scaling changes rescale in place; a model or
    engine change rolls the replicas."""

    name: str | None = Field(None, pattern=NAME_PATTERN)
    flavor: str | None = None
    gpu_type: str | None = None
    gpu_count: int | None = Field(None, ge=0)
    hf_model_repo: str | None = Field(None, min_length=1)
    revision: str | None = Field(None, min_length=1)
    model_path: str | None = Field(None, min_length=1)
    scaling: Scaling | None = None
    engine: Engine | None = None
    env: dict[str, str] | None = None


class EndpointPublic(BaseModel):
    id: int
    name: str
    project: str
    routing_key: str = Field(description="send it as `model` to the OpenAI base URL")
    template: str | None
    flavor: str | None
    gpu_type: str | None
    gpu_count: int
    model: str
    revision: str | None
    scaling: Scaling
    engine: Engine
    env: dict[str, str]
    status: EndpointStatus
    phase: Phase | None = None
    error_code: ErrorCode | None = None
    message: str | None = None
    desired: Desired
    replicas: dict[str, Any] = Field(description="bounds in force (scaling or a driving task's schedule) and observed counts")
    base_url: str = Field(description="the OpenAI base URL (route by `model`)")
    url: str = Field(description="this endpoint's own prefix on the Serve port (cluster-internal token required)")
    created_at: datetime
    updated_at: datetime
    observed_at: datetime | None = Field(default=None, description="when Rota saw the replicas last change")


# ---------------------------------------------------------------- derivation


@dataclass(frozen=True)
class Replicas:
    """The ingress deployment's replicas as Ray Serve lists them."""

    running: int = 0
    starting: int = 0  # placed on a node, constructor running
    pending: int = 0  # waiting for a node with the resources
    target: int | None = None
    stopping: int = 0  # draining: still answering the requests they have


@dataclass(frozen=True)
class Observed:
    """One endpoint's application as the reconciler saw it this tick."""

    reachable: bool
    present: bool = False
    app_status: str | None = None  # Ray Serve's: DEPLOYING, RUNNING, DEPLOY_FAILED, UNHEALTHY, DELETING
    config_current: bool = False  # Ray Serve has taken the latest config
    routed: bool = False  # the HTTP ingress serves its route
    message: str | None = None
    replicas: Replicas = Replicas()


@dataclass(frozen=True)
class Derived:
    status: EndpointStatus
    phase: Phase | None = None
    error_code: ErrorCode | None = None
    message: str | None = None


def _starting_phase(r: Replicas, reported: Phase | None) -> Phase:
    if reported in (Phase.DOWNLOADING_MODEL, Phase.ENGINE_INITIALIZING):
        return reported  # a replica that reports is placed and running its constructor
    if r.pending or (r.starting == 0 and r.running == 0):
        return Phase.REQUESTING_RESOURCES
    return Phase.ENGINE_INITIALIZING


def derive(desired: Desired, previous: EndpointStatus, rolling: bool, obs: Observed, reported: Phase | None = None) -> Derived:
    """Status and phase of an endpoint.

    ``rolling``: a model/engine change has not been served yet (UPDATING, not a rescale).
    ``reported``: the phase a starting replica reported, if any (e.g. downloading).
    Ray unreachable keeps the previous status: nothing is known to have changed.
    """
    if not obs.reachable:
        return Derived(previous, None if previous is not EndpointStatus.RUNNING else Phase.READY,
                       message=f"Ray unreachable: {obs.message}" if obs.message else "Ray unreachable")  # fmt: skip
    if desired is Desired.DELETED:
        return Derived(EndpointStatus.TERMINATING if obs.present else EndpointStatus.TERMINATED)
    if desired is Desired.STOPPED:
        return Derived(EndpointStatus.STOPPING if obs.present else EndpointStatus.STOPPED)
    r = obs.replicas
    if not obs.present:
        status = EndpointStatus.UPDATING if rolling else EndpointStatus.INITIALIZING
        return Derived(status, Phase.REQUESTING_RESOURCES)
    if obs.app_status == "UNHEALTHY" and r.running > 0:
        # A replica died or failed its health check; the others still serve while Ray
        # Serve replaces it: degraded, not failed (a FAILED endpoint gets no traffic).
        return Derived(EndpointStatus.RUNNING, Phase.READY, message=f"degraded: {obs.message}" if obs.message else "degraded")
    if obs.app_status in ("DEPLOY_FAILED", "UNHEALTHY"):
        return Derived(EndpointStatus.FAILED, None, classify_error(obs.message), obs.message)
    settled = obs.app_status == "RUNNING" and obs.config_current and obs.routed
    if settled and r.running > 0:
        return Derived(EndpointStatus.RUNNING, Phase.READY)
    if settled and r.running == 0 and not (r.starting or r.pending or r.target):
        if r.stopping:  # scaling to zero: the last replica drains; asleep once it is gone
            return Derived(EndpointStatus.RUNNING, Phase.READY)
        return Derived(EndpointStatus.SLEEPING)
    if rolling:
        return Derived(EndpointStatus.UPDATING, Phase.READY if r.running and not (r.starting or r.pending) else _starting_phase(r, reported))
    if r.running == 0:
        if previous in (EndpointStatus.SLEEPING, EndpointStatus.AWAKING):
            return Derived(EndpointStatus.AWAKING, _starting_phase(r, reported))
        return Derived(EndpointStatus.INITIALIZING, _starting_phase(r, reported))
    # Replicas serve while Ray Serve applies a rescale or the route settles.
    return Derived(EndpointStatus.RUNNING, Phase.READY)
