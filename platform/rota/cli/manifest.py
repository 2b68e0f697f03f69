"""Schedules as code: ``rota apply -f``. ``${VAR}`` and ``${VAR:-default}`` are replaced
from the environment in the parsed YAML's keys and string values only: a value with
``#`` or a newline stays one value, and comments are never expanded."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer
import yaml
from pydantic import ValidationError

from rota.cli.client import Api, fail
from rota.cli.follow import Goal
from rota.cli.wait import Watch
from rota.domain.errors import from_validation
from rota.domain.manifest import Manifest

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: Any, path: Path, env: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {expand_env(k, path, env): expand_env(v, path, env) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, path, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        found = env.get(m[1]) or m[2]
        if found is None:
            fail(f"{path}: ${{{m[1]}}} is not set and has no default (write ${{{m[1]}:-value}})")
        return found

    return _ENV_REF.sub(sub, value)


def read_yaml(path: Path, env: Mapping[str, str] | None = None) -> Any:
    try:
        return expand_env(yaml.safe_load(path.read_text()), path, os.environ if env is None else env)
    except OSError as e:
        fail(f"{path}: {e.strerror}")
    except yaml.YAMLError as e:
        fail(f"{path}: not valid YAML: {e}")


def load_manifest(path: Path, env: Mapping[str, str] | None = None) -> Manifest:
    """Parse and validate a YAML manifest; errors name the file and the field."""
    raw = read_yaml(path, env)
    if isinstance(raw, list):
        raw = {"tasks": raw}
    elif isinstance(raw, dict) and "tasks" not in raw and "endpoints" not in raw:
        raw = {"tasks": [raw]}
    try:
        return Manifest.model_validate(raw)
    except ValidationError as e:
        fail("\n".join(f"{path}: {from_validation([err]).message}" for err in e.errors()))


def apply_manifest(api: Api, manifest: Manifest) -> list[Watch]:
    """Apply ``manifest``; return its endpoints (its tasks' included) for ``--wait``."""
    watches: dict[int, Watch] = {}
    for e in manifest.endpoints:
        body = e.model_dump(mode="json", exclude_none=True)
        body.pop("async_invocations")  # only what the manifest says of the queue (a null resets a depth)
        if "async_invocations" in e.model_fields_set:
            body["async_invocations"] = e.async_invocations.model_dump(mode="json", exclude_unset=True)
        existing = api.call("GET", f"/endpoints/{e.name}", ok404=True)
        if existing is None:
            out, verb = api.call("POST", "/endpoints", json=body), "created"
        else:
            patch = {
                k: v for k, v in body.items() if k not in ("name", "routing_key", "template", "file_path", "deployment_name")
            }
            out = api.call("PATCH", f"/endpoints/{e.name}", json=patch)
            verb = "updated" if out["updated_at"] != existing["updated_at"] else "unchanged"
        typer.echo(f"endpoint/{e.name} {verb} (id {out['id']}, model {out['routing_key']!r}, {out['status']})")
        watches[out["id"]] = Watch(str(out["id"]), out["name"], Goal.READY)
    for t in manifest.tasks:
        body = t.to_create().model_dump(mode="json")
        existing = api.call("GET", f"/tasks/{t.name}", ok404=True)
        if existing is None:
            out, verb = api.call("POST", "/tasks", json=body), "created"
        else:
            out = api.call("PATCH", f"/tasks/{t.name}", json={k: v for k, v in body.items() if k != "name"})
            verb = "updated" if out["updated_at"] != existing["updated_at"] else "unchanged"
        if t.active is True and out["status"] != "active":
            out = api.call("POST", f"/tasks/{t.name}/activate")
        elif t.active is False and out["status"] != "idle":
            out = api.call("POST", f"/tasks/{t.name}/deactivate")
        nxt = f", next fire {out['next_fire_at']} UTC ({out['next_fire_local']})" if out.get("next_fire_at") else ""
        typer.echo(f"task/{t.name} {verb} (id {out['id']}, {out['status']}{nxt})")
        if out["endpoint"] is not None:
            watches.setdefault(out["endpoint"]["id"], Watch(str(out["endpoint"]["id"]), out["endpoint"]["name"], Goal.READY))
    return list(watches.values())
