"""End to end on the real Temporal dev server, embedded Postgres and the Battle.net sandbox."""

from __future__ import annotations

import pytest

from tests.integration.battlenet_support import (
    assert_matches_truth,
    fetch_all,
    run_sync,
    track_sandbox_guilds,
)
from tests.sandbox_helpers import admin, battlenet_sandbox, sandbox_settings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def test_syncs_guilds_and_characters_exactly_as_the_sandbox_serves_them(
    client, database_url, task_queue
):
    with battlenet_sandbox(
        guilds_per_region=3, roster_min=8, roster_max=20, hidden_ratio=0.1
    ) as sb:
        await track_sandbox_guilds(database_url, sb.url)
        settings = sandbox_settings(sb.url)
        counts = await run_sync(client, settings, database_url, task_queue, batch_size=10)
        rows = await fetch_all(database_url)
        assert_matches_truth(rows, sb.url, "eu")
        stats = admin(sb.url, "stats")
        assert stats["throttled"] == 0
        assert counts.guilds == 3
        assert counts.characters_not_found == sum(1 for c in rows["characters"] if c["is_private"])
        assert counts.characters_not_found > 0

        # A second run right away finds nothing outdated: no request is spent.
        before = admin(sb.url, "stats")["requests"]
        again = await run_sync(client, settings, database_url, task_queue)
        assert again.guilds == 0 and again.characters == 0
        assert admin(sb.url, "stats")["requests"] == before
