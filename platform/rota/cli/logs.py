"""``rota endpoints logs NAME [-f]``: what an endpoint's replicas print."""

from __future__ import annotations

import json
from typing import Any

import httpx
import typer

from rota.cli.client import api, error_text, fail, ref_argument


def line(ln: dict[str, Any]) -> str:
    return f"[{ln['replica']} {ln['stream']}] {ln['line']}"


def logs(
    ctx: typer.Context,
    endpoint: str = ref_argument("endpoints"),
    follow: bool = typer.Option(False, "--follow", "-f", help="then print new lines as the replicas write them"),
    search: str | None = typer.Option(None, help="only lines that contain this"),
    replica: str | None = typer.Option(None, help="one replica's id"),
    since: str | None = typer.Option(None, help="from this time (ISO 8601, UTC unless it says)"),
    lines: int = typer.Option(200, "--lines", "-n", min=1, max=10_000, help="the last this many lines"),
) -> None:
    """The replicas' own output (vLLM's, Ray Serve's), merged in time order, each line
    tagged with its replica and stream."""
    client = api(ctx)
    params = {k: v for k, v in {"search": search, "replica": replica, "since": since}.items() if v}
    params["limit"] = str(lines)
    if not follow:
        for ln in client.call("GET", f"/endpoints/{endpoint}/logs", params=params)["lines"]:
            typer.echo(line(ln))
        return
    try:
        with client.http.stream(
            "GET", f"/api/v1/endpoints/{endpoint}/logs", params={**params, "follow": "true"}, timeout=httpx.Timeout(30, read=None)
        ) as r:
            if r.status_code >= 400:
                r.read()
                fail(f"{r.status_code} {error_text(r)}")
            for raw in r.iter_lines():
                if raw.startswith("data: "):
                    typer.echo(line(json.loads(raw[6:])))
    except httpx.HTTPError as e:
        fail(f"the log stream ended: {e}")
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
