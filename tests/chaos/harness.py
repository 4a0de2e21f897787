"""The chaos harness: a whole stack of real parts, a sync of each provider, faults injected
while it runs, and a comparison of what was stored with the sandbox's truth.

One :class:`Stack` is its own embedded Postgres, its own Temporal dev server (with a persistent
database file, so it can be restarted), the Battle.net and Discord sandboxes, and real
``python worker.py`` processes (SIGKILLed and replaced at will). A :class:`Job` is one sync of
one provider: it prepares a fresh database, starts the workflow, and verifies the result as a
:class:`Verdict` (rows compared, duplicates, gaps, dead letters of entities that exist). The
scenarios (:data:`SCENARIOS`) are shared by `tests/chaos/test_chaos.py` (quick form, CI) and
`bench/chaos.py` (long form, the table in CHAOS.md).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

import runtime
from activities.discord_types import TenantSyncInput
from activities.types import BattleNetSyncInput, PvpSyncInput
from activities.zwift_types import ZwiftSyncInput
from sandbox.server import SandboxServer
from sandbox.zwift import API_PREFIX, ZwiftSandboxConfig, create_zwift_app
from sandbox.zwift_world import ZwiftWorldConfig
from storage import battlenet as bnet_db
from storage import discord as discord_db
from storage import zwift as zwift_db
from storage.db import create_engine
from storage.migrate import upgrade
from storage.models import (
    channels,
    characters,
    guild_members,
    guilds,
    messages,
    pvp_leaderboard_entries,
    pvp_leaderboards,
    sync_failures,
)
from tests.db_support import fetch_rows as _rows
from tests.integration.discord_support import TOKEN, discord_server
from tests.sandbox_helpers import admin, battlenet_sandbox
from workflows.battlenet import BattleNetSync
from workflows.discord import DiscordTenantSync
from workflows.kernel import cause_message
from workflows.pvp import PvpSync
from workflows.zwift import ZwiftSync

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = "chaos_template"
SEASON = 37  # the sandbox's current PvP season
BNET_RATE = 60  # requests per second, sandbox and worker alike
# ZwiftRacing at 600x: its bulk POST window (1 per 15 min) is 1.5 s, the club pages' (set to 1
# per 6 min) 0.6 s, so a club of 4,500 riders (5 pages, 5 POSTs) takes ~10 s.
ZWIFT_SCALE = 600.0
ZWIFT_CLUB_RATE = (1, 360.0)
ZWIFT_CONFIG = ZwiftSandboxConfig(
    world=ZwiftWorldConfig(seed=11, club_sizes=(4500,), clubless=0, past_events=0,
                           urgent_events=0, near_events=0, far_events=0),
    time_scale=ZWIFT_SCALE,
    clubs=ZWIFT_CLUB_RATE,
)  # fmt: skip
PVP_RATE = 200


# --- results ------------------------------------------------------------------------------


@dataclass
class Verdict:
    rows: int = 0  # stored rows compared with the truth
    duplicates: int = 0
    gaps: int = 0  # missing or different
    dead_letters: int = 0  # entities that exist but were given up on
    problems: list[str] = field(default_factory=list)

    def add(self, other: Verdict) -> None:
        self.rows += other.rows
        self.duplicates += other.duplicates
        self.gaps += other.gaps
        self.dead_letters += other.dead_letters
        self.problems += other.problems

    @property
    def exact(self) -> bool:
        return not (self.duplicates or self.gaps or self.dead_letters or self.problems)


@dataclass
class Outcome:
    scenario: str
    provider: str
    injected: str  # what was done to the run
    runs: int = 0
    completed: int = 0
    verdict: Verdict = field(default_factory=Verdict)
    answered_429: int = 0  # 429s the sandbox answered that were not injected
    injected_429: int = 0  # 429s injected (a storm, forced global 429s): how hard we pushed
    seconds: float = 0.0
    longest_sleep: float = 0.0  # the longest durable timer of any run

    @property
    def ok(self) -> bool:
        return self.completed == self.runs and self.verdict.exact

    def line(self) -> str:
        v = self.verdict
        return (
            f"{self.scenario:<22} {self.provider:<9} runs {self.completed}/{self.runs} "
            f"rows {v.rows} dup {v.duplicates} gaps {v.gaps} dead {v.dead_letters} "
            f"429s {self.answered_429} (+{self.injected_429} injected) {self.seconds:.1f}s"
            + (f", longest sleep {self.longest_sleep:.1f}s" if self.longest_sleep else "")
            + (f"  PROBLEMS: {'; '.join(v.problems[:3])}" if v.problems else "")
        )


# --- the stack ------------------------------------------------------------------------------


class Stack:
    """Own Postgres, own Temporal (persistent), both sandboxes, worker processes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pg_dir = root / "pg"
        self.temporal_dir = root / "temporal"
        self.pg_port = runtime.free_port()
        self.temporal_port = runtime.free_port()
        self.temporal_ui_port = runtime.free_port()
        self.pg: runtime.EmbeddedPostgres | None = None
        self.temporal: runtime.EmbeddedTemporal | None = None
        self.bnet: SandboxServer | None = None
        self.discord: SandboxServer | None = None
        self.zwift: SandboxServer | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self._sandboxes = ExitStack()

    # servers
    def start_postgres(self) -> None:
        self.pg = runtime.start_postgres(self.pg_dir, self.pg_port, database=TEMPLATE)

    def stop_postgres(self) -> None:
        assert self.pg is not None
        self.pg.stop()
        self.pg = None

    def start_temporal(self) -> None:
        self.temporal = runtime.start_temporal(
            self.temporal_dir, self.temporal_port, self.temporal_ui_port
        )

    def stop_temporal(self, sig: int = signal.SIGKILL) -> None:
        assert self.temporal is not None
        self.temporal.stop(sig)
        self.temporal = None

    def start(self) -> None:
        self.start_postgres()
        upgrade(self.pg_url(TEMPLATE))
        self.start_temporal()
        self.bnet = self._sandboxes.enter_context(
            battlenet_sandbox(
                guilds_per_region=2, roster_min=60, roster_max=60, pvp_entries=600,
                per_second=BNET_RATE, hidden_ratio=0.05,
            )
        )  # fmt: skip
        self.discord = self._sandboxes.enter_context(
            discord_server(messages=(20, 1.0), global_per_second=50)
        )
        self.zwift = self._sandboxes.enter_context(SandboxServer(create_zwift_app(ZWIFT_CONFIG)))

    def close(self) -> None:
        self.kill_workers()
        self._sandboxes.close()
        if self.temporal is not None:
            self.temporal.stop(signal.SIGKILL)
        if self.pg is not None:
            self.pg.stop()

    def pg_url(self, database: str) -> str:
        assert self.pg is not None
        return self.pg.url(database)

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    async def client(self) -> Client:
        return await Client.connect(self.temporal_address, data_converter=pydantic_data_converter)

    def fresh_database(self) -> str:
        name = f"c_{uuid.uuid4().hex[:12]}"
        self._psql(f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE}')
        return self.pg_url(name)

    def _psql(self, sql: str) -> None:
        subprocess.run(
            [runtime._pg_bin("psql"), self.pg_url("postgres"), "-v", "ON_ERROR_STOP=1", "-c", sql],
            check=True,
            capture_output=True,
        )

    # workers
    def worker_env(self, database_url: str, task_queue: str) -> dict[str, str]:
        assert self.bnet is not None and self.discord is not None and self.zwift is not None
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "VIRTUAL_ENV", "PYTHONPATH", "TMPDIR",
                "RATE_LIMIT_BACKEND")  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.update(
            DATABASE_URL=database_url,
            TEMPORAL_ADDRESS=self.temporal_address,
            TEMPORAL_TASK_QUEUE=task_queue,
            PVP_SYNC_TASK_QUEUE=f"{task_queue}.pvp-sync",
            PVP_PROCESSING_TASK_QUEUE=f"{task_queue}.pvp-processing",
            BNET_CLIENT_ID="sandbox-client",
            BNET_CLIENT_SECRET="sandbox-secret",
            BNET_API_BASE_URL=self.bnet.url,
            BNET_OAUTH_URL=f"{self.bnet.url}/token",
            BNET_RATE_PER_SECOND=str(BNET_RATE),
            DISCORD_BOT_TOKEN=TOKEN,
            DISCORD_API_BASE_URL=f"{self.discord.url}/api/v10",
            ZWIFT_API_BASE_URL=self.zwift.url + API_PREFIX,
            ZWIFT_API_KEY=ZWIFT_CONFIG.api_key,
            ZWIFT_TIME_SCALE=str(ZWIFT_SCALE),
            ZWIFT_RATE_CLUBS="/".join(str(int(v)) for v in ZWIFT_CLUB_RATE),
            DATA_DIR=str(self.root / "data"),
            LOG_LEVEL="WARNING",
        )
        return env

    def start_worker(self, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        out = open(log, "ab")
        proc = subprocess.Popen(
            [sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        out.close()
        self.workers.append(proc)
        return proc

    def kill_workers(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        self.workers.clear()


@contextmanager
def stack() -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="ratesync-chaos-"))
    s = Stack(root)
    try:
        s.start()
        yield s
    finally:
        s.close()
        if not os.environ.get("CHAOS_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


# --- jobs -------------------------------------------------------------------------------------


class Job:
    """One sync of one provider against the stack's sandbox."""

    provider = ""
    expected_requests = 200  # a lower bound of the requests a clean run makes

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    @property
    def sandbox(self) -> SandboxServer:
        raise NotImplementedError

    async def prepare(self, database_url: str) -> None:
        raise NotImplementedError

    async def start(self, client: Client, task_queue: str) -> WorkflowHandle[Any, Any]:
        raise NotImplementedError

    def finished(self, result: Any) -> str | None:
        """None when the workflow's own result says it is complete, else why not."""
        return None

    async def verify(self, database_url: str) -> Verdict:
        raise NotImplementedError

    def requests(self) -> int:
        return int(admin(self.sandbox.url, "stats")["requests"])

    def answered_429(self) -> int:
        """429s the sandbox's own limits answered (injected ones are not counted)."""
        stats = admin(self.sandbox.url, "stats")
        return int(stats["by_status"].get("429", 0)) - _forced_429(stats)


def _forced_429(stats: dict[str, Any]) -> int:
    return sum(int(v) for k, v in stats["faults_injected"].items() if "429" in k)


class BattleNetJob(Job):
    """Every tracked guild (2 x 60 members, ~5 % hidden): rosters, then every character."""

    provider = "battlenet"
    expected_requests = 460  # a clean run makes 469 (~5 % of the characters are hidden)

    @property
    def sandbox(self) -> SandboxServer:
        assert self.stack.bnet is not None
        return self.stack.bnet

    async def prepare(self, database_url: str) -> None:
        truth = admin(self.sandbox.url, "truth/guilds?region=eu")
        engine = create_engine(database_url, pool_size=1)
        async with engine.begin() as conn:
            for g in truth:
                await bnet_db.track_guild(conn, "eu", g["realm_slug"], g["name"])
        await engine.dispose()

    async def start(self, client: Client, task_queue: str) -> WorkflowHandle[Any, Any]:
        return await client.start_workflow(
            BattleNetSync.run,
            BattleNetSyncInput(region="eu", batch_size=20, page_size=40),
            id=f"battlenet-sync/eu/chaos-{uuid.uuid4().hex[:6]}",
            task_queue=task_queue,
        )

    def finished(self, result: Any) -> str | None:
        if result.children_failed or result.failed:
            return f"children_failed={result.children_failed} failed={result.failed}"
        return None

    async def verify(self, database_url: str) -> Verdict:
        v = Verdict()
        url = self.sandbox.url
        stored_guilds = await _rows(database_url, select(guilds))
        stored_chars = await _rows(database_url, select(characters))
        members = await _rows(database_url, select(guild_members))
        failures = {f["entity_key"] for f in await _rows(database_url, select(sync_failures))}
        keys = [(c["region"], c["bnet_character_id"]) for c in stored_chars]
        v.duplicates += len(keys) - len(set(keys))
        pairs = [(m["guild_id"], m["character_id"]) for m in members]
        v.duplicates += len(pairs) - len(set(pairs))
        by_slug = {(g["realm"], g["name_slug"]): g for g in stored_guilds}
        for tg in admin(url, "truth/guilds?region=eu"):
            truth = admin(url, f"truth/guild/eu/{tg['realm_slug']}/{tg['name_slug']}")
            stored = by_slug.get((tg["realm_slug"], tg["name_slug"]))
            v.rows += 1
            if stored is None or stored["roster_json"] != truth["roster"]:
                v.gaps += 1
                v.problems.append(f"guild {tg['name_slug']} roster differs")
                continue
            mine = [m for m in members if m["guild_id"] == stored["id"]]
            if len(mine) != len(truth["roster"]["members"]):
                v.gaps += abs(len(truth["roster"]["members"]) - len(mine))
        chars = {(c["region"], c["bnet_character_id"]): c for c in stored_chars}
        for tc in admin(url, "truth/characters?region=eu"):
            if not tc["guild_id"]:
                continue
            v.rows += 1
            stored = chars.get(("eu", tc["id"]))
            key = f"character/eu/{tc['realm_slug']}/{tc['name_slug']}"
            if tc["hidden"]:
                if stored is None or not stored["is_private"]:
                    v.gaps += 1
                continue
            truth = admin(url, f"truth/character/eu/{tc['realm_slug']}/{tc['name_slug']}")
            if key in failures:
                v.dead_letters += 1
            if (
                stored is None
                or stored["profile_json"] != truth["profile"]
                or stored["equipment_json"] != truth["equipment"]
                or stored["mythic_profile_json"] != truth["mythic_keystone_profile"]
                or stored["professions_json"] != truth["professions"]
            ):
                v.gaps += 1
                v.problems.append(f"character {tc['name_slug']} differs or is missing")
        return v


class PvpJob(Job):
    """The 2v2 ladder (600 entries) and every entry's equipment."""

    provider = "pvp"
    expected_requests = 600  # a clean run makes 603

    @property
    def sandbox(self) -> SandboxServer:
        assert self.stack.bnet is not None
        return self.stack.bnet

    async def prepare(self, database_url: str) -> None:
        return None

    async def start(self, client: Client, task_queue: str) -> WorkflowHandle[Any, Any]:
        return await client.start_workflow(
            PvpSync.run,
            PvpSyncInput(
                region="eu",
                brackets=["2v2"],
                equipment_batch_size=100,
                sync_queue=f"{task_queue}.pvp-sync",
                processing_queue=f"{task_queue}.pvp-processing",
            ),
            id=f"pvp-sync/eu/chaos-{uuid.uuid4().hex[:6]}",
            task_queue=task_queue,
        )

    def finished(self, result: Any) -> str | None:
        if result.failed_brackets:
            return f"failed brackets {result.failed_brackets}"
        return None

    async def verify(self, database_url: str) -> Verdict:
        v = Verdict()
        truth = admin(self.sandbox.url, f"truth/pvp/eu/{SEASON}/2v2")
        hidden = set(truth.get("private_character_ids", []))
        entries = await _rows(
            database_url,
            select(
                pvp_leaderboard_entries.c.rank,
                pvp_leaderboard_entries.c.entry_json,
                pvp_leaderboard_entries.c.equipment_processed_at,
                characters.c.bnet_character_id,
                characters.c.equipment_json,
                characters.c.is_private,
            )
            .join(
                pvp_leaderboards,
                pvp_leaderboards.c.id == pvp_leaderboard_entries.c.leaderboard_id,
            )
            .join(characters, characters.c.id == pvp_leaderboard_entries.c.character_id),
        )
        boards = await _rows(database_url, select(pvp_leaderboards.c.id))
        if len(boards) != 1:
            v.problems.append(f"{len(boards)} leaderboard snapshots stored, expected 1")
        ids = [e["bnet_character_id"] for e in entries]
        v.duplicates += len(ids) - len(set(ids))
        mine = {e["bnet_character_id"]: e for e in entries}
        world = self.sandbox.app.state.sandbox.world
        failures = {f["entity_key"] for f in await _rows(database_url, select(sync_failures))}
        for entry in truth["leaderboard"]["entries"]:
            cid = entry["character"]["id"]
            v.rows += 1
            row = mine.get(cid)
            if row is None or row["entry_json"] != entry or row["equipment_processed_at"] is None:
                v.gaps += 1
                continue
            realm, name = entry["character"]["realm"]["slug"], entry["character"]["name"]
            if cid in hidden:
                continue
            if f"character/eu/{realm}/{name.lower()}" in failures:
                v.dead_letters += 1
            if world.character_equipment("eu", realm, name) is None:
                continue
            if row["is_private"]:
                v.gaps += 1
        return v


class DiscordJob(Job):
    """One tenant of ~6,000 messages over text channels, an announcement channel and threads."""

    provider = "discord"
    tenant = {
        "name": "Chaos",
        "text_channels": [2000, 1500, 1000, 400, 99, 1, 0],
        "announcement_channels": [300],
        "forum_threads": [200],
        "active_threads": [100],
        "archived_threads": [150],
        "forbidden_channels": 1,
    }
    expected_requests = 78  # a clean run makes 81 (the listings, then ~5,750 messages / 100)

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack)
        self.layout: dict[str, Any] = {}

    @property
    def sandbox(self) -> SandboxServer:
        assert self.stack.discord is not None
        return self.stack.discord

    def answered_429(self) -> int:
        stats = admin(self.sandbox.url, "stats")
        return int(sum(stats["rate_limited"].values())) - _forced_429(stats)

    async def prepare(self, database_url: str) -> None:
        self.layout = admin(self.sandbox.url, "tenants", self.tenant)
        engine = create_engine(database_url, pool_size=1)
        async with engine.begin() as conn:
            await discord_db.track_tenant(conn, int(self.layout["guild_id"]))
        await engine.dispose()

    async def start(self, client: Client, task_queue: str) -> WorkflowHandle[Any, Any]:
        gid = int(self.layout["guild_id"])
        return await client.start_workflow(
            DiscordTenantSync.run,
            TenantSyncInput(discord_guild_id=gid),
            id=f"discord-sync/{gid}/chaos-{uuid.uuid4().hex[:6]}",
            task_queue=task_queue,
        )

    def finished(self, result: Any) -> str | None:
        if result.status != "completed" or result.channels_failed:
            return f"status={result.status} channels_failed={result.channels_failed}"
        return None

    async def verify(self, database_url: str) -> Verdict:
        v = Verdict()
        rows = await _rows(
            database_url,
            select(channels.c.discord_channel_id, messages.c.discord_message_id).join(
                channels, channels.c.id == messages.c.channel_id
            ),
        )
        stored: dict[int, list[int]] = {}
        for r in rows:
            stored.setdefault(int(r["discord_channel_id"]), []).append(int(r["discord_message_id"]))
        parked = {f["entity_key"] for f in await _rows(database_url, select(sync_failures))}
        for channel in self.layout["channels"]:
            if channel["access"] != "ok" or channel["type"] in (4, 15):
                continue
            ids = admin(self.sandbox.url, f"channels/{channel['id']}/ids")["ids"]
            truth = [int(i) for i in ids]
            mine = stored.get(int(channel["id"]), [])
            v.rows += len(mine)
            v.duplicates += len(mine) - len(set(mine))
            v.gaps += len(set(truth) - set(mine)) + len(set(mine) - set(truth))
            if f"channel/{channel['id']}" in parked:
                v.dead_letters += 1
        return v


class ZwiftJob(Job):
    """A ZwiftRacing club's riders: its member pages, then every member's bulk POST refresh,
    each family's window (held in Postgres) waited out between calls."""

    provider = "zwift"
    expected_requests = 10  # a clean run makes 10 (5 pages of 1,000 and 5 POSTs)

    @property
    def sandbox(self) -> SandboxServer:
        assert self.stack.zwift is not None
        return self.stack.zwift

    @property
    def club(self) -> int:
        return int(next(iter(self.sandbox.app.state.sandbox.world.clubs)))

    async def prepare(self, database_url: str) -> None:
        engine = create_engine(database_url, pool_size=1)
        async with engine.begin() as conn:
            await zwift_db.track_club(conn, self.club)
        await engine.dispose()

    async def start(self, client: Client, task_queue: str) -> WorkflowHandle[Any, Any]:
        return await client.start_workflow(
            ZwiftSync.run,
            ZwiftSyncInput(club_id=self.club, kind="riders"),
            id=f"zwift-sync/{self.club}/riders/chaos-{uuid.uuid4().hex[:6]}",
            task_queue=task_queue,
        )

    def finished(self, result: Any) -> str | None:
        return None if result.status == "completed" else f"status={result.status}"

    async def verify(self, database_url: str) -> Verdict:
        """Every member stored once, with the sandbox's rider document (its ``race`` part moves
        with the sandbox's clock and is left out)."""
        v = Verdict()
        sandbox = self.sandbox.app.state.sandbox
        world, now = sandbox.world, sandbox.wall()
        truth = set(world.clubs[self.club].rider_ids)
        rows = await _rows(
            database_url,
            text("SELECT rider_id, rider_json FROM zwift_riders WHERE club_id = :c").bindparams(
                c=self.club
            ),
        )
        ids = [int(r["rider_id"]) for r in rows]
        v.rows += len(truth)
        v.duplicates += len(ids) - len(set(ids))
        v.gaps += len(truth - set(ids)) + len(set(ids) - truth)
        failures = {f["entity_key"] for f in await _rows(database_url, select(sync_failures))}
        v.dead_letters += sum(1 for key in failures if key.startswith("zwift"))
        for row in rows:
            rider = world.riders.get(int(row["rider_id"]))
            if rider is None:
                continue
            expected = {k: x for k, x in world.rider_payload(rider, now).items() if k != "race"}
            stored = {k: x for k, x in (row["rider_json"] or {}).items() if k != "race"}
            if stored != expected:
                v.gaps += 1
                v.problems.append(f"rider {rider.id} differs")
        return v


JOBS: dict[str, type[Job]] = {
    "battlenet": BattleNetJob,
    "pvp": PvpJob,
    "discord": DiscordJob,
    "zwift": ZwiftJob,
}


# --- running a job under a fault ---------------------------------------------------------------

Action = Callable[["Run"], Awaitable[None]]


@dataclass
class Run:
    """One job being run on the stack; the scenario's action does things to it meanwhile."""

    stack: Stack
    job: Job
    database_url: str
    task_queue: str
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    worker: subprocess.Popen[bytes] | None = None
    events: list[str] = field(default_factory=list)  # what the action did, in order

    async def wait_requests(self, at_least: int, timeout: float = 120.0) -> bool:
        """Wait until the sandbox saw ``at_least`` requests; False if the run ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.job.requests() >= at_least:
                return True
            await asyncio.sleep(0.05)
        return False

    def kill_and_replace(self) -> None:
        assert self.worker is not None
        self.worker.send_signal(signal.SIGKILL)
        self.worker.wait(10)
        self.events.append("kill")
        self.worker = self.stack.start_worker(self.env, self.log)


@dataclass
class RunReport:
    verdict: Verdict
    failure: str | None
    answered_429: int
    seconds: float
    events: list[str]
    stats: dict[str, Any]  # the sandbox's counters at the end of the run
    longest_sleep: float = 0.0  # the longest durable timer any of the run's workflows started


async def run_job(
    stack: Stack,
    provider: str,
    action: Action | None,
    *,
    timeout: float = 300.0,
    before: Callable[[Job], None] | None = None,
    env: dict[str, str] | None = None,
) -> RunReport:
    """Run one sync of ``provider`` with ``action`` running alongside it."""
    job = JOBS[provider](stack)
    sandbox = job.sandbox
    admin(sandbox.url, "reset", {})
    database_url = stack.fresh_database()
    await job.prepare(database_url)
    task_queue = f"chaos-{uuid.uuid4().hex[:8]}"
    run = Run(stack, job, database_url, task_queue, stack.root / f"worker-{task_queue}.log")
    run.env = {**stack.worker_env(database_url, task_queue), **(env or {})}
    if before is not None:
        before(job)
    started = time.monotonic()
    client = await stack.client()
    handle = await job.start(client, task_queue)
    run.worker = stack.start_worker(run.env, run.log)
    failure: str | None = None
    side = asyncio.ensure_future(action(run)) if action is not None else None
    try:
        result = await asyncio.wait_for(_result(stack, handle), timeout)
        failure = job.finished(result)
    except Exception as err:
        failure = f"{type(err).__name__}: {cause_message(err)}"[:300]
        with _quiet():  # a run that did not end must not hold its child ids for the next one
            await handle.terminate(reason="chaos run over")
    finally:
        if side is not None:
            if not side.done():
                side.cancel()
            with _quiet():
                await side
        stack.kill_workers()
    seconds = time.monotonic() - started
    answered = job.answered_429()
    stats = admin(sandbox.url, "stats")
    admin(sandbox.url, "faults", {"clear": True})
    if provider in ("battlenet", "pvp"):
        admin(sandbox.url, "limits", {"per_second": BNET_RATE})
    verdict = await job.verify(database_url)
    longest = await _longest_sleep(stack, task_queue)
    return RunReport(verdict, failure, answered, seconds, run.events, stats, longest)


async def _longest_sleep(stack: Stack, task_queue: str) -> float:
    """The longest timer in the histories of the workflows that ran on ``task_queue``."""
    client = await stack.client()
    longest = 0.0
    async for wf in client.list_workflows(f'TaskQueue = "{task_queue}"'):
        history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        for event in history.events:
            if event.HasField("timer_started_event_attributes"):
                timeout = event.timer_started_event_attributes.start_to_fire_timeout
                longest = max(longest, timeout.ToTimedelta().total_seconds())
    return longest


async def _result(stack: Stack, handle: WorkflowHandle[Any, Any]) -> Any:
    """The workflow's result, asking again while the Temporal server is being restarted (the
    client reconnects by itself)."""
    while True:
        try:
            return await handle.result()
        except RPCError as err:
            if err.status not in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
                raise
            await asyncio.sleep(0.5)


@contextmanager
def _quiet() -> Iterator[None]:
    try:
        yield
    except (asyncio.CancelledError, Exception):
        pass


# --- scenarios --------------------------------------------------------------------------------


def kill_points(job: Job, count: int, rng: random.Random) -> list[int]:
    """``count`` request counts spread over 5 %..85 % of the job's ``expected_requests``, which
    is a lower bound of what a clean run makes (a test pins it), so that every point is reached
    with requests still to come: a bound above the real count (Discord's was 100 for 81) lets a
    seed put a kill after the run's last request."""
    total = job.expected_requests
    return sorted(int(total * rng.uniform(0.05, 0.85)) for _ in range(count))


def sigkill(count: int, seed: int) -> Action:
    async def action(run: Run) -> None:
        for point in kill_points(run.job, count, random.Random(seed)):
            if not await run.wait_requests(point):
                return
            run.kill_and_replace()
            await asyncio.sleep(0.5)  # let the replacement start polling before the next kill

    return action


def restart_temporal(at: float = 0.35) -> Action:
    async def action(run: Run) -> None:
        if not await run.wait_requests(int(run.job.expected_requests * at)):
            return
        run.stack.stop_temporal(signal.SIGKILL)
        await asyncio.sleep(2.0)
        run.stack.start_temporal()
        run.events.append("restart")

    return action


def restart_postgres(at: float = 0.35) -> Action:
    async def action(run: Run) -> None:
        if not await run.wait_requests(int(run.job.expected_requests * at)):
            return
        run.stack.stop_postgres()
        await asyncio.sleep(2.0)
        run.stack.start_postgres()
        run.events.append("restart")

    return action


def faults(seed: int | None = None, **fields: Any) -> Callable[[Job], None]:
    """Faults for the whole run; ``seed`` None picks a new pattern each time."""

    def before(job: Job) -> None:
        nonlocal seed
        seed = random.randrange(1 << 30) if seed is None else seed
        admin(job.sandbox.url, "faults", {"clear": True, "seed": seed, **fields})

    return before


def throttle_storm(seconds: float, at: float = 0.2) -> Action:
    async def action(run: Run) -> None:
        if not await run.wait_requests(int(run.job.expected_requests * at)):
            return
        admin(run.job.sandbox.url, "faults", {"throttle_seconds": seconds})
        run.events.append("storm")
        await asyncio.sleep(seconds)

    return action


def discord_global_429(count: int, retry_after: float, at: float = 0.3) -> Action:
    async def action(run: Run) -> None:
        if not await run.wait_requests(int(run.job.expected_requests * at)):
            return
        admin(
            run.job.sandbox.url,
            "discord/faults",
            {"force_global_429": count, "retry_after": retry_after, "route": "any"},
        )
        run.events.append("global 429")

    return action


def halve_limits(at: float = 0.3) -> Action:
    async def action(run: Run) -> None:
        if not await run.wait_requests(int(run.job.expected_requests * at)):
            return
        stats = admin(run.job.sandbox.url, "stats")
        per_second = max(1, int(stats["limits"]["per_second"]) // 2)
        admin(run.job.sandbox.url, "limits", {"per_second": per_second})
        run.events.append("halved")

    return action


def revoke_token(at: float = 0.4) -> Action:
    async def action(run: Run) -> None:
        if not await run.wait_requests(int(run.job.expected_requests * at)):
            return
        admin(run.job.sandbox.url, "tokens/revoke", {})
        run.events.append("revoked")

    return action


async def check_stack_alive(stack: Stack) -> None:
    """Postgres and Temporal answer (after a restart scenario)."""
    engine = create_engine(stack.pg_url(TEMPLATE), pool_size=1)
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    await engine.dispose()
    client = await stack.client()
    await client.count_workflows()


@dataclass(frozen=True)
class Scenario:
    name: str
    providers: tuple[str, ...]
    injected: str
    action: Callable[[bool, int], Action | None]  # (long form?, seed) -> action
    before: Callable[[bool], Callable[[Job], None] | None] = lambda long: None
    natural_429: int = 0  # the most 429s the sandbox's own limits may answer per run
    expects: Callable[[bool, RunReport], str | None] = lambda long, r: None  # why it is vacuous
    max_injected_429: Callable[[bool], int | None] = lambda long: None  # how hard we may push
    env: dict[str, str] = field(default_factory=dict)  # for the worker processes
    max_sleep: float | None = None  # the longest durable sleep a run may take, in seconds
    timeout: float = 300.0  # seconds a run may take
    quick: tuple[str, ...] | None = None  # the providers of the CI form (None: all of them)

    def describe(self, long: bool) -> str:
        return self.injected.format(kills=10 if long else 2, storm=30 if long else 5)


def _events(report: RunReport, name: str, count: int) -> str | None:
    done = report.events.count(name)
    return None if done >= count else f"only {done} of {count} '{name}' happened before the end"


def _slept(report: RunReport) -> str | None:
    return None if report.longest_sleep > 0 else "no durable budget sleep happened"


def _injected(report: RunReport, *kinds: str) -> str | None:
    injected = report.stats["faults_injected"]
    missing = [k for k in kinds if not injected.get(k)]
    return f"no {', '.join(missing)} was injected" if missing else None


# With this seed the sandbox's fault stream holds a 5xx, a truncated body and a reset within
# its first 13 requests (tests/chaos/test_chaos.py checks it), so every kind happens in a quick
# run; the long form draws a new seed per run.
QUICK_SEED = 1
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"  # Debian's `faketime`


def skewed_clock_env(offset: str) -> dict[str, str]:
    """Environment that runs a process with its wall clock ``offset`` (e.g. ``+30s``) off and
    its monotonic clock true (libfaketime; `.ci/run` installs it)."""
    if not Path(FAKETIME_LIB).exists():
        raise RuntimeError(f"{FAKETIME_LIB} is missing: apt-get install faketime")
    return {"LD_PRELOAD": FAKETIME_LIB, "FAKETIME": offset, "DONT_FAKE_MONOTONIC": "1"}


# A worker that paces itself below the sandbox's limit and gives up waiting for a slot after
# 20 ms: much of the run is durable budget sleeps until the activity's `resume_at`, each under
# a second long when the clocks agree.
# a worker rate under the sandbox's (60/s) and a wait so short that the budget is "spent" often:
# durable budget sleeps happen in every run (40/s: ~12 s of requests; 20/s took ~47 s with them)
BUDGET_SLEEPS = {"BNET_RATE_PER_SECOND": "40", "RATE_LIMIT_MAX_WAIT_SECONDS": "0.02"}
# A skewed worker's budget sleeps end when the budget is back (within a second or so): one
# computed on its wall clock against the server's would last the 30 s of skew.
SKEWED_MAX_SLEEP = 10.0

STORM: dict[str, Any] = {"error_rate": 0.05, "reset_rate": 0.02, "truncate_rate": 0.01}

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "sigkill",
        ("battlenet", "pvp", "discord", "zwift"),
        "worker SIGKILLed at {kills} random points",
        lambda long, seed: sigkill(10 if long else 2, seed),
        expects=lambda long, r: _events(r, "kill", 10 if long else 2),
    ),
    Scenario(
        "fault storm",
        ("battlenet", "pvp", "discord"),
        "5% 5xx + 2% resets + 1% truncated",
        lambda long, seed: None,
        lambda long: faults(None if long else QUICK_SEED, **STORM),
        expects=lambda long, r: _injected(r, "error", "reset", "truncate"),
        quick=("discord",),
    ),
    Scenario(
        "429 storm",
        ("battlenet", "pvp", "discord", "zwift"),
        "every request answered 429 for {storm} s",
        lambda long, seed: throttle_storm(30 if long else 5),
        expects=lambda long, r: _events(r, "storm", 1) or _injected(r, "forced_429"),
        # a 429 means back off: at most 15 requests per second of storm (limits are 50-60/s)
        max_injected_429=lambda long: 15 * (30 if long else 5),
        quick=("battlenet",),
    ),
    Scenario(
        "global 429",
        ("discord",),
        "3 global 429s (retry_after 1 s)",
        lambda long, seed: discord_global_429(3, 1.0),
        expects=lambda long, r: _events(r, "global 429", 1) or _injected(r, "forced_global_429"),
    ),
    Scenario(
        "limits halved",
        ("battlenet", "pvp"),
        "sandbox limit halved (60 -> 30/s) at 30%",
        lambda long, seed: halve_limits(),
        natural_429=60,
        expects=lambda long, r: _events(r, "halved", 1),
        quick=("battlenet",),
    ),
    Scenario(
        "token revoked",
        ("battlenet", "pvp"),
        "every OAuth token revoked at 40%",
        lambda long, seed: revoke_token(),
        expects=lambda long, r: _events(r, "revoked", 1),
        quick=("battlenet",),
    ),
    Scenario(
        "clock ahead",
        ("battlenet", "pvp", "discord"),
        "worker wall clock 30 s ahead",
        lambda long, seed: None,
        env={**skewed_clock_env("+30s"), **BUDGET_SLEEPS},
        expects=lambda long, r: _slept(r),
        max_sleep=SKEWED_MAX_SLEEP,
        timeout=90,
        quick=("battlenet",),
    ),
    Scenario(
        "clock behind",
        ("battlenet", "pvp", "discord"),
        "worker wall clock 30 s behind",
        lambda long, seed: None,
        env={**skewed_clock_env("-30s"), **BUDGET_SLEEPS},
        expects=lambda long, r: _slept(r),
        max_sleep=SKEWED_MAX_SLEEP,
        timeout=90,
        quick=("discord",),
    ),
    Scenario(
        "temporal restart",
        ("battlenet", "pvp", "discord", "zwift"),
        "Temporal server SIGKILLed and restarted",
        lambda long, seed: restart_temporal(),
        expects=lambda long, r: _events(r, "restart", 1),
        quick=("discord",),
    ),
    Scenario(
        "postgres restart",
        ("battlenet", "pvp", "discord", "zwift"),
        "Postgres stopped and restarted",
        lambda long, seed: restart_postgres(),
        expects=lambda long, r: _events(r, "restart", 1),
        quick=("battlenet",),
    ),
)


async def play(
    stack: Stack, scenario: Scenario, provider: str, long: bool, repeat: int = 1, seed: int = 0
) -> Outcome:
    """Run ``scenario`` on ``provider`` ``repeat`` times; the summed outcome."""
    outcome = Outcome(scenario.name, provider, scenario.describe(long), runs=repeat)
    for n in range(repeat):
        report = await run_job(
            stack,
            provider,
            scenario.action(long, seed + n),
            before=scenario.before(long),
            env=scenario.env,
            timeout=scenario.timeout,
        )
        outcome.verdict.add(report.verdict)
        outcome.answered_429 += report.answered_429
        outcome.injected_429 += _forced_429(report.stats)
        outcome.seconds += report.seconds
        outcome.longest_sleep = max(outcome.longest_sleep, report.longest_sleep)
        if report.failure is None:
            outcome.completed += 1
        else:
            outcome.verdict.problems.append(f"run {n + 1}: {report.failure}")
        made, assumed = int(report.stats["requests"]), JOBS[provider].expected_requests
        if made < assumed:
            outcome.verdict.problems.append(
                f"run {n + 1}: {made} requests, fewer than the {assumed} its kill points assume"
            )
        vacuous = scenario.expects(long, report)
        if vacuous:
            outcome.verdict.problems.append(f"run {n + 1}: {vacuous}")
        pushed, bound = _forced_429(report.stats), scenario.max_injected_429(long)
        if bound is not None and pushed > bound:
            outcome.verdict.problems.append(
                f"run {n + 1}: {pushed} requests answered 429 by the storm (at most {bound})"
            )
        if scenario.max_sleep is not None and report.longest_sleep > scenario.max_sleep:
            outcome.verdict.problems.append(
                f"run {n + 1}: a workflow slept {report.longest_sleep:.1f} s on a durable timer"
                f" (at most {scenario.max_sleep:.0f} s: the budget is back within a second)"
            )
        if report.answered_429 > scenario.natural_429:
            outcome.verdict.problems.append(
                f"run {n + 1}: {report.answered_429} 429s from the sandbox's own limits "
                f"(at most {scenario.natural_429})"
            )
    await check_stack_alive(stack)
    return outcome
