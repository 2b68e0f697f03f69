"""``rota cluster``: what runs on the Ray cluster, Rota's or not (admin keys)."""

from __future__ import annotations

import typer

from rota.cli.client import api, print_json, table

app = typer.Typer(help="The Ray cluster Rota deploys to (admin keys).", no_args_is_help=True)


@app.command("apps")
def cluster_apps(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """List every Ray Serve application on the cluster and whose it is: an endpoint's, a
    task's, Rota's base URL, or foreign (Rota never changes, scales or deletes those)."""
    apps = api(ctx).call("GET", "/cluster/apps")
    if as_json:
        return print_json(apps)
    rows = [("NAME", "ROUTE", "STATUS", "SOURCE", "OWNER")]
    for a in apps:
        o = a["owner"]
        who = (
            o["kind"]
            if o["kind"] in ("foreign", "gateway")
            else f"{o['kind']} {o['endpoint']['project']}/{o['task'] or o['endpoint']['name']}"
        )
        rows.append((a["name"], a["route_prefix"] or "", a["status"], a["source"], who))
    table(rows)
