"""Chaos scenario "secret scan": a full run of every provider at LOG_LEVEL=DEBUG leaves no
secret anywhere.

A real `python worker.py` process, with a client secret, bot token and ZWIFT_API_KEY made for
this run, syncs Battle.net (guilds, rosters, characters — hidden ones answer 404), the PvP
leaderboards (after the sandbox revoked the token: a 401, a fresh token) and a Discord tenant
(with a 403 channel) against the sandboxes; `starter.py status` runs with the same
environment. Then every workflow history of the namespace (payloads decoded), the descriptions
of running workflows taken during the run (heartbeat details), the worker's log, every file
under DATA_DIR, the `status` output, the worker's `/metrics` (every metric name and label) and
every Postgres table are searched for the client
secret (also as HTTP Basic credentials), every OAuth token the sandbox issued, the bot token
and the API key. A canary planted in each kind of source first proves the scan finds what is
there.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid

import httpx
import pytest
from sqlalchemy import text

import runtime
from activities.discord_types import TenantSyncInput
from activities.types import BattleNetSyncInput, PvpSyncInput
from sandbox.battlenet import BattleNetSandboxConfig, create_battlenet_app
from sandbox.server import SandboxServer
from sandbox.world import BattleNetWorldConfig
from storage.db import create_engine
from tests.chaos.secret_support import (
    Scan,
    describe_texts,
    file_blobs,
    history_texts,
    needles_for,
    postgres_rows,
)
from tests.integration.battlenet_support import track_sandbox_guilds
from tests.integration.discord_support import create_tenant, discord_server, track
from tests.integration.worker_process import ROOT, start_worker
from tests.sandbox_helpers import admin
from workflows.battlenet import BattleNetSync
from workflows.discord import DiscordTenantSync
from workflows.pvp import PvpSync

pytestmark = [pytest.mark.chaos]


def _status(env: dict[str, str], *args: str) -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, "starter.py", "status", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return f"status {' '.join(args)}".strip(), done.stdout + done.stderr


async def _watch_running(client, seen: list[tuple[str, str]], stop: asyncio.Event) -> None:
    """Describe the running workflows every few tenths of a second (heartbeat details live in
    a running activity's description, not in the history)."""
    while not stop.is_set():
        seen.extend(await describe_texts(client))
        try:
            await asyncio.wait_for(stop.wait(), 0.3)
        except TimeoutError:
            pass


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="session")
async def test_no_secret_in_histories_logs_status_data_dir_or_postgres(
    client, temporal_env, database_url, task_queue, tmp_path
):
    run = uuid.uuid4().hex
    secrets = {
        "client_id": f"scan-client-{run[:8]}",
        "client_secret": f"CLIENTSECRET{run}",
        "bot_token": f"BOTTOKEN.{run}.x",
        "zwift_api_key": f"ZWIFTKEY{run}",
    }
    data_dir = tmp_path / "data"
    log = tmp_path / "worker.log"
    pvp_queues = (f"{task_queue}.pvp-sync", f"{task_queue}.pvp-processing")
    bnet_config = BattleNetSandboxConfig(
        world=BattleNetWorldConfig(
            guilds_per_region=2, roster_min=8, roster_max=8, hidden_ratio=0.15, pvp_entries=40
        ),
        client_id=secrets["client_id"],
        client_secret=secrets["client_secret"],
    )
    with (
        SandboxServer(create_battlenet_app(bnet_config)) as bnet,
        discord_server(bot_token=secrets["bot_token"], lifted=True) as discord,
    ):
        await track_sandbox_guilds(database_url, bnet.url)
        tenant = create_tenant(
            discord.url, name="Scan", text_channels=[150, 20], archived_threads=[3],
            forbidden_channels=1,
        )  # fmt: skip
        guild_id = int(tenant["guild_id"])
        await track(database_url, guild_id)
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
            "TEMPORAL_TASK_QUEUE": task_queue,
            "PVP_SYNC_TASK_QUEUE": pvp_queues[0],
            "PVP_PROCESSING_TASK_QUEUE": pvp_queues[1],
            "DATA_DIR": str(data_dir),
            "LOG_LEVEL": "DEBUG",
            "BNET_CLIENT_ID": secrets["client_id"],
            "BNET_CLIENT_SECRET": secrets["client_secret"],
            "BNET_API_BASE_URL": bnet.url,
            "BNET_OAUTH_URL": f"{bnet.url}/token",
            "DISCORD_BOT_TOKEN": secrets["bot_token"],
            "DISCORD_API_BASE_URL": f"{discord.url}/api/v10",
            "ZWIFT_API_KEY": secrets["zwift_api_key"],
            "METRICS_PORT": str(metrics_port := runtime.free_port()),
        }
        # The canary: a workflow whose input and memo carry it, open during the whole run.
        canary = f"PLANTEDCANARY{run}"
        planted = await client.start_workflow(
            "SecretScanCanary", canary, id=f"secret-scan-canary-{run[:8]}",
            task_queue=f"nobody-polls-{run[:8]}", memo={"note": canary},
        )  # fmt: skip
        described: list[tuple[str, str]] = []
        stop = asyncio.Event()
        worker = start_worker(env, log)
        watcher = asyncio.create_task(_watch_running(client, described, stop))
        try:
            counts = await client.execute_workflow(
                BattleNetSync.run, BattleNetSyncInput(region="eu", batch_size=8),
                id=f"battlenet-sync/eu/scan-{run[:8]}", task_queue=task_queue,
                execution_timeout=None,
            )  # fmt: skip
            assert counts.characters > 0 and counts.characters_not_found > 0, counts
            # The worker's cached token now answers 401: it fetches a second one.
            assert admin(bnet.url, "tokens/revoke", {})["revoked"] >= 1
            pvp = client.execute_workflow(
                PvpSync.run,
                PvpSyncInput(
                    region="eu", brackets=["2v2", "3v3"], equipment_batch_size=20,
                    sync_queue=pvp_queues[0], processing_queue=pvp_queues[1],
                ),
                id=f"pvp-sync/eu/scan-{run[:8]}", task_queue=task_queue,
            )  # fmt: skip
            tenant_sync = client.execute_workflow(
                DiscordTenantSync.run, TenantSyncInput(discord_guild_id=guild_id),
                id=f"discord-sync/{guild_id}/{task_queue}", task_queue=task_queue,
            )  # fmt: skip
            pvp_result, discord_result = await asyncio.wait_for(
                asyncio.gather(pvp, tenant_sync), timeout=180
            )
            assert pvp_result.failed_brackets == [], pvp_result
            assert discord_result.messages > 0, discord_result
            outputs = [
                _status(env),
                _status(env, "--json"),
                _status(env, "--tenant", str(guild_id)),
            ]
            async with httpx.AsyncClient(timeout=10) as http:
                scraped = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
            assert "ratesync_upstream_requests_total" in scraped, scraped[:500]
        finally:
            stop.set()
            await watcher
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)
        tokens = admin(bnet.url, "tokens")["issued"]
    assert len(tokens) >= 2, "the run used a first token and one after the revocation"
    assert described, "running workflows were described during the run"
    logged = log.read_text(errors="replace")
    assert " DEBUG " in logged and "/token" in logged, "the worker logged at DEBUG, HTTP included"
    await planted.terminate("secret scan done")

    # Plant the canary in every other kind of source as well.
    data_dir.mkdir(exist_ok=True)
    (data_dir / "planted.txt").write_text(f"left here on purpose: {canary}\n")
    with log.open("a") as f:
        f.write(f"planted line {canary}\n")
    outputs.append(("planted output", f"status: {canary}"))
    metrics = [("/metrics", scraped), ("planted /metrics", f'x{{label="{canary}"}} 1')]
    engine = create_engine(database_url, pool_size=1)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE secret_scan_canary (note text)"))
        await conn.execute(text("INSERT INTO secret_scan_canary VALUES (:c)"), {"c": canary})
    await engine.dispose()

    needles = needles_for(secrets)
    needles.update({f"oauth token {n + 1}": token for n, token in enumerate(tokens)})
    needles["canary"] = canary
    scan = Scan(needles, [], {})
    scan.add("history", await history_texts(client))
    scan.add("describe", described)
    scan.add("file", file_blobs(tmp_path))  # the worker's log and DATA_DIR
    scan.add("output", outputs)
    scan.add("metrics", metrics)  # every metric name, label and value of the worker's endpoint
    tables = await postgres_rows(database_url)
    scan.add("postgres", tables)
    failures = dict(tables)["sync_failures"]
    assert "404" in failures and "403" in failures, "the failures' messages were searched"

    # The scan can fail: the canary is found in every kind of source.
    found = {hit.source for hit in scan.of("canary")}
    kinds = {"history", "describe", "file", "output", "metrics", "postgres"}
    assert found == kinds, (found, scan.searched)
    files = {hit.where for hit in scan.of("canary") if hit.source == "file"}
    assert files == {str(log), str(data_dir / "planted.txt")}, files
    assert scan.searched["history"] >= 6 and scan.searched["postgres"] >= 10, scan.searched

    leaks = [hit for hit in scan.hits if hit.needle != "canary"]
    print(f"\nsecret scan: searched {scan.searched}; needles {sorted(needles)}")
    assert leaks == [], "; ".join(str(h) for h in leaks)


def test_the_scanner_decodes_payloads_and_finds_basic_credentials(tmp_path):
    """The scanner's own parts, without servers: a base64 payload is searched decoded, and the
    client secret is also looked for as HTTP Basic credentials."""
    from tests.chaos.secret_support import search, with_decoded_payloads

    needles = needles_for({"client_id": "cid", "client_secret": "s3cr3t-value"})
    assert set(needles) == {"client_secret", "client_secret (basic auth)"}
    payload = '{"events": [{"input": {"payloads": [{"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "InMzY3IzdC12YWx1ZSI="}]}}]}'  # noqa: E501
    assert "s3cr3t-value" not in payload
    assert [h.needle for h in search("history", "x", with_decoded_payloads(payload), needles)] == [
        "client_secret"
    ]
    basic = "Authorization: Basic Y2lkOnMzY3IzdC12YWx1ZQ=="
    assert [h.needle for h in search("file", "x", basic, needles)] == ["client_secret (basic auth)"]
