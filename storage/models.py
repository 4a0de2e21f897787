"""Table definitions (SQLAlchemy Core). The schema itself is created only by alembic migrations.

Each table has a surrogate `id` and a unique natural key that every upsert targets (DESIGN §7).
Rows registered by name before their upstream id is known (`track guild …`) keep a NULL upstream
id; a partial unique index on the name stops them being registered twice.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()


def _ts(name: str, **kw: object) -> Column[object]:
    return Column(name, DateTime(timezone=True), **kw)  # type: ignore[arg-type]


guilds = Table(
    "guilds",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("region", Text, nullable=False),
    Column("bnet_guild_id", BigInteger),
    Column("realm", Text, nullable=False),
    Column("name_slug", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("realm_name", Text),
    Column("faction", Text),
    Column("member_count", Integer),
    Column("achievement_points", Integer),
    Column("tracked", Boolean, nullable=False, server_default="true"),
    Column("not_found_at", DateTime(timezone=True)),
    Column("recheck_at", DateTime(timezone=True)),
    _ts("last_synced_at"),
    Column("guild_last_modified", Text),
    Column("roster_last_modified", Text),
    Column("guild_data_json", JSONB),
    Column("roster_json", JSONB),
    _ts("created_at", nullable=False, server_default=func.now()),
    _ts("updated_at", nullable=False, server_default=func.now()),
)

characters = Table(
    "characters",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("region", Text, nullable=False),
    Column("bnet_character_id", BigInteger),
    Column("realm", Text, nullable=False),
    Column("name_slug", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("guild_id", BigInteger, ForeignKey("guilds.id", ondelete="SET NULL")),
    Column("tracked", Boolean, nullable=False, server_default="false"),
    Column("is_private", Boolean, nullable=False, server_default="false"),
    Column("not_found_at", DateTime(timezone=True)),
    Column("recheck_at", DateTime(timezone=True)),
    Column("level", Integer),
    Column("character_class", Text),
    Column("race", Text),
    Column("faction", Text),
    Column("active_spec", Text),
    Column("average_item_level", Integer),
    Column("equipped_item_level", Integer),
    Column("achievement_points", Integer),
    Column("mythic_rating", Float),
    _ts("last_login_at"),
    _ts("last_synced_at"),
    Column("http_last_modified", JSONB, nullable=False, server_default="{}"),
    Column("profile_json", JSONB),
    Column("equipment_json", JSONB),
    Column("mythic_profile_json", JSONB),
    Column("professions_json", JSONB),
    _ts("created_at", nullable=False, server_default=func.now()),
    _ts("updated_at", nullable=False, server_default=func.now()),
)

guild_members = Table(
    "guild_members",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("guild_id", BigInteger, ForeignKey("guilds.id", ondelete="CASCADE"), nullable=False),
    Column(
        "character_id", BigInteger, ForeignKey("characters.id", ondelete="CASCADE"), nullable=False
    ),
    Column("rank", Integer, nullable=False),
    Column("character_name", Text, nullable=False),
    Column("character_class", Text),
    Column("level", Integer),
    Column("member_data_json", JSONB, nullable=False),
    _ts("first_seen_at", nullable=False, server_default=func.now()),
    _ts("last_seen_at", nullable=False, server_default=func.now()),
    _ts("left_at"),
)

ranks = Table(
    "ranks",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("guild_id", BigInteger, ForeignKey("guilds.id", ondelete="CASCADE"), nullable=False),
    Column("rank_id", Integer, nullable=False),
    Column("rank_name", Text, nullable=False),
    Column("member_count", Integer, nullable=False, server_default="0"),
)

sync_runs = Table(
    "sync_runs",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("provider", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("workflow_id", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="running"),
    _ts("started_at", nullable=False, server_default=func.now()),
    _ts("finished_at"),
    Column("counts", JSONB, nullable=False, server_default="{}"),
    Column("errors", Integer, nullable=False, server_default="0"),
    Column("error", Text),
)

sync_failures = Table(
    "sync_failures",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("provider", Text, nullable=False),
    Column("entity_key", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="1"),
    Column("last_error", Text),
    _ts("first_failed_at", nullable=False, server_default=func.now()),
    _ts("last_failed_at", nullable=False, server_default=func.now()),
    _ts("next_retry_at"),
)

sync_checkpoints = Table(
    "sync_checkpoints",
    metadata,
    Column("key", Text, primary_key=True),
    Column("position", BigInteger, nullable=False),
    _ts("updated_at", nullable=False, server_default=func.now()),
)

# Unique natural keys and the indexes a site filters on. The migrations create exactly these.
Index("uq_guilds_region_bnet_id", guilds.c.region, guilds.c.bnet_guild_id, unique=True)
Index(
    "uq_guilds_region_realm_slug", guilds.c.region, guilds.c.realm, guilds.c.name_slug, unique=True
)
Index("ix_guilds_last_synced_at", guilds.c.last_synced_at)
Index(
    "uq_characters_region_bnet_id",
    characters.c.region,
    characters.c.bnet_character_id,
    unique=True,
)
Index(
    "uq_characters_pending_name",
    characters.c.region,
    characters.c.realm,
    characters.c.name_slug,
    unique=True,
    postgresql_where=characters.c.bnet_character_id.is_(None),
)
Index("ix_characters_realm_name", characters.c.region, characters.c.realm, characters.c.name_slug)
Index("ix_characters_last_synced_at", characters.c.last_synced_at)
Index("ix_characters_guild_id", characters.c.guild_id)
Index(
    "ix_characters_is_private",
    characters.c.is_private,
    postgresql_where=characters.c.is_private,
)
Index(
    "uq_guild_members_guild_character",
    guild_members.c.guild_id,
    guild_members.c.character_id,
    unique=True,
)
Index("ix_guild_members_character_id", guild_members.c.character_id)
Index("uq_ranks_guild_rank", ranks.c.guild_id, ranks.c.rank_id, unique=True)
Index("ix_sync_runs_provider_started", sync_runs.c.provider, sync_runs.c.started_at)
Index(
    "uq_sync_failures_provider_entity",
    sync_failures.c.provider,
    sync_failures.c.entity_key,
    unique=True,
)
Index("ix_sync_failures_next_retry_at", sync_failures.c.next_retry_at)

# --- PvP (migration 0002) -----------------------------------------------------------------

characters.append_column(Column("equipment_hash", Text))

pvp_leaderboards = Table(
    "pvp_leaderboards",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("region", Text, nullable=False),
    Column("season_id", Integer, nullable=False),
    Column("bracket", Text, nullable=False),
    Column("bracket_type", Text),
    Column("last_modified", Text),
    _ts("last_snapshot_at"),
    Column("entry_count", Integer, nullable=False, server_default="0"),
    _ts("last_synced_at"),
    Column("leaderboard_json", JSONB),
    _ts("created_at", nullable=False, server_default=func.now()),
)

pvp_leaderboard_entries = Table(
    "pvp_leaderboard_entries",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("leaderboard_id", BigInteger, ForeignKey("pvp_leaderboards.id"), nullable=False),
    Column("character_id", BigInteger, ForeignKey("characters.id"), nullable=False),
    _ts("snapshot_at", nullable=False),
    Column("rank", Integer, nullable=False),
    Column("rating", Integer, nullable=False),
    Column("played", Integer),
    Column("won", Integer),
    Column("lost", Integer),
    Column("faction", Text),
    Column("tier_id", Integer),
    Column("entry_json", JSONB, nullable=False),
    _ts("equipment_processed_at"),
)

items = Table(
    "items",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("bnet_item_id", BigInteger, nullable=False),
    Column("name", Text),
    Column("quality", Text),
    Column("slot", Text),
    Column("inventory_type", Text),
    Column("item_class", Text),
    Column("item_json", JSONB, nullable=False),
    _ts("updated_at", nullable=False, server_default=func.now()),
)

pvp_leaderboard_entry_items = Table(
    "pvp_leaderboard_entry_items",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("entry_id", BigInteger, ForeignKey("pvp_leaderboard_entries.id"), nullable=False),
    Column("item_id", BigInteger, ForeignKey("items.id"), nullable=False),
    Column("slot", Text, nullable=False),
    Column("item_level", Integer),
    Column("item_json", JSONB, nullable=False),
)

# --- Discord (migration 0003) -------------------------------------------------------------

tenants = Table(
    "tenants",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("discord_guild_id", BigInteger, nullable=False),
    Column("name", Text),
    Column("tracked", Boolean, nullable=False, server_default="true"),
    Column("guild_json", JSONB),
    _ts("last_synced_at"),
    _ts("created_at", nullable=False, server_default=func.now()),
    _ts("updated_at", nullable=False, server_default=func.now()),
)

channels = Table(
    "channels",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("discord_channel_id", BigInteger, nullable=False),
    Column("tenant_id", BigInteger, ForeignKey("tenants.id"), nullable=False),
    Column("name", Text),
    Column("type", Integer, nullable=False),
    Column("parent_id", BigInteger),
    Column("position", Integer),
    Column("last_message_id", BigInteger),  # the sync cursor: newest message id stored
    Column("access", Text, nullable=False, server_default="ok"),
    Column("message_count", BigInteger, nullable=False, server_default="0"),
    Column("channel_json", JSONB, nullable=False),
    _ts("last_synced_at"),
    _ts("recheck_at"),
    _ts("created_at", nullable=False, server_default=func.now()),
    _ts("updated_at", nullable=False, server_default=func.now()),
)

messages = Table(
    "messages",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("discord_message_id", BigInteger, nullable=False),
    Column("channel_id", BigInteger, ForeignKey("channels.id"), nullable=False),
    Column("author_id", BigInteger),
    _ts("created_at", nullable=False),
    _ts("edited_at"),
    Column("type", Integer, nullable=False),
    Column("reply_to_message_id", BigInteger),
    Column("reaction_count", Integer, nullable=False, server_default="0"),
    Column("attachment_count", Integer, nullable=False, server_default="0"),
    Column("message_json", JSONB, nullable=False),
)


def _progress_columns() -> list[Column[object]]:
    """The brief's progress columns, shared by a channel job and a tenant run."""
    return [
        Column("worker_id", Text),
        Column("status", Text, nullable=False, server_default="pending"),
        _ts("started_at"),
        _ts("completed_at"),
        Column("messages_processed", BigInteger, nullable=False, server_default="0"),
        Column("messages_per_second", Float),
        Column("retry_count", Integer, nullable=False, server_default="0"),
        Column("error_type", Text),
        Column("error_message", Text),
        Column("last_message_id", BigInteger),
        Column("api_calls", BigInteger, nullable=False, server_default="0"),
        Column("rate_limited", Integer, nullable=False, server_default="0"),
        _ts("waiting_until"),
        _ts("updated_at", nullable=False, server_default=func.now()),
    ]


sync_progress = Table(
    "sync_progress",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("sync_run_id", BigInteger, ForeignKey("sync_runs.id"), nullable=False),
    Column("tenant_id", BigInteger, ForeignKey("tenants.id"), nullable=False),
    Column("workflow_id", Text, nullable=False),
    Column("mode", Text, nullable=False),
    Column("channels_total", Integer, nullable=False, server_default="0"),
    Column("channels_done", Integer, nullable=False, server_default="0"),
    Column("channels_failed", Integer, nullable=False, server_default="0"),
    *_progress_columns(),
)

channel_sync_jobs = Table(
    "channel_sync_jobs",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("sync_run_id", BigInteger, ForeignKey("sync_runs.id"), nullable=False),
    Column("channel_id", BigInteger, ForeignKey("channels.id"), nullable=False),
    Column("mode", Text, nullable=False),
    Column("pages", BigInteger, nullable=False, server_default="0"),
    Column("reactions", BigInteger, nullable=False, server_default="0"),
    Column("attachments", BigInteger, nullable=False, server_default="0"),
    *_progress_columns(),
)

Index("uq_tenants_discord_guild_id", tenants.c.discord_guild_id, unique=True)
Index("uq_channels_discord_channel_id", channels.c.discord_channel_id, unique=True)
Index("ix_channels_tenant_id", channels.c.tenant_id)
Index("uq_messages_discord_message_id", messages.c.discord_message_id, unique=True)
Index("ix_messages_channel_created", messages.c.channel_id, messages.c.created_at)
Index("ix_messages_author_id", messages.c.author_id)
Index("uq_sync_progress_run", sync_progress.c.sync_run_id, unique=True)
Index("ix_sync_progress_tenant", sync_progress.c.tenant_id, sync_progress.c.id)
Index(
    "uq_channel_sync_jobs_run_channel",
    channel_sync_jobs.c.sync_run_id,
    channel_sync_jobs.c.channel_id,
    unique=True,
)
Index("ix_channel_sync_jobs_channel", channel_sync_jobs.c.channel_id)
