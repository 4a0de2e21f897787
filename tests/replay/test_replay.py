"""Recorded histories replay against the current workflow code (determinism guard).

Regenerate after an intentional workflow change with
`.venv/bin/python -m tests.replay.record_histories`; keep the old files that running workflows
could still have, and guard such changes with `workflow.patched`.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker import WORKFLOWS

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_histories_cover_every_workflow_and_a_continue_as_new():
    types = {p.name.split("-")[0] for p in HISTORIES}
    assert {
        "BattleNetSync",
        "GuildSync",
        "CharacterBatchSync",
        "Scheduler",
        "BattleNetEntitySync",
        "DiscordTenantSync",
        "ChannelSync",
        "ZwiftSync",
    } <= types
    zwift_texts = [p.read_text() for p in HISTORIES if p.name.startswith("ZwiftSync")]
    kinds = {json.loads(t)["workflow_id"].split("/")[2] for t in zwift_texts}
    assert kinds >= {"riders", "urgent", "near", "far", "results", "rider"}, kinds
    assert any("timerStartedEventAttributes" in t for t in zwift_texts), "no Zwift budget sleep"
    club_schedulers = [p for p in HISTORIES if p.name.startswith("Scheduler")]
    assert any("scheduler/zwift/" in p.read_text() for p in club_schedulers), "no club scheduler"
    entity_texts = [p.read_text() for p in HISTORIES if p.name.startswith("BattleNetEntitySync")]
    assert any("bnet_add_character" in t for t in entity_texts), "no one-step manual add"
    assert any("bnet_track_entity" in t for t in entity_texts), "no pre-patch manual add"
    channel_texts = [p.read_text() for p in HISTORIES if p.name.startswith("ChannelSync")]
    assert any("discord_park_channel" in t for t in channel_texts), "no parked channel"
    assert any("timerStartedEventAttributes" in t for t in channel_texts), "no budget sleep"
    scheduler_texts = [p.read_text() for p in HISTORIES if p.name.startswith("Scheduler")]
    assert any("workflowExecutionUpdateAccepted" in t for t in scheduler_texts), "no update"
    assert any("workflowExecutionSignaled" in t for t in scheduler_texts), "no signal"
    # session 18's patches: a PvP run with its sync_runs row, a region sync under its one id
    pvp_texts = [p.read_text() for p in HISTORIES if p.name.startswith("PvpSync-")]
    assert any("bnet_start_run" in t for t in pvp_texts), "no PvP run with its run row"
    assert any('"workflowId": "battlenet-sync/eu"' in t for t in scheduler_texts), "no one-id sync"
    crossed = [
        p
        for p in HISTORIES
        if "WORKFLOW_EXECUTION_CONTINUED_AS_NEW" in p.read_text()
        or "workflowExecutionContinuedAsNewEventAttributes" in p.read_text()
    ]
    assert crossed, "no recorded history crossed continue-as-new"


def _texts(workflow_type: str) -> list[str]:
    return [p.read_text() for p in HISTORIES if p.name.startswith(f"{workflow_type}-")]


def test_histories_cover_the_kernel_branches():
    """Branches of the shared kernel and of the providers on it, each in some history."""
    assert any(
        "bnet_guild_character_ids" in t and "timerStartedEventAttributes" in t
        for t in _texts("BattleNetEntitySync")
    ), "no manual guild add sleeping on budget"
    assert any("timerStartedEventAttributes" in t for t in _texts("CharacterBatchSync")), (
        "no Battle.net budget sleep"
    )
    assert any(
        "childWorkflowExecutionFailedEventAttributes" in t for t in _texts("BattleNetSync")
    ), "no master with a failed child"
    scheduler = _texts("Scheduler")
    assert any("startChildWorkflowExecutionFailedEventAttributes" in t for t in scheduler), (
        "no scheduler meeting an already-started child"
    )
    assert any(t.count('"signalName": "enqueue"') >= 2 for t in scheduler), "no request merge"
    assert any("ContinuedAsNewEventAttributes" in t for t in _texts("DiscordTenantSync")), (
        "no Discord tenant continuing-as-new with its state"
    )  # fmt: skip


def _patches(workflow_type: str) -> set[str]:
    """The patch ids the recorded runs of ``workflow_type`` took (their markers' details)."""
    found = set()
    for text in _texts(workflow_type):
        for event in json.loads(text)["events"]:
            marker = event.get("markerRecordedEventAttributes") or {}
            for detail in marker.get("details", {}).values():
                for payload in detail.get("payloads", []):
                    value = json.loads(base64.b64decode(payload.get("data", "")) or "null")
                    if isinstance(value, dict) and "id" in value:
                        found.add(value["id"])
    return found


def test_histories_cover_this_sessions_patches():
    """Each patched path of the current code is in some recorded history (and replays)."""
    assert {"wide-guild-window", "batches-in-task"} <= _patches("BattleNetSync")
    assert "zwift-run-rows" in _patches("ZwiftSync")
    assert any("zwift_finish_run" in t for t in _texts("ZwiftSync")), "no Zwift run row closed"


@pytest.mark.parametrize(
    "data", [json.loads(p.read_text()) for p in HISTORIES], ids=[p.name for p in HISTORIES]
)
async def test_recorded_history_replays_against_current_code(data: dict):
    history = WorkflowHistory.from_json(data.pop("workflow_id"), data)
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)
