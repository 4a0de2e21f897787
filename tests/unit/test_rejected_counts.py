"""What the parsers leave out (a hostile name or realm, a number no column holds) reaches the
run's counts: the activities reported it, the workflows dropped it (issue 10)."""

from __future__ import annotations

import asyncio

from activities.pvp import PvpBracketOutcome, PvpSyncOutcome
from activities.types import BattleNetSyncInput, GuildSyncResult, PvpImportResult
from workflows.battlenet import BattleNetSync
from workflows.pvp import PvpSync


def test_a_guilds_rejected_members_are_summed_into_the_sync_counts():
    sync = BattleNetSync()
    sync._state = BattleNetSyncInput(region="eu")
    sync._count_guild(GuildSyncResult(status="synced", members=8, rejected=2))
    sync._count_guild(GuildSyncResult(status="synced", members=3, rejected=1))
    assert (sync._state.counts.members, sync._state.counts.rejected) == (11, 3)
    assert sync._state.counts.as_dict()["rejected"] == 3  # what sync_runs.counts stores


def test_a_pvp_runs_counts_carry_the_rejected_entries(monkeypatch):
    recorded = {}

    async def execute(activity, arg, **options):
        recorded["counts"] = arg.counts

    monkeypatch.setattr("workflows.pvp.workflow.execute_activity_method", execute)
    outcome = PvpSyncOutcome(
        season=37,
        brackets=[
            PvpBracketOutcome("2v2", import_result=PvpImportResult(entries=98, rejected=2)),
            PvpBracketOutcome("3v3", import_result=PvpImportResult(entries=50, rejected=1)),
        ],
    )
    asyncio.run(PvpSync()._finish(7, "completed", outcome))
    assert recorded["counts"]["rejected"] == 3 and recorded["counts"]["entries"] == 148
