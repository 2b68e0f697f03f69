"""``rota tasks``: inspect and drive schedules."""

from __future__ import annotations

import typer

from rota.cli.client import actions, api, print_json, table

app = typer.Typer(help="Inspect and drive tasks (schedules over endpoints).", no_args_is_help=True)


@app.command("list")
def tasks_list(
    ctx: typer.Context,
    search: str | None = typer.Option(None, help="substring of the name"),
    status: str | None = typer.Option(None, help="idle | active | completed | missed"),
    type: str | None = typer.Option(None, "--type", help="one_off | daily"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """List tasks, with the endpoint each drives and its status."""
    params = {k: v for k, v in {"search": search, "status": status, "type": type, "limit": 1000}.items() if v}
    page = api(ctx).call("GET", "/tasks", params=params)
    if as_json:
        return print_json(page)
    rows = [("ID", "NAME", "TYPE", "STATUS", "ENDPOINT", "ENDPOINT STATUS", "REPLICAS", "NEXT FIRE (UTC)", "NEXT FIRE (LOCAL)")]
    for t in page["items"]:
        e = t["endpoint"] or {"name": "(gone)", "status": "-", "replicas": {"min": None}}
        r = e["replicas"]
        reps = f"{r['running']} ({r['min']}..{r['max']})" if r["min"] is not None else "-"
        rows.append(
            (
                str(t["id"]),
                t["name"],
                t["type"],
                t["status"],
                e["name"] + (" (own)" if t["owns_endpoint"] else ""),
                e["status"],
                reps,
                t["next_fire_at"] or "-",
                t["next_fire_local"] or "-",
            )
        )
    table(rows)


actions(
    app,
    "tasks",
    {
        "get": ("GET", "", "", "Show a task (JSON)."),
        "activate": (
            "POST",
            "/activate",
            "task/{name} {status}; next fire {next_fire_at} UTC ({next_fire_local})",
            "Activate a task: its fires are scheduled.",
        ),
        "deactivate": (
            "POST",
            "/deactivate",
            "task/{name} {status}",
            "Deactivate a task: no more fires (its endpoint keeps its replicas).",
        ),
        "delete": ("DELETE", "", "task/{ref} deleted", "Delete a task (and its own application, if it has one)."),
    },
)
