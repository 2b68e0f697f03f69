"""Endpoints remember the settings Ray Serve was last seen running (``taken_mark``), so a
client can tell a status that describes its latest change from one left by older settings.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("endpoints", sa.Column("taken_mark", sa.String(96), nullable=True))


def downgrade() -> None:
    op.drop_column("endpoints", "taken_mark")
