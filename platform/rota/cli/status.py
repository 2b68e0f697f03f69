"""``rota status``: one screen: Ray, the endpoints and who sets their replicas, the
active tasks and their next fires."""

from __future__ import annotations

from typing import Any

import typer

from rota.cli import output
from rota.cli.client import api
from rota.cli.output import Output


def status(ctx: typer.Context, fmt: Output = output.option()) -> None:
    """Ray's reachability, which control plane leads, every endpoint (status, replicas running/target, bounds and who
    set them) and the active tasks with their next fire, local and UTC."""
    client = api(ctx)
    data = {
        "status": client.call("GET", "/status"),
        "endpoints": client.call("GET", "/endpoints", params={"limit": 1000})["items"],
        "tasks": client.call("GET", "/tasks", params={"status": "active", "limit": 1000})["items"],
    }
    if fmt is not Output.TABLE:
        return output.show(data, fmt)
    st = data["status"]
    ray = st["ray"]
    where = "embedded head" if ray["embedded"] else "remote cluster"
    lead = st["leader"]
    reach = {True: "reachable", None: "not checked yet"}.get(
        ray["reachable"], "UNREACHABLE" + (f": {ray['error']}" if ray.get("error") else "")
    )
    leader = "this one" if lead["leading"] else (lead["leader"] or "none (a standby takes over)")
    typer.echo(f"Ray ({where}): {reach}\nOpenAI base URL: {st['openai_base_url']}")
    typer.echo(f"Control plane {lead['this_process']}; leader: {leader}" + (f" since {lead['since']}" if lead["since"] else ""))
    typer.echo()
    for rows, none in ((_endpoints(data["endpoints"], data["tasks"]), "no endpoints"), (_tasks(data["tasks"]), "no active task")):
        output.table(rows) if len(rows) > 1 else typer.echo(f"({none})")
        typer.echo()


def _endpoints(endpoints: list[dict[str, Any]], tasks: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    drivers: dict[int, list[str]] = {}
    for t in tasks:
        if t["endpoint"]:
            drivers.setdefault(t["endpoint"]["id"], []).append(t["name"])
    rows: list[tuple[str, ...]] = [("ENDPOINT", "STATUS", "RUNNING/TARGET", "BOUNDS", "SET BY")]
    for e in endpoints:
        r = e["replicas"]
        target = "-" if r["target"] is None else str(r["target"])
        bounds = "-" if r["min"] is None else f"{r['min']}..{r['max']}"
        by = {
            "scaling": "its scaling",
            "schedule": "schedule: " + (", ".join(drivers.get(e["id"], [])) or "a task no longer active"),
            "none": "its task's first fire (pending)",
        }[r["source"]]
        status = e["status"] + (f" ({e['phase']})" if e["phase"] and e["status"] != "RUNNING" else "")
        rows.append((e["name"], status, f"{r['running']}/{target}", bounds, by))
    return rows


def _tasks(tasks: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("ACTIVE TASK", "TYPE", "ENDPOINT", "NEXT FIRE (LOCAL)", "NEXT FIRE (UTC)")]
    for t in tasks:
        endpoint = t["endpoint"]["name"] if t["endpoint"] else "(gone)"
        rows.append((t["name"], t["type"], endpoint, t["next_fire_local"] or "-", t["next_fire_at"] or "-"))
    return rows
