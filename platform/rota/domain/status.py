"""An endpoint's status and phase: one machine, derived from what Ray Serve reports.

Pure: no database, no Ray. Commands never set a status; they set what is *desired*
(running, stopped, deleted; the replica bounds) and ``derive`` computes status and phase
from that and from what Ray Serve reports. ``rota.reconciler`` calls it on every tick;
``rota.services.events.set_endpoint_status`` records each change as an event.

RUNNING has one meaning: Ray Serve reports the application healthy (or degraded with
replicas still serving) *and* its HTTP route is served, so callers get through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class EndpointStatus(str, Enum):
    PENDING = "PENDING"  # no replica bounds yet: its task's first fire sets them
    INITIALIZING = "INITIALIZING"  # first replicas starting (see the phase)
    RUNNING = "RUNNING"  # at least one replica serves and the route is served (phase READY)
    UPDATING = "UPDATING"  # a model, engine or args change is rolling the replicas
    SLEEPING = "SLEEPING"  # scaled to zero; a request wakes it
    AWAKING = "AWAKING"  # scaling up from zero
    FAILED = "FAILED"  # see error_code and message
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"  # no replicas, not woken by requests; POST .../start
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"  # deleted; the row goes away (its events stay)

    @classmethod
    def starting(cls) -> frozenset[EndpointStatus]:
        """Replicas are coming up; a phase says how far."""
        return frozenset({cls.INITIALIZING, cls.UPDATING, cls.AWAKING})

    @classmethod
    def wakeable(cls) -> frozenset[EndpointStatus]:
        """A request waits for a replica (and wakes a sleeping endpoint)."""
        return cls.starting() | {cls.SLEEPING}

    @classmethod
    def down(cls) -> frozenset[EndpointStatus]:
        """Nothing serves and a request must not start anything: 503."""
        return frozenset({cls.PENDING, cls.FAILED, cls.STOPPING, cls.STOPPED, cls.TERMINATING, cls.TERMINATED})


class Phase(str, Enum):
    REQUESTING_RESOURCES = "REQUESTING_RESOURCES"  # replicas wait for a node with the GPUs/CPUs
    DOWNLOADING_MODEL = "DOWNLOADING_MODEL"  # reported by the replica itself
    ENGINE_INITIALIZING = "ENGINE_INITIALIZING"  # a replica is loading the model into the engine
    WAITING_FOR_ROUTE = "WAITING_FOR_ROUTE"  # replicas are up; the HTTP ingress does not route to them yet
    READY = "READY"


class ErrorCode(str, Enum):
    MODEL_DOWNLOAD_FAILED = "MODEL_DOWNLOAD_FAILED"  # not found, gated, no network, missing directory
    INVALID_ARGUMENT = "INVALID_ARGUMENT"  # the engine rejected a setting
    OUT_OF_MEMORY = "OUT_OF_MEMORY"  # weights or KV cache do not fit
    INSUFFICIENT_RESOURCES = "INSUFFICIENT_RESOURCES"
    CONFIG_REJECTED = "CONFIG_REJECTED"  # Ray Serve refused its configuration (or its name or route clashes)
    DEPLOYMENT_FAILED = "DEPLOYMENT_FAILED"  # anything else; the message says what


_CODES: list[tuple[ErrorCode, re.Pattern[str]]] = [
    (
        ErrorCode.OUT_OF_MEMORY,
        re.compile(
            r"out of memory|OutOfMemory|OOM|No available memory for the cache blocks|insufficient memory|"
            r"KV cache is needed|larger than the available KV cache|MemoryError",
            re.I,
        ),
    ),
    (
        ErrorCode.MODEL_DOWNLOAD_FAILED,
        re.compile(
            r"FileNotFoundError|RepositoryNotFound|GatedRepo|RevisionNotFound|EntryNotFound|LocalEntryNotFound|"
            r"HFValidationError|huggingface|does not appear to have a file|does not exist on this node|"
            r"couldn't connect to|not a valid model identifier|No such file or directory",
            re.I,
        ),
    ),
    (ErrorCode.INSUFFICIENT_RESOURCES, re.compile(r"insufficient resources|cannot be scheduled|infeasible", re.I)),
    (
        ErrorCode.INVALID_ARGUMENT,
        re.compile(r"ValueError|ValidationError|TypeError|invalid|unrecognized argument|not supported", re.I),
    ),
]


def classify_error(message: str | None) -> ErrorCode:
    """The error code users act on, from Ray Serve's failure message (first match wins:
    an OOM inside a ValueError is an OOM)."""
    for code, pattern in _CODES:
        if message and pattern.search(message):
            return code
    return ErrorCode.DEPLOYMENT_FAILED


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
    routed: bool | None = False  # the HTTP ingress serves its route (None: the ingress did not answer)
    message: str | None = None
    replicas: Replicas = Replicas()
    rejected: str | None = None  # Rota or Ray refused its configuration: why


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
    if r.running and not (r.starting or r.pending):
        return Phase.WAITING_FOR_ROUTE
    return Phase.ENGINE_INITIALIZING


def _starting(previous: EndpointStatus, rolling: bool) -> EndpointStatus:
    if rolling:
        return EndpointStatus.UPDATING
    if previous in (EndpointStatus.SLEEPING, EndpointStatus.AWAKING):
        return EndpointStatus.AWAKING
    return EndpointStatus.INITIALIZING


def derive(
    desired: str, has_bounds: bool, previous: EndpointStatus, rolling: bool, obs: Observed, reported: Phase | None = None
) -> Derived:
    """Status and phase of an endpoint.

    ``desired``: running, stopped or deleted; ``has_bounds``: replica bounds are known
    (its own scaling, or a task's fire). ``rolling``: a model/engine/args change has not
    been served yet (UPDATING, not a rescale). ``reported``: the phase a starting replica
    reported, if any. Ray unreachable keeps the previous status: nothing is known to
    have changed.
    """
    if obs.rejected:
        return Derived(EndpointStatus.FAILED, None, ErrorCode.CONFIG_REJECTED, obs.rejected)
    if not obs.reachable:
        return Derived(previous, Phase.READY if previous is EndpointStatus.RUNNING else None, message="Ray unreachable")
    if desired == "deleted":
        return Derived(EndpointStatus.TERMINATING if obs.present else EndpointStatus.TERMINATED)
    if desired == "stopped" or not has_bounds:
        if obs.present:
            return Derived(EndpointStatus.STOPPING)
        return Derived(EndpointStatus.STOPPED if desired == "stopped" else EndpointStatus.PENDING)
    r = obs.replicas
    if not obs.present:
        return Derived(EndpointStatus.UPDATING if rolling else EndpointStatus.INITIALIZING, Phase.REQUESTING_RESOURCES)
    failing = obs.app_status in ("DEPLOY_FAILED", "UNHEALTHY")
    if failing and r.running == 0:
        return Derived(EndpointStatus.FAILED, None, classify_error(obs.message), obs.message)
    # A route the ingress did not confirm (it did not answer) keeps a RUNNING endpoint running.
    routed = obs.routed if obs.routed is not None else previous is EndpointStatus.RUNNING
    if failing and routed:
        # A replica died, or a new version failed while the old replicas still serve: degraded,
        # not failed (a FAILED endpoint gets no traffic). The error code says what went wrong.
        code = classify_error(obs.message) if obs.app_status == "DEPLOY_FAILED" else None
        return Derived(EndpointStatus.RUNNING, Phase.READY, code, f"degraded: {obs.message}" if obs.message else "degraded")
    settled = obs.app_status == "RUNNING" and obs.config_current and routed
    if r.running > 0 and routed and not (rolling and not settled):
        return Derived(EndpointStatus.RUNNING, Phase.READY)
    if r.running > 0 and rolling and routed:  # old replicas serve while new ones start
        return Derived(EndpointStatus.UPDATING, _starting_phase(r, reported) if r.starting or r.pending else Phase.READY)
    if settled and r.running == 0 and not (r.starting or r.pending or r.target):
        if r.stopping:  # scaling to zero: the last replica drains; asleep once it is gone
            return Derived(EndpointStatus.RUNNING, Phase.READY)
        return Derived(EndpointStatus.SLEEPING)
    return Derived(_starting(previous, rolling), _starting_phase(r, reported))
