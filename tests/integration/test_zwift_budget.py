"""ZwiftRacing's per-endpoint budgets shared through Postgres (activities/zwift_build.py): a
second process, a one-off or a restarted worker never spends a slot of 1 per hour twice.

Real Postgres, the ZwiftRacing sandbox in its own process at the real (unscaled) windows: each
"process" is its own set of limiters and client, as a worker would build them.
"""

from __future__ import annotations

import pytest

from activities.zwift_build import zwift_client, zwift_limiters
from providers.errors import BudgetExhausted
from providers.shared_limit import SharedRateLimiter
from sandbox.admin_client import admin
from sandbox.server import SandboxProcess
from sandbox.zwift import API_PREFIX, ZwiftSandboxConfig
from sandbox.zwift_world import ZwiftWorldConfig
from settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def _settings(url: str, key: str) -> Settings:
    return Settings(
        ZWIFT_API_BASE_URL=url + API_PREFIX,
        ZWIFT_API_KEY=key,
        RATE_LIMIT_BACKEND="postgres",
        RATE_LIMIT_MAX_WAIT_SECONDS=0.5,
    )


async def _close(limiters: dict) -> None:
    for limiter in limiters.values():
        await limiter.aclose()


async def test_an_hourly_club_slot_is_spent_once_across_processes_and_restarts(
    database_url: str,
) -> None:
    config = ZwiftSandboxConfig(world=ZwiftWorldConfig(seed=3, club_sizes=(12, 7)))
    with SandboxProcess(config) as sandbox:
        settings = _settings(sandbox.url, config.api_key)
        truth = await admin(sandbox.url, "truth")
        club_id = int(truth["clubs"][0]["club_id"])

        first = zwift_limiters(settings, database_url)
        assert all(isinstance(lim, SharedRateLimiter) for lim in first.values())
        client = zwift_client(settings, first)
        page = await client.club_page(club_id)
        assert page.rider_ids
        await client.aclose()
        await _close(first)  # a worker that stopped: the slot stays spent for the hour

        for who in ("a second worker", "a restarted worker"):
            limiters = zwift_limiters(settings, database_url)
            client = zwift_client(settings, limiters)
            with pytest.raises(BudgetExhausted) as exhausted:
                await client.club_page(club_id)
            assert exhausted.value.wait_seconds > 3000, who  # the rest of the hour, said so
            # the other families are their own budgets
            await client.rider(page.rider_ids[0])
            await client.aclose()
            await _close(limiters)

        seen = await admin(sandbox.url, "stats")
    assert seen["by_family"]["clubs"] == 1
    assert seen["throttled"] == 0
    assert str(config.api_key) not in str(await _buckets(database_url))


async def _buckets(database_url: str) -> list[dict]:
    from sqlalchemy import text

    from tests.db_support import fetch_rows

    return await fetch_rows(database_url, text("SELECT * FROM rate_limit_buckets"))
