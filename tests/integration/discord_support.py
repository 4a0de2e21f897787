"""Helpers shared by the Discord integration tests: sandbox tenants, running a sync, truth."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select
from temporalio.client import Client

from activities.discord_types import TenantSyncInput, TenantSyncResult
from sandbox.discord import DiscordSandboxConfig, create_discord_app
from sandbox.server import SandboxServer
from settings import Settings
from storage import discord as db
from storage.db import create_engine
from storage.models import channels, messages
from tests.sandbox_helpers import admin
from worker import build_worker
from workflows.discord import DiscordTenantSync

TOKEN = "sandbox-bot-token"


@contextmanager
def discord_server(**config: Any) -> Iterator[SandboxServer]:
    with SandboxServer(create_discord_app(DiscordSandboxConfig(**config))) as server:
        yield server


def discord_settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "DISCORD_BOT_TOKEN": TOKEN,
        "DISCORD_API_BASE_URL": f"{url}/api/v10",
        "RATE_LIMIT_MAX_WAIT_SECONDS": 30.0,
    }
    values.update(overrides)
    return Settings(**values)


def create_tenant(url: str, **spec: Any) -> dict[str, Any]:
    layout: dict[str, Any] = admin(url, "tenants", spec)
    return layout


def truth_ids(url: str, channel_id: int | str) -> list[int]:
    return [int(i) for i in admin(url, f"channels/{channel_id}/ids")["ids"]]


async def track(database_url: str, guild_id: int) -> None:
    engine = create_engine(database_url, pool_size=1)
    async with engine.begin() as conn:
        await db.track_tenant(conn, guild_id)
    await engine.dispose()


async def run_tenant_sync(
    client: Client,
    settings: Settings,
    database_url: str,
    task_queue: str,
    guild_id: int,
    full: bool = False,
    workflow_id: str | None = None,
) -> TenantSyncResult:
    async with build_worker(client, settings, database_url, task_queue) as parts:
        async with parts.worker:
            return await client.execute_workflow(
                DiscordTenantSync.run,
                TenantSyncInput(discord_guild_id=guild_id, full=full),
                id=workflow_id or f"discord-sync/{guild_id}/{task_queue}",
                task_queue=task_queue,
            )


async def stored_ids(database_url: str) -> dict[int, list[int]]:
    """Stored message ids per Discord channel id, ascending."""
    engine = create_engine(database_url, pool_size=1)
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(channels.c.discord_channel_id, messages.c.discord_message_id)
            .join(channels, channels.c.id == messages.c.channel_id)
            .order_by(messages.c.discord_message_id)
        )
        out: dict[int, list[int]] = {}
        for channel, message in rows:
            out.setdefault(int(channel), []).append(int(message))
    await engine.dispose()
    return out


async def channel_rows(database_url: str) -> dict[int, dict[str, Any]]:
    engine = create_engine(database_url, pool_size=1)
    async with engine.connect() as conn:
        rows = await conn.execute(select(channels))
        out = {int(r.discord_channel_id): dict(r._mapping) for r in rows}
    await engine.dispose()
    return out
