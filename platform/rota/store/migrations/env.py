"""Alembic environment: runs on the connection ``Database.migrate`` passes in."""

from alembic import context

from rota.store import async_tables, leader_tables, tables

assert async_tables.AsyncRequestRow.metadata is leader_tables.LeaseRow.metadata is tables.Base.metadata  # one metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=tables.Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
