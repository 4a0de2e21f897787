"""Read API throughput and latency over a large mirror, beside the same queries run directly.

    .venv/bin/python -m bench.api_read                     # 100k characters, 1M messages
    .venv/bin/python -m bench.api_read --characters 20000 --messages 200000 --seconds 5

A throwaway embedded Postgres is filled in SQL (generate_series): 100,000 characters with a
profile, equipment and professions document each, one guild of 1,000 members, one 5,000-entry
ladder, one Discord tenant with 100 channels of 10,000 messages. Then, per endpoint (character,
guild, leaderboard page, messages page), side by side:

- **SQL (the floor)**: the API's own queries (api/queries.py ``Mirror``) called in-process over
  the same pool, C at once, no HTTP;
- **API x1** and **API x4**: ``starter.py api --workers N`` as real processes, loaded by ``wrk``
  (``apt-get install wrk``) with C connections, each request a random entity.

Each is first loaded for 2 s unmeasured (open pools, warm code paths): steady state, not a
process's first requests. Printed: requests/s, p50 and p99 latency, and API p99 / SQL p99.
Targets (issue 14): p99 <= 20 ms for single-entity reads, >= 2,000 character reads/s with 4
processes, <= 2x the direct-SQL time.
The load generator shares the machine with the API and Postgres: on a 2-core machine all three
compete for the same cores, which the figures include.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from api.queries import Mirror, Staleness
from bench.common import code_version, throwaway_stack
from storage.db import sync_url

REALMS = [f"realm-{i}" for i in range(10)]
CHANNELS = 100

FILL = """
INSERT INTO guilds (region, bnet_guild_id, realm, name_slug, name, faction, member_count,
                    last_synced_at, guild_data_json, roster_json)
VALUES ('eu', 1, 'realm-0', 'big-guild', 'Big Guild', 'HORDE', 1000, now(), '{}', '{}');
INSERT INTO ranks (guild_id, rank_id, rank_name, member_count)
SELECT 1, r, 'Rank ' || r, 100 FROM generate_series(0, 9) r;
INSERT INTO characters (region, bnet_character_id, realm, name_slug, name, guild_id, level,
    character_class, race, faction, active_spec, average_item_level, equipped_item_level,
    mythic_rating, last_synced_at, profile_json, equipment_json, professions_json)
SELECT 'eu', i, 'realm-' || (i % 10), 'c' || i, 'C' || i, CASE WHEN i <= 1000 THEN 1 END, 80,
    'Warrior', 'Orc', 'HORDE', 'Arms', 600 + i % 40, 600 + i % 40, (i % 3000)::float,
    now() - make_interval(secs => i % 7200),
    jsonb_build_object('id', i, 'name', 'C' || i, 'level', 80, 'realm',
                       jsonb_build_object('slug', 'realm-' || (i % 10))),
    jsonb_build_object('equipped_items', (SELECT jsonb_agg(jsonb_build_object(
        'slot', jsonb_build_object('type', 'SLOT' || s),
        'item', jsonb_build_object('id', s * 1000 + i % 97),
        'name', 'Item ' || s, 'quality', jsonb_build_object('type', 'EPIC'),
        'level', jsonb_build_object('value', 600 + s))) FROM generate_series(1, 16) s)),
    jsonb_build_object('primaries', jsonb_build_array(jsonb_build_object(
        'profession', jsonb_build_object('id', 164, 'name', 'Blacksmithing'),
        'tiers', jsonb_build_array(jsonb_build_object('skill_points', 100, 'max_skill_points', 175,
                                   'tier', jsonb_build_object('name', 'Khaz Algar'))))))
FROM generate_series(1, :characters) i;
INSERT INTO guild_members (guild_id, character_id, rank, character_name, character_class, level,
                           member_data_json)
SELECT 1, i, i % 10, 'C' || i, 'Warrior', 80,
       jsonb_build_object('character', jsonb_build_object('realm',
                          jsonb_build_object('slug', 'realm-' || (i % 10))))
FROM generate_series(1, 1000) i;
INSERT INTO pvp_leaderboards (region, season_id, bracket, bracket_type, entry_count,
                              last_snapshot_at, last_synced_at, leaderboard_json)
VALUES ('eu', 37, '3v3', 'ARENA_3v3', 5000, '2026-12-01T00:00:00Z', now(), '{}');
INSERT INTO pvp_leaderboard_entries (leaderboard_id, character_id, snapshot_at, rank, rating,
                                     played, won, lost, faction, entry_json)
SELECT 1, i, '2026-12-01T00:00:00Z', i, 3500 - i / 2, 100, 60, 40, 'HORDE', '{}'
FROM generate_series(1, 5000) i;
INSERT INTO tenants (discord_guild_id, name, last_synced_at) VALUES (900000, 'Bench', now());
INSERT INTO channels (discord_channel_id, tenant_id, name, type, position, message_count,
                      last_synced_at, channel_json)
SELECT 800000 + c, 1, 'chan-' || c, 0, c, :per_channel, now(), '{}'
FROM generate_series(1, 100) c;
INSERT INTO messages (discord_message_id, channel_id, author_id, created_at, type, message_json)
SELECT 1000000000 + m, 1 + m % 100, 5000 + m % 300, now() - make_interval(secs => m), 0,
       jsonb_build_object('id', (1000000000 + m)::text, 'content', 'message number ' || m,
                          'author', jsonb_build_object('username', 'user' || (m % 300)))
FROM generate_series(1, :messages) m;
ANALYZE;
"""


WARM_UP = 2  # seconds of unmeasured load on each endpoint first (SQL and API alike)


def _sql(characters: int, messages: int) -> list[str]:
    text = (
        FILL.replace(":characters", str(characters))
        .replace(":messages", str(messages))
        .replace(":per_channel", str(messages // CHANNELS))
    )
    return [s for s in text.split(";\n") if s.strip()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the endpoints, as (API path, Mirror call) makers over random entities ---------------


def endpoints(characters: int, messages: int) -> dict[str, tuple[str, Callable[..., Any]]]:
    per_channel = messages // CHANNELS

    def character(m: Mirror, rng: random.Random) -> tuple[str, Callable[[], Awaitable[Any]]]:
        i = rng.randint(1, characters)
        realm = f"realm-{i % 10}"
        return f"/v1/wow/eu/characters/{realm}/c{i}", lambda: m.character("eu", realm, f"c{i}")

    def guild(m: Mirror, rng: random.Random) -> tuple[str, Callable[[], Awaitable[Any]]]:
        return "/v1/wow/eu/guilds/realm-0/big-guild", lambda: m.guild("eu", "realm-0", "big-guild")

    def ladder(m: Mirror, rng: random.Random) -> tuple[str, Callable[[], Awaitable[Any]]]:
        rank = rng.randint(0, 4900)
        path = f"/v1/wow/eu/pvp/37/3v3?limit=100&cursor={rank}-0"
        return path, lambda: m.leaderboard("eu", 37, "3v3", 100, (rank, 0))

    def page(m: Mirror, rng: random.Random) -> tuple[str, Callable[[], Awaitable[Any]]]:
        channel = 800000 + rng.randint(1, CHANNELS)
        before = 1000000000 + rng.randint(100, per_channel * CHANNELS)
        path = f"/v1/discord/channels/{channel}/messages?limit=50&before={before}"
        return path, lambda: m.messages(channel, 50, before, None, None)

    return {
        "character": ("single", character),
        "guild (1,000 members)": ("page", guild),
        "leaderboard page (100)": ("page", ladder),
        "messages page (50)": ("page", page),
    }


async def direct(mirror: Mirror, make: Callable[..., Any], seconds: float, conc: int) -> dict:
    rng = random.Random(1)
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def loop() -> None:
        while time.perf_counter() < stop:
            _, call = make(mirror, rng)
            began = time.perf_counter()
            body = await call()
            latencies.append(time.perf_counter() - began)
            assert body is not None

    began = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(conc)))
    took = time.perf_counter() - began
    latencies.sort()
    return {
        "rps": len(latencies) / took,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(0.99 * (len(latencies) - 1))] * 1000,
    }


LUA = """
local paths = {}
for line in io.lines("%s") do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i])
end
"""


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, paths: list[str], seconds: float, conc: int, tmp: Path) -> dict:
    listing = tmp / "paths.txt"
    listing.write_text("\n".join(paths) + "\n")
    script = tmp / "paths.lua"
    script.write_text(LUA % listing)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{conc}", f"-d{seconds:g}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.MULTILINE))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50": _ms(lat["50"]),
        "p99": _ms(lat["99"]),
        "errors": int(errors.group(1)) if errors else 0,
    }


def serve(database_url: str, workers: int, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [sys.executable, "starter.py", "api", "--port", str(port), "--workers", str(workers)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    import urllib.request

    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the API did not come up: {proc.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]


async def main(args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("bench.api_read needs wrk: apt-get install wrk")
    print(f"code: {code_version()}")
    async with throwaway_stack(temporal=False) as stack:
        conn = await asyncpg.connect(sync_url(stack.database_url))
        began = time.perf_counter()
        for statement in _sql(args.characters, args.messages):
            await conn.execute(statement)
        await conn.close()
        print(
            f"mirror: {args.characters:,} characters, {args.messages:,} messages, a 1,000-member "
            f"guild, a 5,000-entry ladder (filled in {time.perf_counter() - began:.0f} s)"
        )
        staleness = Staleness(21600.0, 21600.0, 900.0, 21600.0, 600.0)
        mirror = await Mirror.open(stack.database_url, staleness, size=args.concurrency)
        rows: list[tuple[str, str, dict, dict, dict]] = []
        made = endpoints(args.characters, args.messages)
        floors = {}
        for name, (_, make) in made.items():
            await direct(mirror, make, WARM_UP, args.concurrency)  # the pool's connections open
            floors[name] = await direct(mirror, make, args.seconds, args.concurrency)
        rng = random.Random(2)
        paths = {
            name: [make(mirror, rng)[0] for _ in range(5000)] for name, (_, make) in made.items()
        }
        await mirror.aclose()
        results: dict[int, dict[str, dict]] = {}
        tmp = Path(tempfile.mkdtemp(prefix="api-bench-"))
        try:
            for workers in (1, 4):
                port = _free_port()
                proc = serve(stack.database_url, workers, port)
                try:
                    for name in made:  # every process's pool and code paths warm, unmeasured
                        wrk(f"http://127.0.0.1:{port}", paths[name], WARM_UP, args.concurrency, tmp)
                    results[workers] = {
                        name: wrk(
                            f"http://127.0.0.1:{port}",
                            paths[name],
                            args.seconds,
                            args.concurrency,
                            tmp,
                        )
                        for name in made
                    }
                finally:
                    proc.terminate()
                    proc.wait(20)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        for name, (kind, _) in made.items():
            rows.append((name, kind, floors[name], results[1][name], results[4][name]))
    print(
        f"\n{'endpoint':24} {'SQL req/s':>9} {'p50':>6} {'p99':>6} | {'API x1 req/s':>12} "
        f"{'p50':>6} {'p99':>6} | {'API x4 req/s':>12} {'p50':>6} {'p99':>6} | "
        f"{'x4 p99/SQL p99':>14} {'non-2xx':>7}"
    )
    for name, _kind, sql, one, four in rows:
        print(
            f"{name:24} {sql['rps']:9.0f} {sql['p50']:6.2f} {sql['p99']:6.2f} | "
            f"{one['rps']:12.0f} {one['p50']:6.2f} {one['p99']:6.2f} | {four['rps']:12.0f} "
            f"{four['p50']:6.2f} {four['p99']:6.2f} | {four['p99'] / sql['p99']:14.2f} "
            f"{one['errors'] + four['errors']:7d}"
        )
    print(f"(latencies in ms; {args.concurrency} requests at a time; {args.seconds:g} s each)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--characters", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=16)
    asyncio.run(main(parser.parse_args()))
