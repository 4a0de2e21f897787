"""Helpers shared by the Battle.net integration tests."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from temporalio.client import Client

from activities.types import BattleNetSyncInput, SyncCounts
from settings import Settings
from storage import battlenet as db
from storage.db import create_engine
from storage.models import characters, guild_members, guilds, sync_failures
from tests.sandbox_helpers import admin
from worker import build_worker
from workflows.battlenet import BattleNetSync


async def track_sandbox_guilds(
    database_url: str, sandbox_url: str, region: str = "eu"
) -> list[Any]:
    truth = admin(sandbox_url, f"truth/guilds?region={region}")
    engine = create_engine(database_url, pool_size=1)
    async with engine.begin() as conn:
        for g in truth:
            await db.track_guild(conn, region, g["realm_slug"], g["name"])
    await engine.dispose()
    return truth


async def run_sync(
    client: Client, settings: Settings, database_url: str, task_queue: str, **fields: Any
) -> SyncCounts:
    inp = BattleNetSyncInput(region=fields.pop("region", "eu"), **fields)
    async with build_worker(client, settings, database_url, task_queue) as parts:
        async with parts.worker:
            return await client.execute_workflow(
                BattleNetSync.run,
                inp,
                id=f"battlenet-sync/{inp.region}/test-{uuid.uuid4().hex[:8]}",
                task_queue=task_queue,
            )


async def fetch_all(database_url: str) -> dict[str, list[dict[str, Any]]]:
    engine = create_engine(database_url, pool_size=1)
    out: dict[str, list[dict[str, Any]]] = {}
    async with engine.connect() as conn:
        for table in (guilds, characters, guild_members, sync_failures):
            rows = await conn.execute(select(table))
            out[table.name] = [dict(r._mapping) for r in rows]
    await engine.dispose()
    return out


def assert_matches_truth(
    rows: dict[str, list[dict[str, Any]]], sandbox_url: str, region: str
) -> None:
    """Every stored row and JSONB document equals what the sandbox serves."""
    truth_guilds = admin(sandbox_url, f"truth/guilds?region={region}")
    by_slug = {(g["realm"], g["name_slug"]): g for g in rows["guilds"]}
    for tg in truth_guilds:
        stored = by_slug[(tg["realm_slug"], tg["name_slug"])]
        truth = admin(sandbox_url, f"truth/guild/{region}/{tg['realm_slug']}/{tg['name_slug']}")
        assert stored["bnet_guild_id"] == tg["id"]
        assert stored["guild_data_json"] == truth["guild"]
        assert stored["roster_json"] == truth["roster"]
        members = [m for m in rows["guild_members"] if m["guild_id"] == stored["id"]]
        assert len(members) == len(truth["roster"]["members"])
        assert all(m["left_at"] is None for m in members)

    chars = {(c["region"], c["bnet_character_id"]): c for c in rows["characters"]}
    failures = {f["entity_key"] for f in rows["sync_failures"]}
    truth_chars = [
        c for c in admin(sandbox_url, f"truth/characters?region={region}") if c["guild_id"]
    ]
    assert len(chars) == len(truth_chars)
    for tc in truth_chars:
        stored = chars[(region, tc["id"])]
        truth = admin(sandbox_url, f"truth/character/{region}/{tc['realm_slug']}/{tc['name_slug']}")
        assert stored["last_synced_at"] is not None
        if tc["hidden"]:
            assert stored["is_private"] and stored["not_found_at"] is not None
            assert stored["recheck_at"] is not None
            assert f"character/{region}/{tc['realm_slug']}/{stored['name_slug']}" in failures
            assert stored["profile_json"] is None
            continue
        assert stored["name"] == truth["profile"]["name"]
        assert stored["profile_json"] == truth["profile"], _diff(
            stored["profile_json"], truth["profile"]
        )
        assert stored["equipment_json"] == truth["equipment"]
        assert stored["mythic_profile_json"] == truth["mythic_keystone_profile"], _diff(
            stored["mythic_profile_json"], truth["mythic_keystone_profile"]
        )
        assert stored["professions_json"] == truth["professions"]
        assert stored["level"] == truth["profile"]["level"]
        assert not stored["is_private"]


def _diff(a: Any, b: Any) -> str:
    if not isinstance(a, dict) or not isinstance(b, dict):
        return f"{a!r:.200} != {b!r:.200}"
    keys = sorted(set(a) | set(b))
    return "; ".join(
        f"{k}: {a.get(k)!r:.120} != {b.get(k)!r:.120}" for k in keys if a.get(k) != b.get(k)
    )
