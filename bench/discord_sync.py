"""Discord tenant sync: wall time against the floor the limits imply, and our own overhead.

    .venv/bin/python -m bench.discord_sync            # 50 channels x 4,000 messages per part
    .venv/bin/python -m bench.discord_sync --quick    # 10 channels x 1,000 (smoke, ~1 min)
    .venv/bin/python -m bench.discord_sync --trace .data/ds   # + per-request timings (diagnosis)

Real Temporal dev server, real Postgres (a fresh database per run), the Discord sandbox in its
own process, and the worker as a separate `python worker.py` process configured by environment
variables (so its peak RSS, VmHWM, can be read from /proc before it exits).
(a) the sandbox's default limits (messages 5 per 5 s per channel, global 50/s), 50 channel
workers, fetch size 100: wall time from workflow start to result against the floor the limits
imply, 429s, the busiest 1-s window, peak worker RSS, stored messages checked against the truth.
(b) limits lifted (sandbox `lifted`, DISCORD_GLOBAL_RATE_PER_SECOND=100000): messages stored
per second end to end, with 10 and 50 channel workers (the sandbox's message cache warmed first
by plain HTTP paging, so that its cold JSON rendering is not counted as our overhead).
Each run also prints CPU seconds by process (worker, Postgres, Temporal, sandbox) and the
requests per 5 s; `--trace` adds per-request timings from inside the worker.
Targets: (a) wall/floor ≤ 1.10, 0 429s after discovery (≤ 1 per bucket), worker RSS < 300 MB;
(b) ≥ 20,000 messages/s.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from activities.discord_types import TenantSyncInput
from bench.common import Stack, throwaway_stack
from providers.discord.client import USER_AGENT
from sandbox.admin_client import admin
from sandbox.discord import DiscordSandboxConfig
from sandbox.discord_world import DiscordWorldConfig
from sandbox.server import SandboxProcess
from storage import discord as db
from storage.db import create_engine
from storage.models import channel_sync_jobs, channels, messages
from workflows.discord import DiscordTenantSync

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "sandbox-bot-token"
LIFTED_GLOBAL = 100_000


@dataclass
class Shape:
    channels: int
    messages: int  # per channel
    fetch: int = 100

    @property
    def total(self) -> int:
        return self.channels * self.messages

    @property
    def pages(self) -> int:
        """Message requests per channel: full pages, then the short (maybe empty) last one."""
        return self.messages // self.fetch + 1


@dataclass
class Outcome:
    label: str
    workers: int
    wall: float
    result: Any
    stats: dict[str, Any]
    rss_peak_mb: float
    stored: int
    spot_ok: int
    spot_checked: int
    to_first_request: float
    after_last_request: float
    channel_seconds: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    samples: list[tuple[float, int]] = field(default_factory=list)
    trace: str | None = None


# -- the worker process ------------------------------------------------------------------------


class WorkerProcess:
    """`python worker.py` with its settings in the environment; stdout/stderr to a temp file."""

    def __init__(self, env: dict[str, str], profile: str | None, cprofile: bool = False) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="discord-bench-worker-", suffix=".log")
        full_env = {**os.environ, **env}
        command = [sys.executable, "worker.py"]
        if profile:
            command = [sys.executable, "-m", "bench.discord_sync", f"--as-worker={profile}"]
            command += ["--cprofile"] if cprofile else []
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=self.log
        )

    async def ready(self, timeout: float = 60.0) -> None:
        assert self.proc.stdout is not None
        stdout = self.proc.stdout

        def wait() -> None:
            for line in stdout:
                if b"worker polling" in line:
                    return
            raise RuntimeError(f"worker exited before polling; see {self.log.name}")

        await asyncio.wait_for(asyncio.to_thread(wait), timeout)

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def tail(self, lines: int = 20) -> str:
        return "\n".join(Path(self.log.name).read_text(errors="replace").splitlines()[-lines:])


def _install_trace() -> list[dict[str, Any]]:
    """Wrap (in this worker process only) the client, limiter, HTTP, parse and store calls so
    that every Discord request leaves one record of monotonic timestamps."""
    import contextvars

    import httpx

    import providers.discord.client as client_mod
    from providers.discord.client import DiscordClient
    from providers.discord.ratelimit import DiscordLimiter

    records: list[dict[str, Any]] = []
    current: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
        "bench_trace", default=None
    )
    get, acquire, send = DiscordClient.get, DiscordLimiter.acquire, httpx.AsyncClient.send
    parse, store = client_mod.parse_messages_page, db.store_page

    async def traced_get(self: Any, route: str, major: Any, *args: Any, **kw: Any) -> Any:
        rec = {"route": route, "major": major, "t0": time.monotonic()}
        records.append(rec)
        token = current.set(rec)
        try:
            return await get(self, route, major, *args, **kw)
        finally:
            rec["t_end"] = time.monotonic()
            current.reset(token)

    async def traced_acquire(self: Any, *args: Any, **kw: Any) -> Any:
        ticket = await acquire(self, *args, **kw)
        rec = current.get()
        if rec is not None:
            rec["t_bucket"] = time.monotonic()
        return ticket

    async def traced_send(self: Any, *args: Any, **kw: Any) -> Any:
        rec = current.get()
        if rec is not None:
            rec["t_http"] = time.monotonic()
        try:
            return await send(self, *args, **kw)
        finally:
            if rec is not None:
                rec["t_http_end"] = time.monotonic()

    def traced_parse(*args: Any, **kw: Any) -> Any:
        began = time.monotonic()
        try:
            return parse(*args, **kw)
        finally:
            records.append({"parse": time.monotonic() - began})

    async def traced_store(conn: Any, run_id: int, channel_id: int, *args: Any, **kw: Any) -> Any:
        began = time.monotonic()
        try:
            return await store(conn, run_id, channel_id, *args, **kw)
        finally:
            records.append({"store": (began, time.monotonic()), "channel_row": channel_id})

    DiscordClient.get = traced_get  # type: ignore[method-assign]
    DiscordLimiter.acquire = traced_acquire  # type: ignore[method-assign]
    httpx.AsyncClient.send = traced_send  # type: ignore[method-assign]
    client_mod.parse_messages_page = traced_parse
    db.store_page = traced_store
    return records


def as_worker(out: str, cprofile: bool) -> None:
    """The worker under request tracing (and cProfile): the trace goes to `OUT.trace.json`,
    the profile to `OUT.prof`."""
    import cProfile
    import json

    sys.path.insert(0, str(ROOT))
    import worker

    records = _install_trace()
    profiler = cProfile.Profile() if cprofile else None
    if profiler is not None:
        profiler.enable()
    try:
        worker.main()
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(out + ".prof")
        Path(out + ".trace.json").write_text(json.dumps(records))


# -- CPU by process, request rate over time ---------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, str, float]]:
    """pid -> (ppid, command line, CPU seconds so far) for every process."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2 :].split()
        out[int(entry.name)] = (int(rest[1]), cmd, (int(rest[11]) + int(rest[12])) / CLK_TCK)
    return out


def _machine_busy() -> float:
    """CPU seconds all cores spent not idle, since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def cpu_by_group(worker_pid: int, sandbox_pid: int | None) -> dict[str, float]:
    """CPU seconds so far of this benchmark's processes, grouped (and the machine's total)."""
    procs = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    groups = {"worker": 0.0, "postgres": 0.0, "temporal": 0.0, "sandbox": 0.0, "bench": 0.0}
    todo = [os.getpid()]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        if pid not in procs:
            continue
        _, cmd, cpu = procs[pid]
        if pid == worker_pid:
            group = "worker"
        elif pid == sandbox_pid:
            group = "sandbox"
        elif "postgres" in cmd:
            group = "postgres"
        elif "temporal" in cmd:
            group = "temporal"
        else:
            group = "bench"
        groups[group] += cpu
    groups["machine"] = _machine_busy()
    return groups


async def sample_requests(url: str, into: list[tuple[float, int]]) -> None:
    """(time, requests so far) every 0.5 s, from the sandbox's counters."""
    while True:
        stats = await admin(url, "stats")
        into.append((time.monotonic(), int(stats["requests"])))
        await asyncio.sleep(0.5)


# -- one run -------------------------------------------------------------------------------------


async def _stored(database_url: str) -> tuple[int, list[float]]:
    engine = create_engine(database_url, pool_size=1)
    jobs = channel_sync_jobs
    async with engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(messages))).scalar_one()
        rows = await conn.execute(
            select(func.extract("epoch", jobs.c.completed_at - jobs.c.started_at)).where(
                jobs.c.completed_at.is_not(None)
            )
        )
        seconds = sorted(float(r[0]) for r in rows)
    await engine.dispose()
    return int(count), seconds


async def _stored_ids(database_url: str, discord_channel_id: int) -> list[int]:
    engine = create_engine(database_url, pool_size=1)
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(messages.c.discord_message_id)
            .join(channels, channels.c.id == messages.c.channel_id)
            .where(channels.c.discord_channel_id == discord_channel_id)
            .order_by(messages.c.discord_message_id)
        )
        ids = [int(r[0]) for r in rows]
    await engine.dispose()
    return ids


async def sync_once(
    stack: Stack,
    sandbox: SandboxProcess,
    label: str,
    shape: Shape,
    workers: int,
    global_rate: int,
    trace: str | None,
    cprofile: bool,
) -> Outcome:
    assert stack.client is not None
    url = sandbox.url
    tenant = (await admin(url, "tenants"))["tenants"][0]
    gid = int(tenant["guild_id"])
    database_url = await stack.fresh_database()
    engine = create_engine(database_url, pool_size=1)
    async with engine.begin() as conn:
        await db.track_tenant(conn, gid)
    await engine.dispose()
    queue = f"bench-discord-{uuid.uuid4().hex[:6]}"
    env = {
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": stack.client.service_client.config.target_host,
        "TEMPORAL_TASK_QUEUE": queue,
        "DISCORD_BOT_TOKEN": TOKEN,
        "DISCORD_API_BASE_URL": f"{url}/api/v10",
        "SYNC_MAX_CHANNEL_WORKERS": str(workers),
        "SYNC_MESSAGE_FETCH_SIZE": str(shape.fetch),
        "DISCORD_GLOBAL_RATE_PER_SECOND": str(global_rate),
        "LOG_LEVEL": "WARNING",
    }
    worker = WorkerProcess(env, trace, cprofile)
    samples: list[tuple[float, int]] = []
    try:
        await worker.ready()
        await admin(url, "reset", {})
        cpu_before = cpu_by_group(worker.proc.pid, sandbox.pid)
        sampler = asyncio.create_task(sample_requests(url, samples))
        wall_started = time.time()
        started = time.monotonic()
        handle = await stack.client.start_workflow(
            DiscordTenantSync.run,
            TenantSyncInput(discord_guild_id=gid, full=False),
            id=f"discord-sync/{gid}/{queue}",
            task_queue=queue,
        )
        result = await handle.result()
        wall = time.monotonic() - started
        wall_ended = time.time()
        rss = worker.peak_rss_mb()
        cpu_after = cpu_by_group(worker.proc.pid, sandbox.pid)
        sampler.cancel()
    except BaseException:
        print(worker.tail(), file=sys.stderr)
        raise
    finally:
        worker.stop()
    stats = await admin(url, "stats")
    stored, channel_seconds = await _stored(database_url)
    ids = [int(c["id"]) for c in tenant["channels"] if c["type"] == 0]
    picks = sorted({ids[0], ids[len(ids) // 2], ids[-1]})
    ok = 0
    for cid in picks:
        truth = [int(i) for i in (await admin(url, f"channels/{cid}/ids"))["ids"]]
        ok += truth == await _stored_ids(database_url, cid) and len(truth) == shape.messages
    return Outcome(
        label=label,
        workers=workers,
        wall=wall,
        result=result,
        stats=stats,
        rss_peak_mb=rss,
        stored=stored,
        spot_ok=ok,
        spot_checked=len(picks),
        to_first_request=(stats["first_request_at"] or wall_started) - wall_started,
        after_last_request=wall_ended - (stats["last_request_at"] or wall_ended),
        channel_seconds=channel_seconds,
        cpu={k: cpu_after[k] - cpu_before[k] for k in cpu_after},
        samples=[(t - started, n) for t, n in samples],
        trace=f"{trace}.trace.json" if trace else None,
    )


async def warm_sandbox(url: str, shape: Shape) -> None:
    """Page every channel once with plain HTTP (limits lifted) so that the sandbox has rendered
    and cached every message: (b) then measures our side, not the sandbox's cold rendering."""
    import httpx

    tenant = (await admin(url, "tenants"))["tenants"][0]
    headers = {"Authorization": f"Bot {TOKEN}", "User-Agent": USER_AGENT}
    async with httpx.AsyncClient(base_url=f"{url}/api/v10", headers=headers, timeout=30) as http:

        async def channel(cid: str) -> None:
            after = 0
            while True:
                params = {"after": str(after), "limit": str(shape.fetch)}
                answer = await http.get(f"/channels/{cid}/messages", params=params)
                answer.raise_for_status()
                page = answer.json()
                if not page:
                    return
                after = int(page[0]["id"])

        ids = [c["id"] for c in tenant["channels"] if c["type"] == 0]
        for start in range(0, len(ids), 10):
            await asyncio.gather(*(channel(cid) for cid in ids[start : start + 10]))


def sandbox_config(shape: Shape, lifted: bool) -> DiscordSandboxConfig:
    world = DiscordWorldConfig(
        seed=42, tenants=1, channels_per_tenant=shape.channels, messages_per_channel=shape.messages
    )
    return DiscordSandboxConfig(world=world, lifted=lifted)


# -- reporting -----------------------------------------------------------------------------------


def four29s(stats: dict[str, Any]) -> tuple[int, int]:
    """(all 429s, 429s after discovery): the first 429 of each bucket is discovery."""
    total = sum(stats["rate_limited"].values())
    return total, total - len([k for k, n in stats["rate_limited_by_bucket"].items() if n])


def floor_seconds(stats: dict[str, Any], shape: Shape, per_second: int) -> tuple[float, int]:
    """The floor the limits imply, and the requests it counts (429 answers excluded)."""
    needed = stats["requests"] - four29s(stats)[0]
    limit, period = 5, 5.0  # the sandbox's default messages bucket
    channel_floor = (math.ceil(shape.pages / limit) - 1) * period
    return max(needed / per_second, channel_floor), needed


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def describe(o: Outcome) -> str:
    secs = o.channel_seconds
    med = secs[len(secs) // 2] if secs else float("nan")
    span = (o.stats["last_request_at"] or 0) - (o.stats["first_request_at"] or 0)
    cpu = o.cpu
    mine = sum(cpu[k] for k in ("worker", "postgres", "temporal", "sandbox", "bench"))
    lines = [
        f"{o.label}, {o.workers} channel workers: wall {o.wall:.1f}s, {o.stats['requests']} "
        f"requests over {span:.1f}s (start->1st request {o.to_first_request:.2f}s, last "
        f"request->result {o.after_last_request:.2f}s); channel jobs min/median/max "
        f"{secs[0] if secs else 0:.1f}/{med:.1f}/{secs[-1] if secs else 0:.1f}s; "
        f"{o.result.status}, {o.result.messages} messages, 429s {o.stats['rate_limited']}",
        f"  CPU s (2 cores = {2 * o.wall:.0f} core-s): "
        + ", ".join(f"{k} {cpu[k]:.1f}" for k in ("worker", "postgres", "temporal", "sandbox"))
        + f", bench {cpu['bench']:.1f}, other processes {max(0.0, cpu['machine'] - mine):.1f}",
    ]
    if o.samples:
        per5: list[int] = []
        last_n, edge = 0, 5.0
        for t, n in o.samples:
            if t >= edge:
                per5.append(n - last_n)
                last_n, edge = n, edge + 5.0
        per5.append(o.samples[-1][1] - last_n)
        lines.append("  requests per 5 s: " + " ".join(str(n) for n in per5))
    if o.trace:
        lines += analyse_trace(o.trace)
    return "\n".join(lines)


def analyse_trace(path: str) -> list[str]:
    """Mean times per message request, from the worker's trace (`--trace`)."""
    import json

    records = json.loads(Path(path).read_text())
    reqs = [r for r in records if r.get("route", "").endswith("/messages") and "t_http_end" in r]
    stores = [r["store"] for r in records if "store" in r]
    if not reqs:
        return ["  trace: no message requests"]

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    bucket = [r["t_bucket"] - r["t0"] for r in reqs]
    glob = [r["t_http"] - r["t_bucket"] for r in reqs]
    http = [r["t_http_end"] - r["t_http"] for r in reqs]
    parse = [r["parse"] for r in records if "parse" in r]
    store = [b - a for a, b in stores]
    by_channel: dict[Any, list[dict[str, Any]]] = {}
    for r in reqs:
        by_channel.setdefault(r["major"], []).append(r)
    gaps = []  # from one answer of a channel to its next request: parse, store, activity loop
    for rs in by_channel.values():
        rs.sort(key=lambda r: r["t0"])
        gaps += [b["t0"] - a["t_end"] for a, b in itertools.pairwise(rs)]
    cycles = []  # a channel's 5 requests of one bucket window: first request to sixth
    for rs in by_channel.values():
        cycles += [rs[i + 5]["t_bucket"] - rs[i]["t_bucket"] for i in range(0, len(rs) - 5, 5)]
    n = len(reqs)
    return [
        f"  trace, {n} message requests, mean s: bucket wait {mean(bucket):.3f}, global wait "
        f"{mean(glob):.3f}, HTTP {mean(http):.3f} (parse {mean(parse):.4f}), gap to the "
        f"channel's next request {mean(gaps):.3f} (store_page {mean(store):.3f}); "
        f"a channel's 5-request window lasts {mean(cycles):.2f}s on average "
        f"(min {min(cycles, default=0):.2f}, max {max(cycles, default=0):.2f})",
    ]


async def run(
    quick: bool, trace: str | None, cprofile: bool, lifted_workers: list[int], skip_a: bool
) -> None:
    shape = Shape(10, 1000) if quick else Shape(50, 4000)
    per_second = 50
    outcomes: list[Outcome] = []
    async with throwaway_stack(quiet=True) as stack:
        if not skip_a:
            with SandboxProcess(sandbox_config(shape, lifted=False)) as sandbox:
                o = await sync_once(
                    stack, sandbox, "(a) default limits", shape, 50, per_second,
                    f"{trace}-limited" if trace else None, cprofile,
                )  # fmt: skip
                outcomes.append(o)
                print(describe(o), flush=True)
        with SandboxProcess(sandbox_config(shape, lifted=True)) as sandbox:
            await warm_sandbox(sandbox.url, shape)
            for n in lifted_workers:
                o = await sync_once(
                    stack, sandbox, "(b) limits lifted", shape, n, LIFTED_GLOBAL,
                    f"{trace}-lifted-{n}" if trace else None, cprofile,
                )  # fmt: skip
                outcomes.append(o)
                print(describe(o), flush=True)

    print()
    print(
        f"Discord tenant: {shape.channels} text channels x {shape.messages} messages = "
        f"{shape.total} messages, fetch size {shape.fetch}; worker = separate `python worker.py`"
        + (" (traced)" if trace else "")
        + (" under cProfile" if cprofile else "")
    )
    print(f"{'metric':<46} {'measured':>14} {'target':>12}  result")

    def row(name: str, measured: str, target: str = "", ok: bool | None = None) -> None:
        print(f"{name:<46} {measured:>14} {target:>12}  {'' if ok is None else verdict(ok)}")

    if not skip_a:
        a = outcomes[0]
        floor, needed = floor_seconds(a.stats, shape, per_second)
        total429, after429 = four29s(a.stats)
        buckets = a.stats["rate_limited_by_bucket"]
        worst = max(buckets.values(), default=0)
        gmax = a.stats["global_max_in_window"]
        ratio = a.wall / floor
        row("(a) wall time, workflow start -> result", f"{a.wall:.1f}s")
        row(f"(a) floor: {needed} req / {per_second}/s vs 5 per 5s", f"{floor:.1f}s")
        row("(a) ratio wall / floor", f"{ratio:.3f}", "<= 1.10", ratio <= 1.10)
        row("(a) 429s total (buckets that had one)", f"{total429} ({len(buckets)})")
        row("(a) 429s after discovery", f"{after429}", "0", after429 == 0)
        row("(a) most 429s in one bucket", f"{worst}", "<= 1", worst <= 1)
        row("(a) global max in any 1 s window", f"{gmax}", f"<= {per_second}", gmax <= per_second)
        row("(a) peak worker RSS (VmHWM)", f"{a.rss_peak_mb:.0f} MB", "< 300 MB",
            a.rss_peak_mb < 300)  # fmt: skip
        row("(a) messages stored", f"{a.stored}", f"{shape.total}", a.stored == shape.total)
        row("(a) channels spot-checked == truth ids", f"{a.spot_ok}/{a.spot_checked}", "all",
            a.spot_ok == a.spot_checked)  # fmt: skip
    for o in outcomes[0 if skip_a else 1 :]:
        rate = shape.total / o.wall
        head = f"(b) lifted, {o.workers} workers:"
        row(f"{head} wall", f"{o.wall:.1f}s")
        row(f"{head} messages/s", f"{rate:,.0f}", ">= 20,000", rate >= 20_000)
        row(f"{head} peak RSS", f"{o.rss_peak_mb:.0f} MB", "< 300 MB", o.rss_peak_mb < 300)
        row(f"{head} stored, spot-checked", f"{o.stored}, {o.spot_ok}/{o.spot_checked}",
            f"{shape.total}", o.stored == shape.total and o.spot_ok == o.spot_checked)  # fmt: skip
    if trace:
        print(f"worker traces{' and profiles' if cprofile else ''}: {trace}-*")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 channels x 1,000 messages")
    parser.add_argument(
        "--trace", metavar="PREFIX", help="time every request inside the worker (diagnosis)"
    )
    parser.add_argument("--cprofile", action="store_true", help="with --trace: cProfile too")
    parser.add_argument(
        "--lifted-workers", default="10,50", help="SYNC_MAX_CHANNEL_WORKERS values for (b)"
    )
    parser.add_argument("--skip-limited", action="store_true", help="run (b) only")
    parser.add_argument("--as-worker", metavar="OUT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.as_worker:
        as_worker(args.as_worker, args.cprofile)
        return
    if args.cprofile and not args.trace:
        parser.error("--cprofile needs --trace PREFIX")
    workers = [int(n) for n in args.lifted_workers.split(",") if n]
    asyncio.run(run(args.quick, args.trace, args.cprofile, workers, args.skip_limited))


if __name__ == "__main__":
    main()
