"""``rota endpoints``: create, list, update, stop/start, delete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from rota.cli.client import actions, api, fail, print_json, table
from rota.cli.manifest import read_yaml

app = typer.Typer(help="Endpoints: create, list, update, stop/start, delete.", no_args_is_help=True)


@app.command("list")
def endpoints_list(
    ctx: typer.Context,
    search: str | None = typer.Option(None, help="substring of the name"),
    status: str | None = typer.Option(None, help="e.g. RUNNING, SLEEPING, FAILED"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """List your project's endpoints."""
    params = {k: v for k, v in {"search": search, "status": status, "limit": 1000}.items() if v}
    page = api(ctx).call("GET", "/endpoints", params=params)
    if as_json:
        return print_json(page)
    rows = [("ID", "NAME", "MODEL (routing key)", "STATUS", "PHASE", "REPLICAS", "SOURCE")]
    for e in page["items"]:
        r = e["replicas"]
        source = e["template"] or e["model"] or f"{e['file_path']}:{e['deployment_name']}"
        rows.append(
            (
                str(e["id"]),
                e["name"],
                e["routing_key"],
                e["status"],
                e["phase"] or "-",
                f"{r['running']} ({r['min']}..{r['max']}, {r['source']})",
                source,
            )
        )
    table(rows)


actions(
    app,
    "endpoints",
    {
        "get": ("GET", "", "", "Show an endpoint (JSON)."),
        "stop": ("POST", "/stop", "endpoint/{name} stopping", "Stop: remove the application and release its replicas."),
        "start": ("POST", "/start", "endpoint/{name} starting", "Start a stopped endpoint."),
        "delete": ("DELETE", "", "endpoint/{ref} deleted", "Delete an endpoint permanently."),
    },
)


def _body(file: Path | None, inline: str | None) -> dict[str, Any]:
    raw = read_yaml(file) if file is not None else json.loads(inline) if inline is not None else {}
    if not isinstance(raw, dict):
        fail("the body must be a mapping")
    return raw


@app.command("create")
def endpoints_create(
    ctx: typer.Context,
    name: str | None = typer.Option(None, help="endpoint name"),
    template: str | None = typer.Option(None, help="template name (rota templates list)"),
    flavor: str | None = typer.Option(None, help="template flavor"),
    min_replicas: int | None = typer.Option(None, help="autoscaling lower bound (0: scale to zero)"),
    max_replicas: int | None = typer.Option(None, help="autoscaling upper bound"),
    file: Path | None = typer.Option(None, "-f", "--file", help="YAML/JSON body (the flags override it)"),
) -> None:
    """Create an endpoint."""
    body = _body(file, None)
    body.update({k: v for k, v in {"name": name, "template": template, "flavor": flavor}.items() if v is not None})
    if min_replicas is not None or max_replicas is not None:
        body["scaling"] = {**body.get("scaling", {}), "min_replicas": min_replicas, "max_replicas": max_replicas}
    e = api(ctx).call("POST", "/endpoints", json=body)
    typer.echo(f"endpoint/{e['name']} created (id {e['id']}): send model={e['routing_key']!r} to {e['base_url']}")


@app.command("patch")
def endpoints_patch(
    ctx: typer.Context,
    endpoint: str = typer.Argument(..., help="id or name"),
    body: str | None = typer.Option(None, "--json", help='partial body, e.g. \'{"scaling": {"replicas": 2}}\''),
    file: Path | None = typer.Option(None, "-f", "--file", help="YAML/JSON partial body"),
) -> None:
    """Partially update an endpoint (scaling in place; model/engine changes roll the replicas)."""
    e = api(ctx).call("PATCH", f"/endpoints/{endpoint}", json=_body(file, body))
    typer.echo(f"endpoint/{e['name']} {e['status']}")
