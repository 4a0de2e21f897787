"""Crash recovery: a sync whose worker is SIGKILLed at 40 % and replaced at once, vs undisturbed.

    .venv/bin/python -m bench.crash_recovery --provider both                  # ~6 min
    .venv/bin/python -m bench.crash_recovery --provider battlenet --repeat 2  # ~5 min
    .venv/bin/python -m bench.crash_recovery --provider discord --heartbeat-timeout 2
    .venv/bin/python -m bench.crash_recovery --quick                          # smoke, ~1.5 min

Real Temporal dev server, real Postgres (a fresh database and task queue per run), the sandbox
in its own process (a fresh one per run), the worker as a separate `python worker.py` process.
Each comparison runs side by side: the undisturbed run and the killed run back to back (in
alternating order when repeated), so the machine's noise hits both.
- Battle.net: a full sync of 5 guilds x 130 members (~2,600 requests, ~55 s) against the
  sandbox's strict 50/s sliding window, with BNET_RATE_PER_SECOND=50.
- Discord: one tenant of 8 text channels x 4,000 messages under the sandbox's default limits
  (messages 5 per 5 s per channel, global 50/s: the channel floor is 40 s).
Killed run: once 40 % of the characters (messages) are stored in Postgres, the worker gets
SIGKILL and a fresh worker process is started at once. Seconds = workflow start -> result.
Printed: seconds of each run, the ratio killed/undisturbed, the 429s the sandbox served, whether
the stored data equals the sandbox's ground truth, and what the recovery waited on (sandbox
request samples; from the Temporal histories: retried activity attempts with their last failure,
timed-out workflow tasks). `--heartbeat-timeout S` sets the sync input's heartbeat timeout
(the workflows may cap it); by default the input's own default is used.
Targets: ratio <= 1.10, 0 429s, data exact.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import statistics
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from sqlalchemy import Select, func, select
from temporalio.client import Client, WorkflowHandle

from activities.discord_types import TenantSyncInput
from activities.types import BattleNetSyncInput
from bench.common import Stack, code_version, recovery_report, stuck_report, throwaway_stack
from bench.discord_sync import TOKEN, WorkerProcess
from sandbox.admin_client import admin
from sandbox.battlenet import BattleNetSandboxConfig
from sandbox.discord import DiscordSandboxConfig
from sandbox.discord_world import DiscordWorldConfig
from sandbox.server import SandboxConfig, SandboxProcess
from sandbox.world import BattleNetWorldConfig
from storage import battlenet as bnet_db
from storage import discord as discord_db
from storage.db import create_engine
from storage.models import characters, messages
from tests.integration.battlenet_support import assert_matches_truth, fetch_all
from tests.integration.discord_support import stored_ids
from workflows.battlenet import BattleNetSync
from workflows.discord import DiscordTenantSync

KILL_AT = 0.40
BNET_RATE = 50


# -- the two jobs ---------------------------------------------------------------------------------


class Job(Protocol):
    name: str
    unit: str  # what progress counts: stored characters or messages

    def describe(self) -> str: ...
    def sandbox(self) -> SandboxConfig: ...
    def env(self, url: str) -> dict[str, str]: ...
    async def prepare(self, url: str, database_url: str) -> int: ...
    def progress(self) -> Select[Any]: ...
    async def start(
        self, client: Client, queue: str, hb: float | None
    ) -> WorkflowHandle[Any, Any]: ...
    def summary(self, result: Any) -> str: ...
    def four29s(self, stats: dict[str, Any]) -> tuple[int, str]: ...
    async def check(self, url: str, database_url: str) -> str: ...


class BattleNetJob:
    name, unit = "Battle.net", "characters"

    def __init__(self, guilds: int, roster: int) -> None:
        self.guilds, self.roster = guilds, roster

    def describe(self) -> str:
        return (
            f"full sync of {self.guilds} guilds x {self.roster} members, sandbox {BNET_RATE}/s "
            f"(strict sliding window), BNET_RATE_PER_SECOND={BNET_RATE}"
        )

    def sandbox(self) -> SandboxConfig:
        world = BattleNetWorldConfig(regions=("eu",), guilds_per_region=self.guilds,
                                     roster_min=self.roster, roster_max=self.roster)  # fmt: skip
        return BattleNetSandboxConfig(world=world, per_second=BNET_RATE)

    def env(self, url: str) -> dict[str, str]:
        return {
            "BNET_CLIENT_ID": "sandbox-client",
            "BNET_CLIENT_SECRET": "sandbox-secret",
            "BNET_API_BASE_URL": url,
            "BNET_OAUTH_URL": f"{url}/token",
            "BNET_RATE_PER_SECOND": str(BNET_RATE),
        }

    async def prepare(self, url: str, database_url: str) -> int:
        engine = create_engine(database_url, pool_size=1)
        async with engine.begin() as conn:
            for g in await admin(url, "truth/guilds?region=eu"):
                await bnet_db.track_guild(conn, "eu", g["realm_slug"], g["name"])
        await engine.dispose()
        return len([c for c in await admin(url, "truth/characters?region=eu") if c["guild_id"]])

    def progress(self) -> Select[Any]:
        synced = characters.c.last_synced_at.is_not(None)
        return select(func.count()).select_from(characters).where(synced)

    async def start(self, client: Client, queue: str, hb: float | None) -> WorkflowHandle[Any, Any]:
        inp = BattleNetSyncInput(region="eu", full=True)
        if hb is not None:
            inp.heartbeat_timeout_seconds = int(hb)
        return await client.start_workflow(
            BattleNetSync.run, inp, id=f"battlenet-sync/eu/{queue}", task_queue=queue
        )

    def summary(self, result: Any) -> str:
        return (
            f"counted {result.characters} characters synced + {result.characters_not_found} "
            f"not found, {result.children_failed} children failed"
        )

    def four29s(self, stats: dict[str, Any]) -> tuple[int, str]:
        return int(stats["throttled"]), ""

    async def check(self, url: str, database_url: str) -> str:
        rows = await fetch_all(database_url)
        try:
            await asyncio.to_thread(assert_matches_truth, rows, url, "eu")
        except Exception as exc:  # an assertion (or a missing row) names the first mismatch
            where = traceback.extract_tb(exc.__traceback__)[-1]
            return f"{type(exc).__name__} {str(exc)[:200]} at `{where.line}`"
        return ""


class DiscordJob:
    name, unit = "Discord", "messages"

    def __init__(self, channels: int, per_channel: int) -> None:
        self.size = (channels, per_channel)
        self.guild_id = 0
        self.channels: list[int] = []

    def describe(self) -> str:
        return (
            f"tenant of {self.size[0]} text channels x {self.size[1]} messages, sandbox default "
            "limits (messages 5 per 5 s per channel, global 50/s)"
        )

    def sandbox(self) -> SandboxConfig:
        world = DiscordWorldConfig(
            seed=42, tenants=1, channels_per_tenant=self.size[0], messages_per_channel=self.size[1]
        )
        return DiscordSandboxConfig(world=world)

    def env(self, url: str) -> dict[str, str]:
        return {"DISCORD_BOT_TOKEN": TOKEN, "DISCORD_API_BASE_URL": f"{url}/api/v10"}

    async def prepare(self, url: str, database_url: str) -> int:
        tenant = (await admin(url, "tenants"))["tenants"][0]
        self.guild_id = int(tenant["guild_id"])
        text = [c for c in tenant["channels"] if c["type"] == 0]
        self.channels = [int(c["id"]) for c in text]
        engine = create_engine(database_url, pool_size=1)
        async with engine.begin() as conn:
            await discord_db.track_tenant(conn, self.guild_id)
        await engine.dispose()
        return sum(int(c["messages"]) for c in text)

    def progress(self) -> Select[Any]:
        return select(func.count()).select_from(messages)

    async def start(self, client: Client, queue: str, hb: float | None) -> WorkflowHandle[Any, Any]:
        inp = TenantSyncInput(discord_guild_id=self.guild_id)
        if hb is not None:
            inp.heartbeat_timeout_seconds = hb
        return await client.start_workflow(
            DiscordTenantSync.run, inp, id=f"discord-sync/{self.guild_id}/{queue}", task_queue=queue
        )

    def summary(self, result: Any) -> str:
        return (
            f"{result.status}, {result.messages} messages, "
            f"{result.channels_done}/{result.channels} channels done"
        )

    def four29s(self, stats: dict[str, Any]) -> tuple[int, str]:
        scopes = {k: n for k, n in stats["rate_limited"].items() if n}
        buckets = {k: n for k, n in stats["rate_limited_by_bucket"].items() if n}
        return sum(scopes.values()), f"by scope {scopes}, by bucket {buckets}"

    async def check(self, url: str, database_url: str) -> str:
        stored = await stored_ids(database_url)
        wrong = []
        for cid in self.channels:
            truth = [int(i) for i in (await admin(url, f"channels/{cid}/ids"))["ids"]]
            got = stored.get(cid, [])
            if got != truth:
                missing, extra = len(set(truth) - set(got)), len(set(got) - set(truth))
                wrong.append(f"channel {cid}: {len(got)} stored / {len(truth)} true, "
                             f"{missing} missing, {extra} extra")  # fmt: skip
        return "; ".join(wrong)


# -- one run --------------------------------------------------------------------------------------


@dataclass
class Kill:
    at: float  # seconds after the workflow start
    wall: float  # time.time() of the kill
    stored: int
    total: int
    requests: int = 0  # the sandbox's count right after the kill
    replacement_ready: float | None = None  # seconds after the kill


@dataclass
class Run:
    label: str
    seconds: float | None = None  # None: no result within the timeout
    summary: str = ""
    requests: int = 0
    four29s: int = 0
    four29_detail: str = ""
    problem: str = ""  # "" when the data is exact
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # t, requests, 429s
    kill: Kill | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Setup:
    """One run's own sandbox, database, task queue and worker processes."""

    url: str
    database_url: str
    queue: str
    total: int  # rows the job stores
    env: dict[str, str]
    workers: list[WorkerProcess] = field(default_factory=list)


async def sample_requests(job: Job, url: str, run: Run, since: float) -> None:
    """(seconds since ``since``, the sandbox's requests, its 429s) every 0.2 s."""
    async with httpx.AsyncClient(timeout=10) as http:
        while True:
            stats = (await http.get(f"{url}/_admin/stats")).json()
            run.samples.append((time.monotonic() - since, stats["requests"], job.four29s(stats)[0]))
            await asyncio.sleep(0.2)


async def kill_and_replace(job: Job, setup: Setup, started: float) -> Kill:
    """Once 40 % of the rows are stored: SIGKILL the worker and start a fresh one at once."""
    target = math.ceil(setup.total * KILL_AT)
    engine = create_engine(setup.database_url, pool_size=1)
    async with engine.connect() as conn:
        while (stored := int((await conn.execute(job.progress())).scalar_one())) < target:
            await asyncio.sleep(0.1)
    await engine.dispose()
    first = setup.workers[0]
    first.proc.send_signal(signal.SIGKILL)
    await asyncio.to_thread(first.proc.wait)
    kill = Kill(time.monotonic() - started, time.time(), stored, setup.total)
    setup.workers.append(WorkerProcess(setup.env, None))
    kill.requests = int((await admin(setup.url, "stats"))["requests"])
    return kill


async def _ready_after(worker: WorkerProcess, kill: Kill) -> None:
    await worker.ready()
    kill.replacement_ready = time.time() - kill.wall


async def drive(client: Client, job: Job, setup: Setup, killed: bool, timeout: float,
                hb: float | None) -> Run:  # fmt: skip
    """Start the worker, then the workflow; (kill and replace the worker;) wait for the result."""
    run = Run(f"killed at {KILL_AT:.0%}" if killed else "undisturbed")
    setup.workers.append(WorkerProcess(setup.env, None))
    await setup.workers[0].ready()
    await admin(setup.url, "reset", {})
    started = time.monotonic()
    sampler = asyncio.create_task(sample_requests(job, setup.url, run, started))
    handle = await job.start(client, setup.queue, hb)
    ready = None
    if killed:
        run.kill = await asyncio.wait_for(kill_and_replace(job, setup, started), timeout)
        ready = asyncio.create_task(_ready_after(setup.workers[1], run.kill))
    try:
        result = await asyncio.wait_for(handle.result(), timeout)
        run.seconds = time.monotonic() - started
        run.summary = job.summary(result)
    except TimeoutError:
        run.summary = f"NO RESULT within {timeout:.0f}s; what still waits:"
        run.notes += await stuck_report(client, setup.queue)
        await handle.terminate("crash-recovery bench: no result within the timeout")
    except Exception as exc:
        run.summary = f"FAILED: {exc!r:.300}"
    finally:
        sampler.cancel()
    if ready is not None and run.kill is not None:
        await asyncio.wait([ready], timeout=5)
        ready.cancel()
        history = await recovery_report(client, setup.queue, run.kill.wall)
        run.notes.append("Temporal histories (times after the kill): " + "; ".join(history))
    return run


async def run_once(stack: Stack, job: Job, killed: bool, args: argparse.Namespace) -> Run:
    """One run on its own sandbox, database and task queue; counters and exactness after it."""
    assert stack.client is not None
    with SandboxProcess(job.sandbox()) as sandbox:
        database_url = await stack.fresh_database()
        total = await job.prepare(sandbox.url, database_url)
        queue = f"bench-crash-{uuid.uuid4().hex[:8]}"
        env = {
            "DATABASE_URL": database_url,
            "TEMPORAL_ADDRESS": stack.client.service_client.config.target_host,
            "TEMPORAL_TASK_QUEUE": queue,
            "LOG_LEVEL": "WARNING",
            **job.env(sandbox.url),
        }
        setup = Setup(sandbox.url, database_url, queue, total, env)
        try:
            run = await drive(
                stack.client, job, setup, killed, args.timeout, args.heartbeat_timeout
            )
        except BaseException:
            for worker in setup.workers:
                print(f"--- worker log tail:\n{worker.tail()}", flush=True)
            raise
        finally:
            for worker in setup.workers:
                worker.stop()
        stats = await admin(sandbox.url, "stats")
        run.requests = int(stats["requests"])
        run.four29s, run.four29_detail = job.four29s(stats)
        run.problem = await job.check(sandbox.url, database_url)
    return run


# -- reporting ----------------------------------------------------------------------------------


def pause(run: Run) -> tuple[float, float]:
    """(first request after the kill, longest stretch without a new request), in seconds."""
    kill = run.kill
    if not run.samples:
        return math.nan, math.nan
    resumed = math.nan
    if kill is not None:
        after = (t - kill.at for t, n, _ in run.samples if t > kill.at and n > kill.requests)
        resumed = next(after, math.nan)
    gaps, last_t, last_n = [0.0], run.samples[0][0], run.samples[0][1]
    for t, n, _ in run.samples[1:]:
        if n != last_n:
            gaps.append(t - last_t)
            last_t, last_n = t, n
    return resumed, max(gaps)


def when_429(run: Run) -> str:
    """When the sampler first saw a 429 (seconds after the start, and after the kill)."""
    t = next((t for t, _, n in run.samples if n), math.nan)
    return f"{t:.1f}s after the start" + (
        f" (+{t - run.kill.at:.1f}s after the kill)" if run.kill else ""
    )


def row(run: Run) -> str:
    secs = f"{run.seconds:.1f}" if run.seconds is not None else "-"
    exact = "yes" if not run.problem else "NO"
    line = (
        f"  {run.label:<16} {secs:>8} {run.requests:>9} {run.four29s:>5} {exact:>6}  {run.summary}"
    )
    resumed, longest = pause(run)
    if run.kill:
        k = run.kill
        ready = f"+{k.replacement_ready:.1f}s" if k.replacement_ready is not None else "never"
        line += (
            f"\n    killed at {k.at:.1f}s with {k.stored}/{k.total} stored "
            f"({k.stored / k.total:.0%}); after the kill: replacement polling {ready}, first "
            f"request +{resumed:.1f}s"
        )
    line += f"\n    longest stretch without a request: {longest:.1f}s"
    if run.four29s:
        line += f"\n    429s {run.four29_detail}; first seen {when_429(run)}"
    if run.problem:
        line += f"\n    data NOT exact: {run.problem}"
    return line + "".join(f"\n    {note}" for note in run.notes)


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


async def compare(stack: Stack, job: Job, args: argparse.Namespace) -> list[float]:
    print(f"\n{job.name}: {job.describe()}; kill at {KILL_AT:.0%} of the {job.unit} stored",
          flush=True)  # fmt: skip
    ratios = []
    for i in range(args.repeat):
        order = [False, True] if i % 2 == 0 else [True, False]
        print(f"pair {i + 1}/{args.repeat}:\n  {'run':<16} {'seconds':>8} {'requests':>9} "
              f"{'429s':>5} {'exact':>6}  result", flush=True)  # fmt: skip
        runs = {}
        for killed in order:
            runs[killed] = await run_once(stack, job, killed, args)
            print(row(runs[killed]), flush=True)
        calm, hit = runs[False], runs[True]
        if calm.seconds and hit.seconds:
            ratio = hit.seconds / calm.seconds
            ratios.append(ratio)
            shown = f"{ratio:.3f} (target <= 1.10: {verdict(ratio <= 1.10)})"
        else:
            shown = "- (a run gave no result)"
        no429 = calm.four29s == 0 and hit.four29s == 0
        exact = not calm.problem and not hit.problem
        print(f"  ratio killed/undisturbed {shown}; 429s {calm.four29s} / {hit.four29s} (target 0:"
              f" {verdict(no429)}); data exact {verdict(exact)}", flush=True)  # fmt: skip
    return ratios


async def main(args: argparse.Namespace) -> None:
    jobs: list[Job] = []
    if args.provider in ("battlenet", "both"):
        jobs.append(BattleNetJob(5, 30) if args.quick else BattleNetJob(5, 130))
    if args.provider in ("discord", "both"):
        jobs.append(DiscordJob(4, 1000) if args.quick else DiscordJob(8, 4000))
    hb = "the workflows' input default" if args.heartbeat_timeout is None else (
        f"{args.heartbeat_timeout:g}s (--heartbeat-timeout)")  # fmt: skip
    version = code_version()
    print(f"crash recovery at {version}; worker = separate `python worker.py`, SIGKILLed and "
          f"replaced at once; heartbeat timeout: {hb}", flush=True)  # fmt: skip
    summary = []
    async with throwaway_stack(quiet=True) as stack:
        for job in jobs:
            ratios = await compare(stack, job, args)
            summary.append((job.name, ratios))
    print()
    for name, ratios in summary:
        shown = " ".join(f"{r:.3f}" for r in ratios) or "-"
        med = f", median {statistics.median(ratios):.3f}" if len(ratios) > 1 else ""
        print(f"{name}: ratio killed/undisturbed {shown}{med} (target <= 1.10)")
    if code_version() != version:
        print(f"NOTE: the code changed during the runs: now {code_version()}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--provider", choices=("battlenet", "discord", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="small jobs (smoke test, ~1 min)")
    parser.add_argument("--repeat", type=int, default=1, help="pairs of runs per provider")
    parser.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=None,
        metavar="S",
        help="heartbeat timeout of the sync's activities (default: the input's)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="give up on a run's result after S seconds (then say what waits)",
    )
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
