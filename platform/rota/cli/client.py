"""The CLI's side of the REST API: one client, and how answers are printed."""

from __future__ import annotations

from typing import Any, NoReturn

import httpx
import typer

from rota.cli import output
from rota.cli.output import Output
from rota.config import ClientSettings


class Api:
    def __init__(self, url: str, key: str | None = None):
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=self.url, timeout=30, headers=headers)

    def call(self, method: str, path: str, ok404: bool = False, soft: bool = False, prefix: str = "/api/v1", **kw: Any) -> Any:
        """The API's answer to ``method prefix+path`` (``prefix=""``: the OpenAI-style
        ``/v1`` routes). Errors end the command with their message; with ``soft``, an
        unreachable API or a 5xx raises ``Unavailable`` instead (a wait rides through a
        restart of the control plane)."""
        try:
            r = self.http.request(method, prefix + path, **kw)
        except httpx.HTTPError as e:
            self._fail(f"cannot reach the Rota API at {self.url}: {e} (is `rota server` running? set ROTA_API_URL)", soft)
        if r.status_code == 404 and ok404:
            return None
        if r.status_code >= 400:
            self._fail(f"{r.status_code} {error_text(r)}", soft and r.status_code >= 500)
        if r.content and r.headers.get("content-type", "application/json").split(";")[0] != "application/json":
            return r.text  # a file's content
        return r.json() if r.content else None

    @staticmethod
    def _fail(message: str, soft: bool) -> NoReturn:
        if soft:
            raise Unavailable(message)
        fail(message)


class Unavailable(Exception):
    """The API did not answer (or answered 5xx): worth asking again."""


def error_text(r: httpx.Response) -> str:
    """An error answer as ``CODE: message [field: f]``, whatever shape its body has."""
    try:
        body = r.json()
    except ValueError:
        return r.text.strip()[:500]
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return str(err or body)[:500]
    field = f" [field: {err['field']}]" if err.get("field") else ""
    return f"{err.get('code') or err.get('type') or ''}: {err.get('message', r.text)}{field}"


def fail(msg: str, code: int = 1) -> NoReturn:
    typer.secho(msg, err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def api(ctx: typer.Context) -> Api:
    s: ClientSettings = ctx.obj
    return Api(s.url, s.key)


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


def ref_argument(kind: str) -> Any:
    return typer.Argument(..., metavar=kind[:-1].upper(), help="id or name")


def object_commands(app: typer.Typer, kind: str, doc: str) -> None:
    """``get`` and ``events`` of ``kind`` (tasks, endpoints)."""

    @app.command("get", help=doc)
    def get(ctx: typer.Context, ref: str = ref_argument(kind), fmt: Output = output.option()) -> None:
        output.show(api(ctx).call("GET", f"/{kind}/{ref}"), fmt)

    @app.command("events")
    def events(
        ctx: typer.Context,
        ref: str = ref_argument(kind),
        follow: bool = typer.Option(False, "--follow", "-F", help="keep printing new events"),
    ) -> None:
        """Print its events in order."""
        follow_events(api(ctx), f"/{kind}/{ref}/events", follow)
