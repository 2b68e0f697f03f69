"""The CLI's side of the REST API: one client, and how answers are printed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NoReturn

import httpx
import typer

from rota.config import ClientSettings


class Api:
    def __init__(self, url: str, key: str | None = None):
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=self.url, timeout=30, headers=headers)

    def call(self, method: str, path: str, ok404: bool = False, **kw: Any) -> Any:
        try:
            r = self.http.request(method, "/api/v1" + path, **kw)
        except httpx.HTTPError as e:
            fail(f"cannot reach the Rota API at {self.url}: {e} (is `rota server` running? set ROTA_API_URL)")
        if r.status_code == 404 and ok404:
            return None
        if r.status_code >= 400:
            try:
                err = r.json().get("error", {})
            except ValueError:
                fail(f"{r.status_code}: {r.text}")
            field = f" [field: {err['field']}]" if err.get("field") else ""
            fail(f"{r.status_code} {err.get('code', '')}: {err.get('message', r.text)}{field}")
        return r.json() if r.content else None


def fail(msg: str, code: int = 1) -> NoReturn:
    typer.secho(msg, err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def api(ctx: typer.Context) -> Api:
    s: ClientSettings = ctx.obj
    return Api(s.url, s.key)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def follow_events(client: Api, path: str, follow: bool) -> None:
    import time

    after = 0
    while True:
        for e in client.call("GET", path, params={"after_id": after}):
            typer.echo(f"{e['at']}  {e['kind']:<12} {e['message']}")
            after = e["id"]
        if not follow:
            return
        time.sleep(1)


def actions(app: typer.Typer, kind: str, specs: dict[str, tuple[str, str, str, str]]) -> None:
    """The per-object commands of ``kind`` (tasks, endpoints): name -> (HTTP method, path
    suffix, what to print (a format of the answer; empty: the answer as JSON), help)."""
    for name, (method, suffix, done, doc) in specs.items():
        app.command(name, help=doc)(_action(kind, method, suffix, done))

    @app.command("events")
    def events(
        ctx: typer.Context,
        ref: str = typer.Argument(..., metavar=kind[:-1].upper(), help="id or name"),
        follow: bool = typer.Option(False, "--follow", "-F", help="keep printing new events"),
    ) -> None:
        """Print its events in order."""
        follow_events(api(ctx), f"/{kind}/{ref}/events", follow)


def _action(kind: str, method: str, suffix: str, done: str) -> Any:
    def command(ctx: typer.Context, ref: str = typer.Argument(..., metavar=kind[:-1].upper(), help="id or name")) -> None:
        out = api(ctx).call(method, f"/{kind}/{ref}{suffix}")
        if done:
            typer.echo(done.format(ref=ref, **(out or {})))
        else:
            print_json(out)

    return command
