"""What the data migrations share: tables rebuilt with their ids and id sequences kept.

SQLite cannot alter constraints in place, so a table whose shape changes is read,
dropped, created anew and written back.
"""

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from alembic import op


def rows(name: str) -> list[dict[str, Any]]:
    """Every row of ``name`` as it is now (columns reflected from the database)."""
    table = sa.Table(name, sa.MetaData(), autoload_with=op.get_bind())
    return [dict(r._mapping) for r in op.get_bind().execute(sa.select(table).order_by(table.c.id))]


def insert(name: str, values: list[dict[str, Any]]) -> None:
    """Write rows back; a None in a JSON column is SQL NULL, as the store writes it."""
    if not values:
        return
    table = sa.Table(name, sa.MetaData(), autoload_with=op.get_bind())
    for column in table.columns:
        if isinstance(column.type, sa.JSON):
            column.type = sa.JSON(none_as_null=True)
    op.bulk_insert(table, [{k: aware(v) for k, v in r.items()} for r in values])


def aware(v: Any) -> Any:
    """SQLite hands back naive datetimes; the store's are UTC."""
    return v.replace(tzinfo=timezone.utc) if isinstance(v, datetime) and v.tzinfo is None else v


def last_id(name: str) -> int:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        row = bind.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = :t"), {"t": name}).first()
    else:
        row = bind.execute(sa.text(f"SELECT last_value FROM {name}_id_seq")).first()
    return int(row[0]) if row else 0


def set_last_id(name: str, value: int) -> None:
    """Ids are never reused after a delete: the sequence goes on from where it was."""
    bind = op.get_bind()
    if value <= 0:
        return
    if bind.dialect.name == "sqlite":
        bind.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = :t"), {"t": name})
        bind.execute(sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :v)"), {"t": name, "v": value})
    else:
        bind.execute(sa.text(f"SELECT setval('{name}_id_seq', :v)"), {"v": value})


def event(project_id: int, kind: str, message: str, at: Any, **subject: Any) -> dict[str, Any]:
    return {
        "project_id": project_id,
        "kind": kind,
        "message": message,
        "data": subject.pop("data", {}),
        "at": aware(at),
        **subject,
    }
