"""``rota endpoints chat``: talk to an endpoint through the OpenAI base URL with your key,
streamed: one message (``-m``), or a conversation read line by line from the terminal."""

from __future__ import annotations

import json
import sys
from typing import Any
from urllib.parse import urlsplit

import httpx
import typer

from rota.cli.client import api, error_text, fail, ref_argument


def chat(
    ctx: typer.Context,
    endpoint: str = ref_argument("endpoints"),
    message: str | None = typer.Option(None, "-m", "--message", help="send this one message and exit"),
    system: str | None = typer.Option(None, "--system", help="a system prompt"),
    max_tokens: int = typer.Option(256, "--max-tokens", min=1, help="longest answer, in tokens"),
    temperature: float | None = typer.Option(None, "--temperature", min=0.0, help="sampling temperature"),
    base_url: str | None = typer.Option(
        None, "--base-url", help="the OpenAI base URL to send your key to (default: the one the server reports)"
    ),
) -> None:
    """Chat with an endpoint through the base URL (streamed). Without -m: a conversation,
    one message per line; an empty line, `/exit` or Ctrl-D ends it."""
    client = api(ctx)
    e = client.call("GET", f"/endpoints/{endpoint}")
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    body: dict[str, Any] = {"model": e["routing_key"], "max_tokens": max_tokens, "stream": True}
    if temperature is not None:
        body["temperature"] = temperature
    url = _base_url(client.url, e["base_url"], base_url) + "/chat/completions"
    interactive = message is None
    if interactive and sys.stdin.isatty():
        typer.secho(f"chatting with {e['name']} (model={e['routing_key']}); an empty line or /exit ends", err=True)
    while True:
        text = message if not interactive else _read()
        if not text or text.strip() == "/exit":
            return
        history.append({"role": "user", "content": text})
        answer = _stream(client.http, url, {**body, "messages": history})
        history.append({"role": "assistant", "content": answer})
        if not interactive:
            return


def _read() -> str | None:
    try:
        return input("> " if sys.stdin.isatty() else "")
    except EOFError:
        return None


def _stream(http: httpx.Client, url: str, body: dict[str, Any]) -> str:
    """POST a streamed chat completion; print the text as it comes; return all of it."""
    parts: list[str] = []
    try:
        with http.stream("POST", url, json=body, timeout=httpx.Timeout(30, read=600)) as r:
            if r.status_code >= 400:
                r.read()
                fail(f"{r.status_code} from {url}: {error_text(r)}")
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                try:
                    chunk = json.loads(line[6:])
                except ValueError:
                    fail(f"\nnot an OpenAI stream event: {line[:200]}")
                if not isinstance(chunk, dict) or "error" in chunk:
                    fail(f"\nthe endpoint failed mid-answer: {chunk.get('error') if isinstance(chunk, dict) else chunk}")
                for choice in chunk.get("choices", []):
                    piece = (choice.get("delta") or {}).get("content") or ""
                    parts.append(piece)
                    typer.echo(piece, nl=False)
    except httpx.HTTPError as err:
        fail(f"cannot reach the base URL {url}: {err}")
    typer.echo()
    return "".join(parts)


def _base_url(api_url: str, reported: str, given: str | None) -> str:
    """Where the key goes. The server reports the Serve port as the cluster reaches it;
    seen from elsewhere that may be another machine: the key goes there only when it is
    on the API's own host, or when the user names it."""
    if given:
        return given.rstrip("/")
    if urlsplit(reported).hostname != urlsplit(api_url).hostname:
        fail(
            f"the server reports the base URL {reported}, not on the API's host ({api_url}): "
            "pass --base-url with the base URL you reach, to say where your key may go"
        )
    return reported.rstrip("/")
