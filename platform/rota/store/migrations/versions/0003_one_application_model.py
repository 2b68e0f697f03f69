"""One application model: every Ray Serve application is an endpoint; a task is a schedule.

* A task that ran its own application (file_path/deployment_name) now owns an endpoint of
  kind ``application`` holding it, with the same Ray Serve name and route, bounds,
  observed state and events: its replicas are not touched by the upgrade.
* Endpoints store their kind (no longer guessed from the model string), their Ray Serve
  name and route, their own token (encrypted) and their env values encrypted. Names
  become unique per project (duplicates left by create races are renamed <name>-<id>,
  with an event); routing keys unique per project instead of cluster-wide. Model
  endpoints move to the route /ep/<id> and get their own token: they roll once.
* A task's status is its schedule's only: ``failed`` was a missed one-off (now
  ``missed``) or a failed application (the endpoint shows that now; the task goes back
  to ``active``, or ``completed`` for a one-off that fired).
* Application events of tasks are attached to their endpoint too; ``running``,
  ``failed``, ``recovered``, ``unreachable`` and ``removed`` become ``status`` events
  (the old kind is kept in ``data.legacy_kind``).

Tables are rebuilt (read, dropped, created, written back, ids and id sequences kept):
SQLite cannot alter constraints in place.

Revision ID: 0003
Revises: 0002
"""

import re
import secrets
from datetime import timezone
from hashlib import sha256
from typing import Any

import sqlalchemy as sa
from alembic import context, op

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
    meta = sa.MetaData()
    tasks_t, eps_t = sa.Table("tasks", meta, autoload_with=bind), sa.Table("endpoints", meta, autoload_with=bind)
    tasks = [dict(r._mapping) for r in bind.execute(sa.select(tasks_t).order_by(tasks_t.c.id))]
    eps = [dict(r._mapping) for r in bind.execute(sa.select(eps_t).order_by(eps_t.c.id))]
    fired = {r[0] for r in bind.execute(sa.text("SELECT DISTINCT task_id FROM runs"))}
    seq = {t: _last_id(bind, t) for t in ("tasks", "endpoints")}
    op.drop_table("tasks")
    op.drop_table("endpoints")
    _create_tables()

    taken: dict[str, set[Any]] = {"name": set(), "key": set(), "app": set()}
    events: list[dict[str, Any]] = []
    rows = [_endpoint(e, cipher, taken, events) for e in eps]
    next_id = max([seq["endpoints"], *[e["id"] for e in eps]]) + 1
    gone = [t for t in tasks if t["endpoint_id"] is not None and t["endpoint_id"] not in {e["id"] for e in eps}]
    for t in gone:  # a 0.1 race could delete an endpoint a task still drove: such a task drives nothing
        message = "deleted by the upgrade: the endpoint it drove no longer existed"
        events.append(
            {
                "project_id": t["project_id"],
                "task_id": t["id"],
                "task_name": t["name"],
                "kind": "deleted",
                "message": message,
                "data": {},
                "at": _aware(t["updated_at"]),
            }
        )
    tasks = [t for t in tasks if t not in gone]
    for t in tasks:
        t["status"], t["status_reason"] = _task_status(t, t["id"] in fired)
        if t["endpoint_id"] is None:
            rows.append(_owned(t, next_id, cipher, taken))
            t["endpoint_id"] = next_id
            next_id += 1
    keep = (
        "id",
        "project_id",
        "name",
        "endpoint_id",
        "type",
        "timezone",
        "schedule",
        "status",
        "status_reason",
        "created_at",
        "updated_at",
        "activated_at",
        "next_fire_at",
        "due_since",
    )
    op.bulk_insert(_table("tasks"), [{k: _aware(t[k]) for k in keep} for t in tasks])
    op.bulk_insert(_table("endpoints"), [{k: _aware(v) for k, v in r.items()} for r in rows])
    _set_last_id(bind, "tasks", max([seq["tasks"], *[t["id"] for t in tasks]]))
    _set_last_id(bind, "endpoints", next_id - 1)

    ev = sa.table(
        "events", *(sa.column(c) for c in ("id", "task_id", "endpoint_id", "endpoint_name", "kind")), sa.column("data", sa.JSON)
    )
    for r in rows:
        if r["owner_task_id"] is not None:
            bind.execute(
                ev.update()
                .where(ev.c.task_id == r["owner_task_id"], ev.c.kind.in_(APP_EVENTS))
                .values(endpoint_id=r["id"], endpoint_name=r["name"])
            )
    for id_, kind, data in bind.execute(sa.select(ev.c.id, ev.c.kind, ev.c.data).where(ev.c.kind.in_(LEGACY_KINDS))).all():
        bind.execute(ev.update().where(ev.c.id == id_).values(kind="status", data={**(data or {}), "legacy_kind": kind}))
    if events:
        op.bulk_insert(_table("events"), events)


def _endpoint(e: dict[str, Any], cipher: Any, taken: dict[str, set[Any]], events: list[dict[str, Any]]) -> dict[str, Any]:
    name = e["name"]
    if (e["project_id"], name) in taken["name"]:
        name = f"{name[: 62 - len(str(e['id']))]}-{e['id']}"
        events.append(
            {
                "project_id": e["project_id"],
                "endpoint_id": e["id"],
                "endpoint_name": name,
                "kind": "updated",
                "message": f"renamed from {e['name']!r} to {name!r}: endpoint names are unique in a project now",
                "data": {"from": e["name"], "to": name},
                "at": _aware(e["updated_at"]),
            }
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


_COMMON = (
    "id",
    "project_id",
    "file_path",
    "deployment_name",
    "ingress",
    "resources",
    "desired",
    "applied_min",
    "applied_max",
    "created_at",
    "updated_at",
)


def _owned(t: dict[str, Any], id_: int, cipher: Any, taken: dict[str, set[Any]]) -> dict[str, Any]:
    """The endpoint holding a task's own application, as Ray Serve runs it today."""
    project = t["project_id"]
    app = t["name"] if project == 1 else f"p{project}-{t['name']}"
    if app in taken["app"] or app == "rota-gateway" or re.fullmatch(r"ep-[0-9]+", app):
        app = f"ep-{id_}"  # a name Rota now generates (it clashed before, too)
    name = t["name"]
    while (project, name) in taken["name"] or (project, name) in taken["key"]:
        name = f"{name[:59]}-app"
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
        "args": t["args"] or {},
        "resources": t["resources"] or {},
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


def _clamped(values: dict[str, Any] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    return {k: min(v, _LIMITS[k]) if k in _LIMITS and isinstance(v, (int, float)) else v for k, v in values.items()}


def _task_status(t: dict[str, Any], fired: bool) -> tuple[str, str | None]:
    if t["status"] != "failed":
        return t["status"], t["status_reason"]
    if "missed" in (t["status_reason"] or "") or (t["type"] == "one_off" and not fired):
        return "missed", t["status_reason"]
    return ("completed" if t["type"] == "one_off" else "active"), None


def _aware(v: Any) -> Any:
    return v.replace(tzinfo=timezone.utc) if hasattr(v, "tzinfo") and v.tzinfo is None and hasattr(v, "hour") else v


def _last_id(bind: Any, table: str) -> int:
    if bind.dialect.name == "sqlite":
        row = bind.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = :t"), {"t": table}).first()
    else:
        row = bind.execute(sa.text(f"SELECT last_value FROM {table}_id_seq")).first()
    return int(row[0]) if row else 0


def _set_last_id(bind: Any, table: str, value: int) -> None:
    if value <= 0:
        return
    if bind.dialect.name == "sqlite":
        bind.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = :t"), {"t": table})
        bind.execute(sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :v)"), {"t": table, "v": value})
    else:
        bind.execute(sa.text(f"SELECT setval('{table}_id_seq', :v)"), {"v": value})


def _table(name: str) -> sa.Table:
    return sa.Table(name, sa.MetaData(), autoload_with=op.get_bind())


def _create_tables() -> None:
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
    op.create_table(
        "tasks",
        c("id", I(), primary_key=True, autoincrement=True),
        c("project_id", I(), nullable=False),
        c("name", S(63), nullable=False),
        c("endpoint_id", I(), nullable=False),
        c("type", S(16), nullable=False),
        c("timezone", S(64), nullable=False),
        c("schedule", J(), nullable=False),
        c("status", S(16), nullable=False),
        c("status_reason", T(), nullable=True),
        c("created_at", D(), nullable=False),
        c("updated_at", D(), nullable=False),
        c("activated_at", D(), nullable=True),
        c("next_fire_at", D(), nullable=True),
        c("due_since", D(), nullable=True),
        sa.UniqueConstraint("project_id", "name", name="uq_task_project_name"),
        sqlite_autoincrement=True,
    )
    for col in ("project_id", "name", "endpoint_id", "status", "next_fire_at"):
        op.create_index(f"ix_tasks_{col}", "tasks", [col])


def downgrade() -> None:
    raise NotImplementedError("0003 is not reversible: restore a backup taken before upgrading")
