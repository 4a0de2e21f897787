"""What a Scheduler accepts, checked before anything is sent or planned: cadences within
1 s .. 365 d, request kinds, keys and ids of bounded length, Battle.net keys that split one way
only, Discord scopes that are guild ids. The CLI refuses the rest with exit 2 and one line."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from providers.ratelimit import Priority
from workflows.battlenet import BattleNetPlan
from workflows.discord import DiscordPlan
from workflows.plans import plan_problem
from workflows.scheduler_types import (
    MAX_CADENCE_SECONDS,
    MAX_ID_BYTES,
    SyncRequest,
    check_request,
    parse_cadence,
)

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("spec", "seconds"),
    [("1s", 1), ("15m", 900), ("2h", 7200), ("365d", MAX_CADENCE_SECONDS), ("off", None)],
)
def test_cadence_in_range(spec, seconds):
    assert parse_cadence(spec) == seconds


@pytest.mark.parametrize("spec", ["bogus", "3000000d", "366d", "9" * 5000 + "s", "", "-5m", 15])
def test_cadence_out_of_range_or_malformed_is_a_one_line_value_error(spec):
    with pytest.raises(ValueError) as err:
        parse_cadence(spec)
    assert "\n" not in str(err.value) and len(str(err.value)) < 200


@pytest.mark.parametrize(
    "request_",
    [
        SyncRequest(kind=""),
        SyncRequest(kind="x" * 100),
        SyncRequest(kind="Bad Kind"),
        SyncRequest(kind="character", key="realm/" + "x" * 1100),
        SyncRequest(kind="character", key="realm/a\nb"),
        SyncRequest(kind="character", key="draenor/foo", priority=10**9),
        SyncRequest(kind="character", key="draenor/foo", request_id="r1/../x"),
        SyncRequest(kind="character", key="draenor/foo", reason="x" * 1000),
        "bogus",
    ],
)
def test_malformed_requests_are_refused(request_):
    with pytest.raises(ValueError):
        check_request(request_)


def test_a_plain_request_passes():
    check_request(SyncRequest(kind="character", key="draenor/Foo", priority=Priority.MANUAL))


@pytest.mark.parametrize(
    ("kind", "key"),
    [
        ("bogus", ""),
        ("character", ""),  # an entity kind needs its key
        ("character", "realm/with/slash"),  # realm `realm/with` + name `slash`: ambiguous
        ("character", "realm/"),
        ("character", "/name"),
        ("guild", "../oauth/token"),
        ("character", "draenor/" + "x" * 200),
        ("sync", "draenor/foo"),  # a scope-wide kind has no key
    ],
)
def test_battlenet_plan_refuses_what_it_cannot_plan(kind, key):
    problem = plan_problem(
        BattleNetPlan(), "battlenet", "eu", SyncRequest(kind=kind, key=key, request_id="add-1"), NOW
    )
    assert problem and "\n" not in problem


@pytest.mark.parametrize(
    ("kind", "key"),
    [("character", "draenor/Foo"), ("guild", "area-52/les-éclaireurs"), ("sync", ""), ("pvp", "")],
)
def test_battlenet_plan_accepts_real_keys(kind, key):
    request = SyncRequest(kind=kind, key=key, request_id="add-1")
    assert plan_problem(BattleNetPlan(), "battlenet", "eu", request, NOW) is None


def test_battlenet_realm_slug_may_not_carry_a_slash_into_the_name():
    plan = BattleNetPlan()
    request = SyncRequest(kind="character", key="realm/with/slash", request_id="add-1")
    with pytest.raises(ValueError, match="/"):
        plan.child("battlenet", "eu", request, 1, NOW)


def test_discord_plan_refuses_a_scope_that_is_no_guild_id():
    request = SyncRequest(kind="sync", request_id="add-1")
    assert plan_problem(DiscordPlan(), "discord", "abc", request, NOW)
    assert plan_problem(DiscordPlan(), "discord", "1168516062791340136", request, NOW) is None


def test_child_ids_stay_within_the_id_limit():
    request = SyncRequest(kind="character", key="a" * 60 + "/" + "é" * 60, request_id="add-1")
    problem = plan_problem(BattleNetPlan(), "battlenet", "eu", request, NOW)
    if problem is None:  # it may fit: then its id is within the limit
        child = BattleNetPlan().child("battlenet", "eu", request, 1, NOW)
        assert len(child.id.encode()) <= MAX_ID_BYTES


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    closed = {"TEMPORAL_ADDRESS": "127.0.0.1:1", "DATABASE_URL": "postgresql://x@127.0.0.1:1/x"}
    env = {**os.environ, **closed}
    return subprocess.run(
        [sys.executable, "starter.py", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [
        ["add", "character", "eu", "draenor", "x" * 1100],
        ["add", "character", "eu", "realm/with", "slash"],
        ["add", "guild", "eu", "draenor", "a\tb"],
        ["scheduler", "start", "battlenet", "--region", "eu", "--every", "3000000d"],
        ["scheduler", "start", "battlenet", "--region", "eu", "--every", "bogus"],
    ],
)
def test_cli_refuses_bad_requests_before_sending_exit_2_one_line(argv):
    done = _cli(*argv)  # the server address is closed: sending anything would be exit 1
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
