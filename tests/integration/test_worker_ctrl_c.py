"""Issue 11 item 6: `python worker.py` stops on one Ctrl-C (SIGINT) or SIGTERM: its activities
drain, no traceback, exit 130 for SIGINT and 0 for SIGTERM (worker.py's convention), in seconds.

Before: a busy worker stopped on Ctrl-C exited 0 (as if asked to stop by a service manager),
and a Ctrl-C or SIGTERM while it was still starting was lost (SIGINT: it went on polling) or
killed it outright (SIGTERM: exit -15, the servers it was starting left behind).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

import runtime
from activities.types import BattleNetSyncInput
from tests.integration.battlenet_support import track_sandbox_guilds
from tests.integration.embedded_support import embedded_env
from tests.integration.worker_process import start_worker, wait_until
from tests.sandbox_helpers import admin, battlenet_sandbox
from workflows.battlenet import BattleNetSync

pytestmark = [pytest.mark.integration]
WORLD = {"guilds_per_region": 2, "roster_min": 150, "roster_max": 150, "per_second": 3}


async def test_a_busy_worker_stops_cleanly_on_one_ctrl_c(
    temporal_env, database_url, task_queue, tmp_path: Path
):
    with battlenet_sandbox(**WORLD) as sb:
        await track_sandbox_guilds(database_url, sb.url)
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
            "TEMPORAL_TASK_QUEUE": task_queue,
            "PVP_SYNC_TASK_QUEUE": f"{task_queue}.pvp-sync",
            "PVP_PROCESSING_TASK_QUEUE": f"{task_queue}.pvp-processing",
            "DATA_DIR": str(tmp_path / "data"),
            "BNET_CLIENT_ID": "sandbox-client",
            "BNET_CLIENT_SECRET": "sandbox-secret",
            "BNET_API_BASE_URL": sb.url,
            "BNET_OAUTH_URL": f"{sb.url}/token",
            "BNET_RATE_PER_SECOND": "3",
        }
        log = tmp_path / "worker.log"
        worker = start_worker(env, log)
        handle = await temporal_env.client.start_workflow(
            BattleNetSync.run, BattleNetSyncInput(region="eu", full=True, batch_size=25),
            id=f"battlenet-sync/eu/ctrl-c-{uuid.uuid4().hex[:8]}", task_queue=task_queue,
        )  # fmt: skip
        try:
            # busy: character requests are flowing (a few seconds of work is still ahead)
            await wait_until(lambda: admin(sb.url, "stats")["requests"], 8, 60, "requests")
            assert worker.poll() is None, log.read_text()[-3000:]
            began = time.monotonic()
            worker.send_signal(signal.SIGINT)
            returncode = await asyncio.to_thread(worker.wait, 30)
            took = time.monotonic() - began
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
            await handle.terminate("test over")
    output = log.read_text()
    assert "Traceback" not in output, output[-4000:]
    assert returncode == 130, output[-4000:]
    assert output.count("worker stopping (SIGINT)") == 1, output[-4000:]
    assert took < 12, took


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_a_signal_while_the_worker_starts_stops_it(tmp_path: Path, sig: int, code: int):
    data_dir = tmp_path / "data"
    env = embedded_env(data_dir)
    log = tmp_path / "worker.log"
    worker = start_worker(env, log)
    try:
        deadline = time.monotonic() + 60
        while not (data_dir / "postgres.log").exists():  # starting its embedded Postgres
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        worker.send_signal(sig)
        returncode = worker.wait(45)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        runtime.stop_servers(data_dir)
    output = log.read_text()
    assert returncode == code, output[-4000:]
    assert "Traceback" not in output and "polling task queue" not in output, output[-4000:]
