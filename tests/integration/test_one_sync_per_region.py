"""Issue 11 item 9: one CLI-started Battle.net sync per region at a time.

Two `sync battlenet --region eu` used to start two BattleNetSync runs (ids stamped to the
second) doing the same work twice; the second now meets the first's id and is refused in one
line, while another region still starts.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import runtime
from tests.cli_support import run_cli

pytestmark = [pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(env, *args, timeout=120)


def test_a_second_sync_of_the_same_region_is_refused(temporal_env, database_url, task_queue):
    address = temporal_env.client.service_client.config.target_host
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_TASK_QUEUE": task_queue,  # nobody polls it: the runs stay open
        "BNET_CLIENT_ID": "unused",
        "BNET_CLIENT_SECRET": "unused",
    }
    started: list[str] = []
    try:
        first = _cli(env, "sync", "battlenet", "--region", "eu")
        assert first.returncode == 0, first.stderr
        started.append("battlenet-sync/eu/cli")
        second = _cli(env, "sync", "battlenet", "--region", "eu")
        assert second.returncode == 1, second.stdout + second.stderr
        line = second.stderr.strip().splitlines()[-1]
        assert "already running" in line and "battlenet-sync/eu/cli" in line, line
        other = _cli(env, "sync", "battlenet", "--region", "us")
        assert other.returncode == 0, other.stderr
        started.append("battlenet-sync/us/cli")
    finally:
        for workflow_id in started:
            subprocess.run(
                [runtime.temporal_binary(), "workflow", "terminate", "--address", address,
                 "--workflow-id", workflow_id, "--reason", "test over"],
                capture_output=True, timeout=60,
            )  # fmt: skip
