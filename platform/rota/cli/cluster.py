"""``rota cluster``: what runs on the Ray cluster, Rota's or not (admin keys)."""

from __future__ import annotations

from typing import Any

import typer

from rota.cli import output
from rota.cli.client import api
from rota.cli.output import Output

app = typer.Typer(help="The Ray cluster Rota deploys to (admin keys).", no_args_is_help=True)


@app.command("apps")
def cluster_apps(ctx: typer.Context, fmt: Output = output.option()) -> None:
    """List every Ray Serve application on the cluster and whose it is: an endpoint's, a
    task's, Rota's base URL, or foreign (Rota never changes, scales or deletes those)."""
    output.show(api(ctx).call("GET", "/cluster/apps"), fmt, _rows)


def _rows(apps: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("NAME", "ROUTE", "STATUS", "SOURCE", "OWNER")]
    for a in apps:
        o = a["owner"]
        who = (
            o["kind"]
            if o["kind"] in ("foreign", "gateway")
            else f"{o['kind']} {o['endpoint']['project']}/{o['task'] or o['endpoint']['name']}"
        )
        rows.append((a["name"], a["route_prefix"] or "", a["status"], a["source"], who))
    return rows
