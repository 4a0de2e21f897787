"""A real worker's /metrics after a real sync of Battle.net, Discord and ZwiftRacing against the
sandboxes: its counts equal the sandboxes' own counters and the database's rows.

One `python worker.py` process with METRICS_PORT (the shared budget backend, the default)
syncs a guild (its roster and characters, some hidden: 404s, dead letters) with two forced
429s and two forced 503s, a PvP bracket with its equipment, a Discord tenant and a ZwiftRacing
club's riders, while a paused club scheduler holds one queued request. Then, over HTTP,
``GET /metrics``:
- requests per provider and status = the sandbox's requests and answers by status; the OAuth
  token requests (bucket ``none``) = the sandbox's token requests; 429s = its ``throttled``;
- every request through a budget waited for its place once (the wait histogram's count);
- rows inserted = rows in the tables (a fresh database); runs ended and sync durations = the
  ``sync_runs`` rows; dead letters = ``sync_failures`` rows;
- the scheduler's queue depth and oldest wait, bucket utilisation, and the SDK's own metrics.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from activities.discord_types import TenantSyncInput
from activities.types import BattleNetSyncInput, PvpSyncInput
from activities.zwift_types import ZwiftSyncInput
from sandbox.battlenet import BattleNetSandboxConfig, create_battlenet_app
from sandbox.server import SandboxServer
from sandbox.world import BattleNetWorldConfig
from sandbox.zwift import API_PREFIX as ZWIFT_PREFIX
from sandbox.zwift import ZwiftSandboxConfig, create_zwift_app
from sandbox.zwift_world import ZwiftWorldConfig
from storage import zwift as zwift_db
from storage.db import create_engine
from tests.integration.battlenet_support import track_sandbox_guilds
from tests.integration.discord_support import create_tenant, discord_server, track
from tests.integration.worker_process import ROOT, stop_worker
from tests.sandbox_helpers import admin
from workflows.battlenet import BattleNetSync
from workflows.discord import DiscordTenantSync
from workflows.pvp import PvpSync
from workflows.scheduler import Scheduler, scheduler_id
from workflows.scheduler_types import SchedulerInput, SyncRequest
from workflows.zwift import ZwiftSync

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

Samples = list[tuple[str, dict[str, str], float]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scrape(port: int) -> Samples:
    body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return [
        (s.name, dict(s.labels), float(s.value))
        for family in text_string_to_metric_families(body)
        for s in family.samples
    ]


def _sum(samples: Samples, name: str, **match: str) -> float:
    return sum(v for n, labels, v in samples if n == name and _matches(labels, match))


def _matches(labels: dict[str, str], match: dict[str, str]) -> bool:
    for key, want in match.items():
        if want.startswith("!"):
            if labels.get(key) == want[1:]:
                return False
        elif labels.get(key) != want:
            return False
    return True


def _by(samples: Samples, name: str, label: str, **match: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for n, labels, v in samples:
        if n == name and _matches(labels, match):
            found[labels[label]] = found.get(labels[label], 0.0) + v
    return {k: v for k, v in found.items() if v}


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=out, stderr=out
        )


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


async def _wait_for_metrics(port: int, worker: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise AssertionError(f"the worker ended: {_tail(log)}")
        try:
            await asyncio.to_thread(_scrape, port)
            return
        except httpx.HTTPError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"no /metrics on {port}: {_tail(log)}")


async def test_worker_metrics_equal_the_sandboxes_counters_and_the_stored_rows(
    client, temporal_env, database_url, task_queue, tmp_path
):
    run = uuid.uuid4().hex[:8]
    port = _free_port()
    bnet_config = BattleNetSandboxConfig(
        world=BattleNetWorldConfig(regions=("eu",), guilds_per_region=1, roster_min=8,
                                   roster_max=8, hidden_ratio=0.25, pvp_entries=30),
    )  # fmt: skip
    zwift_config = ZwiftSandboxConfig(
        world=ZwiftWorldConfig(seed=7, club_sizes=(30, 5), clubless=0, past_events=0,
                               urgent_events=0, near_events=0, far_events=0),
        api_key="sandbox-key",
    )  # fmt: skip
    log = tmp_path / "worker.log"
    with (
        SandboxServer(create_battlenet_app(bnet_config)) as bnet,
        discord_server(bot_token="sandbox-bot-token", lifted=True) as discord,
        SandboxServer(create_zwift_app(zwift_config)) as zwift,
    ):
        await track_sandbox_guilds(database_url, bnet.url)
        admin(bnet.url, "faults", {"force_429": 2, "force_5xx": 2})
        tenant = create_tenant(discord.url, name="Metrics", text_channels=[130, 7])
        guild_id = int(tenant["guild_id"])
        await track(database_url, guild_id)
        clubs = admin(zwift.url, "truth")["clubs"]
        club, idle_club = int(clubs[0]["club_id"]), int(clubs[1]["club_id"])
        engine = create_engine(database_url, pool_size=1)
        async with engine.begin() as conn:
            await zwift_db.track_club(conn, club)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
        env.update(
            DATABASE_URL=database_url,
            TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
            TEMPORAL_TASK_QUEUE=task_queue, METRICS_PORT=str(port),
            PVP_SYNC_TASK_QUEUE=f"{task_queue}.pvp-sync",
            PVP_PROCESSING_TASK_QUEUE=f"{task_queue}.pvp-processing",
            DATA_DIR=str(tmp_path / "data"), LOG_LEVEL="WARNING",
            BNET_CLIENT_ID="sandbox-client", BNET_CLIENT_SECRET="sandbox-secret",
            BNET_API_BASE_URL=bnet.url, BNET_OAUTH_URL=f"{bnet.url}/token",
            DISCORD_BOT_TOKEN="sandbox-bot-token", DISCORD_API_BASE_URL=f"{discord.url}/api/v10",
            ZWIFT_API_KEY="sandbox-key", ZWIFT_API_BASE_URL=zwift.url + ZWIFT_PREFIX,
        )  # fmt: skip
        worker = _start_worker(env, log)
        try:
            await _wait_for_metrics(port, worker, log)
            # a paused scheduler of another club holds one request: the queue gauges
            sched = scheduler_id("zwift", str(idle_club))
            handle = await client.start_workflow(
                Scheduler.run,
                SchedulerInput(provider="zwift", scope=str(idle_club), paused=True),
                id=sched, task_queue=task_queue,
            )  # fmt: skip
            await handle.signal(Scheduler.enqueue, SyncRequest(kind="riders", priority=20))
            queued_at = time.time()
            runs = [
                client.execute_workflow(
                    BattleNetSync.run, BattleNetSyncInput(region="eu", batch_size=4),
                    id=f"battlenet-sync/eu/metrics-{run}", task_queue=task_queue,
                ),
                client.execute_workflow(
                    PvpSync.run,
                    PvpSyncInput(region="eu", brackets=["2v2"], equipment_batch_size=15,
                                 sync_queue=f"{task_queue}.pvp-sync",
                                 processing_queue=f"{task_queue}.pvp-processing"),
                    id=f"pvp-sync/eu/metrics-{run}", task_queue=task_queue,
                ),
                client.execute_workflow(
                    DiscordTenantSync.run, TenantSyncInput(discord_guild_id=guild_id),
                    id=f"discord-sync/{guild_id}/{task_queue}", task_queue=task_queue,
                ),
                client.execute_workflow(
                    ZwiftSync.run, ZwiftSyncInput(club_id=club, kind="riders"),
                    id=f"zwift-sync/{club}/riders/metrics-{run}", task_queue=task_queue,
                ),
            ]  # fmt: skip
            try:
                bnet_counts, pvp_result, discord_result, zwift_result = await asyncio.wait_for(
                    asyncio.gather(*runs), timeout=60
                )
            except Exception:
                raise AssertionError(f"a sync did not finish: {_tail(log)}") from None
            # visibility lists the scheduler (eventually consistent); figures are a second old
            await asyncio.sleep(1.1)
            least = time.time() - queued_at
            samples = await asyncio.to_thread(_scrape, port)
            waited = time.time() - queued_at
            await handle.terminate()
        finally:
            stop_worker(worker)
        assert worker.returncode == 0, _tail(log)  # its endpoint stops with it, cleanly
        stats = {name: admin(s.url, "stats") for name, s in
                 (("battlenet", bnet), ("discord", discord), ("zwift", zwift))}  # fmt: skip
        async with engine.connect() as conn:
            stored = {
                t: int((await conn.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one())
                for t in (
                    "characters",
                    "messages",
                    "zwift_riders",
                    "pvp_leaderboard_entries",
                    "pvp_leaderboard_entry_items",
                )
            }
            runs_ended = Counter(
                (r.provider, r.kind, r.status)
                for r in await conn.execute(text("SELECT provider, kind, status FROM sync_runs"))
            )
            failed = await conn.execute(
                text("SELECT provider, count(*) FROM sync_failures GROUP BY provider")
            )
            failures: dict[str, int] = {str(p): int(n) for p, n in failed}
        await engine.dispose()
    assert bnet_counts.characters_not_found > 0, bnet_counts
    assert discord_result.messages == 137 and zwift_result.status == "completed"
    assert pvp_result.failed_brackets == [], pvp_result

    requests = "ratesync_upstream_requests_total"
    for provider, seen in stats.items():
        assert seen["requests"] > 0
        assert _sum(samples, requests, provider=provider, bucket="!none") == seen["requests"]
        assert _by(samples, requests, "status", provider=provider, bucket="!none") == {
            status: float(n) for status, n in seen["by_status"].items() if n
        }, provider
    assert stats["battlenet"]["by_status"]["429"] == 2 and stats["battlenet"]["throttled"] == 2
    assert stats["battlenet"]["by_status"]["503"] == 2
    assert (
        _sum(samples, requests, provider="battlenet", bucket="none")
        == (stats["battlenet"]["token_requests"])
        > 0
    )  # the OAuth token, outside any budget
    assert _by(samples, requests, "bucket", provider="battlenet") == {
        "battlenet": stats["battlenet"]["requests"], "none": stats["battlenet"]["token_requests"]
    }  # fmt: skip
    assert set(_by(samples, requests, "bucket", provider="zwift")) == {"clubs", "riders_post"}
    limited = "ratesync_rate_limited_total"
    for provider, seen in stats.items():
        assert _sum(samples, limited, provider=provider) == seen["throttled"], provider
    assert _by(samples, limited, "scope", provider="battlenet") == {"battlenet": 2.0}
    # every request through a budget waited for its place once (by its sync's lane)
    through_budgets = sum(seen["requests"] for seen in stats.values())
    assert _sum(samples, "ratesync_limiter_wait_seconds_count") == through_budgets
    lanes = _by(samples, "ratesync_limiter_wait_seconds_count", "lane")
    assert set(lanes) <= {"manual", "urgent", "incremental", "bulk", "backfill"}, lanes

    rows = "ratesync_rows_upserted_total"
    assert _sum(samples, rows, table="characters", outcome="inserted") == stored["characters"]
    assert _sum(samples, rows, table="messages", outcome="inserted") == stored["messages"] == 137
    assert _sum(samples, rows, table="zwift_riders", outcome="inserted") == stored["zwift_riders"]
    assert _sum(samples, rows, table="guilds", outcome="updated") == 1
    for table in ("pvp_leaderboard_entries", "pvp_leaderboard_entry_items"):
        assert _sum(samples, rows, table=table, outcome="inserted") == stored[table] > 0, table

    assert runs_ended and all(status != "running" for *_, status in runs_ended)
    assert {p for p, *_ in runs_ended} == {"battlenet", "discord", "zwift"}, runs_ended
    assert runs_ended[("zwift", "riders", "completed")] == 1, runs_ended
    for (provider, kind, status), n in runs_ended.items():
        assert _sum(samples, "ratesync_sync_runs_total", provider=provider, kind=kind,
                    outcome=status) == n  # fmt: skip
        assert _sum(samples, "ratesync_sync_duration_seconds_count", provider=provider,
                    kind=kind) == n  # fmt: skip
    assert _sum(samples, "ratesync_sync_runs_total") == sum(runs_ended.values())
    assert failures.get("battlenet", 0) >= bnet_counts.characters_not_found  # PvP's 404s too
    assert _by(samples, "ratesync_dead_letters", "provider") == {
        p: float(n) for p, n in failures.items()
    }
    assert ("ratesync_dead_letters", {"provider": "zwift"}, 0.0) in samples

    assert _sum(samples, "ratesync_scheduler_queue_depth", scheduler=sched) == 1
    oldest = _sum(samples, "ratesync_scheduler_oldest_wait_seconds", scheduler=sched)
    # the wait now, not as of the scheduler's last workflow task (the signal, seconds ago)
    assert least - 1.5 <= oldest <= waited + 0.5 and least > 2, (least, oldest, waited)
    assert _sum(samples, "ratesync_scheduler_queue_depth") == 1  # only this queue's scheduler

    utilisation = {
        (labels["provider"], labels["bucket"], labels["window"]): v
        for n, labels, v in samples if n == "ratesync_bucket_utilisation"
    }  # fmt: skip
    assert {("battlenet", "battlenet", "1s"), ("battlenet", "battlenet", "1h"),
            ("discord", "discord global", "1s"), ("zwift", "riders_post", "15m")} <= set(
        utilisation)  # fmt: skip
    assert all(0 <= v <= 1 for v in utilisation.values()), utilisation
    # the hour's places are still held (cooling) by what was sent within it
    assert utilisation[("battlenet", "battlenet", "1h")] * 36000 >= stats["battlenet"]["requests"]
    assert utilisation[("zwift", "riders_post", "15m")] == 1.0  # its one place is spent

    # the Temporal SDK's own metrics, on the same endpoint
    assert _sum(samples, "temporal_workflow_completed_total") >= 3
    assert _sum(samples, "temporal_request_total") > 0
    assert any(n == "temporal_activity_execution_latency_count" and v > 0 for n, _, v in samples)
