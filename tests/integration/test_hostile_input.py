"""Hostile input end to end (issue 10), on the real Temporal dev server, embedded Postgres and
the Battle.net sandbox: a workflow started with a crafted region or slug fails cleanly with one
line (BadInput, not retried), stores nothing, and sends nothing — above all no access token —
to any host but the configured one. A roster member with a hostile slug is skipped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import func, select
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.battlenet import BattleNetActivities
from activities.battlenet_build import bnet_client, bnet_limiter, pvp_queues
from activities.types import EntitySyncInput, GuildSyncInput, PvpSyncInput
from providers.errors import BadInput
from settings import Settings
from storage import battlenet as db
from storage.db import create_engine
from storage.models import characters, guild_members, guilds
from tests.sandbox_helpers import admin, battlenet_sandbox, sandbox_settings
from worker import build_worker
from workflows.battlenet import BattleNetEntitySync
from workflows.pvp import PvpSync

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@dataclass
class Listener:
    """A port that records every byte sent to it (and answers 404, so nothing hangs)."""

    received: list[bytes] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            self.received.append(await reader.readuntil(b"\r\n\r\n"))
            body = b'{"code": 404}'
            head = b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
            writer.write(head % len(body) + body)
            await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def listening() -> AsyncIterator[Listener]:
    listener = Listener()
    server = await asyncio.start_server(listener.handle, "127.0.0.1", 0)
    listener.port = server.sockets[0].getsockname()[1]
    try:
        yield listener
    finally:
        server.close()
        await server.wait_closed()


async def _fails_with(client: Client, run: Any, arg: Any, task_queue: str) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as info:
        await client.execute_workflow(
            run, arg, id=f"hostile-{uuid.uuid4().hex[:10]}", task_queue=task_queue
        )
    cause: BaseException | None = info.value
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.__cause__ or getattr(cause, "cause", None)
    assert isinstance(cause, ApplicationError), info.value
    return cause


def _assert_clean_refusal(error: ApplicationError, *needles: str) -> None:
    assert error.type == "BadInput" and error.non_retryable, (error.type, error.message)
    assert "\n" not in error.message
    for needle in needles:
        assert needle in error.message, error.message


async def _stored(database_url: str) -> tuple[int, int]:
    engine = create_engine(database_url, pool_size=1)
    async with engine.connect() as conn:
        n_guilds = (await conn.execute(select(func.count()).select_from(guilds))).scalar_one()
        n_chars = (await conn.execute(select(func.count()).select_from(characters))).scalar_one()
    await engine.dispose()
    return int(n_guilds), int(n_chars)


async def test_a_crafted_region_sends_no_token_to_another_host(client, database_url, task_queue):
    async with listening() as listener:
        crafted = f"127.0.0.1:{listener.port}/#"
        with battlenet_sandbox(guilds_per_region=1, roster_min=2, roster_max=2) as sb:
            # The real template: the region is substituted into the host.
            settings = sandbox_settings(
                sb.url, BNET_API_BASE_URL=f"http://{{region}}.api.invalid:{sb.url.rsplit(':')[-1]}"
            )
            sync_queue, processing_queue = pvp_queues(settings, task_queue)
            async with build_worker(client, settings, database_url, task_queue) as parts:
                async with parts.worker:
                    for kind in ("character", "guild"):
                        error = await _fails_with(
                            client, BattleNetEntitySync.run,
                            EntitySyncInput(region=crafted, kind=kind, realm="draenor",
                                            name="sheday"),
                            task_queue,
                        )  # fmt: skip
                        _assert_clean_refusal(error, "us, eu, kr, tw, cn")
                    error = await _fails_with(
                        client, PvpSync.run,
                        PvpSyncInput(region=crafted, sync_queue=sync_queue,
                                     processing_queue=processing_queue),
                        task_queue,
                    )  # fmt: skip
                    _assert_clean_refusal(error, "us, eu, kr, tw, cn")
            stats = admin(sb.url, "stats")
    assert listener.received == []  # not a byte, let alone "Authorization: Bearer ..."
    assert await _stored(database_url) == (0, 0)
    assert stats["token_requests"] == 0 and stats["requests"] == 0, stats  # refused first


@pytest.mark.parametrize(
    ("kind", "realm", "name", "what"),
    [
        ("character", "../../../oauth/token", "x", "realm"),  # the reproduction in issue 10
        ("character", "draenor", "../../oauth", "character name"),
        ("guild", "realm/with", "slash", "realm"),
        ("guild", "stormrage", "a/../../b", "guild name"),
    ],
)
async def test_a_hostile_slug_in_a_workflow_input_is_refused_and_nothing_is_stored(
    client, database_url, task_queue, kind, realm, name, what
):
    with battlenet_sandbox(guilds_per_region=1, roster_min=2, roster_max=2) as sb:
        settings = sandbox_settings(sb.url)
        async with build_worker(client, settings, database_url, task_queue) as parts:
            async with parts.worker:
                error = await _fails_with(
                    client, BattleNetEntitySync.run,
                    EntitySyncInput(region="eu", kind=kind, realm=realm, name=name), task_queue,
                )  # fmt: skip
        stats = admin(sb.url, "stats")
    _assert_clean_refusal(error, what)
    assert stats["requests"] == 0 and stats["token_requests"] == 0, stats
    assert await _stored(database_url) == (0, 0)


async def test_storage_refuses_what_no_request_could_be_made_of(database_url):
    engine = create_engine(database_url, pool_size=1)
    try:
        for region, realm, name in (
            ("127.0.0.1:28799/#", "draenor", "sheday"),
            ("eu", "../../../oauth/token", "x"),
            ("eu", "draenor", "a/b"),
        ):
            for track in (db.track_character, db.track_guild):
                async with engine.begin() as conn:
                    with pytest.raises(BadInput):
                        await track(conn, region, realm, name)
        async with engine.begin() as conn:
            assert await db.track_guild(conn, "eu", "Aggra (Português)", "Les Éclaireurs") > 0
            assert await db.track_character(conn, "eu", "Area 52", "Shéday") > 0
    finally:
        await engine.dispose()
    assert await _stored(database_url) == (1, 1)


# -- a roster with hostile members, from a real HTTP server -----------------------------------


def _roster() -> dict[str, Any]:
    def member(n: int, name: str, realm: str) -> dict[str, Any]:
        return {"character": {"id": 1000 + n, "name": name, "realm": {"slug": realm},
                              "level": 60, "playable_class": {"id": 1}}, "rank": n}  # fmt: skip

    return {"members": [member(1, "Sheday", "draenor"), member(2, "token", "../../../oauth"),
                        member(3, "a/b", "draenor"), member(4, "Shéday", "kazzak")]}  # fmt: skip


ROUTES = {
    "/token": {"access_token": "hostile-test-token", "expires_in": 86399},
    "/data/wow/guild/draenor/avalerion": {"id": 77, "name": "Avalerion",
                                          "realm": {"name": "Draenor", "slug": "draenor"}},
    "/data/wow/guild/draenor/avalerion/roster": _roster(),
}  # fmt: skip


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            length = next((int(h.split(":", 1)[1]) for h in head.split("\r\n")
                           if h.lower().startswith("content-length:")), 0)  # fmt: skip
            if length:
                await reader.readexactly(length)
            path = head.split(" ", 2)[1].split("?", 1)[0]
            answer = ROUTES.get(path)
            body = json.dumps(answer if answer is not None else {"code": 404}).encode()
            status = b"200 OK" if answer is not None else b"404 Not Found"
            writer.write(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (status, len(body), body))  # fmt: skip
            await writer.drain()


async def test_roster_members_with_hostile_slugs_are_skipped_and_counted(database_url):
    server = await asyncio.start_server(_serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    settings = Settings(
        BNET_CLIENT_ID="id", BNET_CLIENT_SECRET="secret", BNET_API_BASE_URL=url,
        BNET_OAUTH_URL=f"{url}/token",
    )  # fmt: skip
    engine = create_engine(database_url, pool_size=2)
    http = bnet_client(settings, bnet_limiter(settings))
    try:
        async with engine.begin() as conn:
            guild_id = await db.track_guild(conn, "eu", "draenor", "Avalerion")
        acts = BattleNetActivities(engine, http, 3600)
        result = await ActivityEnvironment().run(acts.bnet_sync_guild, GuildSyncInput(guild_id))
        async with engine.connect() as conn:
            names = sorted(
                (await conn.execute(select(characters.c.name, characters.c.realm))).all()
            )
            members = (
                await conn.execute(select(func.count()).select_from(guild_members))
            ).scalar_one()
    finally:
        await http.aclose()
        await engine.dispose()
        server.close()
        await server.wait_closed()
    assert result.status == "synced"
    assert names == [("Sheday", "draenor"), ("Shéday", "kazzak")]
    assert members == 2 and result.members == 2
    assert result.rejected == 2
