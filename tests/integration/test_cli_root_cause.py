"""A failed run prints its root cause in one line (issue 11 item 1): the worker's own message,
not "Workflow execution failed" or "Activity task failed"."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

from cli.common import cause_message
from tests.cli_support import cli_env, run_cli
from tests.sandbox_helpers import admin, battlenet_sandbox

WHY = "season 37 has no bracket(s) 4v4; it has 2v2, 3v3, rbg"


def _chain(deepest: BaseException) -> WorkflowFailureError:
    """WorkflowFailureError → ChildWorkflowError → ActivityError → ``deepest``, as the client
    decodes a failed run (each wrapper's ``cause`` is its ``__cause__``)."""
    activity = ActivityError(
        "Activity task failed", scheduled_event_id=5, started_event_id=6, identity="w",
        activity_type="pvp_import", activity_id="1", retry_state=None,
    )  # fmt: skip
    activity.__cause__ = deepest
    child = ChildWorkflowError(
        "Child Workflow execution failed", namespace="default", workflow_id="c", run_id="r",
        workflow_type="PvpBracket", initiated_event_id=1, started_event_id=2, retry_state=None,
    )  # fmt: skip
    child.__cause__ = activity
    top = WorkflowFailureError(cause=child)
    top.__cause__ = child
    return top


def test_the_whole_chain_gives_the_deepest_application_error_message() -> None:
    assert cause_message(_chain(ApplicationError(WHY, type="BadInput"))) == WHY


def test_a_workflow_failure_error_is_walked_from_the_top() -> None:
    # before: the CLI's helper only walked Temporal's FailureError chain, and a
    # WorkflowFailureError is none: handed one, it printed "Workflow execution failed"
    top = _chain(ApplicationError(WHY))
    assert "Workflow execution failed" not in cause_message(top)
    assert cause_message(top.cause) == WHY


def test_a_generic_application_error_gives_way_to_the_deeper_one() -> None:
    # a workflow that re-raises an ActivityError's text wraps the real error
    outer = ApplicationError("Activity task failed", type="ActivityError")
    outer.__cause__ = ApplicationError("Unknown Guild 42: check the id and that the bot was added")
    assert cause_message(_chain(outer)).startswith("Unknown Guild 42: check the id")


def test_multi_line_and_control_characters_stay_one_line() -> None:
    assert cause_message(_chain(ApplicationError("a\nb\x1b[2J  c"))) == "a b\\x1b[2J c"


@pytest.mark.integration
def test_pvp_bad_bracket_and_battlenet_without_credentials_print_the_workers_message(
    temporal_env, database_url, task_queue
):
    with battlenet_sandbox(guilds_per_region=1, pvp_entries=5) as sb:
        side = uuid.uuid4().hex[:8]
        env = cli_env(
            temporal_env, database_url, task_queue, drop="BNET_CLIENT",
            PVP_SYNC_TASK_QUEUE=f"{side}.pvp-sync",
            PVP_PROCESSING_TASK_QUEUE=f"{side}.pvp-processing",
            BNET_API_BASE_URL=sb.url, BNET_OAUTH_URL=f"{sb.url}/token",
        )  # fmt: skip
        with_keys = {
            **env,
            "BNET_CLIENT_ID": "sandbox-client",
            "BNET_CLIENT_SECRET": "sandbox-secret",
        }

        pvp = _last_line(run_cli(with_keys, "sync", "pvp", "--brackets", "4v4", "--wait"))
        assert pvp.startswith("error: pvp-sync/eu/") and "has no bracket(s) 4v4" in pvp
        assert "WorkflowFailureError" not in pvp and "execution failed" not in pvp

        season = _last_line(run_cli(with_keys, "sync", "pvp", "--season", "99", "--wait"))
        assert season.startswith("error: pvp-sync/eu/") and "99" in season, season
        assert "WorkflowFailureError" not in season and "execution failed" not in season

        # without credentials: a tracked guild makes the sync call Battle.net, which it cannot
        guild = admin(sb.url, "truth/guilds?region=eu")[0]
        tracked = run_cli(env, "track", "guild", "eu", guild["realm_slug"], guild["name"])
        assert tracked.returncode == 0, tracked.stderr
        bnet = _last_line(run_cli(env, "sync", "battlenet", "--region", "eu", "--wait"))
        assert bnet.startswith("error: battlenet-sync/eu failed: ")
        assert "BNET_CLIENT_ID and BNET_CLIENT_SECRET are not set" in bnet

        # `status` shows each failed run with its reason (item 1): the PvP runs are there
        # (they had no sync_runs row), and the Battle.net run, whose workflow failed before it
        # could close its row, is closed as Temporal says it ended (item 8)
        shown = run_cli(env, "status", "--json")
        assert shown.returncode == 0, shown.stderr
        runs = {(r["kind"], r["status"], r["error"]) for r in json.loads(shown.stdout)["runs"]}
        assert any(k == "pvp" and s == "failed" and WHY in e for k, s, e in runs), runs
        assert any(k == "pvp" and s == "failed" and "99" in e for k, s, e in runs), runs
        assert any(s == "failed" and "BNET_CLIENT_ID" in e for k, s, e in runs if k != "pvp"), runs
        human = run_cli(env, "status").stdout
        assert "failed" in human and WHY in human, human


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    return done.stderr.strip().splitlines()[-1]


@pytest.mark.integration
def test_discord_unknown_guild_prints_the_workers_message(temporal_env, database_url, task_queue):
    from tests.integration.discord_support import TOKEN, discord_server

    with discord_server(lifted=True) as sandbox:
        env = cli_env(
            temporal_env, database_url, task_queue,
            DISCORD_BOT_TOKEN=TOKEN, DISCORD_API_BASE_URL=f"{sandbox.url}/api/v10",
        )  # fmt: skip
        gid = "1168516062791340136"  # tracked here, unknown to the sandbox
        assert run_cli(env, "track", "tenant", gid).returncode == 0
        line = _last_line(run_cli(env, "sync", "discord", "--tenant", gid, "--wait"))
        assert line.startswith(f"error: discord-sync/{gid}") and "Unknown Guild" in line, line
        assert "Activity task failed" not in line


@pytest.mark.integration
def test_discord_without_a_token_prints_the_workers_message(temporal_env, database_url, task_queue):
    env = {
        **{k: v for k, v in os.environ.items() if k != "DISCORD_BOT_TOKEN"},
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
        "TEMPORAL_TASK_QUEUE": task_queue,
    }
    gid = "1168516062791340136"
    assert run_cli(env, "track", "tenant", gid).returncode == 0
    line = _last_line(run_cli(env, "sync", "discord", "--tenant", gid, "--wait"))
    assert line.startswith(f"error: discord-sync/{gid}") and "DISCORD_BOT_TOKEN" in line, line
