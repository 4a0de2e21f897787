"""One vocabulary of run states: Discord's finished runs said "done" where every other provider's
said "completed" (storage.sync.RUN_STATES); rewrite the rows of before.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE sync_runs SET status = 'completed' WHERE status = 'done'")
    op.execute("UPDATE sync_progress SET status = 'completed' WHERE status = 'done'")


def downgrade() -> None:
    op.execute(
        "UPDATE sync_runs SET status = 'done' WHERE status = 'completed' AND provider = 'discord'"
    )
    op.execute("UPDATE sync_progress SET status = 'done' WHERE status = 'completed'")
