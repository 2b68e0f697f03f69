"""Every Ray Serve application is an endpoint.

* A task that ran its own application (file_path/deployment_name) now owns an endpoint of
  kind ``application`` holding it, with the same Ray Serve name and route, bounds,
  observed state and events: its replicas are not touched by the upgrade. The task's
  ``endpoint_id`` points at it (revision 0004 then makes the task a schedule only).
* Endpoints store their kind (no longer guessed from the model string), their Ray Serve
  name and route, their own token (encrypted) and their env values encrypted. Names
  become unique per project (duplicates left by create races are renamed <name>-<id>,
  with an event); routing keys unique per project instead of cluster-wide. Model
  endpoints move to the route /ep/<id> and get their own token: they roll once.
* Application events of tasks are attached to their endpoint too; ``running``,
  ``failed``, ``recovered``, ``unreachable`` and ``removed`` become ``status`` events
  (the old kind is kept in ``data.legacy_kind``).

Revision ID: 0003
Revises: 0002
"""

import re
import secrets
from hashlib import sha256
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from rota.store.migrations.rebuild import event, insert, last_id, rows, set_last_id
from rota.store.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

APP_EVENTS = ("deploying", "scaled", "running", "failed", "recovered", "unreachable", "removed")
LEGACY_KINDS = ("running", "failed", "recovered", "unreachable", "removed")
APP_STATUS = {"RUNNING": "RUNNING", "UNHEALTHY": "FAILED", "DEPLOY_FAILED": "FAILED"}


def upgrade() -> None:
    bind = op.get_bind()
    cipher = context.config.attributes.get("cipher")
    if cipher is None:
        raise RuntimeError("migration 0003 encrypts secrets: run it with `rota server` (or Database.migrate(cipher))")
    eps, tasks, seq = rows("endpoints"), rows("tasks"), last_id("endpoints")
    op.drop_table("endpoints")
    _create_endpoints()
    taken: dict[str, set[Any]] = {"name": set(), "key": set(), "app": set()}
    events: list[dict[str, Any]] = []
    new = [_endpoint(e, cipher, taken, events) for e in eps]
    next_id = max([seq, *[e["id"] for e in eps]]) + 1
    tasks_t = sa.table("tasks", sa.column("id"), sa.column("endpoint_id"))
    for t in tasks:
        if t["endpoint_id"] is None:
            new.append(_owned(t, next_id, cipher, taken))
            bind.execute(tasks_t.update().where(tasks_t.c.id == t["id"]).values(endpoint_id=next_id))
            next_id += 1
    insert("endpoints", new)
    set_last_id("endpoints", next_id - 1)

    ev = sa.table(
        "events", *(sa.column(c) for c in ("id", "task_id", "endpoint_id", "endpoint_name", "kind")), sa.column("data", sa.JSON)
    )
    for r in new:
        if r["owner_task_id"] is not None:
            owned = ev.update().where(ev.c.task_id == r["owner_task_id"], ev.c.kind.in_(APP_EVENTS))
            bind.execute(owned.values(endpoint_id=r["id"], endpoint_name=r["name"]))
    for id_, kind, data in bind.execute(sa.select(ev.c.id, ev.c.kind, ev.c.data).where(ev.c.kind.in_(LEGACY_KINDS))).all():
        bind.execute(ev.update().where(ev.c.id == id_).values(kind="status", data={**(data or {}), "legacy_kind": kind}))
    insert("events", events)


def _endpoint(e: dict[str, Any], cipher: Any, taken: dict[str, set[Any]], events: list[dict[str, Any]]) -> dict[str, Any]:
    name, n = e["name"], 0
    while (e["project_id"], name) in taken["name"]:
        n += 1
        suffix = f"-{e['id']}" + (f"-{n}" if n > 1 else "")
        name = f"{e['name'][: 63 - len(suffix)]}{suffix}"
    if name != e["name"]:
        message = f"renamed from {e['name']!r} to {name!r}: endpoint names are unique in a project now"
        data = {"from": e["name"], "to": name}
        events.append(
            event(e["project_id"], "updated", message, e["updated_at"], endpoint_id=e["id"], endpoint_name=name, data=data)
        )
    taken["name"].add((e["project_id"], name))
    taken["key"].add((e["project_id"], e["routing_key"]))
    taken["app"].add(f"ep-{e['id']}")
    model = e["model"]
    kind = "template" if e["template"] else "local_model" if model.startswith(("/", ".", "~")) else "hf_model"
    args = {k: v for k, v in (e["args"] or {}).items() if k not in ("api_key", "report_url")}
    if isinstance(args.get("model"), str):
        args["model_source"] = "local" if args["model"].startswith(("/", ".", "~")) else "hub"
    token = secrets.token_urlsafe(32)
    return {
        **{k: e[k] for k in _COMMON},
        "resources": _resources(e["resources"]),
        "name": name,
        "routing_key": e["routing_key"],
        "kind": kind,
        "owner_task_id": None,
        "template": e["template"],
        "flavor": e["flavor"],
        "gpu_type": e["gpu_type"],
        "gpu_count": e["gpu_count"],
        "model": model,
        "revision": e["revision"],
        "args": args,
        "engine": _clamped(e["engine"] or {}),
        "scaling": _clamped(e["scaling"]),
        "env": cipher.encrypt_map(e["env"] or {}),
        "app_name": f"ep-{e['id']}",
        "route_prefix": f"/ep/{e['id']}",
        "token": cipher.encrypt(token),
        "token_hash": sha256(token.encode()).hexdigest(),
        "token_arg": "api_key",
        "per_replica": int(args.get("max_ongoing_requests", 64)),
        "scheduled_min": e["scheduled_min"],
        "scheduled_max": e["scheduled_max"],
        "generation": e["generation"],
        "ready_generation": e["ready_generation"],
        "status": e["status"],
        "phase": e["phase"],
        "reported_phase": e["reported_phase"],
        "error_code": e["error_code"],
        "message": e["message"],
        "target_replicas": e["target_replicas"],
        "replica_ids": e["replica_ids"] or [],
        "observed_at": e["observed_at"],
    }


_COMMON = tuple("id project_id file_path deployment_name ingress desired applied_min applied_max created_at updated_at".split())


def _owned(t: dict[str, Any], id_: int, cipher: Any, taken: dict[str, set[Any]]) -> dict[str, Any]:
    """The endpoint holding a task's own application, as Ray Serve runs it today."""
    project = t["project_id"]
    app = t["name"] if project == 1 else f"p{project}-{t['name']}"
    if app in taken["app"] or app == "rota-gateway" or re.fullmatch(r"ep-[0-9]+", app):
        app = f"ep-{id_}"  # a name Rota now generates (it clashed before, too)
    name, n = t["name"], 0
    while (project, name) in taken["name"] or (project, name) in taken["key"]:
        n += 1
        suffix = "-app" if n == 1 else f"-app{n}"
        name = f"{t['name'][: 63 - len(suffix)]}{suffix}"
    for key, value in (("name", (project, name)), ("key", (project, name)), ("app", app)):
        taken[key].add(value)
    status = APP_STATUS.get(t["app_status"], "PENDING" if t["desired_min"] is None else "INITIALIZING")
    token = secrets.token_urlsafe(32)
    return {
        "id": id_,
        "project_id": project,
        "name": name,
        "routing_key": name,
        "kind": "application",
        "owner_task_id": t["id"],
        "template": None,
        "flavor": None,
        "gpu_type": None,
        "gpu_count": 0,
        "model": None,
        "revision": None,
        "file_path": t["file_path"],
        "deployment_name": t["deployment_name"],
        "ingress": t["ingress"],
        "args": _llm_args(t["args"] or {}, name) if t["file_path"] == "serve" else t["args"] or {},
        "resources": _resources(t["resources"]),
        "engine": {},
        "scaling": None,
        "env": cipher.encrypt_map(t["env"] or {}),
        "app_name": app,
        "route_prefix": f"/{app}",
        "token": cipher.encrypt(token),
        "token_hash": sha256(token.encode()).hexdigest(),
        "token_arg": "api_key" if t["file_path"] == "serve" else None,
        "per_replica": int((t["args"] or {}).get("max_ongoing_requests", 64)) if t["file_path"] == "serve" else 5,
        "desired": "running",
        "scheduled_min": t["desired_min"],
        "scheduled_max": t["desired_max"],
        "generation": 1,
        "ready_generation": 1 if status == "RUNNING" else None,
        "applied_min": t["applied_min"],
        "applied_max": t["applied_max"],
        "status": status,
        "phase": "READY" if status == "RUNNING" else None,
        "reported_phase": None,
        "error_code": "DEPLOYMENT_FAILED" if status == "FAILED" else None,
        "message": t["app_message"],
        "target_replicas": t["app_target_replicas"],
        "replica_ids": t["app_replica_ids"] or [],
        "observed_at": t["app_observed_at"],
        "created_at": t["created_at"],
        "updated_at": t["updated_at"],
    }


# Upper bounds the schemas now set; 0.1 accepted more (unusable values, kept in range).
_LIMITS = {
    "replicas": 10_000,
    "min_replicas": 10_000,
    "max_replicas": 10_000,
    "cooldown_period_s": 86_400,
    "target_ongoing_requests": 100_000,
    "max_batch_size": 65_536,
    "max_token_count": 10_000_000,
    "max_input_length": 10_000_000,
    "max_queued_requests": 1_000_000,
}


def _resources(values: dict[str, Any] | None) -> dict[str, Any]:
    """Ray actor options within the bounds the schema now sets (0.1 took any numbers)."""
    v, out = values or {}, {}
    for key, top in (("num_cpus", 1024), ("num_gpus", 64)):
        if isinstance(v.get(key), (int, float)) and v[key] >= 0:
            out[key] = min(v[key], top)
    if out.get("num_cpus") == 0:
        del out["num_cpus"]
    if isinstance(v.get("accelerator_type"), str) and re.fullmatch(r"[A-Za-z0-9_-]{1,32}", v["accelerator_type"]):
        out["accelerator_type"] = v["accelerator_type"]
    return out


def _llm_args(args: dict[str, Any], routing_key: str) -> dict[str, Any]:
    """A task's vLLM application as one created now: it answers to its routing key and says
    where its model comes from (it rolls at the upgrade anyway, for its new token)."""
    out = {"served_model_name": routing_key, **{k: v for k, v in args.items() if k not in ("api_key", "report_url")}}
    if isinstance(out.get("model"), str) and out.get("model_source", "auto") == "auto":
        out["model_source"] = "local" if out["model"].startswith(("/", ".", "~")) else "hub"
    return out


def _clamped(values: dict[str, Any] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    return {k: min(v, _LIMITS[k]) if k in _LIMITS and isinstance(v, (int, float)) else v for k, v in values.items()}


def _create_endpoints() -> None:
    c, S, J, I, T, D = sa.Column, sa.String, sa.JSON, sa.Integer, sa.Text, UTCDateTime  # noqa: E741
    op.create_table(
        "endpoints",
        c("id", I(), primary_key=True, autoincrement=True),
        c("project_id", I(), nullable=False),
        c("name", S(63), nullable=False),
        c("routing_key", S(96), nullable=False),
        c("kind", S(16), nullable=False),
        c("owner_task_id", I(), nullable=True),
        c("template", S(63), nullable=True),
        c("flavor", S(32), nullable=True),
        c("gpu_type", S(32), nullable=True),
        c("gpu_count", I(), nullable=False),
        c("model", T(), nullable=True),
        c("revision", S(128), nullable=True),
        c("file_path", S(100), nullable=False),
        c("deployment_name", S(100), nullable=False),
        c("ingress", S(255), nullable=False),
        c("args", J(), nullable=False),
        c("resources", J(), nullable=False),
        c("engine", J(), nullable=False),
        c("scaling", J(none_as_null=True), nullable=True),
        c("env", J(), nullable=False),
        c("app_name", S(128), nullable=False),
        c("route_prefix", S(128), nullable=False),
        c("token", T(), nullable=False),
        c("token_hash", S(64), nullable=False, unique=True),
        c("token_arg", S(64), nullable=True),
        c("per_replica", I(), nullable=False),
        c("desired", S(16), nullable=False),
        c("scheduled_min", I(), nullable=True),
        c("scheduled_max", I(), nullable=True),
        c("generation", I(), nullable=False),
        c("ready_generation", I(), nullable=True),
        c("applied_min", I(), nullable=True),
        c("applied_max", I(), nullable=True),
        c("status", S(16), nullable=False),
        c("phase", S(32), nullable=True),
        c("reported_phase", S(32), nullable=True),
        c("error_code", S(32), nullable=True),
        c("message", T(), nullable=True),
        c("target_replicas", I(), nullable=True),
        c("replica_ids", J(), nullable=False),
        c("observed_at", D(), nullable=True),
        c("created_at", D(), nullable=False),
        c("updated_at", D(), nullable=False),
        sa.UniqueConstraint("project_id", "name", name="uq_endpoint_project_name"),
        sa.UniqueConstraint("project_id", "routing_key", name="uq_endpoint_project_routing_key"),
        sa.UniqueConstraint("app_name", name="uq_endpoint_app_name"),
        sa.UniqueConstraint("route_prefix", name="uq_endpoint_route_prefix"),
        sqlite_autoincrement=True,
    )
    for col in ("project_id", "owner_task_id", "status"):
        op.create_index(f"ix_endpoints_{col}", "endpoints", [col])


def downgrade() -> None:
    raise NotImplementedError("0003 is not reversible: restore a backup taken before upgrading")
