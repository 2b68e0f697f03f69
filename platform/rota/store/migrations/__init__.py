"""Alembic migrations of Rota's store. Applied at start by ``Database.migrate``."""
