"""``rota``: run the control plane, and a thin client of its REST API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from rota.cli import cluster, endpoints, invocations, keys, output, status, tasks
from rota.cli.client import api
from rota.cli.manifest import apply_manifest, load_manifest
from rota.cli.output import Output
from rota.cli.wait import follow, timeout_option, wait_option, waiting
from rota.config import ClientSettings

app = typer.Typer(help="Rota: scheduled, dedicated LLM endpoints on Ray Serve.", no_args_is_help=True, add_completion=False)
templates_app = typer.Typer(help="Model templates endpoints are created from.", no_args_is_help=True)
models_app = typer.Typer(help="Model utilities.", no_args_is_help=True)
app.add_typer(tasks.app, name="tasks")
app.add_typer(endpoints.app, name="endpoints")
app.add_typer(templates_app, name="templates")
app.add_typer(keys.app, name="keys")
app.add_typer(cluster.app, name="cluster")
app.add_typer(models_app, name="models")
app.add_typer(invocations.async_app, name="async")
app.add_typer(invocations.batches_app, name="batches")
app.command("status")(status.status)


@app.callback()
def _root(
    ctx: typer.Context,
    api_url: str | None = typer.Option(
        None, "--api-url", help="Rota API base URL (env ROTA_API_URL; default http://127.0.0.1:8080)"
    ),
    api_key: str | None = typer.Option(
        None, "--api-key", help="API key (env ROTA_API_KEY; default: the admin key in $ROTA_HOME/admin_key)"
    ),
) -> None:
    overrides = {k: v for k, v in {"api_url": api_url, "api_key": api_key}.items() if v}
    ctx.obj = ClientSettings(**overrides)  # type: ignore[arg-type]


@app.command()
def server(
    host: str | None = typer.Option(None, help="bind address (env ROTA_HOST, default 127.0.0.1)"),
    port: int | None = typer.Option(None, help="port (env ROTA_PORT, default 8080)"),
) -> None:
    """Run the control plane: API, scheduler, reconciler (and a local Ray head unless ROTA_RAY_ADDRESS is set)."""
    import logging

    import uvicorn

    from rota.api.app import create_app
    from rota.config import Settings
    from rota.domain.errors import Conflict
    from rota.store import single

    settings = Settings(**{k: v for k, v in {"host": host, "port": port}.items() if v is not None})  # type: ignore[arg-type]
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        held = single.hold(settings.resolved_database_url)  # noqa: F841 (held while the server runs)
    except Conflict as e:
        typer.echo(f"rota server: {e}", err=True)
        raise typer.Exit(3) from None
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level.lower())


@app.command()
def apply(
    ctx: typer.Context,
    file: Path = typer.Option(..., "-f", "--file", help="YAML manifest: endpoints and tasks"),
    wait: bool | None = wait_option(),
    timeout: float = timeout_option(),
) -> None:
    """Create or update (by name) the endpoints, then the tasks, of a manifest; a task's
    `active: true|false` activates or deactivates it. With --wait, follow every endpoint
    until it serves (or sleeps, or waits for its task's first fire).

    ${VAR} and ${VAR:-default} in the file's values are replaced from the environment."""
    client = api(ctx)
    watches = apply_manifest(client, load_manifest(file))
    if waiting(wait) and watches:
        raise typer.Exit(follow(client, watches, timeout))


@templates_app.command("list")
def templates_list(ctx: typer.Context, fmt: Output = output.option()) -> None:
    """List model templates."""

    def rows(items: list[dict[str, Any]]) -> list[tuple[str, ...]]:
        out: list[tuple[str, ...]] = [("NAME", "MODEL", "FLAVORS", "GPU TYPES", "GPUS/REPLICA")]
        for t in items:
            counts = ",".join(map(str, t["gpu_counts"]))
            out.append((t["name"], t["model"], ",".join(t["flavors"]), ",".join(t["gpu_types"]), counts))
        return out

    output.show(api(ctx).call("GET", "/templates"), fmt, rows)


@models_app.command("make-tiny")
def models_make_tiny(out_dir: Path = typer.Argument(..., help="directory to write the model to")) -> None:
    """Generate a tiny Llama with random weights and a trained tokenizer that vLLM can load."""
    from rota.models import make_tiny

    typer.echo(f"tiny model written to {make_tiny(out_dir)}")


@app.command()
def demo(
    model: str | None = typer.Option(None, "--model", help="a Hugging Face id or a local directory (default: the tiny template)"),
    exit_after: bool = typer.Option(False, "--exit", help="stop everything after the calls instead of serving on"),
) -> None:
    """Start Rota, schedule a vLLM endpoint a few seconds ahead, call it with the openai client."""
    from rota.demo import run

    raise typer.Exit(run(model=model, exit_after=exit_after))


def main() -> None:
    app(prog_name="rota")
