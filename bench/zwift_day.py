"""A time-scaled day of ZwiftRacing for 3 clubs on one API key: our club schedulers side by side
with the brief's starting point.

    .venv/bin/python -m bench.zwift_day                    # 24 simulated hours at S=288 (~11 min)
    .venv/bin/python -m bench.zwift_day --hours 6          # a quarter day (~3 min)

Both sides get a fresh ZwiftRacing sandbox (its own process, the same seeded world: 3 clubs of
2345, 320 and 39 riders, 24 tracked events spread over the day and the clubs, strict sliding
windows per endpoint family divided by the time scale S) and the same manual rider adds (one
every simulated ~75 minutes, of a rider in no club).

- **ours**: the real worker (Temporal dev server, Postgres, the durable shared budget per family)
  and one club scheduler per club (`scheduler start zwift --club …` as the CLI does it, default
  cadences), manual adds as `add rider … --wait`;
- **naive**: the brief's starting point, without Temporal: per club the three syncs run
  independently on their cron cadences — RIDER_SYNC (club pages, then bulk POSTs) every 6 h,
  NEAR_EVENT_SYNC (events starting within 60 min) every 10 min, FAR_EVENT_SYNC (the rest)
  every 2 h — each with its own client whose per-endpoint limiter has the right window but
  knows nothing of the others' calls; a manual add is a bulk POST of one id through the rider
  sync's limiter; a 429 waits the answer's retryAfter and asks again.

Printed side by side (simulated time, so minutes mean the API's minutes): per endpoint family
calls made and calls the windows allowed over the run; 429s; manual adds end to end (real
seconds: Temporal's own round trips are not scaled) and their wait for a budget place (simulated:
ours from the sync log, the naive one's whole time); the oldest far event's staleness at the
end; for events that started during the run, how long before its start each was last read
(p50 / worst: urgent freshness); bulk-POST utilisation: the window over the mean gap between a
club's consecutive POSTs of one refresh with no other POST between (its ids were all waiting).
Targets (issue 13): 0 429s; bulk utilisation >= 90 %; manual
add p95 <= one single-rider window (60 s); every urgent event read within 5 min of its start.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from bench.common import code_version, throwaway_stack
from cli.scheduler import add, start
from providers.errors import NotFound, RateLimited
from providers.ratelimit import RateLimiter, Window
from providers.zwift import PAGE_SIZE, ZwiftClient
from sandbox.admin_client import admin
from sandbox.server import SandboxProcess
from sandbox.zwift import API_PREFIX, ZwiftSandboxConfig
from sandbox.zwift_limits import DEFAULT_LIMITS
from sandbox.zwift_world import ZwiftWorldConfig
from settings import Settings
from storage import zwift as db
from storage.db import create_engine
from worker import build_worker
from workflows.scheduler import Scheduler

FAMILIES = list(DEFAULT_LIMITS)
NEAR = 3600.0
ADD_EVERY = 75 * 60.0  # simulated seconds between manual adds
SINGLE_RIDER_WINDOW = 60.0


@dataclass
class Side:
    name: str
    seconds: float = 0.0  # real seconds measured
    stats: dict[str, Any] = field(default_factory=dict)
    adds: list[float] = field(default_factory=list)  # real seconds each add took, end to end
    add_waits: list[float] = field(default_factory=list)  # simulated s each waited for budget
    far_stale: float | None = None  # simulated seconds
    before_start: list[float] = field(default_factory=list)  # simulated s before each start
    bulk_utilisation: float | None = None
    post_overhead: float | None = None  # real seconds a POST came after its window reopened
    posts: list[tuple[float, int]] = field(default_factory=list)  # (real epoch, club) per POST


def _world() -> ZwiftWorldConfig:
    return ZwiftWorldConfig(
        seed=13, club_sizes=(2345, 320, 39), clubless=40, past_events=3, urgent_events=2,
        near_events=3, far_events=16, signups_min=5, signups_max=40,
    )  # fmt: skip


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# -- ours ------------------------------------------------------------------------------------


async def run_ours(scale: float, hours: float) -> Side:
    side = Side("ours")
    config = ZwiftSandboxConfig(world=_world(), time_scale=scale)
    async with throwaway_stack(quiet=True) as stack:
        assert stack.client is not None
        with SandboxProcess(config) as sandbox:
            truth = await admin(sandbox.url, "truth")
            clubs = [int(c["club_id"]) for c in truth["clubs"]]
            engine = create_engine(stack.database_url, pool_size=2)
            async with engine.begin() as conn:
                for club in clubs:
                    await db.track_club(conn, club)
                for n, event in enumerate(truth["events"]):
                    await db.track_event(conn, int(event["event_id"]), clubs[n % len(clubs)])
            queue = f"zday-{uuid.uuid4().hex[:6]}"
            settings = Settings(
                ZWIFT_API_BASE_URL=sandbox.url + API_PREFIX, ZWIFT_API_KEY=config.api_key,
                ZWIFT_TIME_SCALE=scale, TEMPORAL_TASK_QUEUE=queue, LOG_LEVEL="WARNING",
            )  # fmt: skip
            clubless = [int(r) for r, v in truth["riders"].items() if v["club_id"] is None]
            real = hours * 3600.0 / scale
            async with build_worker(stack.client, settings, stack.database_url, queue) as parts:
                async with parts.worker:
                    handles = [await start(stack.client, "zwift", str(c), settings) for c in clubs]
                    began = time.monotonic()
                    n = 0
                    while time.monotonic() - began < real:
                        await asyncio.sleep(
                            min(ADD_EVERY / scale, real - (time.monotonic() - began))
                        )
                        if time.monotonic() - began >= real:
                            break
                        args = argparse.Namespace(
                            entity="rider", club=clubs[n % len(clubs)],
                            rider_id=clubless[n % len(clubless)], priority="manual",
                            wait=True, timeout=600.0,
                        )  # fmt: skip
                        t0 = time.monotonic()
                        await add(stack.client, args, settings)
                        side.adds.append(time.monotonic() - t0)
                        n += 1
                    side.seconds = time.monotonic() - began
                    side.stats = await admin(sandbox.url, "stats")
                    conflicts = 0
                    for handle in handles:
                        conflicts += (await handle.query(Scheduler.status)).conflicts_avoided
                        await handle.terminate("bench over")
                    side.stats["conflicts_avoided"] = conflicts
            await _ours_freshness(side, engine, truth, scale)
            await engine.dispose()
    return side


async def _ours_freshness(side: Side, engine: Any, truth: dict[str, Any], scale: float) -> None:
    starts = {int(e["event_id"]): float(e["starts_at"]) for e in truth["events"]}
    async with engine.connect() as conn:
        reads = await conn.execute(
            text("SELECT entity, endpoint, extract(epoch FROM at) AS at, status, waited, "
                 "club_id, kind FROM zwift_sync_log ORDER BY at")
        )  # fmt: skip
        rows = list(reads)
        stale = await conn.execute(
            text("SELECT extract(epoch FROM now() - min(last_synced_at)) FROM zwift_events "
                 "WHERE starts_at > now() + make_interval(secs => :near)"),
            {"near": NEAR / scale},
        )  # fmt: skip
        value = stale.scalar()
        side.far_stale = None if value is None else float(value) * scale
    last_read: dict[int, list[float]] = {}
    for row in rows:
        if row.endpoint == "events" and row.status == 200 and row.entity.startswith("event "):
            last_read.setdefault(int(row.entity.split()[1]), []).append(float(row.at))
        if row.endpoint == "riders_post" and row.status == 200 and row.kind == "riders":
            side.posts.append((float(row.at), int(row.club_id)))
        if row.endpoint == "riders_get" and row.status == 200:
            side.add_waits.append(float(row.waited) * scale)
    _freshness(side, starts, last_read, scale)


def _freshness(
    side: Side, starts: dict[int, float], reads: dict[int, list[float]], scale: float
) -> None:
    """For events that started while the run went on: how long before its start the last read
    before it was (simulated seconds); an event never read before its start counts as a miss."""
    if not side.stats:
        return
    first = float(side.stats.get("first_request_at") or 0)
    last = float(side.stats.get("last_request_at") or 0)
    for event, starts_at in starts.items():
        if not first + 60 / scale < starts_at <= last:
            continue
        before = [t for t in reads.get(event, []) if t <= starts_at]
        side.before_start.append((starts_at - max(before)) * scale if before else float("inf"))
    window = 900.0 / scale
    # a club's consecutive POSTs of one refresh with nobody else's between: its ids were all
    # waiting, so the gap is how soon a POST follows its window reopening
    gaps = [
        b - a
        for (a, club_a), (b, club_b) in itertools.pairwise(side.posts)
        if club_a == club_b and b - a < 3 * window
    ]
    if gaps:
        side.bulk_utilisation = window / statistics.mean(gaps)
        side.post_overhead = statistics.mean(gaps) - window


# -- the naive baseline ----------------------------------------------------------------------


class Naive:
    """The brief's three syncs per club, each with its own per-endpoint limiters."""

    def __init__(self, url: str, key: str, scale: float) -> None:
        self.url, self.key, self.scale = url + API_PREFIX, key, scale
        self.reads: dict[int, list[float]] = {}
        self.posts: list[tuple[float, int]] = []
        self.rate_limited = 0

    def client(self) -> ZwiftClient:
        limiters = {
            family: RateLimiter(family, [Window(limit, period / self.scale)], max_wait=None)
            for family, (limit, period) in DEFAULT_LIMITS.items()
        }
        return ZwiftClient(api_key=self.key, base_url=self.url, limiters=limiters)

    async def patient(self, call: Any) -> Any:
        while True:
            try:
                return await call()
            except RateLimited as exc:
                self.rate_limited += 1
                await asyncio.sleep(max(exc.retry_after, 0.01))

    async def riders(self, client: ZwiftClient, club: int) -> None:
        ids: list[int] = []
        async for page in client.club_pages(club):
            ids += page.rider_ids
        for first in range(0, len(ids), PAGE_SIZE):
            chunk = ids[first : first + PAGE_SIZE]
            await self.patient(lambda chunk=chunk: client.riders(chunk))
            self.posts.append((time.time(), club))

    async def events(self, client: ZwiftClient, events: list[int]) -> None:
        for event in events:
            try:
                await self.patient(lambda event=event: client.event(event))
                self.reads.setdefault(event, []).append(time.time())
                await self.patient(lambda event=event: client.event_signups(event))
            except NotFound:
                continue

    async def every(self, seconds: float, body: Any, until: float) -> None:
        while time.monotonic() < until:
            began = time.monotonic()
            await body()
            await asyncio.sleep(max(0.0, seconds / self.scale - (time.monotonic() - began)))


async def run_naive(scale: float, hours: float) -> Side:
    side = Side("naive")
    config = ZwiftSandboxConfig(world=_world(), time_scale=scale)
    with SandboxProcess(config) as sandbox:
        truth = await admin(sandbox.url, "truth")
        clubs = [int(c["club_id"]) for c in truth["clubs"]]
        starts = {int(e["event_id"]): float(e["starts_at"]) for e in truth["events"]}
        mine = {c: [int(e["event_id"]) for n, e in enumerate(truth["events"])
                    if clubs[n % len(clubs)] == c] for c in clubs}  # fmt: skip
        clubless = [int(r) for r, v in truth["riders"].items() if v["club_id"] is None]
        naive = Naive(sandbox.url, config.api_key, scale)
        real = hours * 3600.0 / scale
        until = time.monotonic() + real
        rider_clients = {c: naive.client() for c in clubs}

        def near_of(club: int) -> list[int]:
            now = time.time()
            return [e for e in mine[club] if 0 < starts[e] - now <= NEAR / scale]

        def far_of(club: int) -> list[int]:
            now = time.time()
            return [e for e in mine[club] if starts[e] - now > NEAR / scale]

        tasks = []
        for club in clubs:
            riders_client, near_client, far_client = (
                rider_clients[club],
                naive.client(),
                naive.client(),
            )
            tasks += [
                naive.every(6 * 3600, lambda c=club, k=riders_client: naive.riders(k, c), until),
                naive.every(600, lambda c=club, k=near_client: naive.events(k, near_of(c)), until),
                naive.every(7200, lambda c=club, k=far_client: naive.events(k, far_of(c)), until),
            ]

        async def manual_adds() -> None:
            n = 0
            while True:
                await asyncio.sleep(ADD_EVERY / scale)
                if time.monotonic() >= until:
                    return
                client = rider_clients[clubs[n % len(clubs)]]
                rider = clubless[n % len(clubless)]
                t0 = time.monotonic()
                await naive.patient(lambda client=client, rider=rider: client.riders([rider]))
                side.adds.append(time.monotonic() - t0)
                side.add_waits.append((time.monotonic() - t0) * scale)  # all of it: the budget
                n += 1

        began = time.monotonic()
        runners = [asyncio.create_task(t) for t in [*tasks, manual_adds()]]
        await asyncio.sleep(real)
        for task in runners:
            task.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        side.seconds = time.monotonic() - began
        side.stats = await admin(sandbox.url, "stats")
        now = time.time()
        far = [e for c in clubs for e in far_of(c)]
        last = [max(naive.reads.get(e, [0.0])) for e in far]
        side.far_stale = max(((now - t) * scale for t in last), default=None)
        side.posts = naive.posts
        _freshness(side, starts, naive.reads, scale)
    return side


# -- report ----------------------------------------------------------------------------------


def report(sides: list[Side], scale: float, hours: float) -> None:
    print(f"\nbench/zwift_day: {hours:g} simulated hours at S={scale:g}, 3 clubs on one key "
          f"(code {code_version()})")  # fmt: skip
    print(f"{'':34}" + "".join(f"{s.name:>22}" for s in sides))
    for family in FAMILIES:
        limit, period = DEFAULT_LIMITS[family]
        cells = []
        for s in sides:
            made = s.stats["by_family"].get(family, 0)
            allowed = limit * s.seconds / (period / scale)
            cells.append(f"{made} / {allowed:.0f}")
        print(f"{'calls made / allowed  ' + family:34}" + "".join(f"{c:>22}" for c in cells))

    def row(label: str, cell: Any) -> None:
        print(f"{label:34}" + "".join(f"{cell(s):>22}" for s in sides))

    row("429s", lambda s: str(s.stats["throttled"]))
    row("conflicts avoided (scheduler)", lambda s: str(s.stats.get("conflicts_avoided", "-")))
    row(
        "manual add, real s p50 / p95",
        lambda s: f"{_pct(s.adds, 0.5):.2f} / {_pct(s.adds, 0.95):.2f} ({len(s.adds)})",
    )
    row("manual add budget wait p95 (sim s)", lambda s: f"{_pct(s.add_waits, 0.95):.0f}")
    row(
        "oldest far event (sim min)",
        lambda s: "-" if s.far_stale is None else f"{s.far_stale / 60:.0f}",
    )
    row(
        "read before start p50 / worst (min)",
        lambda s: (
            f"{_pct(s.before_start, 0.5) / 60:.1f} / {max(s.before_start, default=0) / 60:.1f}"
            f" ({len(s.before_start)})"
        ),
    )
    row(
        "bulk POST utilisation in a refresh",
        lambda s: "-" if s.bulk_utilisation is None else f"{100 * s.bulk_utilisation:.0f} %",
    )
    row(
        "  POST after its window (real s)",
        lambda s: "-" if s.post_overhead is None else f"{s.post_overhead:.2f}",
    )
    row(
        "  so at S=1 (real API)",
        lambda s: (
            "-"
            if s.post_overhead is None
            else f"{100 * 900 / (900 + max(0.0, s.post_overhead)):.1f} %"
        ),
    )
    row("429s by family", lambda s: _short(Counter(s.stats["throttled_by_family"])))


def _short(counts: Counter[str]) -> str:
    found = [f"{k[:6]} {v}" for k, v in counts.items() if v]
    return ", ".join(found) or "none"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=288.0, help="time scale S (default 288)")
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours (default 24)")
    args = parser.parse_args()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC: ours first, then the naive baseline")
    ours = await run_ours(args.scale, args.hours)
    naive = await run_naive(args.scale, args.hours)
    report([naive, ours], args.scale, args.hours)


if __name__ == "__main__":
    asyncio.run(main())
