"""The worker's logs with LOG_FORMAT=json at LOG_LEVEL=DEBUG, after a real sync of every
provider: every line is one JSON object with time, level, logger and message; the activities'
lines carry workflow id, run id, activity and attempt; each stored page or batch is one INFO
line and each HTTP request one DEBUG line; and no secret is in any of them.

A real `python worker.py` process (its stderr is the log) syncs Battle.net (a guild, its
roster and characters, one hidden: a 404), a PvP bracket with its equipment, a Discord tenant
and a ZwiftRacing club's riders (a club page, a bulk POST) against the sandboxes, with a client
secret, bot token and API key made for this run. The needles: those three (the client secret
also as HTTP Basic credentials), every OAuth access token the sandbox issued, and the password
of the database URL the worker was given.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

import runtime
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
from tests.chaos.secret_support import needles_for
from tests.integration.battlenet_support import track_sandbox_guilds
from tests.integration.discord_support import create_tenant, discord_server, track
from tests.integration.worker_process import ROOT, stop_worker
from tests.sandbox_helpers import admin
from workflows.battlenet import BattleNetSync
from workflows.discord import DiscordTenantSync
from workflows.pvp import PvpSync
from workflows.zwift import ZwiftSync

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

# one INFO line per stored page or batch, by provider: (message, its activity)
STORED = {
    "battlenet": [("guild stored", "bnet_sync_guild"),
                  ("characters stored", "bnet_sync_characters")],
    "pvp": [("leaderboard stored", "pvp_import_leaderboard"),
            ("equipment batch stored", "pvp_process_equipment")],
    "discord": [("messages page stored", "discord_sync_channel_pages")],
    "zwift": [("zwift step stored", "zwift_step")],
}  # fmt: skip
LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


def _start_worker(env: dict[str, str], out: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(out, "wb") as stdout, open(log, "wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=stdout, stderr=stderr
        )


def _read(path: Path) -> str:
    return path.read_text(errors="replace")


async def test_json_logs_of_every_provider_carry_the_context_and_no_secret(
    client, temporal_env, database_url, task_queue, tmp_path
):
    run = uuid.uuid4().hex
    secrets = {
        "client_id": f"logs-client-{run[:8]}",
        "client_secret": f"CLIENTSECRET{run}",
        "bot_token": f"BOTTOKEN.{run}.x",
        "zwift_api_key": f"ZWIFTKEY{run}",
        "postgres password": make_url(database_url).password or "",
    }
    assert secrets["postgres password"], "the test database asks for a password"
    pvp_queues = (f"{task_queue}.pvp-sync", f"{task_queue}.pvp-processing")
    bnet_config = BattleNetSandboxConfig(
        world=BattleNetWorldConfig(
            regions=("eu",), guilds_per_region=1, roster_min=6, roster_max=6,
            hidden_ratio=0.2, pvp_entries=30,
        ),
        client_id=secrets["client_id"], client_secret=secrets["client_secret"],
    )  # fmt: skip
    zwift_config = ZwiftSandboxConfig(
        world=ZwiftWorldConfig(seed=5, club_sizes=(25,), clubless=0, past_events=0,
                               urgent_events=0, near_events=0, far_events=0),
        api_key=secrets["zwift_api_key"],
    )  # fmt: skip
    log, out = tmp_path / "worker.log", tmp_path / "worker.out"
    with (
        SandboxServer(create_battlenet_app(bnet_config)) as bnet,
        discord_server(bot_token=secrets["bot_token"], lifted=True) as discord,
        SandboxServer(create_zwift_app(zwift_config)) as zwift,
    ):
        await track_sandbox_guilds(database_url, bnet.url)
        tenant = create_tenant(discord.url, name="Logs", text_channels=[120, 5])
        guild_id = int(tenant["guild_id"])
        await track(database_url, guild_id)
        club = int(admin(zwift.url, "truth")["clubs"][0]["club_id"])
        engine = create_engine(database_url, pool_size=1)
        async with engine.begin() as conn:
            await zwift_db.track_club(conn, club)
        await engine.dispose()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
        env.update(
            DATABASE_URL=database_url,
            TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
            TEMPORAL_TASK_QUEUE=task_queue,
            PVP_SYNC_TASK_QUEUE=pvp_queues[0], PVP_PROCESSING_TASK_QUEUE=pvp_queues[1],
            DATA_DIR=str(tmp_path / "data"), LOG_LEVEL="DEBUG", LOG_FORMAT="json",
            BNET_CLIENT_ID=secrets["client_id"], BNET_CLIENT_SECRET=secrets["client_secret"],
            BNET_API_BASE_URL=bnet.url, BNET_OAUTH_URL=f"{bnet.url}/token",
            DISCORD_BOT_TOKEN=secrets["bot_token"], DISCORD_API_BASE_URL=f"{discord.url}/api/v10",
            ZWIFT_API_KEY=secrets["zwift_api_key"], ZWIFT_API_BASE_URL=zwift.url + ZWIFT_PREFIX,
        )  # fmt: skip
        worker = _start_worker(env, out, log)
        try:
            ids = {
                "battlenet": f"battlenet-sync/eu/logs-{run[:8]}",
                "pvp": f"pvp-sync/eu/logs-{run[:8]}",
                "discord": f"discord-sync/{guild_id}/{task_queue}",
                "zwift": f"zwift-sync/{club}/riders/logs-{run[:8]}",
            }
            runs = [
                client.execute_workflow(
                    BattleNetSync.run, BattleNetSyncInput(region="eu", batch_size=4),
                    id=ids["battlenet"], task_queue=task_queue,
                ),
                client.execute_workflow(
                    PvpSync.run,
                    PvpSyncInput(region="eu", brackets=["2v2"], equipment_batch_size=15,
                                 sync_queue=pvp_queues[0], processing_queue=pvp_queues[1]),
                    id=ids["pvp"], task_queue=task_queue,
                ),
                client.execute_workflow(
                    DiscordTenantSync.run, TenantSyncInput(discord_guild_id=guild_id),
                    id=ids["discord"], task_queue=task_queue,
                ),
                client.execute_workflow(
                    ZwiftSync.run, ZwiftSyncInput(club_id=club, kind="riders"),
                    id=ids["zwift"], task_queue=task_queue,
                ),
            ]  # fmt: skip
            try:
                bnet_counts, pvp_result, discord_result, zwift_result = await asyncio.wait_for(
                    asyncio.gather(*runs), timeout=90
                )
            except Exception:
                raise AssertionError(f"a sync did not finish: {_read(log)[-4000:]}") from None
        finally:
            exit_code = stop_worker(worker)
        tokens = admin(bnet.url, "tokens")["issued"]
    assert bnet_counts.characters > 0 and bnet_counts.characters_not_found > 0, bnet_counts
    assert pvp_result.failed_brackets == [], pvp_result
    assert discord_result.messages == 125, discord_result
    assert zwift_result.status == "completed", zwift_result
    assert exit_code == 0, _read(log)[-3000:]

    text = _read(log)
    lines = _json_lines(text)
    assert len(lines) > 100, len(lines)
    for line in lines:
        assert isinstance(line["time"], str) and line["time"].endswith("+00:00"), line
        assert line["level"] in LEVELS and line["logger"] and isinstance(line["message"], str)

    runs_logged: set[tuple[str, str]] = set()
    for provider, expected in STORED.items():
        for message, activity_type in expected:
            stored = [x for x in lines if x["message"] == message and x["level"] == "INFO"]
            assert stored, f"no {message!r} line ({provider})"
            for x in stored:
                assert x["activity"] == activity_type and x["attempt"] >= 1, x
                runs_logged.add((x["workflow_id"], x["run_id"]))
    # each line names a real run: its workflow id and run id as Temporal has them
    for workflow_id, run_id in runs_logged:
        described = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
        assert described.id == workflow_id and described.run_id == run_id
    assert len(runs_logged) >= 6, runs_logged  # masters and children of the four syncs
    pages = [x for x in lines if x["message"] == "messages page stored"]
    assert sum(x["messages"] for x in pages) >= 125 and len(pages) >= 3, pages  # 100 a page

    requests = [x for x in lines if x["logger"] == "httpx" and x["level"] == "DEBUG"]
    for host in (bnet.url, discord.url, zwift.url):
        assert any(host in x["message"] for x in requests), f"no request line for {host}"
    assert any(f"{bnet.url}/token" in x["message"] for x in requests)

    needles = needles_for(secrets)
    needles.update({f"oauth token {n + 1}": token for n, token in enumerate(tokens)})
    assert len(tokens) >= 1 and len(needles) >= 6, sorted(needles)
    everything = text + _read(out)
    leaks = [name for name, value in needles.items() if value in everything]
    assert leaks == [], f"secrets in the worker's output: {leaks}"
    # the scan can fail: what the worker was told, and printed, is searched
    assert bnet.url in everything and task_queue in everything


def _json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        try:
            lines.append(json.loads(raw))
        except json.JSONDecodeError:
            raise AssertionError(f"log line {number} is not JSON: {raw[:300]!r}") from None
    return lines


async def test_the_temporal_cores_own_lines_are_json_too(database_url, task_queue, tmp_path):
    """The core (Rust) logs on its own, not through Python: a lost server's poll retries were
    plain coloured lines among the JSON ones until LOG_FORMAT=json forwarded them."""
    server = runtime.start_temporal(
        tmp_path / "temporal", runtime.free_port(), runtime.free_port(), persistent=False
    )
    log, out = tmp_path / "worker.log", tmp_path / "worker.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    env.update(
        DATABASE_URL=database_url, TEMPORAL_ADDRESS=server.address, TEMPORAL_TASK_QUEUE=task_queue,
        DATA_DIR=str(tmp_path / "data"), LOG_FORMAT="json",
    )  # fmt: skip
    worker = _start_worker(env, out, log)
    try:
        deadline = time.monotonic() + 60
        while "worker polling" not in _read(log):
            assert worker.poll() is None and time.monotonic() < deadline, _read(log)[-2000:]
            await asyncio.sleep(0.1)
        server.stop()  # the server goes away under the polling worker
        while '"temporalio.core"' not in _read(log):
            assert time.monotonic() < deadline, _read(log)[-2000:]
            await asyncio.sleep(0.1)
    finally:
        stop_worker(worker)
        server.stop()
    lines = _json_lines(_read(log))
    core = [x for x in lines if x["logger"] == "temporalio.core"]
    assert core and all(x["level"] in LEVELS and x["target"] for x in core), core[:3]
    assert any("poll" in x["message"] for x in core), core[:3]
