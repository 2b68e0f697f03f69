"""Persistence: SQLAlchemy tables and the session factory. Tasks, runs and events live here."""
