"""``rota async ...`` and ``rota batches ...``: queued requests and OpenAI batches."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from rota.cli import output
from rota.cli.client import Api, Unavailable, api, fail
from rota.cli.output import Output

async_app = typer.Typer(help="Async requests: queued, answered later (poll or webhook).", no_args_is_help=True)
batches_app = typer.Typer(help="OpenAI batches: a JSONL file of requests, run as room allows.", no_args_is_help=True)
FINAL = {"succeeded", "failed", "cancelled", "expired"}
BATCH_FINAL = {"completed", "failed", "expired", "cancelled"}


def _wait(client: Api, path: str, done: set[str], timeout: float) -> dict[str, Any]:
    """Poll until a final status (or the timeout), riding through a control plane restart."""
    deadline = time.monotonic() + timeout
    got: dict[str, Any] | None = None
    while True:
        try:
            got = client.call("GET", path, prefix="", soft=True)
        except Unavailable as e:
            typer.echo(f"waiting: {e}", err=True)
        if got is not None and (got["status"] in done or time.monotonic() > deadline):
            return got
        if time.monotonic() > deadline:
            fail(f"no answer from the API within {timeout:g}s")
        time.sleep(1)


def _request_rows(items: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = [("ID", "STATUS", "MODEL", "URL", "ATTEMPTS", "CODE", "CREATED")]
    for a in items:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(a["created_at"]))
        out.append((a["id"], a["status"], a["model"], a["url"], str(a["attempts"]), str(a["status_code"] or "-"), created))
    return out


@async_app.command("submit")
def submit(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="the endpoint's routing key"),
    prompt: str | None = typer.Option(None, "--prompt", "-p", help="one user message"),
    body: Path | None = typer.Option(None, "--body", help="a JSON file: the whole request body (model taken from it)"),
    completion: bool = typer.Option(False, "--completion", help="/v1/completions (default: chat completions)"),
    webhook_url: str | None = typer.Option(None, "--webhook-url", help="POST the result here, signed"),
    in_window: bool = typer.Option(False, "--in-window", help="wait for the endpoint's next scheduled window"),
    wait: bool = typer.Option(False, "--wait", help="then wait for the answer and print it"),
    timeout: float = typer.Option(600.0, help="how long --wait waits (s)"),
    fmt: Output = output.option(),
) -> None:
    """Queue a request; print its id (with --wait, its answer)."""
    if (prompt is None) == (body is None):
        fail("give --prompt or --body")
    if body is not None:
        data = json.loads(body.read_text())
    elif completion:
        data = {"prompt": prompt}
    else:
        data = {"messages": [{"role": "user", "content": prompt}]}
    data = {"model": model, **data}
    if webhook_url:
        data["webhook_url"] = webhook_url
    if in_window:
        data["run_in_window"] = True
    client = api(ctx)
    route = "/v1/async/completions" if completion else "/v1/async/chat/completions"
    got = client.call("POST", route, prefix="", json=data)
    if wait:
        got = _wait(client, f"/v1/async/{got['id']}", FINAL, timeout)
    output.show(got, fmt)
    if wait and got["status"] != "succeeded":
        raise typer.Exit(1)


@async_app.command("get")
def get(ctx: typer.Context, request_id: str = typer.Argument(...), fmt: Output = output.option()) -> None:
    """An async request: status, attempts, the answer."""
    output.show(api(ctx).call("GET", f"/v1/async/{request_id}", prefix=""), fmt)


@async_app.command("list")
def list_(
    ctx: typer.Context,
    status: str | None = typer.Option(None, help="queued, running, succeeded, failed, cancelled or expired"),
    model: str | None = typer.Option(None, help="an endpoint's routing key"),
    limit: int = typer.Option(20, min=1, max=1000),
    fmt: Output = output.option(),
) -> None:
    """The project's async requests, newest first."""
    params = {k: v for k, v in {"status": status, "model": model, "limit": limit}.items() if v}
    page = api(ctx).call("GET", "/v1/async", prefix="", params=params)
    output.show(page if fmt is not Output.TABLE else page["data"], fmt, _request_rows)


@async_app.command("cancel")
def cancel(ctx: typer.Context, request_id: str = typer.Argument(...), fmt: Output = output.option()) -> None:
    """Cancel a queued request."""
    output.show(api(ctx).call("DELETE", f"/v1/async/{request_id}", prefix=""), fmt)


@async_app.command("webhook-secret")
def webhook_secret(
    ctx: typer.Context,
    rotate: bool = typer.Option(False, "--rotate", help="make a new secret; the old one keeps signing for --previous-valid"),
    previous_valid: int = typer.Option(86_400, "--previous-valid", min=0, max=604_800, help="seconds (with --rotate)"),
    fmt: Output = output.option(),
) -> None:
    """The project's webhook signing secret; --rotate replaces it."""
    client = api(ctx)
    if rotate:
        got = client.call("POST", "/async/webhook-secret/rotate", json={"previous_valid_s": previous_valid})
    else:
        got = client.call("GET", "/async/webhook-secret")
    output.show(got, fmt)


def _batch_rows(items: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = [("ID", "STATUS", "MODEL", "TOTAL", "COMPLETED", "FAILED", "CREATED")]
    for b in items:
        c = b["request_counts"]
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(b["created_at"]))
        out.append((b["id"], b["status"], b["model"], str(c["total"]), str(c["completed"]), str(c["failed"]), created))
    return out


@batches_app.command("create")
def batch_create(
    ctx: typer.Context,
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSONL: one OpenAI batch request per line"),
    window: str = typer.Option("24h", "--window", help="completion window"),
    in_window: bool = typer.Option(False, "--in-window", help="wait for the endpoint's next scheduled window"),
    wait: bool = typer.Option(False, "--wait", help="then wait until it is done"),
    timeout: float = typer.Option(3600.0, help="how long --wait waits (s)"),
    fmt: Output = output.option(),
) -> None:
    """Upload a batch file and run it (its lines' url and model say where)."""
    client = api(ctx)
    first = next((json.loads(x) for x in file.read_text().splitlines() if x.strip()), None)
    if not isinstance(first, dict):
        fail(f"{file}: no request in it")
    uploaded = client.call(
        "POST", "/v1/files", prefix="", files={"file": (file.name, file.read_bytes())}, data={"purpose": "batch"}
    )
    body = {
        "input_file_id": uploaded["id"],
        "endpoint": first.get("url"),
        "completion_window": window,
        "run_in_window": in_window,
    }
    got = client.call("POST", "/v1/batches", prefix="", json=body)
    if wait:
        got = _wait(client, f"/v1/batches/{got['id']}", BATCH_FINAL, timeout)
    output.show(got, fmt)


@batches_app.command("get")
def batch_get(ctx: typer.Context, batch_id: str = typer.Argument(...), fmt: Output = output.option()) -> None:
    """A batch: status and request counts."""
    output.show(api(ctx).call("GET", f"/v1/batches/{batch_id}", prefix=""), fmt)


@batches_app.command("list")
def batch_list(ctx: typer.Context, limit: int = typer.Option(20, min=1, max=100), fmt: Output = output.option()) -> None:
    """The project's batches, newest first."""
    page = api(ctx).call("GET", "/v1/batches", prefix="", params={"limit": limit})
    output.show(page if fmt is not Output.TABLE else page["data"], fmt, _batch_rows)


@batches_app.command("cancel")
def batch_cancel(ctx: typer.Context, batch_id: str = typer.Argument(...), fmt: Output = output.option()) -> None:
    """Cancel a batch: queued lines are dropped, lines being sent finish."""
    output.show(api(ctx).call("POST", f"/v1/batches/{batch_id}/cancel", prefix=""), fmt)


@batches_app.command("output")
def batch_output(
    ctx: typer.Context,
    batch_id: str = typer.Argument(...),
    errors: bool = typer.Option(False, "--errors", help="the error file instead"),
) -> None:
    """Print a finished batch's output (or error) file: one JSON line per request, in input order."""
    client = api(ctx)
    batch = client.call("GET", f"/v1/batches/{batch_id}", prefix="")
    file_id = batch["error_file_id" if errors else "output_file_id"]
    if not file_id:
        fail(f"batch {batch_id} ({batch['status']}) has no {'error' if errors else 'output'} file")
    typer.echo(client.call("GET", f"/v1/files/{file_id}/content", prefix="").rstrip("\n"))
