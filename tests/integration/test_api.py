"""The read API (api/, issue 14) over a mirror filled by real sandbox syncs of every provider.

One module fixture syncs, on the real dev server and Postgres: a Battle.net guild (with a
Unicode realm), a PvP ladder, a Discord tenant and a ZwiftRacing club with an urgent and a
finished event. The API then runs as a real uvicorn server on 127.0.0.1 and is read over HTTP:
every endpoint against the stored rows and the sandboxes' truth, pagination, 404/422 bodies,
freshness fields, Unicode names, no upstream call while it serves (every sandbox's counters stay
flat), and the refresh hook answering 202 in under 100 ms while the sync it queued then runs.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import unicodedata
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import text
from temporalio.client import Client

from activities.battlenet_build import pvp_queues
from activities.types import PvpSyncInput
from activities.zwift_types import ZwiftSyncInput
from api.app import create_app
from cli import scheduler as scheduler_cli
from sandbox.admin_client import admin as zwift_admin
from sandbox.server import SandboxProcess
from sandbox.zwift import API_PREFIX, ZwiftSandboxConfig
from sandbox.zwift_world import ZwiftWorldConfig
from storage import zwift as zdb
from storage.db import create_engine
from tests.conftest import fresh_database
from tests.integration.api_support import free_port as _free_port
from tests.integration.api_support import serving
from tests.integration.battlenet_support import run_sync, track_sandbox_guilds
from tests.integration.discord_support import (
    TOKEN,
    create_tenant,
    discord_server,
    discord_settings,
    run_tenant_sync,
    track,
)
from tests.sandbox_helpers import admin, battlenet_sandbox, sandbox_settings
from worker import build_worker
from workflows.pvp import PvpSync
from workflows.zwift import ZwiftSync

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
ZWIFT_SCALE = 60.0  # a 1-per-minute window is a second (the sandbox's clock runs 60x too)


class Mirror:
    """What the fixture stored, and the sandboxes to read truth and counters from."""

    def __init__(self) -> None:
        self.bnet = ""
        self.discord = ""
        self.zwift = ""
        self.guild: dict[str, Any] = {}
        self.season = 0
        self.tenant = 0
        self.channel = 0
        self.club = 0
        self.events: dict[str, int] = {}
        self.settings: Any = None

    async def counters(self) -> tuple[int, int, int]:
        zstats = await zwift_admin(self.zwift, "stats")
        return (
            admin(self.bnet, "stats")["requests"],
            admin(self.discord, "stats")["requests"],
            int(zstats["requests"]),
        )


@pytest.fixture(scope="module")
def database_url(pg_server) -> Iterator[str]:
    """One database for the module: every test reads the mirror the fixture filled."""
    with fresh_database(pg_server) as url:
        yield url


@pytest.fixture(scope="module")
def task_queue() -> str:
    return f"tq-api-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(temporal_env) -> Client:
    return temporal_env.client


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def mirror(client, database_url, task_queue) -> AsyncIterator[Mirror]:
    m = Mirror()
    engine = create_engine(database_url, pool_size=1)
    world = ZwiftWorldConfig(seed=5, club_sizes=(25,), clubless=0, past_events=1,
                             urgent_events=1, near_events=0, far_events=0,
                             signups_min=5, signups_max=12)  # fmt: skip
    zconfig = ZwiftSandboxConfig(world=world, time_scale=ZWIFT_SCALE)
    with (
        battlenet_sandbox(seed=8, guilds_per_region=1, roster_min=8, roster_max=8,
                          pvp_entries=30) as bnet,
        discord_server() as discord,
        SandboxProcess(zconfig) as zwift,
    ):  # fmt: skip
        m.bnet, m.discord, m.zwift = bnet.url, discord.url, zwift.url
        # Battle.net and PvP
        truth = await track_sandbox_guilds(database_url, bnet.url)
        m.guild = truth[0]
        settings = sandbox_settings(
            bnet.url,
            DISCORD_BOT_TOKEN=TOKEN,
            DISCORD_API_BASE_URL=f"{discord.url}/api/v10",
            ZWIFT_API_BASE_URL=zwift.url + API_PREFIX,
            ZWIFT_API_KEY=zconfig.api_key,
            ZWIFT_TIME_SCALE=ZWIFT_SCALE,
            TEMPORAL_TASK_QUEUE=task_queue,
        )
        m.settings = settings
        await run_sync(client, settings, database_url, task_queue, batch_size=10)
        sync_queue, processing_queue = pvp_queues(settings, task_queue)
        # Discord
        layout = create_tenant(discord.url, name="API", text_channels=[130, 20])
        m.tenant = int(layout["guild_id"])
        m.channel = int(next(c["id"] for c in layout["channels"] if c["messages"] == 130))
        await track(database_url, m.tenant)
        await run_tenant_sync(
            client, discord_settings(discord.url), database_url, task_queue, m.tenant
        )
        # ZwiftRacing
        ztruth = await zwift_admin(zwift.url, "truth")
        m.club = int(ztruth["clubs"][0]["club_id"])
        now = (await zwift_admin(zwift.url, "clock"))["now"]
        async with engine.begin() as conn:
            await zdb.track_club(conn, m.club)
            for event in ztruth["events"]:
                await zdb.track_event(conn, int(event["event_id"]), m.club)
                done = event["finishes_at"] <= now
                m.events["past" if done else "urgent"] = int(event["event_id"])
        async with build_worker(client, settings, database_url, task_queue) as parts:
            async with parts.worker:
                pvp = await client.execute_workflow(
                    PvpSync.run,
                    PvpSyncInput(region="eu", brackets=["2v2"], equipment_batch_size=40,
                                 sync_queue=sync_queue, processing_queue=processing_queue),
                    id=f"pvp-sync/eu/api-{uuid.uuid4().hex[:6]}", task_queue=task_queue,
                )  # fmt: skip
                m.season = pvp.season
                for kind in ("riders", "near", "results"):  # near: events never read
                    await client.execute_workflow(
                        ZwiftSync.run,
                        ZwiftSyncInput(club_id=m.club, kind=kind),
                        id=f"zwift-sync/{m.club}/{kind}/api-{uuid.uuid4().hex[:6]}",
                        task_queue=task_queue,
                    )
        await engine.dispose()
        yield m


@pytest_asyncio.fixture(loop_scope="session")
async def api(mirror, client, database_url) -> AsyncIterator[httpx.AsyncClient]:
    async def temporal():
        return client

    app = create_app(mirror.settings, database_url, temporal)
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        yield http


async def test_every_read_endpoint_serves_the_mirror_and_never_calls_upstream(
    mirror, api, database_url
):
    before = await mirror.counters()
    assert (await api.get("/healthz")).json() == {"status": "ok", "database": "reachable"}
    spec = (await api.get("/openapi.json")).json()
    assert "/v1/wow/{region}/characters/{realm}/{name}" in spec["paths"]

    # a guild with a Unicode name written as a user would (upper case, spaces, not slugged)
    g = mirror.guild
    assert g["name"] == "Árvores Antigas", g  # the sandbox's seed 8
    realm_typed = g["realm_slug"].upper()
    guild = (await api.get(f"/v1/wow/eu/guilds/{realm_typed}/{g['name'].upper()}")).json()
    assert guild["name"] == g["name"] and guild["realm"] == g["realm_slug"]
    decomposed = unicodedata.normalize("NFD", g["name"].lower())  # "A" + a combining accent
    assert decomposed != g["name"].lower()
    again = await api.get(f"/v1/wow/eu/guilds/{g['realm_slug']}/{decomposed}")
    assert again.json()["name"] == g["name"]
    assert len(guild["members"]) == 8 and guild["ranks"]
    assert guild["stale"] is False and guild["last_synced_at"].endswith("Z")
    member = next(m for m in guild["members"] if m["level"])
    # a character (name case-insensitive), with and without the raw documents
    path = f"/v1/wow/eu/characters/{member['realm']}/{member['name'].upper()}"
    answer = await api.get(path)
    if answer.status_code == 200:
        char = answer.json()
        assert char["name"] == member["name"] and char["level"] == member["level"]
        assert {"class", "race", "faction", "equipped_item_level", "mythic_rating",
                "professions", "equipped_items", "stale"} <= set(char)  # fmt: skip
        assert "raw" not in char
        raw = (await api.get(path, params={"raw": "true"})).json()["raw"]
        assert raw["profile"]["name"] == member["name"]
    # the ladder: rank order, cursor pagination over the whole snapshot
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        page = (await api.get(f"/v1/wow/eu/pvp/{mirror.season}/2v2", params=params)).json()
        seen += [e["rank"] for e in page["entries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    truth = admin(mirror.bnet, f"truth/pvp/eu/{mirror.season}/2v2")["leaderboard"]["entries"]
    assert seen == sorted(seen) and len(seen) == len(truth) == 30
    top = truth[0]["character"]
    history = (
        await api.get(f"/v1/wow/eu/characters/{top['realm']['slug']}/{top['name']}/pvp")
    ).json()
    assert history["history"][0]["bracket"] == "2v2"

    # Discord: channels, then every message of one channel, newest first, 50 a page
    chans = (await api.get(f"/v1/discord/tenants/{mirror.tenant}/channels")).json()
    assert str(mirror.channel) in {c["id"] for c in chans["channels"]}
    ids: list[int] = []
    before_id = None
    while True:
        params = {"limit": 50, **({"before": before_id} if before_id else {})}
        page = (await api.get(f"/v1/discord/channels/{mirror.channel}/messages",
                              params=params)).json()  # fmt: skip
        ids += [int(x["id"]) for x in page["messages"]]
        before_id = page["next_before"]
        if before_id is None:
            break
    truth_ids = sorted((int(i) for i in admin(mirror.discord, f"channels/{mirror.channel}/ids")
                        ["ids"]), reverse=True)  # fmt: skip
    assert ids == truth_ids and len(ids) == 130
    after = (await api.get(f"/v1/discord/channels/{mirror.channel}/messages",
                           params={"after": ids[3]})).json()["messages"]  # fmt: skip
    assert [int(x["id"]) for x in after] == ids[:3]
    author = page["messages"][-1]["author_id"] if page["messages"] else None
    if author:
        by = (await api.get(f"/v1/discord/channels/{mirror.channel}/messages",
                            params={"author_id": author, "limit": 200})).json()  # fmt: skip
        assert by["messages"] and {x["author_id"] for x in by["messages"]} == {author}

    # ZwiftRacing: the club, a rider, an upcoming event's signups, a finished one's results
    ztruth = await zwift_admin(mirror.zwift, "truth")
    club = (await api.get(f"/v1/zwift/clubs/{mirror.club}")).json()
    assert {r["id"] for r in club["riders"]} == set(ztruth["clubs"][0]["rider_ids"])
    rider_id = club["riders"][0]["id"]
    rider = (await api.get(f"/v1/zwift/riders/{rider_id}")).json()
    assert rider["name"] == ztruth["riders"][str(rider_id)]["name"] and rider["stale"] is False
    urgent = (await api.get(f"/v1/zwift/events/{mirror.events['urgent']}")).json()
    assert urgent["signups"] and urgent["last_synced_at"], (urgent, mirror.events)
    past = (await api.get(f"/v1/zwift/events/{mirror.events['past']}")).json()
    assert past["results"] and past["results"][0]["position"] == 1

    # nothing above went upstream
    assert await mirror.counters() == before


async def test_unknown_entities_and_bad_parameters_answer_json_without_a_trace(api):
    for path, what in [
        ("/v1/wow/eu/characters/draenor/nobodyhere", "character eu/draenor/nobodyhere"),
        ("/v1/wow/eu/guilds/draenor/no-such-guild", "guild eu/draenor/no-such-guild"),
        ("/v1/discord/tenants/42/channels", "tenant 42"),
        ("/v1/zwift/riders/999999999", "rider 999999999"),
        ("/v1/wow/eu/pvp/1/2v2", "leaderboard eu/1/2v2"),
    ]:
        answer = await api.get(path)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.json() == {"error": "not_found", "detail": f"{what} is not in the mirror"}
    for path, params in [
        ("/v1/wow/xx/characters/draenor/foo", {}),  # no such region
        ("/v1/wow/eu/characters/dra..enor/foo", {}),  # not a slug
        ("/v1/discord/channels/abc/messages", {}),
        ("/v1/discord/channels/1/messages", {"limit": 100000}),  # above API_MAX_PAGE_SIZE
        ("/v1/wow/eu/pvp/30/2v2", {"cursor": "x"}),
    ]:
        answer = await api.get(path, params=params)
        assert answer.status_code == 422, (path, answer.text)
        body = answer.json()
        assert body["error"] == "invalid" and "Traceback" not in answer.text


async def test_the_refresh_hook_answers_at_once_and_the_scheduler_then_syncs_it(
    mirror, api, client, database_url
):
    handle = await scheduler_cli.start(client, "battlenet", "eu", mirror.settings, every="off")
    engine = create_engine(database_url, pool_size=1)
    member = mirror.guild
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT realm, name, last_synced_at FROM characters "
                        "WHERE bnet_character_id IS NOT NULL AND profile_json IS NOT NULL "
                        "ORDER BY id LIMIT 1"
                    )
                )
            ).one()
        before = admin(mirror.bnet, "stats")["requests"]
        async with build_worker(
            client, mirror.settings, database_url, mirror.settings.TEMPORAL_TASK_QUEUE
        ) as parts:
            async with parts.worker:
                began = time.perf_counter()
                answer = await api.post(f"/v1/refresh/wow/eu/characters/{row.realm}/{row.name}")
                took = time.perf_counter() - began
                assert answer.status_code == 202, answer.text
                body = answer.json()
                assert body["request_id"].startswith("api-") and body["status"] == "queued"
                assert took < 0.1, took

                async def refreshed() -> bool:
                    async with engine.connect() as conn:
                        at = (
                            await conn.execute(
                                text(
                                    "SELECT last_synced_at FROM characters WHERE realm = :r "
                                    "AND name = :n"
                                ),
                                {"r": row.realm, "n": row.name},
                            )
                        ).scalar()
                    return bool(at and at > row.last_synced_at)

                deadline = time.monotonic() + 30
                while not await refreshed():
                    assert time.monotonic() < deadline, "the queued refresh never ran"
                    await asyncio.sleep(0.1)
        assert admin(mirror.bnet, "stats")["requests"] > before  # the sync did go upstream
        # a bad name never reaches the scheduler; a scope with no scheduler is 409, naming it
        bad = await api.post("/v1/refresh/wow/eu/characters/dra..enor/x")
        assert bad.status_code == 422
        none = await api.post(f"/v1/refresh/discord/tenants/{mirror.tenant}")
        assert none.status_code == 409
        assert "scheduler start discord --tenant" in none.json()["detail"]
        assert member
    finally:
        await handle.terminate("test over")
        await engine.dispose()


async def test_the_refresh_hook_is_rate_limited_per_client(mirror, database_url, client):
    settings = mirror.settings.model_copy(update={"API_REFRESH_PER_MINUTE": 3})

    async def temporal():
        return client

    app = create_app(settings, database_url, temporal)
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        codes = [
            (await http.post(f"/v1/refresh/discord/tenants/{mirror.tenant}")).status_code
            for _ in range(4)
        ]
        last = await http.post(f"/v1/refresh/discord/tenants/{mirror.tenant}")
    assert codes[:3] == [409, 409, 409] and codes[3] == 429  # no scheduler runs for it
    assert int(last.headers["Retry-After"]) >= 1


async def test_starter_api_serves_the_mirror_as_a_process(mirror, database_url):
    """`python starter.py api` as a user starts it (bench/api_read.py runs `--workers 4`)."""
    port, began = _free_port(), time.monotonic()
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "starter.py", "api", "--port", str(port), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    health = await http.get("/healthz")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "starter.py api did not come up"
                    await asyncio.sleep(0.1)
            assert health.json()["status"] == "ok"
            answer = await http.get(f"/v1/discord/tenants/{mirror.tenant}/channels")
            assert str(mirror.channel) in {c["id"] for c in answer.json()["channels"]}
            up = time.monotonic()
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 20)
    print(f"up in {up - began:.1f} s, stopped in {time.monotonic() - up:.1f} s")
