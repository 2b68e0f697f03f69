"""How the CLI prints an answer: ``-o table`` (for people), ``json`` or ``yaml`` (for
scripts: exactly the API's answer)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any

import typer
import yaml


class Output(str, Enum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


def option() -> Any:
    return typer.Option(Output.TABLE, "-o", "--output", help="table, json or yaml (the API's answer as it is)")


Rows = Callable[[Any], Sequence[Sequence[str]]]


def show(data: Any, fmt: Output, rows: Rows | None = None) -> None:
    """Print ``data`` as asked; ``rows`` makes the table (default: one FIELD/VALUE row per key)."""
    if fmt is Output.JSON:
        typer.echo(json.dumps(data, indent=2, default=str))
    elif fmt is Output.YAML:
        typer.echo(yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False).rstrip())
    else:
        table((rows or fields)(data))


def fields(data: dict[str, Any]) -> list[tuple[str, str]]:
    """One object as FIELD/VALUE rows; nested values in compact JSON."""
    out = [("FIELD", "VALUE")]
    for k, v in data.items():
        out.append((k, "-" if v is None else v if isinstance(v, str) else json.dumps(v, default=str)))
    return out


def table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
