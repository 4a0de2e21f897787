"""Issue 11 item 8: `status` and `scheduler …` tell the truth.

Before: a run whose workflow was terminated (or failed before closing its row) stayed `running`
for ever; the schedulers line was a dict repr, and empty unless a worker answered a query;
`scheduler status` with no worker waited 33 s and said the scheduler "is not running";
`scheduler start` twice printed "started: True" twice; after `scheduler stop` it printed a
normal status; `add --wait` with no worker waited its whole 300 s timeout.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select, text

from storage import sync as syncdb
from storage.db import create_engine
from storage.models import sync_runs
from tests.cli_support import cli_env, run_cli, terminate
from tests.integration.worker_process import start_worker

pytestmark = [pytest.mark.integration]


def _tenant() -> str:
    return str(random.randrange(10**17, 10**18))


def _terminate(env: dict[str, str], workflow_id: str) -> None:
    terminate(env["TEMPORAL_ADDRESS"], workflow_id)


def _timed(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    done = run_cli(env, *args, timeout=120)
    return done, time.monotonic() - began


async def test_runs_left_running_are_closed_as_temporal_says(
    temporal_env, database_url, task_queue
):
    client = temporal_env.client
    wid = f"battlenet-sync/us/truth-{uuid.uuid4().hex[:6]}"
    await client.start_workflow("BattleNetSync", id=wid, task_queue=task_queue)  # nobody polls
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            ended = await syncdb.start_run(conn, "battlenet", "us", "outdated", wid)
            lost = await syncdb.start_run(conn, "battlenet", "us", "outdated", f"{wid}-gone")
        await client.get_workflow_handle(wid).terminate(reason="operator says stop")
        env = cli_env(temporal_env, database_url, task_queue)

        shown = run_cli(env, "status", "--json")
        assert shown.returncode == 0, shown.stderr
        runs = {r["workflow_id"]: r for r in json.loads(shown.stdout)["runs"]}
        assert runs[wid]["status"] == "terminated" and "operator says stop" in runs[wid]["error"]
        assert runs[wid]["finished_at"] is not None
        assert runs[f"{wid}-gone"]["status"] == "orphaned", runs  # shown, not written
        async with engine.connect() as conn:
            stored = dict((await conn.execute(select(sync_runs.c.id, sync_runs.c.status))).all())
        assert stored == {ended: "terminated", lost: "running"}
        human = run_cli(env, "status").stdout
        assert f"{wid}  battlenet us outdated  terminated" in human, human
    finally:
        await engine.dispose()


def test_schedulers_without_a_worker_say_so_at_once(temporal_env, database_url, task_queue):
    env = cli_env(temporal_env, database_url, task_queue)  # nobody polls task_queue
    tenant = _tenant()
    sid = f"scheduler/discord/{tenant}"
    try:
        first = run_cli(env, "scheduler", "start", "discord", "--tenant", tenant)
        assert first.returncode == 0, first.stderr
        again = run_cli(env, "scheduler", "start", "discord", "--tenant", tenant)
        assert again.returncode == 0, again.stderr
        assert f"{sid} is already running" in again.stdout, again.stdout
        assert "no worker is polling" in again.stdout

        status, seconds = _timed(env, "scheduler", "status", "discord", "--tenant", tenant)
        assert status.returncode == 0, status.stderr
        assert "state: running" in status.stdout and "no worker is polling" in status.stdout
        assert seconds < 20, f"scheduler status took {seconds:.0f} s"  # was 33 s, a query timeout

        overall = run_cli(env, "status")
        line = next(x for x in overall.stdout.splitlines() if sid in x)
        assert "running: no worker is polling" in line and "{" not in line, line

        added, seconds = _timed(env, "add", "character", "tw", "sandbox", "nobody", "--wait")
        assert added.returncode == 1, (added.stdout, added.stderr)
        assert len(added.stderr.strip().splitlines()) == 1, added.stderr
        last = added.stderr.strip()
        assert "queued character tw/" in last and "no worker is polling" in last, last
        assert seconds < 20, f"add --wait took {seconds:.0f} s to say so"  # was its 300 s timeout
    finally:
        _terminate(env, sid)
        _terminate(env, "scheduler/battlenet/tw")


def test_a_stopped_scheduler_is_not_shown_as_running(
    temporal_env, database_url, task_queue, tmp_path: Path
):
    env = cli_env(temporal_env, database_url, task_queue)
    tenant = _tenant()
    sid = f"scheduler/discord/{tenant}"
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        started = run_cli(
            env, "scheduler", "start", "discord", "--tenant", tenant, "--every", "off"
        )
        assert started.returncode == 0, started.stderr
        deadline = time.monotonic() + 60
        while True:  # until the worker polls (it takes a few seconds to start)
            status = run_cli(env, "scheduler", "status", "discord", "--tenant", tenant)
            if "paused: False" in status.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert status.returncode == 0 and "paused: False" in status.stdout, status.stdout

        stopped = run_cli(env, "scheduler", "stop", "discord", "--tenant", tenant)
        assert stopped.returncode == 0, stopped.stderr
        assert f"{sid}: canceled" in stopped.stdout, stopped.stdout

        after = run_cli(env, "scheduler", "status", "discord", "--tenant", tenant)
        assert after.returncode == 1, after.stdout
        line = after.stderr.strip().splitlines()[-1]
        assert f"{sid} is not running (canceled at" in line and "scheduler start" in line, line
        again = run_cli(env, "scheduler", "stop", "discord", "--tenant", tenant)
        assert again.returncode == 0 and "canceled" in again.stdout, again.stdout
    finally:
        worker.terminate()
        worker.wait(30)
        _terminate(env, sid)


async def test_a_tenant_view_counts_what_is_stored_and_names_the_failed_run(
    temporal_env, database_url, task_queue
):
    """`status --tenant` said "never synced" with 8,000 messages stored, after a failed sync."""
    tenant = int(_tenant())
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "WITH t AS (INSERT INTO tenants (discord_guild_id) VALUES (:g) RETURNING id) "
                    "INSERT INTO channels (discord_channel_id, tenant_id, type, message_count, "
                    "channel_json) SELECT :c, t.id, 0, 8000, '{}' FROM t"
                ),
                {"g": tenant, "c": tenant + 1},
            )
            run = await syncdb.start_run(conn, "discord", str(tenant), "full", "x#y")
            await syncdb.finish_run(conn, run, "failed", {}, 1, "Missing Access: the bot lost it")
    finally:
        await engine.dispose()
    shown = run_cli(
        cli_env(temporal_env, database_url, task_queue), "status", "--tenant", str(tenant)
    )
    assert shown.returncode == 0, shown.stderr
    assert "8000 messages in 1 channels stored" in shown.stdout, shown.stdout
    assert "last run x failed: Missing Access: the bot lost it" in shown.stdout, shown.stdout
