"""``rota``: run the control plane, and a thin client of its REST API."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Optional

import httpx
import typer
import yaml
from pydantic import ValidationError

from rota.domain.manifest import Manifest

app = typer.Typer(help="Rota: scheduled, dedicated LLM endpoints on Ray Serve.", no_args_is_help=True, add_completion=False)
tasks_app = typer.Typer(help="Inspect and drive tasks.", no_args_is_help=True)
endpoints_app = typer.Typer(help="Dedicated endpoints: create, list, update, stop/start, delete.", no_args_is_help=True)
templates_app = typer.Typer(help="Model templates endpoints are created from.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys of your project.", no_args_is_help=True)
models_app = typer.Typer(help="Model utilities.", no_args_is_help=True)
app.add_typer(tasks_app, name="tasks")
app.add_typer(endpoints_app, name="endpoints")
app.add_typer(templates_app, name="templates")
app.add_typer(keys_app, name="keys")
app.add_typer(models_app, name="models")


def _default_api_url() -> str:
    if os.environ.get("ROTA_API_URL"):
        return os.environ["ROTA_API_URL"]
    return f"http://{os.environ.get('ROTA_HOST', '127.0.0.1')}:{os.environ.get('ROTA_PORT', '8080')}"


def _default_api_key() -> str | None:
    """ROTA_API_KEY, else the admin key the local server wrote to ROTA_HOME/admin_key."""
    if os.environ.get("ROTA_API_KEY"):
        return os.environ["ROTA_API_KEY"].strip()
    home = Path(os.environ.get("ROTA_HOME", "~/.rota")).expanduser()
    try:
        return (home / "admin_key").read_text().strip() or None
    except OSError:
        return None


class Api:
    def __init__(self, url: str, key: str | None = None):
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=self.url, timeout=30, headers=headers)

    def call(self, method: str, path: str, ok404: bool = False, **kw) -> Any:
        try:
            r = self.http.request(method, "/api/v1" + path, **kw)
        except httpx.HTTPError as e:
            _fail(f"cannot reach the Rota API at {self.url}: {e} (is `rota server` running? set ROTA_API_URL)")
        if r.status_code == 404 and ok404:
            return None
        if r.status_code >= 400:
            try:
                err = r.json().get("error", {})
                field = f" [field: {err['field']}]" if err.get("field") else ""
                _fail(f"{r.status_code} {err.get('code', '')}: {err.get('message', r.text)}{field}")
            except ValueError:
                _fail(f"{r.status_code}: {r.text}")
        return r.json() if r.content else None


def _fail(msg: str, code: int = 1):
    typer.secho(msg, err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def _api(ctx: typer.Context) -> Api:
    return Api(ctx.obj["api_url"], ctx.obj["api_key"])


@app.callback()
def _root(
    ctx: typer.Context,
    api_url: str = typer.Option(None, "--api-url", help="Rota API base URL (env ROTA_API_URL; default http://127.0.0.1:8080)"),
    api_key: str = typer.Option(
        None, "--api-key", help="API key (env ROTA_API_KEY; default: the local admin key in $ROTA_HOME/admin_key)"
    ),
):
    ctx.obj = {"api_url": api_url or _default_api_url(), "api_key": api_key or _default_api_key()}


@app.command()
def server(
    host: Optional[str] = typer.Option(None, help="bind address (env ROTA_HOST, default 127.0.0.1)"),
    port: Optional[int] = typer.Option(None, help="port (env ROTA_PORT, default 8080)"),
):
    """Run the control plane: API, scheduler, reconciler (and a local Ray head unless ROTA_RAY_ADDRESS is set)."""
    import logging

    import uvicorn

    from rota.api.app import create_app
    from rota.config import Settings

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = Settings(**overrides)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level.lower())


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(text: str, path: Path) -> str:
    """``${VAR}`` and ``${VAR:-default}`` in a manifest come from the environment."""

    def sub(m: re.Match) -> str:
        value = os.environ.get(m[1]) or m[2]
        if value is None:
            _fail(f"{path}: ${{{m[1]}}} is not set and has no default (write ${{{m[1]}:-value}})")
        return value

    return _ENV_REF.sub(sub, text)


def load_manifest(path: Path) -> Manifest:
    """Parse and validate a YAML manifest; errors name the file and the field."""
    try:
        raw = yaml.safe_load(expand_env(path.read_text(), path))
    except OSError as e:
        _fail(f"{path}: {e.strerror}")
    except yaml.YAMLError as e:
        _fail(f"{path}: not valid YAML: {e}")
    if isinstance(raw, list):
        raw = {"tasks": raw}
    elif isinstance(raw, dict) and "tasks" not in raw and "endpoints" not in raw:
        raw = {"tasks": [raw]}
    try:
        return Manifest.model_validate(raw)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"])
            lines.append(f"{path}: {loc}: {err['msg'].removeprefix('Value error, ')}")
        _fail("\n".join(lines))


@app.command()
def apply(
    ctx: typer.Context,
    file: Path = typer.Option(..., "-f", "--file", help="YAML manifest: a task, a list of tasks, or {tasks: [...]}"),
):
    """Create or update (by name) the endpoints, then the tasks, of a manifest; a task's
    `active: true|false` activates or deactivates it.

    ${VAR} and ${VAR:-default} in the file are replaced from the environment."""
    manifest = load_manifest(file)
    api = _api(ctx)
    for e in manifest.endpoints:
        body = e.model_dump(mode="json", exclude_none=True)
        existing = api.call("GET", f"/endpoints/{e.name}", ok404=True)
        if existing is None:
            out, verb = api.call("POST", "/endpoints", json=body), "created"
        else:
            patch = {k: v for k, v in body.items() if k not in ("name", "routing_key", "template")}
            out = api.call("PATCH", f"/endpoints/{e.name}", json=patch)
            verb = "updated" if out["updated_at"] != existing["updated_at"] else "unchanged"
        typer.echo(f"endpoint/{e.name} {verb} (id {out['id']}, model {out['routing_key']!r}, {out['status']})")
    for t in manifest.tasks:
        body = t.to_create().model_dump(mode="json")
        existing = api.call("GET", f"/tasks/{t.name}", ok404=True)
        if existing is None:
            out = api.call("POST", "/tasks", json=body)
            verb = "created"
        else:
            patch = {k: v for k, v in body.items() if k != "name"}
            out = api.call("PATCH", f"/tasks/{t.name}", json=patch)
            verb = "updated" if out["updated_at"] != existing["updated_at"] else "unchanged"
        if t.active is True and out["status"] != "active":
            out = api.call("POST", f"/tasks/{t.name}/activate")
        elif t.active is False and out["status"] != "idle":
            out = api.call("POST", f"/tasks/{t.name}/deactivate")
        nxt = f", next fire {out['next_fire_at']} UTC ({out['next_fire_local']})" if out.get("next_fire_at") else ""
        typer.echo(f"task/{t.name} {verb} (id {out['id']}, {out['status']}{nxt})")


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@tasks_app.command("list")
def tasks_list(
    ctx: typer.Context,
    search: Optional[str] = typer.Option(None, help="substring of the name"),
    status: Optional[str] = typer.Option(None, help="idle | active | completed | failed"),
    type: Optional[str] = typer.Option(None, "--type", help="one_off | daily"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
):
    """List tasks."""
    params = {k: v for k, v in {"search": search, "status": status, "type": type, "limit": 1000}.items() if v}
    page = _api(ctx).call("GET", "/tasks", params=params)
    if as_json:
        return _print_json(page)
    rows = [("ID", "NAME", "TYPE", "STATUS", "APP", "REPLICAS", "NEXT FIRE (UTC)", "NEXT FIRE (LOCAL)")]
    for t in page["items"]:
        a = t["app"]
        if a is None:  # drives an endpoint
            app_status, reps = f"endpoint:{t['endpoint']['name']}" if t["endpoint"] else "-", "-"
        else:
            app_status = a["status"]
            reps = f"{a['running_replicas']} ({a['desired_min_replicas']}..{a['desired_max_replicas']})" if a["desired_min_replicas"] is not None else "-"
        rows.append((str(t["id"]), t["name"], t["type"], t["status"], app_status, reps, t["next_fire_at"] or "-", t["next_fire_local"] or "-"))
    _table(rows)


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


@tasks_app.command("get")
def tasks_get(ctx: typer.Context, task: str = typer.Argument(..., help="id or name")):
    """Show a task (JSON)."""
    _print_json(_api(ctx).call("GET", f"/tasks/{task}"))


@tasks_app.command("activate")
def tasks_activate(ctx: typer.Context, task: str = typer.Argument(..., help="id or name")):
    """Activate a task: its fires are scheduled."""
    t = _api(ctx).call("POST", f"/tasks/{task}/activate")
    typer.echo(f"task/{t['name']} {t['status']}; next fire {t['next_fire_at']} UTC ({t['next_fire_local']})")


@tasks_app.command("deactivate")
def tasks_deactivate(ctx: typer.Context, task: str = typer.Argument(..., help="id or name")):
    """Deactivate a task: no more fires (its application keeps running)."""
    t = _api(ctx).call("POST", f"/tasks/{task}/deactivate")
    typer.echo(f"task/{t['name']} {t['status']}")


@tasks_app.command("delete")
def tasks_delete(ctx: typer.Context, task: str = typer.Argument(..., help="id or name")):
    """Delete a task and tear down its Ray Serve application."""
    _api(ctx).call("DELETE", f"/tasks/{task}")
    typer.echo(f"task/{task} deleted")


@tasks_app.command("events")
def tasks_events(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="id or name"),
    follow: bool = typer.Option(False, "--follow", "-F", help="keep printing new events"),
):
    """Print a task's deployment events in order."""
    _follow_events(_api(ctx), f"/tasks/{task}/events", follow)


def _follow_events(api: Api, path: str, follow: bool) -> None:
    after = 0
    while True:
        for e in api.call("GET", path, params={"after_id": after}):
            typer.echo(f"{e['at']}  {e['kind']:<12} {e['message']}")
            after = e["id"]
        if not follow:
            return
        time.sleep(1)


# ---------------------------------------------------------------- endpoints


@endpoints_app.command("list")
def endpoints_list(
    ctx: typer.Context,
    search: Optional[str] = typer.Option(None, help="substring of the name"),
    status: Optional[str] = typer.Option(None, help="e.g. RUNNING, SLEEPING, FAILED"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
):
    """List your project's endpoints."""
    params = {k: v for k, v in {"search": search, "status": status, "limit": 1000}.items() if v}
    page = _api(ctx).call("GET", "/endpoints", params=params)
    if as_json:
        return _print_json(page)
    rows = [("ID", "NAME", "MODEL (routing key)", "STATUS", "PHASE", "REPLICAS", "SOURCE")]
    for e in page["items"]:
        r = e["replicas"]
        rows.append((str(e["id"]), e["name"], e["routing_key"], e["status"], e["phase"] or "-",
                     f"{r['running']} ({r['min']}..{r['max']}, {r['source']})", e["template"] or e["model"]))  # fmt: skip
    _table(rows)


@endpoints_app.command("get")
def endpoints_get(ctx: typer.Context, endpoint: str = typer.Argument(..., help="id or name")):
    """Show an endpoint (JSON)."""
    _print_json(_api(ctx).call("GET", f"/endpoints/{endpoint}"))


def _body(file: Optional[Path], inline: Optional[str]) -> dict:
    if file is not None:
        raw = yaml.safe_load(expand_env(file.read_text(), file))
    elif inline is not None:
        raw = json.loads(inline)
    else:
        raw = {}
    if not isinstance(raw, dict):
        _fail("the body must be a mapping")
    return raw


@endpoints_app.command("create")
def endpoints_create(
    ctx: typer.Context,
    name: Optional[str] = typer.Option(None, help="endpoint name"),
    template: Optional[str] = typer.Option(None, help="template name (rota templates list)"),
    flavor: Optional[str] = typer.Option(None, help="template flavor"),
    min_replicas: Optional[int] = typer.Option(None, help="autoscaling lower bound (0: scale to zero)"),
    max_replicas: Optional[int] = typer.Option(None, help="autoscaling upper bound"),
    file: Optional[Path] = typer.Option(None, "-f", "--file", help="YAML/JSON body (the flags override it)"),
):
    """Create a dedicated endpoint."""
    body = _body(file, None)
    body.update({k: v for k, v in {"name": name, "template": template, "flavor": flavor}.items() if v is not None})
    if min_replicas is not None or max_replicas is not None:
        body["scaling"] = {**body.get("scaling", {}), "min_replicas": min_replicas, "max_replicas": max_replicas}
    e = _api(ctx).call("POST", "/endpoints", json=body)
    typer.echo(f"endpoint/{e['name']} created (id {e['id']}): send model={e['routing_key']!r} to {e['base_url']}")


@endpoints_app.command("patch")
def endpoints_patch(
    ctx: typer.Context,
    endpoint: str = typer.Argument(..., help="id or name"),
    body: Optional[str] = typer.Option(None, "--json", help='partial body, e.g. \'{"scaling": {"replicas": 2}}\''),
    file: Optional[Path] = typer.Option(None, "-f", "--file", help="YAML/JSON partial body"),
):
    """Partially update an endpoint (scaling in place; model/engine changes roll the replicas)."""
    e = _api(ctx).call("PATCH", f"/endpoints/{endpoint}", json=_body(file, body))
    typer.echo(f"endpoint/{e['name']} {e['status']}")


@endpoints_app.command("stop")
def endpoints_stop(ctx: typer.Context, endpoint: str = typer.Argument(..., help="id or name")):
    """Stop: remove the application and release its replicas."""
    e = _api(ctx).call("POST", f"/endpoints/{endpoint}/stop")
    typer.echo(f"endpoint/{e['name']} stopping")


@endpoints_app.command("start")
def endpoints_start(ctx: typer.Context, endpoint: str = typer.Argument(..., help="id or name")):
    """Start a stopped endpoint."""
    e = _api(ctx).call("POST", f"/endpoints/{endpoint}/start")
    typer.echo(f"endpoint/{e['name']} starting")


@endpoints_app.command("delete")
def endpoints_delete(ctx: typer.Context, endpoint: str = typer.Argument(..., help="id or name")):
    """Delete an endpoint permanently."""
    _api(ctx).call("DELETE", f"/endpoints/{endpoint}")
    typer.echo(f"endpoint/{endpoint} deleted")


@endpoints_app.command("events")
def endpoints_events(
    ctx: typer.Context,
    endpoint: str = typer.Argument(..., help="id or name"),
    follow: bool = typer.Option(False, "--follow", "-F", help="keep printing new events"),
):
    """Print an endpoint's deployment events in order."""
    _follow_events(_api(ctx), f"/endpoints/{endpoint}/events", follow)


@templates_app.command("list")
def templates_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="print JSON")):
    """List model templates."""
    items = _api(ctx).call("GET", "/templates")
    if as_json:
        return _print_json(items)
    rows = [("NAME", "MODEL", "FLAVORS", "GPU TYPES", "GPUS/REPLICA")]
    for t in items:
        rows.append((t["name"], t["model"], ",".join(t["flavors"]), ",".join(t["gpu_types"]), ",".join(map(str, t["gpu_counts"]))))
    _table(rows)


# ---------------------------------------------------------------- keys


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="what the key is for"),
    project: Optional[str] = typer.Option(None, help="admin only: another project's key (created if new)"),
    admin: bool = typer.Option(False, "--admin", help="admin only: make an admin key"),
):
    """Create an API key; the secret is printed once."""
    k = _api(ctx).call("POST", "/keys", json={"name": name, "project": project, "admin": admin})
    typer.echo(k["key"])
    typer.secho(f"key {k['id']} ({k['prefix']}...) for project {k['project']}: store it now, it is not shown again", err=True)


@keys_app.command("list")
def keys_list(ctx: typer.Context, project: Optional[str] = typer.Option(None, help="admin only: another project")):
    """List keys (prefixes only)."""
    rows = [("ID", "NAME", "PROJECT", "PREFIX", "ADMIN", "REVOKED")]
    for k in _api(ctx).call("GET", "/keys", params={"project": project} if project else {}):
        rows.append((str(k["id"]), k["name"], k["project"], k["prefix"] + "...", "yes" if k["admin"] else "", k["revoked_at"] or ""))
    _table(rows)


@keys_app.command("revoke")
def keys_revoke(ctx: typer.Context, key_id: int = typer.Argument(..., help="key id (rota keys list)")):
    """Revoke a key: it stops working at once on the API and within a second at the OpenAI base URL."""
    k = _api(ctx).call("DELETE", f"/keys/{key_id}")
    typer.echo(f"key {k['id']} ({k['prefix']}...) revoked")


@models_app.command("make-tiny")
def models_make_tiny(out_dir: Path = typer.Argument(..., help="directory to write the model to")):
    """Generate a tiny Llama with random weights and a trained tokenizer that vLLM can load."""
    from rota.models.tiny import make_tiny

    path = make_tiny(out_dir)
    typer.echo(f"tiny model written to {path}")


@app.command()
def demo(
    exit_after: bool = typer.Option(False, "--exit", help="stop everything after the calls instead of serving on"),
):
    """Start Rota, schedule a vLLM endpoint a few seconds ahead, call it with the openai client (MODEL=... to choose)."""
    from rota.demo import run

    raise typer.Exit(run(exit_after=exit_after))


def main() -> None:
    app(prog_name="rota")


if __name__ == "__main__":
    sys.exit(main())
