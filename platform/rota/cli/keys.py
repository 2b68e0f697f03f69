"""``rota keys``: API keys of your project (and, with an admin key, of any)."""

from __future__ import annotations

from typing import Any

import typer

from rota.cli import output
from rota.cli.client import api
from rota.cli.output import Output

app = typer.Typer(help="API keys of your project.", no_args_is_help=True)


@app.command("create")
def keys_create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="what the key is for"),
    project: str | None = typer.Option(None, help="admin only: another project's key (created if new)"),
    admin: bool = typer.Option(False, "--admin", help="admin only: make an admin key"),
) -> None:
    """Create an API key; the secret is printed once."""
    k = api(ctx).call("POST", "/keys", json={"name": name, "project": project, "admin": admin})
    typer.echo(k["key"])
    typer.secho(f"key {k['id']} ({k['prefix']}...) for project {k['project']}: store it now, it is not shown again", err=True)


@app.command("list")
def keys_list(
    ctx: typer.Context,
    project: str | None = typer.Option(None, help="admin only: another project"),
    fmt: Output = output.option(),
) -> None:
    """List keys (prefixes only)."""
    output.show(api(ctx).call("GET", "/keys", params={"project": project} if project else {}), fmt, _rows)


def _rows(keys: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("ID", "NAME", "PROJECT", "PREFIX", "ADMIN", "REVOKED")]
    for k in keys:
        admin = "yes" if k["admin"] else ""
        rows.append((str(k["id"]), k["name"], k["project"], k["prefix"] + "...", admin, k["revoked_at"] or ""))
    return rows


@app.command("revoke")
def keys_revoke(ctx: typer.Context, key_id: int = typer.Argument(..., help="key id (rota keys list)")) -> None:
    """Revoke a key: it stops working at once on the API and within a second at the OpenAI base URL."""
    k = api(ctx).call("DELETE", f"/keys/{key_id}")
    typer.echo(f"key {k['id']} ({k['prefix']}...) revoked")


@app.command("bootstrap")
def keys_bootstrap(name: str = typer.Option("admin", help="what the key is for")) -> None:
    """Mint a new admin key straight in the store (run it on the control-plane host, with
    its ROTA_HOME and ROTA_DATABASE_URL): for when no admin key works any more. The key
    is printed and written to $ROTA_HOME/admin_key."""
    from rota.config import Settings
    from rota.crypto import Cipher
    from rota.services.auth import AuthService
    from rota.store.db import Database

    settings = Settings()
    db = Database(settings.resolved_database_url)
    try:
        db.migrate(Cipher.load(settings.secret_key.get_secret_value() if settings.secret_key else None, settings.secret_key_path))
        key = AuthService(db).mint_admin(settings.admin_key_path, name)
    finally:
        db.dispose()
    typer.echo(key.key)
    typer.secho(f"admin key {key.id} ({key.prefix}...) written to {settings.admin_key_path}", err=True)
