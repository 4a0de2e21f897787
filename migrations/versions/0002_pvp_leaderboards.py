"""PvP leaderboards: leaderboards, snapshot entries, items and the items of each entry.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from migrations.columns import id_column as _id
from migrations.columns import timestamp as _ts

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("characters", sa.Column("equipment_hash", sa.Text))

    op.create_table(
        "pvp_leaderboards",
        _id(),
        sa.Column("region", sa.Text, nullable=False),
        sa.Column("season_id", sa.Integer, nullable=False),
        sa.Column("bracket", sa.Text, nullable=False),
        sa.Column("bracket_type", sa.Text),
        sa.Column("last_modified", sa.Text),
        _ts("last_snapshot_at"),
        sa.Column("entry_count", sa.Integer, nullable=False, server_default="0"),
        _ts("last_synced_at"),
        sa.Column("leaderboard_json", JSONB),
        _ts("created_at", nullable=False, now=True),
    )
    op.create_index(
        "uq_pvp_leaderboards_region_season_bracket",
        "pvp_leaderboards",
        ["region", "season_id", "bracket"],
        unique=True,
    )

    op.create_table(
        "pvp_leaderboard_entries",
        _id(),
        sa.Column(
            "leaderboard_id",
            sa.BigInteger,
            sa.ForeignKey("pvp_leaderboards.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "character_id",
            sa.BigInteger,
            sa.ForeignKey("characters.id", ondelete="CASCADE"),
            nullable=False,
        ),
        _ts("snapshot_at", nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("rating", sa.Integer, nullable=False),
        sa.Column("played", sa.Integer),
        sa.Column("won", sa.Integer),
        sa.Column("lost", sa.Integer),
        sa.Column("faction", sa.Text),
        sa.Column("tier_id", sa.Integer),
        sa.Column("entry_json", JSONB, nullable=False),
        _ts("equipment_processed_at"),
    )
    op.create_index(
        "uq_pvp_entries_board_snapshot_character",
        "pvp_leaderboard_entries",
        ["leaderboard_id", "snapshot_at", "character_id"],
        unique=True,
    )
    op.create_index(
        "ix_pvp_entries_character_snapshot",
        "pvp_leaderboard_entries",
        ["character_id", "snapshot_at"],
    )
    op.create_index(
        "ix_pvp_entries_character_processed",
        "pvp_leaderboard_entries",
        ["character_id", "equipment_processed_at"],
        postgresql_where=sa.text("equipment_processed_at IS NOT NULL"),
    )
    op.create_index("ix_pvp_entries_snapshot_at", "pvp_leaderboard_entries", ["snapshot_at"])

    op.create_table(
        "items",
        _id(),
        sa.Column("bnet_item_id", sa.BigInteger, nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("quality", sa.Text),
        sa.Column("slot", sa.Text),
        sa.Column("inventory_type", sa.Text),
        sa.Column("item_class", sa.Text),
        sa.Column("item_json", JSONB, nullable=False),
        _ts("updated_at", nullable=False, now=True),
    )
    op.create_index("uq_items_bnet_item_id", "items", ["bnet_item_id"], unique=True)

    op.create_table(
        "pvp_leaderboard_entry_items",
        _id(),
        sa.Column(
            "entry_id",
            sa.BigInteger,
            sa.ForeignKey("pvp_leaderboard_entries.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("item_id", sa.BigInteger, sa.ForeignKey("items.id"), nullable=False),
        sa.Column("slot", sa.Text, nullable=False),
        sa.Column("item_level", sa.Integer),
        sa.Column("item_json", JSONB, nullable=False),
    )
    op.create_index(
        "uq_pvp_entry_items_entry_slot",
        "pvp_leaderboard_entry_items",
        ["entry_id", "slot"],
        unique=True,
    )
    op.create_index("ix_pvp_entry_items_item", "pvp_leaderboard_entry_items", ["item_id"])


def downgrade() -> None:
    op.drop_table("pvp_leaderboard_entry_items")
    op.drop_table("items")
    op.drop_table("pvp_leaderboard_entries")
    op.drop_table("pvp_leaderboards")
    op.drop_column("characters", "equipment_hash")
