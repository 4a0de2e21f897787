"""Battle.net foundation: guilds, characters, guild_members, ranks, and the shared sync tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from migrations.columns import id_column as _id
from migrations.columns import timestamp as _ts

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "guilds",
        _id(),
        sa.Column("region", sa.Text, nullable=False),
        sa.Column("bnet_guild_id", sa.BigInteger),
        sa.Column("realm", sa.Text, nullable=False),
        sa.Column("name_slug", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("realm_name", sa.Text),
        sa.Column("faction", sa.Text),
        sa.Column("member_count", sa.Integer),
        sa.Column("achievement_points", sa.Integer),
        sa.Column("tracked", sa.Boolean, nullable=False, server_default=sa.true()),
        _ts("not_found_at"),
        _ts("recheck_at"),
        _ts("last_synced_at"),
        sa.Column("guild_last_modified", sa.Text),
        sa.Column("roster_last_modified", sa.Text),
        sa.Column("guild_data_json", JSONB),
        sa.Column("roster_json", JSONB),
        _ts("created_at", nullable=False, now=True),
        _ts("updated_at", nullable=False, now=True),
    )
    op.create_index("uq_guilds_region_bnet_id", "guilds", ["region", "bnet_guild_id"], unique=True)
    op.create_index(
        "uq_guilds_region_realm_slug", "guilds", ["region", "realm", "name_slug"], unique=True
    )
    op.create_index("ix_guilds_last_synced_at", "guilds", ["last_synced_at"])

    op.create_table(
        "characters",
        _id(),
        sa.Column("region", sa.Text, nullable=False),
        sa.Column("bnet_character_id", sa.BigInteger),
        sa.Column("realm", sa.Text, nullable=False),
        sa.Column("name_slug", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("guild_id", sa.BigInteger, sa.ForeignKey("guilds.id", ondelete="SET NULL")),
        sa.Column("tracked", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("is_private", sa.Boolean, nullable=False, server_default=sa.false()),
        _ts("not_found_at"),
        _ts("recheck_at"),
        sa.Column("level", sa.Integer),
        sa.Column("character_class", sa.Text),
        sa.Column("race", sa.Text),
        sa.Column("faction", sa.Text),
        sa.Column("active_spec", sa.Text),
        sa.Column("average_item_level", sa.Integer),
        sa.Column("equipped_item_level", sa.Integer),
        sa.Column("achievement_points", sa.Integer),
        sa.Column("mythic_rating", sa.Float),
        _ts("last_login_at"),
        _ts("last_synced_at"),
        sa.Column("http_last_modified", JSONB, nullable=False, server_default="{}"),
        sa.Column("profile_json", JSONB),
        sa.Column("equipment_json", JSONB),
        sa.Column("mythic_profile_json", JSONB),
        sa.Column("professions_json", JSONB),
        _ts("created_at", nullable=False, now=True),
        _ts("updated_at", nullable=False, now=True),
    )
    op.create_index(
        "uq_characters_region_bnet_id", "characters", ["region", "bnet_character_id"], unique=True
    )
    op.create_index(
        "uq_characters_pending_name",
        "characters",
        ["region", "realm", "name_slug"],
        unique=True,
        postgresql_where=sa.text("bnet_character_id IS NULL"),
    )
    op.create_index("ix_characters_realm_name", "characters", ["region", "realm", "name_slug"])
    op.create_index("ix_characters_last_synced_at", "characters", ["last_synced_at"])
    op.create_index("ix_characters_guild_id", "characters", ["guild_id"])
    op.create_index(
        "ix_characters_is_private",
        "characters",
        ["is_private"],
        postgresql_where=sa.text("is_private"),
    )

    op.create_table(
        "guild_members",
        _id(),
        sa.Column(
            "guild_id",
            sa.BigInteger,
            sa.ForeignKey("guilds.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "character_id",
            sa.BigInteger,
            sa.ForeignKey("characters.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("character_name", sa.Text, nullable=False),
        sa.Column("character_class", sa.Text),
        sa.Column("level", sa.Integer),
        sa.Column("member_data_json", JSONB, nullable=False),
        _ts("first_seen_at", nullable=False, now=True),
        _ts("last_seen_at", nullable=False, now=True),
        _ts("left_at"),
    )
    op.create_index(
        "uq_guild_members_guild_character",
        "guild_members",
        ["guild_id", "character_id"],
        unique=True,
    )
    op.create_index("ix_guild_members_character_id", "guild_members", ["character_id"])

    op.create_table(
        "ranks",
        _id(),
        sa.Column(
            "guild_id",
            sa.BigInteger,
            sa.ForeignKey("guilds.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("rank_id", sa.Integer, nullable=False),
        sa.Column("rank_name", sa.Text, nullable=False),
        sa.Column("member_count", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("uq_ranks_guild_rank", "ranks", ["guild_id", "rank_id"], unique=True)

    op.create_table(
        "sync_runs",
        _id(),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("workflow_id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="running"),
        _ts("started_at", nullable=False, now=True),
        _ts("finished_at"),
        sa.Column("counts", JSONB, nullable=False, server_default="{}"),
        sa.Column("errors", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_sync_runs_provider_started", "sync_runs", ["provider", "started_at"])

    op.create_table(
        "sync_failures",
        _id(),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("entity_key", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
        sa.Column("last_error", sa.Text),
        _ts("first_failed_at", nullable=False, now=True),
        _ts("last_failed_at", nullable=False, now=True),
        _ts("next_retry_at"),
    )
    op.create_index(
        "uq_sync_failures_provider_entity",
        "sync_failures",
        ["provider", "entity_key"],
        unique=True,
    )
    op.create_index("ix_sync_failures_next_retry_at", "sync_failures", ["next_retry_at"])

    op.create_table(
        "sync_checkpoints",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        _ts("updated_at", nullable=False, now=True),
    )


def downgrade() -> None:
    for table in (
        "sync_checkpoints",
        "sync_failures",
        "sync_runs",
        "ranks",
        "guild_members",
        "characters",
        "guilds",
    ):
        op.drop_table(table)
