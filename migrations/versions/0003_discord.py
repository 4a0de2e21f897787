"""Discord: tenants, channels (with the paging cursor), messages, per-channel jobs, progress.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from migrations.columns import id_column as _id
from migrations.columns import timestamp as _ts

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _counter(name: str) -> sa.Column:
    return sa.Column(name, sa.BigInteger, nullable=False, server_default="0")


def _owner(name: str, table: str) -> sa.Column:
    """A required reference to ``table`` whose rows go with their owner."""
    return sa.Column(
        name, sa.BigInteger, sa.ForeignKey(f"{table}.id", ondelete="CASCADE"), nullable=False
    )


def _progress_columns() -> list[sa.Column]:
    """The brief's progress columns, shared by a channel job and a tenant run."""
    return [
        sa.Column("worker_id", sa.Text),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        _ts("started_at"),
        _ts("completed_at"),
        _counter("messages_processed"),
        sa.Column("messages_per_second", sa.Float),
        sa.Column("retry_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error_type", sa.Text),
        sa.Column("error_message", sa.Text),
        sa.Column("last_message_id", sa.BigInteger),
        _counter("api_calls"),
        sa.Column("rate_limited", sa.Integer, nullable=False, server_default="0"),
        _ts("waiting_until"),
        _ts("updated_at", nullable=False, now=True),
    ]


def upgrade() -> None:
    op.create_table(
        "tenants",
        _id(),
        sa.Column("discord_guild_id", sa.BigInteger, nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("tracked", sa.Boolean, nullable=False, server_default="true"),
        sa.Column("guild_json", JSONB),
        _ts("last_synced_at"),
        _ts("created_at", nullable=False, now=True),
        _ts("updated_at", nullable=False, now=True),
    )
    op.create_index("uq_tenants_discord_guild_id", "tenants", ["discord_guild_id"], unique=True)

    op.create_table(
        "channels",
        _id(),
        sa.Column("discord_channel_id", sa.BigInteger, nullable=False),
        _owner("tenant_id", "tenants"),
        sa.Column("name", sa.Text),
        sa.Column("type", sa.Integer, nullable=False),
        sa.Column("parent_id", sa.BigInteger),
        sa.Column("position", sa.Integer),
        sa.Column("last_message_id", sa.BigInteger),
        sa.Column("access", sa.Text, nullable=False, server_default="ok"),
        sa.Column("message_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("channel_json", JSONB, nullable=False),
        _ts("last_synced_at"),
        _ts("recheck_at"),
        _ts("created_at", nullable=False, now=True),
        _ts("updated_at", nullable=False, now=True),
    )
    op.create_index(
        "uq_channels_discord_channel_id", "channels", ["discord_channel_id"], unique=True
    )
    op.create_index("ix_channels_tenant_id", "channels", ["tenant_id"])

    op.create_table(
        "messages",
        _id(),
        sa.Column("discord_message_id", sa.BigInteger, nullable=False),
        _owner("channel_id", "channels"),
        sa.Column("author_id", sa.BigInteger),
        _ts("created_at", nullable=False),
        _ts("edited_at"),
        sa.Column("type", sa.Integer, nullable=False),
        sa.Column("reply_to_message_id", sa.BigInteger),
        sa.Column("reaction_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("attachment_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("message_json", JSONB, nullable=False),
    )
    op.create_index(
        "uq_messages_discord_message_id", "messages", ["discord_message_id"], unique=True
    )
    op.create_index("ix_messages_channel_created", "messages", ["channel_id", "created_at"])
    op.create_index("ix_messages_author_id", "messages", ["author_id"])

    op.create_table(
        "sync_progress",
        _id(),
        _owner("sync_run_id", "sync_runs"),
        _owner("tenant_id", "tenants"),
        sa.Column("workflow_id", sa.Text, nullable=False),
        sa.Column("mode", sa.Text, nullable=False),
        sa.Column("channels_total", sa.Integer, nullable=False, server_default="0"),
        sa.Column("channels_done", sa.Integer, nullable=False, server_default="0"),
        sa.Column("channels_failed", sa.Integer, nullable=False, server_default="0"),
        *_progress_columns(),
    )
    op.create_index("uq_sync_progress_run", "sync_progress", ["sync_run_id"], unique=True)
    op.create_index("ix_sync_progress_tenant", "sync_progress", ["tenant_id", "id"])

    op.create_table(
        "channel_sync_jobs",
        _id(),
        _owner("sync_run_id", "sync_runs"),
        _owner("channel_id", "channels"),
        sa.Column("mode", sa.Text, nullable=False),
        _counter("pages"),
        _counter("reactions"),
        _counter("attachments"),
        *_progress_columns(),
    )
    op.create_index(
        "uq_channel_sync_jobs_run_channel",
        "channel_sync_jobs",
        ["sync_run_id", "channel_id"],
        unique=True,
    )
    op.create_index("ix_channel_sync_jobs_channel", "channel_sync_jobs", ["channel_id"])


def downgrade() -> None:
    op.drop_table("channel_sync_jobs")
    op.drop_table("sync_progress")
    op.drop_table("messages")
    op.drop_table("channels")
    op.drop_table("tenants")
