"""Issue 12: one Battle.net budget shared through Postgres by real worker processes.

Real `python worker.py --processes N` (cli/workerpool.py), real Postgres, the Battle.net sandbox
in its own process enforcing a strict sliding window (its admin stats: 429s and the most
requests that *arrived* in any window), RATE_LIMIT_BACKEND=postgres (the default):
1. three processes at one limit never put more than the limit in any 1-s window and draw no
   429; one is SIGKILLed mid-sync and not replaced: the sync ends with the sandbox's data exact,
   the dead process's lease rows go and the places of its 1-s lease are free within 5 s;
2. every worker killed after 90 % of an hourly budget and restarted: the new processes send
   nothing beyond the hourly budget (the batches sleep on a durable timer), no 429 (the killed
   ones' hourly places cool for the hour, used or not: here nothing more is sent at all);
3. a manual request from a third process (a SharedRateLimiter in this process) gets its slot
   within 0.25 s while two processes drain a backlog.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import time
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from activities.types import BattleNetSyncInput
from bench.multiworker import Pool
from providers.ratelimit import Priority, Window
from providers.shared_limit import postgres_limiter
from sandbox.battlenet import BattleNetSandboxConfig
from sandbox.server import SandboxProcess
from sandbox.world import BattleNetWorldConfig
from tests.integration.battlenet_support import (
    assert_matches_truth,
    fetch_all,
    track_sandbox_guilds,
)
from tests.integration.budget_support import LimiterTables, worker_env
from tests.sandbox_helpers import admin
from workflows.battlenet import BattleNetSync

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def sandbox(guilds: int, roster: int, per_second: int, per_hour: int = 36000) -> SandboxProcess:
    world = BattleNetWorldConfig(
        regions=("eu",), guilds_per_region=guilds, roster_min=roster, roster_max=roster
    )
    return SandboxProcess(
        BattleNetSandboxConfig(world=world, per_second=per_second, per_hour=per_hour)
    )


def stats(url: str) -> dict:
    return admin(url, "stats")


async def until(predicate, timeout: float, what: str, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(every)


async def requests_at_least(url: str, n: int, timeout: float) -> int:
    async def seen():
        return (r := stats(url)["requests"]) >= n and r

    return await until(seen, timeout, f"{n} requests at the sandbox")


async def start_sync(client: Client, queue: str, **fields: Any) -> WorkflowHandle:
    return await client.start_workflow(
        BattleNetSync.run,
        BattleNetSyncInput(region="eu", **fields),
        id=f"battlenet-sync/eu/{queue}",
        task_queue=queue,
    )


def env_for(
    temporal_env, database_url: str, queue: str, sb: SandboxProcess, per_second: int, **extra: str
):
    return worker_env(
        database_url=database_url,
        temporal_address=temporal_env.client.service_client.config.target_host,
        queue=queue,
        sandbox_url=sb.url,
        per_second=per_second,
        RATE_LIMIT_BACKEND="postgres",
        **extra,
    )


async def test_three_processes_one_limit_and_a_sigkilled_one_gives_its_places_back(
    client, temporal_env, database_url, task_queue
):
    limit = 50
    with sandbox(guilds=3, roster=40, per_second=limit) as sb:
        await track_sandbox_guilds(database_url, sb.url)
        pool = Pool(env_for(temporal_env, database_url, task_queue, sb, limit), 3)
        tables = LimiterTables(database_url)
        try:
            await pool.ready()
            handle = await start_sync(
                client, task_queue, batch_size=20, heartbeat_timeout_seconds=4
            )
            # 120 characters x 4 requests + 3 guild requests at 50/s: ~10 s; kill at ~1/4
            await requests_at_least(sb.url, 120, 60)
            workers = pool.workers()
            assert len(workers) == 3

            async def holder():  # a worker that holds places of the 1-s window now
                for pid in workers:
                    if any(r["win"] == 0 and r["places"] > 0 for r in await tables.leases(pid)):
                        return pid
                return None

            victim = await until(holder, 10, "a worker holding places of the 1-s window")
            kill_db = await tables.db_now()
            os.kill(victim, signal.SIGKILL)
            killed = time.monotonic()
            sent_at_kill = stats(sb.url)["requests"]
            dead = {r["win"]: r for r in await tables.leases(victim)}
            assert dead[0]["places"] > 0
            second = dead[0]
            # the lease ends <= 2.5 s after the last renewal, its places free 1 s + 1 period later
            free_at = second["expires_at"] + second["period"] + 1.0
            assert free_at - kill_db <= 5.0, (free_at - kill_db, second)

            async def leases_gone():
                return not await tables.leases(victim)

            await until(leases_gone, 5.0 - (time.monotonic() - killed), "the dead lease rows gone")
            gone_after = time.monotonic() - killed

            async def cooled():
                return all(abs(r["free_at"] - free_at) > 1e-6 for r in await tables.cooling(0))

            # the cooling row is removed at the first sync after free_at (renewals every 0.8 s)
            await until(cooled, 5.0 + 1.5 - (time.monotonic() - killed), "the cooling row gone")
            cooled_after = time.monotonic() - killed
            counts = await asyncio.wait_for(handle.result(), timeout=90)
        except BaseException:
            print(f"--- worker output (tail):\n{pool.tail()}", flush=True)
            raise
        finally:
            pool.stop()
            pool.log.unlink(missing_ok=True)
            await tables.aclose()
        seen = stats(sb.url)
        print(
            f"killed {victim} after {sent_at_kill} requests; its 1-s lease ({second['places']} "
            f"places) free {free_at - kill_db:.2f} s after the kill; lease rows gone after "
            f"{gone_after:.2f} s, cooling row after {cooled_after:.2f} s; hourly places it held: "
            f"{dead.get(1, {}).get('places')}; {seen['requests']} requests, busiest 1 s "
            f"{seen['max_arrivals_in_window']['1']}, 429s {seen['throttled']}"
        )
        assert sent_at_kill < 120 * 4, "the kill came after the work was done"
        assert seen["throttled"] == 0
        assert seen["max_arrivals_in_window"]["1"] <= limit
        assert counts.children_failed == 0
        assert counts.characters + counts.characters_not_found == 120, counts
        assert_matches_truth(await fetch_all(database_url), sb.url, "eu")


async def test_restarted_workers_stop_at_the_hourly_budget(
    client, temporal_env, database_url, task_queue
):
    per_hour, per_second = 120, 30
    with sandbox(guilds=1, roster=50, per_second=per_second, per_hour=per_hour) as sb:
        await track_sandbox_guilds(database_url, sb.url)
        env = env_for(
            temporal_env, database_url, task_queue, sb, per_second,
            BNET_RATE_PER_HOUR=str(per_hour), RATE_LIMIT_MAX_WAIT_SECONDS="2",
        )  # fmt: skip
        first = Pool(env, 2)
        second: Pool | None = None
        try:
            await first.ready()
            handle = await start_sync(
                client, task_queue, batch_size=10, heartbeat_timeout_seconds=3
            )
            await requests_at_least(sb.url, per_hour * 9 // 10, 60)
            # Every worker at once (the pool's children die with it): a SIGTERM would let the
            # batches spend the last 10 % while they stop, and the new workers would find the
            # sync asleep for the hour without trying; killed, they leave it to the new ones.
            dying = first.workers()
            first.proc.send_signal(signal.SIGKILL)
            before = stats(sb.url)["requests"]
            first.proc.wait(10)

            async def all_dead():
                return not any(_alive(pid) for pid in dying)

            await until(all_dead, 10, "the killed workers gone")
            restarted = time.time()
            second = Pool(env, 2)
            await second.ready()

            async def asleep_after_restart():
                return await timers_started(client, task_queue, since=restarted)

            # the batches' activities time out (3 s heartbeat) and run on the new workers, which
            # spend what is left of the hour and then sleep for the window
            sleeping = await until(
                asleep_after_restart, 30, "a batch sleeping after the restart", 0.5
            )
            await asyncio.sleep(1.0)
            seen = stats(sb.url)
            assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
            await handle.terminate("test: the hourly budget is spent")
        except BaseException:
            for pool in (first, second):
                if pool is not None:
                    print(f"--- worker output (tail):\n{pool.tail()}", flush=True)
            raise
        finally:
            for pool in (first, second):
                if pool is not None:
                    pool.stop()
                    pool.log.unlink(missing_ok=True)
        print(
            f"{before} requests before the restart, {seen['requests']} in all (hourly budget "
            f"{per_hour}); 429s {seen['throttled']}; workflows asleep after the restart: {sleeping}"
        )
        assert before < per_hour, "the restart came after the budget was spent"
        assert seen["requests"] <= per_hour, seen
        assert seen["throttled"] == 0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def timers_started(client, queue: str, since: float) -> int:
    """Workflows of the sync (children included) that started a durable timer after ``since``
    (epoch seconds): the batches sleep so when the budget is spent."""
    n = 0
    async for wf in client.list_workflows(f"TaskQueue = '{queue}'"):
        history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        if any(
            e.event_type == EventType.EVENT_TYPE_TIMER_STARTED and e.event_time.ToSeconds() >= since
            for e in history.events
        ):
            n += 1
    return n


async def test_a_manual_request_from_another_process_is_served_within_a_slot(
    client, temporal_env, database_url, task_queue
):
    limit = 50
    with sandbox(guilds=4, roster=40, per_second=limit) as sb:
        await track_sandbox_guilds(database_url, sb.url)
        pool = Pool(env_for(temporal_env, database_url, task_queue, sb, limit), 2)
        # the workers' Battle.net bucket (activities/battlenet_build.bnet_limiter)
        manual = postgres_limiter(
            "battlenet",
            [Window(limit, 1.0), Window(36000, 3600.0)],
            database_url=database_url,
            provider="battlenet",
            credential=[sb.url, "sandbox-client"],
            max_wait=30.0,
            manual_reserve=4,
            spread=True,
        )
        waits: list[float] = []
        try:
            await pool.ready()
            handle = await start_sync(client, task_queue, full=True, batch_size=40)
            await requests_at_least(sb.url, 2 * limit, 60)  # both drain at the full rate
            for i in range(14):
                if i == 7:
                    await asyncio.sleep(4.0)  # the manual hold (3 s) lapses: a cold start again
                started = time.monotonic()
                async with manual.slot(Priority.MANUAL):
                    waits.append(time.monotonic() - started)
                await asyncio.sleep(0.2 + 0.05 * (i % 5))
            draining = (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
            await handle.terminate("test: measured")
        except BaseException:
            print(f"--- worker output (tail):\n{pool.tail()}", flush=True)
            raise
        finally:
            await manual.aclose()
            pool.stop()
            pool.log.unlink(missing_ok=True)
        seen = stats(sb.url)
        print(
            "manual waits (s): "
            + " ".join(f"{w:.3f}" for w in waits)
            + f"; median {statistics.median(waits):.3f}, max {max(waits):.3f}; "
            f"{seen['requests']} requests, busiest 1 s {seen['max_arrivals_in_window']['1']}, "
            f"429s {seen['throttled']}"
        )
        assert draining, "the backlog ran out before the manual requests were measured"
        assert max(waits) <= 0.25, waits
        assert seen["throttled"] == 0
        assert seen["max_arrivals_in_window"]["1"] <= limit
