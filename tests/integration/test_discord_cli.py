"""The Discord CLI verbs as a user runs them: track, sync --wait, status --tenant, reset."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import runtime
from tests.cli_support import cli_env, run_cli
from tests.integration.discord_support import TOKEN, create_tenant, discord_server

pytestmark = [pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(env, *args, timeout=120)


def test_track_sync_status_and_reset_from_the_command_line(temporal_env, database_url, task_queue):
    with discord_server(lifted=True) as sandbox:
        tenant = create_tenant(
            sandbox.url, name="Cli", text_channels=[120, 3], forbidden_channels=1
        )
        gid = tenant["guild_id"]
        env = cli_env(
            temporal_env, database_url, task_queue,
            DISCORD_BOT_TOKEN=TOKEN, DISCORD_API_BASE_URL=f"{sandbox.url}/api/v10",
        )  # fmt: skip
        untracked = _cli(env, "sync", "discord", "--tenant", gid)
        assert untracked.returncode == 1
        assert f"run `python starter.py track tenant {gid}` first" in untracked.stderr

        assert _cli(env, "track", "tenant", gid).returncode == 0
        synced = _cli(env, "sync", "discord", "--tenant", gid, "--wait", "--json")
        assert synced.returncode == 0, synced.stderr
        summary = json.loads(synced.stdout)
        assert summary["status"] == "completed" and summary["messages"] == 123
        assert summary["channels_skipped"] == 1 and summary["max_concurrent_channels"] >= 2
        assert TOKEN not in synced.stdout + synced.stderr

        overall = json.loads(_cli(env, "status", "--json").stdout)
        assert overall["discord"] == {"tenants": 1, "channels": 5, "no_access": 1, "messages": 123}

        status = _cli(env, "status", "--tenant", gid)
        assert status.returncode == 0, status.stderr
        assert "channel" in status.stdout and "msgs/s" in status.stdout
        assert "Missing Access" in status.stdout  # the 403 channel, with its reason
        data = json.loads(_cli(env, "status", "--tenant", gid, "--json").stdout)
        assert sorted(c["status"] for c in data["channels"]) == ["done", "done", "skipped"]

        refused = _cli(env, "reset", "discord", "--tenant", gid)
        assert refused.returncode == 2 and "add --yes" in refused.stderr
        reset = _cli(env, "reset", "discord", "--tenant", gid, "--yes", "--json")
        assert reset.returncode == 0 and json.loads(reset.stdout)["channels_reset"] == len(
            tenant["channels"]
        )

        # A sync that is running (nobody polls its queue) would write its cursors back.
        started = _cli(env, "sync", "discord", "--tenant", gid)
        assert started.returncode == 0, started.stderr
        busy = _cli(env, "reset", "discord", "--tenant", gid, "--yes")
        assert busy.returncode == 1 and "is running and would write its cursors back" in busy.stderr
        subprocess.run(
            [runtime.temporal_binary(), "workflow", "terminate", "--address",
             env["TEMPORAL_ADDRESS"], "-w", f"discord-sync/{gid}", "--reason", "test"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip

        typo = _cli(env, "status", "--tenant", "12x")
        assert typo.returncode == 2 and "is not a Discord id" in typo.stderr
