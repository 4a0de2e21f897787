"""Issue 12 deliverable 9: `status` shows each shared rate budget as Postgres holds it.

Real SharedRateLimiters (providers.shared_limit.postgres_limiter) against the test's database:
one holds every place of its 1 s window with a request waiting behind them, one has shared a
pause (a 429), one "crashed" (SIGKILL: its leases are left to expire, their places cool down).
Then `starter.py status` is run as a user runs it, while the live ones keep renewing.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import pytest
from sqlalchemy import text

from cli import budget_view
from providers.ratelimit import Priority, Window
from providers.shared_limit import SharedRateLimiter, fingerprint, postgres_limiter
from storage.db import create_engine
from storage.status import budget_counters, rate_budgets
from tests.cli_support import cli_env, run_cli
from tests.db_support import fetch_rows

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
SECRET = "budget-secret-51c0e"


def _limiter(url: str, name: str, windows: list[Window], **kw: Any) -> SharedRateLimiter:
    return postgres_limiter(
        name, windows, database_url=url, provider="test", credential=[SECRET, name],
        max_wait=60.0, **kw,
    )  # fmt: skip


async def _stored(url: str) -> dict[str, dict[str, Any]]:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = await rate_budgets(conn)
    finally:
        await engine.dispose()
    return {r["bucket"].split(":")[1]: r for r in rows}


async def _until(url: str, ok: Callable[[dict[str, dict[str, Any]]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        rows = await _stored(url)
        if ok(rows) or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.1)


async def _counters(url: str, provider: str) -> tuple[int, int] | None:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return await budget_counters(conn, provider)
    finally:
        await engine.dispose()


async def _raw_places(url: str, name: str) -> int:
    """The places leased or cooling in budget ``name``, summed from the tables directly."""
    rows = await fetch_rows(
        url,
        text(
            "SELECT (SELECT coalesce(sum(places), 0) FROM rate_limit_leases WHERE bucket LIKE :b)"
            " + (SELECT coalesce(sum(places), 0) FROM rate_limit_cooling WHERE bucket LIKE :b"
            " AND free_at > extract(epoch FROM clock_timestamp())) AS n"
        ).bindparams(b=f"test:{name}:%"),
    )
    return int(rows[0]["n"])


async def _status(env: dict[str, str], *args: str) -> str:
    done = await asyncio.to_thread(run_cli, env, "status", *args, timeout=120)  # loop runs on
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_status_shows_each_budget(temporal_env, database_url, task_queue) -> None:
    env = cli_env(temporal_env, database_url, task_queue, RATE_LIMIT_BACKEND="postgres")
    empty = await _status(env)
    assert "rate budgets: no shared budget in use" in empty.splitlines(), empty

    # a long lease: a loaded CI machine cannot make it lapse while the CLI runs
    busy = _limiter(database_url, "busy", [Window(6, 1.0), Window(500, 3600.0)], lease_seconds=10)
    paused = _limiter(database_url, "paused", [Window(50, 1.0)])
    gone = _limiter(database_url, "gone", [Window(40, 600.0)], lease_seconds=0.6, renew_every=0.2)
    held = [await busy.acquire(Priority.BULK) for _ in range(6)]  # in flight: every place
    behind = asyncio.create_task(busy.acquire(Priority.BACKFILL))  # waits for one
    async with paused.slot(Priority.URGENT):
        pass
    paused.on_rate_limited(120.0)  # a 429: every process pauses
    await gone.acquire(Priority.BULK)  # still in flight when it is killed
    try:
        rows = await _until(
            database_url,
            lambda r: (
                len(r) == 3
                and r["busy"]["waiting"] == [1, 0, 0, 0, 0]
                and r["busy"]["windows"][0]["leased"] == 6
                and r["busy"]["requests"] == 6
                and r["paused"]["rate_limited"] == 1
                and r["paused"]["requests"] == 1
                and r["gone"]["windows"][0]["leased"] > 0
                and r["gone"]["requests"] == 1
            ),
        )
        assert rows["busy"]["waiting"] == [1, 0, 0, 0, 0], rows
        assert rows["gone"]["windows"][0]["leased"] > 0, rows
        assert await _counters(database_url, "test") == (6 + 1 + 1, 1)
        assert await _counters(database_url, "elsewhere") is None
        # SIGKILL: the task and the connection stop, nothing is given back
        assert gone._task is not None
        gone._task.cancel()
        with suppress(asyncio.CancelledError):
            await gone._task
        gone._closed = True
        conn = gone._store._conn  # type: ignore[attr-defined]
        if conn is not None:  # None: the cancel came in mid-call, which terminated it
            conn.terminate()
        await asyncio.sleep(0.7)  # its lease expires; its places cool for 600 s + 1 s more
        gone_used = await _raw_places(database_url, "gone")
        assert gone_used > 0

        human, shown, local = await asyncio.gather(
            _status(env),
            _status(env, "--json"),
            _status({**env, "RATE_LIMIT_BACKEND": "local"}),
        )
    finally:
        behind.cancel()
        with suppress(asyncio.CancelledError, Exception):
            await behind
        for h in held:
            h.release()
        await busy.aclose()
        await paused.aclose()

    fp = {name: fingerprint("test", SECRET, name)[:8] for name in ("busy", "paused", "gone")}
    lines = human.splitlines()
    assert "rate budgets:" in lines, human
    line = {name: next((x for x in lines if f"  {name} {fp[name]}  " in x), "") for name in fp}
    assert line["busy"].startswith(f"  busy {fp['busy']}  6/1s: 6 leased, 0 cooling, 0 free · ")
    hour = re.search(r"500/1h: (\d+) leased, (\d+) cooling, (\d+) free", line["busy"])
    assert hour and int(hour[1]) >= 6 and sum(map(int, hour.groups())) == 500, line["busy"]
    lanes = "waiting manual 0 urgent 0 incremental 0 bulk 0 backfill 1 · 1 process · "
    assert lanes in line["busy"], line["busy"]
    assert line["busy"].endswith(" · 1 process · 6 requests, 0 rate-limited"), line["busy"]
    assert "paused" not in line["busy"], line["busy"]
    paused_line = re.search(r"paused until \d\d:\d\d:\d\d UTC \((\d+) s\)", line["paused"])
    assert paused_line and 60 <= int(paused_line[1]) <= 120, line["paused"]
    assert line["paused"].endswith(" · 1 request, 1 rate-limited"), line["paused"]
    assert line["gone"].startswith(
        f"  gone {fp['gone']}  40/10m: 0 leased, {gone_used} cooling, {40 - gone_used} free"
    ), human
    assert line["gone"].endswith(" free · no live process · 1 request, 0 rate-limited"), line

    assert SECRET not in human + shown + local
    assert fingerprint("test", SECRET, "busy") not in human  # only 8 of its 16 hex digits

    data = json.loads(shown)["rate_budgets"]
    assert data["shared"] is True and "note" not in data, data
    by_name = {b["budget"]: b for b in data["budgets"]}
    assert by_name["busy"]["windows"][0] == {
        "limit": 6, "period": 1.0, "leased": 6, "cooling": 0, "used": 6, "free": 0,
        "wanted": 6,
    }  # fmt: skip
    assert by_name["busy"]["waiting"]["backfill"] == 1 and by_name["busy"]["processes"] == 1
    assert by_name["paused"]["paused_seconds"] > 60 and by_name["paused"]["rate_limited"] == 1
    assert by_name["gone"]["processes"] == 0 and by_name["gone"]["windows"][0]["cooling"] > 0
    assert json.loads(shown)["runs"] == [], shown  # the rest of status is still there

    local_lines = local.splitlines()
    at = local_lines.index(
        "rate budgets: per process (RATE_LIMIT_BACKEND=local): each worker keeps its own "
        "budget, not visible from here"
    )
    listed = [x for x in local_lines[at + 1 :] if x.startswith("  ")]
    assert any(f"busy {fp['busy']}" in x for x in listed), local  # live elsewhere: shown
    assert not any(f"gone {fp['gone']}" in x for x in listed), local  # no live process


async def test_a_database_without_the_budget_tables_says_so(database_url) -> None:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP TABLE rate_limit_buckets CASCADE"))
        data = await budget_view.fetch(engine, "postgres")
    finally:
        await engine.dispose()
    assert data == {"shared": True, "note": budget_view.UNMIGRATED, "budgets": []}
    assert budget_view.render(data) == [f"rate budgets: {budget_view.UNMIGRATED}"]
