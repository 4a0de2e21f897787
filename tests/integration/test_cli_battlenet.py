"""The Battle.net verbs as a user runs them: track, sync battlenet/pvp --wait, scheduler, add."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from providers.ratelimit import Priority
from tests.cli_support import run_cli, terminate
from tests.sandbox_helpers import admin, battlenet_sandbox

pytestmark = [pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(env, *args, timeout=180)


def _terminate(temporal_env: Any, workflow_id: str) -> None:
    terminate(temporal_env.client.service_client.config.target_host, workflow_id)


def test_track_then_sync_and_pvp_with_wait_report_counts_and_failures(
    temporal_env, database_url, task_queue
):
    world = {"guilds_per_region": 1, "roster_min": 4, "roster_max": 4, "pvp_entries": 20}
    with battlenet_sandbox(**world) as sb:
        guild = admin(sb.url, "truth/guilds?region=eu")[0]
        side = uuid.uuid4().hex[:8]
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
            "TEMPORAL_TASK_QUEUE": task_queue,  # nobody polls it: --wait runs a worker in-process
            "PVP_SYNC_TASK_QUEUE": f"{side}.pvp-sync",
            "PVP_PROCESSING_TASK_QUEUE": f"{side}.pvp-processing",
            "BNET_CLIENT_ID": "sandbox-client",
            "BNET_CLIENT_SECRET": "sandbox-secret",
            "BNET_API_BASE_URL": sb.url,
            "BNET_OAUTH_URL": f"{sb.url}/token",
        }
        tracked = _cli(env, "track", "guild", "eu", guild["realm_slug"], guild["name"], "--json")
        assert tracked.returncode == 0, tracked.stderr
        assert json.loads(tracked.stdout)["entity"] == "guild"

        synced = _cli(env, "sync", "battlenet", "--region", "eu", "--wait", "--json")
        assert synced.returncode == 0, synced.stderr
        counts = json.loads(synced.stdout)
        assert counts["workflow_id"] == "battlenet-sync/eu"
        assert counts["guilds"] == 1 and counts["members"] == 4

        pvp = _cli(env, "sync", "pvp", "--brackets", "2v2", "--wait", "--json")
        assert pvp.returncode == 0, pvp.stderr
        result = json.loads(pvp.stdout)
        assert [b["bracket"] for b in result["brackets"]] == ["2v2"]
        assert result["brackets"][0]["import_result"]["entries"] == 20

        # a failed run is exit 1 with one line naming the workflow and the reason (after the
        # in-process worker's own log lines)
        failed = _cli(env, "sync", "pvp", "--brackets", "5v5", "--wait")
        assert failed.returncode == 1
        last = failed.stderr.strip().splitlines()[-1]
        assert last.startswith("error: pvp-sync/eu/") and "has no bracket(s) 5v5" in last

        started = _cli(env, "scheduler", "start", "battlenet", "--every", "1d", "--json")
        try:
            assert started.returncode == 0, started.stderr
            assert json.loads(started.stdout)["scheduler"] == "scheduler/battlenet/eu"
            queued = _cli(env, "add", "character", "eu", "draenor", "Foo", "--json")
            assert queued.returncode == 0, queued.stderr
            assert json.loads(queued.stdout)["queued"]["priority"] == Priority.MANUAL
            assert _cli(env, "scheduler", "stop", "battlenet").returncode == 0
        finally:
            # `stop` asks for cancellation, which a scheduler only acts on when a worker polls
            # its queue (none does here): end it, or later tests on this server would reuse it.
            _terminate(temporal_env, "scheduler/battlenet/eu")
        gone = _cli(env, "scheduler", "pause", "discord", "--tenant", "1168516062791340136")
        assert gone.returncode == 1
        assert "start it with `python starter.py scheduler start discord --tenant 1168516" in (
            gone.stderr
        )
