"""``rota endpoints requests NAME [-F]``: an endpoint's request log."""

from __future__ import annotations

import time
from typing import Any

import typer

from rota.cli import output
from rota.cli.client import api, ref_argument
from rota.cli.output import Output

COLUMNS = ("TIME", "REQUEST ID", "STATUS", "ERROR", "MS", "TTFT MS", "IN", "OUT", "KEY", "COLD", "REPLICA")
FORMAT = "{:<23}  {:<32}  {:>6}  {:<21}  {:>8}  {:>7}  {:>5}  {:>5}  {:<12}  {:<4}  {}"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def row(r: dict[str, Any]) -> tuple[str, ...]:
    def n(v: Any) -> str:
        return "-" if v is None else str(v)

    return (
        str(r["time"])[:23],
        r["request_id"][:32],
        str(r["http.response.status_code"]),
        n(r.get("error.type"))[:21],
        _ms(r["rota.duration_ms"]),
        _ms(r.get("rota.time_to_first_token_ms")),
        n(r.get("gen_ai.usage.input_tokens")),
        n(r.get("gen_ai.usage.output_tokens")),
        n(r.get("rota.key_prefix")),
        "yes" if r.get("rota.cold_start") else "",
        n(r.get("rota.replica_id"))[-24:],
    )


def requests(
    ctx: typer.Context,
    endpoint: str = ref_argument("endpoints"),
    follow: bool = typer.Option(False, "--follow", "-F", help="then print each new call as it is logged"),
    status: str | None = typer.Option(None, help="a code (429), a class (4xx), ok or error"),
    key: str | None = typer.Option(None, help="a key's prefix (rota keys list)"),
    search: str | None = typer.Option(None, help="in request ids, model, error, replica, content"),
    since: str | None = typer.Option(None, help="from this time (ISO 8601, UTC unless it says)"),
    limit: int = typer.Option(50, min=1, max=1000, help="how many of the latest"),
    fmt: Output = output.option(),
) -> None:
    """An endpoint's request log: the latest calls, oldest first (with -F, then the new ones)."""
    client = api(ctx)
    filters = {k: v for k, v in {"status": status, "key": key, "search": search, "since": since}.items() if v}
    path = f"/endpoints/{endpoint}/requests"
    page = client.call("GET", path, params={**filters, "limit": limit})
    if fmt is not Output.TABLE:
        output.show(page, fmt)
        return
    typer.echo(FORMAT.format(*COLUMNS))
    for r in reversed(page["data"]):
        typer.echo(FORMAT.format(*row(r)))
    after = page["last_seq"]
    while follow:
        time.sleep(1)
        page = client.call("GET", path, params={**filters, "after": after, "limit": 1000})
        for r in page["data"]:
            typer.echo(FORMAT.format(*row(r)), nl=True)
        after = page["last_seq"]
