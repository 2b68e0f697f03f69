"""``rota endpoints``: create, list, update, stop/start, delete, chat, request logs, replica logs,
a suggested schedule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from rota.cli import output
from rota.cli.chat import chat
from rota.cli.client import Api, api, fail, object_commands, ref_argument
from rota.cli.follow import Goal
from rota.cli.logs import logs
from rota.cli.manifest import read_yaml
from rota.cli.output import Output
from rota.cli.requests import requests
from rota.cli.suggest import suggest_schedule
from rota.cli.wait import Watch, follow, timeout_option, wait_option, waiting

app = typer.Typer(
    help="Endpoints: create, list, update, stop/start, delete, chat, request logs, replica logs, suggested schedules.",
    no_args_is_help=True,
)
app.command("chat")(chat)
app.command("requests")(requests)
app.command("logs")(logs)
app.command("suggest-schedule")(suggest_schedule)
object_commands(app, "endpoints", "Show an endpoint.")


def _rows(page: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("ID", "NAME", "MODEL (routing key)", "STATUS", "PHASE", "REPLICAS", "SOURCE")]
    for e in page["items"]:
        r = e["replicas"]
        source = e["template"] or e["model"] or f"{e['file_path']}:{e['deployment_name']}"
        replicas = f"{r['running']} ({r['min']}..{r['max']}, {r['source']})"
        rows.append((str(e["id"]), e["name"], e["routing_key"], e["status"], e["phase"] or "-", replicas, source))
    return rows


@app.command("list")
def endpoints_list(
    ctx: typer.Context,
    search: str | None = typer.Option(None, help="substring of the name"),
    status: str | None = typer.Option(None, help="e.g. RUNNING, SLEEPING, FAILED"),
    fmt: Output = output.option(),
) -> None:
    """List your project's endpoints."""
    params = {k: v for k, v in {"search": search, "status": status, "limit": 1000}.items() if v}
    output.show(api(ctx).call("GET", "/endpoints", params=params), fmt, _rows)


def _done(client: Api, e: dict[str, Any], said: str, goal: Goal, wait: bool | None, timeout: float) -> None:
    """Print what the command did; with ``--wait``, follow the endpoint to ``goal``."""
    typer.echo(f"endpoint/{e['name']} {said}")
    if waiting(wait):
        raise typer.Exit(follow(client, [Watch(str(e["id"]), e["name"], goal)], timeout))


def _body(file: Path | None, inline: str | None) -> dict[str, Any]:
    try:
        raw = read_yaml(file) if file is not None else json.loads(inline) if inline is not None else {}
    except ValueError as e:
        fail(f"--json: not valid JSON: {e}")
    if not isinstance(raw, dict):
        fail("the body must be a mapping")
    return raw


@app.command("create")
def endpoints_create(
    ctx: typer.Context,
    name: str | None = typer.Option(None, help="endpoint name"),
    template: str | None = typer.Option(None, help="template name (rota templates list)"),
    flavor: str | None = typer.Option(None, help="template flavor"),
    gpu_type: str | None = typer.Option(None, help="one of the template's GPU types, e.g. L4 (default: the template's)"),
    gpu_count: int | None = typer.Option(None, help="GPUs per replica (tensor parallel)"),
    model_path: str | None = typer.Option(None, help="a custom model: a directory on the nodes"),
    hf_model_repo: str | None = typer.Option(None, help="a custom model: a Hugging Face repo id"),
    min_replicas: int | None = typer.Option(None, help="autoscaling lower bound (0: scale to zero)"),
    max_replicas: int | None = typer.Option(None, help="autoscaling upper bound"),
    file: Path | None = typer.Option(None, "-f", "--file", help="YAML/JSON body (the flags override it)"),
    wait: bool | None = wait_option(),
    timeout: float = timeout_option(),
) -> None:
    """Create an endpoint (with --wait: follow it until it serves)."""
    body = _body(file, None)
    flags = {
        "name": name,
        "template": template,
        "flavor": flavor,
        "gpu_type": gpu_type,
        "gpu_count": gpu_count,
        "model_path": model_path,
        "hf_model_repo": hf_model_repo,
    }
    body.update({k: v for k, v in flags.items() if v is not None})
    bounds = {k: v for k, v in {"min_replicas": min_replicas, "max_replicas": max_replicas}.items() if v is not None}
    if bounds:
        body["scaling"] = {k: v for k, v in (body.get("scaling") or {}).items() if k != "replicas"} | bounds
    client = api(ctx)
    e = client.call("POST", "/endpoints", json=body)
    said = f"created (id {e['id']}): send model={e['routing_key']!r} to {e['base_url']}"
    _done(client, e, said, Goal.READY, wait, timeout)


@app.command("patch")
def endpoints_patch(
    ctx: typer.Context,
    endpoint: str = ref_argument("endpoints"),
    body: str | None = typer.Option(None, "--json", help='partial body, e.g. \'{"scaling": {"replicas": 2}}\''),
    file: Path | None = typer.Option(None, "-f", "--file", help="YAML/JSON partial body"),
    wait: bool | None = wait_option(),
    timeout: float = timeout_option(),
) -> None:
    """Partially update an endpoint (scaling in place; model/engine changes roll the replicas)."""
    client = api(ctx)
    e = client.call("PATCH", f"/endpoints/{endpoint}", json=_body(file, body))
    _done(client, e, "patched", Goal.READY, wait, timeout)


@app.command("start")
def endpoints_start(
    ctx: typer.Context,
    endpoint: str = ref_argument("endpoints"),
    wait: bool | None = wait_option(),
    timeout: float = timeout_option(),
) -> None:
    """Start a stopped endpoint."""
    client = api(ctx)
    _done(client, client.call("POST", f"/endpoints/{endpoint}/start"), "starting", Goal.READY, wait, timeout)


@app.command("stop")
def endpoints_stop(
    ctx: typer.Context,
    endpoint: str = ref_argument("endpoints"),
    wait: bool | None = wait_option(),
    timeout: float = timeout_option(),
) -> None:
    """Stop: remove the application and release its replicas."""
    client = api(ctx)
    _done(client, client.call("POST", f"/endpoints/{endpoint}/stop"), "stopping", Goal.STOPPED, wait, timeout)


@app.command("delete")
def endpoints_delete(
    ctx: typer.Context,
    endpoint: str = ref_argument("endpoints"),
    wait: bool | None = wait_option(),
    timeout: float = timeout_option(),
) -> None:
    """Delete an endpoint permanently."""
    client = api(ctx)
    e = client.call("GET", f"/endpoints/{endpoint}")
    client.call("DELETE", f"/endpoints/{endpoint}")
    _done(client, e, "deleting", Goal.GONE, wait, timeout)


@app.command("wait")
def endpoints_wait(
    ctx: typer.Context,
    endpoint: str = ref_argument("endpoints"),
    goal: Goal = typer.Option(Goal.READY, "--for", help="ready (serving, asleep or pending its first fire), stopped, gone"),
    timeout: float = timeout_option(),
) -> None:
    """Wait until an endpoint is ready, stopped or gone (exit 1 if it fails, 124 on --timeout)."""
    client = api(ctx)
    e = client.call("GET", f"/endpoints/{endpoint}")
    raise typer.Exit(follow(client, [Watch(str(e["id"]), e["name"], goal)], timeout))
