"""Live progress of a `--wait`: done/total, the request rate next to the configured limit,
429s and an ETA, while the CLI waits for a workflow's result (issue 11 item 7: a five-minute
sync's `--wait` printed nothing).

A verb names how to read its run (a :class:`Tracking` on its ``Launch``): a *probe* reads the
workflow's ``progress`` query and/or rows in Postgres and returns a :class:`Snapshot`. Nothing
here makes up a number: a count nobody can see (429s of a worker in another process) is
``None`` and shown as unknown. The requests and 429s of a worker that runs in this process (a
`--wait` with nobody polling) are read from its HTTP client, which counts every request.

On a terminal the view is a rich live table redrawn in place; elsewhere (a pipe, a log file,
CI) it is one plain line on each phase change and every few seconds, so logs stay readable.
With ``--json`` the progress goes to stderr: stdout stays one JSON document.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TextIO, runtime_checkable

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from sqlalchemy import text as sql_text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio.client import Client

from cli.common import printable
from storage.db import create_engine

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # a terminal's view is redrawn this often
PLAIN_EVERY = 5.0  # seconds between plain lines while the phase stays the same
RATE_WINDOW = 15.0  # the "recent" in the recent request rate and the ETA's pace
PROBE_TIMEOUT = 5.0  # a query no worker answers (none polls yet) is given up this soon


@runtime_checkable
class Counters(Protocol):
    """What a provider's HTTP client counts (``providers.http.ProviderHTTP``)."""

    requests_sent: int
    rate_limited: int


@dataclass(frozen=True)
class Part:
    """One row under the headline: one part of the run (a leaderboard, a channel)."""

    name: str
    phase: str
    done: int = 0
    total: int | None = None


@dataclass(frozen=True)
class Snapshot:
    """What a probe read of a running workflow at one moment."""

    phase: str
    done: int = 0
    total: int | None = None  # None: not known yet
    unit: str = ""  # what done/total count ("entries", "channels")
    requests: int | None = None  # sent so far; None: not visible from here
    rate_limited: int | None = None  # 429s so far; None: not visible from here
    waits: int | None = None  # budget waits (a spent budget or a 429) the workflow saw
    parts: tuple[Part, ...] = ()
    # requests counted as sent (this process's client), not as the workflow's children end
    live_requests: bool = False
    # requests the credential's shared budget has admitted so far, by every process (a worker
    # elsewhere: its rate, not its children's lumps); None where there is no shared budget
    budget_sent: int | None = None
    note: str = ""  # more of the same, e.g. "35 messages" (free to change at every read)

    @property
    def counted(self) -> bool:
        """Whether it counts anything (a workflow's own words only, else: no empty fields)."""
        return bool(self.unit or self.total is not None or self.requests is not None)


@dataclass
class Watch:
    """What a probe may read: Temporal, the database (its engine made on first use) and, when
    the worker runs in this process, its HTTP client's counters."""

    client: Client
    workflow_id: str
    database_url: str | None = None
    run_id: str | None = None  # the run the verb started (rows that record it tell it apart)
    counters: object | None = None  # an in-process HTTP client (or a lazy one holding it)
    _engine: AsyncEngine | None = None

    async def query(self, workflow_id: str, name: str = "progress") -> Any:
        """A query of the latest run of ``workflow_id`` (a continued-as-new run too)."""
        handle = self.client.get_workflow_handle(workflow_id)
        return await asyncio.wait_for(handle.query(name), PROBE_TIMEOUT)

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection | None]:
        """A database connection, or None when the database is not known here."""
        if self.database_url is None:
            yield None
            return
        if self._engine is None:
            self._engine = create_engine(self.database_url, pool_size=1)
        async with self._engine.connect() as conn:
            yield conn

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()


Probe = Callable[[Watch], Awaitable[Snapshot]]


@dataclass(frozen=True)
class Tracking:
    """How a verb's run is followed: its probe, whose in-process HTTP client counts its
    requests (a provider name of the worker's resources), and the configured limit."""

    probe: Probe
    provider: str = ""
    limit: float | None = None  # requests per second allowed (the provider's rate setting)
    budget: str | None = None  # the shared budget's row the limit is (rate_limit_buckets)


def with_counters(snapshot: Snapshot, counters: object | None) -> Snapshot:
    """The in-process client's own counts win: they are exact and live (a workflow's counts
    move when a child or an activity ends). A lazy client (one built on first use) holds the
    real one once built; before that it has sent nothing."""
    if counters is None:
        return snapshot
    built = getattr(counters, "client", counters)
    if built is None:
        return replace(snapshot, requests=0, rate_limited=0, live_requests=True)
    if not isinstance(built, Counters):
        return snapshot
    return replace(
        snapshot,
        requests=built.requests_sent,
        rate_limited=built.rate_limited,
        live_requests=True,
    )


# --- pace -------------------------------------------------------------------------------------


@dataclass
class Pace:
    """Recent request rate and progress rate from the snapshots seen, and the ETA."""

    started: float = field(default_factory=time.monotonic)
    samples: deque[tuple[float, int, int | None, int | None]] = field(default_factory=deque)
    unit: str = ""  # what the samples' done counts: a new unit (a new phase) starts afresh

    def add(self, snapshot: Snapshot, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if snapshot.unit != self.unit:
            self.unit = snapshot.unit
            self.samples.clear()
        self.samples.append((now, snapshot.done, snapshot.requests, snapshot.budget_sent))
        while len(self.samples) > 2 and now - self.samples[1][0] >= RATE_WINDOW:
            self.samples.popleft()

    def elapsed(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.started

    def _per_second(self, index: int) -> float | None:
        if len(self.samples) < 2:
            return None
        first, last = self.samples[0], self.samples[-1]
        seconds = last[0] - first[0]
        a, b = first[index], last[index]
        if seconds <= 0 or a is None or b is None:
            return None
        return max(0.0, (b - a) / seconds)

    def request_rate(self) -> float | None:
        return self._per_second(2)

    def budget_rate(self) -> float | None:
        return self._per_second(3)

    def done_rate(self) -> float | None:
        return self._per_second(1)

    def eta(self, snapshot: Snapshot) -> float | None:
        """Seconds left at the recent pace; None while no total or no pace is known."""
        rate = self.done_rate()
        if snapshot.total is None or not rate:
            return None
        return max(0, snapshot.total - snapshot.done) / rate


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, whole = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{whole:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)


def _done_total(done: int, total: int | None, unit: str = "", note: str = "") -> str:
    text = f"{done}/{_count(total)}"
    if total:
        text += f" ({min(100.0, 100.0 * done / total):.0f}%)"
    text = f"{text} {unit}".rstrip()
    return f"{text}, {note}" if note else text


def _rate(snapshot: Snapshot, pace: Pace, limit: float | None) -> str:
    """Recent requests per second next to the limit. Only requests counted as they are sent
    (this process's client) make a rate: a workflow counts its children's requests as each
    ends, in jumps that would read 0, then far above the limit."""
    rate = pace.request_rate() if snapshot.live_requests else None
    where = ""
    if rate is None and not snapshot.live_requests:
        # a worker elsewhere: the shared budget's own count, as every process reports it
        rate = pace.budget_rate()
        where = " (worker elsewhere)" if rate is None else " (the shared budget, every sync)"
    text = "?" if rate is None else f"{rate:.1f}"
    allowed = "" if limit is None else f" of {limit:g} allowed"
    return f"{text} req/s{allowed}{where}"


def _pace_of(snapshot: Snapshot, pace: Pace) -> str:
    """Units done per second, recently (what the ETA assumes)."""
    rate = pace.done_rate()
    unit = snapshot.unit or "done"
    return f"{'?' if rate is None else f'{rate:.1f}'} {unit}/s"


# --- rendering --------------------------------------------------------------------------------


def shown(text: str) -> Text:
    """Text from a workflow or an API (a bracket's name, a workflow's details) as it is: no
    rich markup read into ``[…]``, control code points escaped (no escape sequence reaches
    the terminal)."""
    return Text(printable(text))


def plain_line(snapshot: Snapshot, pace: Pace, limit: float | None) -> str:
    """One line for a log or a pipe: phase, done/total, rate vs limit, 429s, ETA, parts."""
    head = f"progress [{duration(pace.elapsed())}] {printable(snapshot.phase)}"
    if not snapshot.counted:
        return head
    items = [
        f"{head}:",
        _done_total(snapshot.done, snapshot.total, snapshot.unit, snapshot.note) + ",",
        _pace_of(snapshot, pace) + ",",
        _rate(snapshot, pace, limit) + ",",
        f"429s {_count(snapshot.rate_limited)},",
    ]
    if snapshot.waits is not None:
        items.append(f"budget waits {snapshot.waits},")
    items.append(f"ETA {duration(pace.eta(snapshot))}")
    line = " ".join(items)
    if snapshot.parts:
        line += "; " + ", ".join(
            printable(f"{p.name} {p.phase} ") + _done_total(p.done, p.total) for p in snapshot.parts
        )
    return line


def live_view(snapshot: Snapshot, pace: Pace, limit: float | None) -> RenderableType:
    """The terminal's view: a headline grid with a bar, then a row per part."""
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    total = snapshot.total
    bar = ProgressBar(total=float(total) if total else None, completed=snapshot.done, width=30)
    done = Table.grid(padding=(0, 1))
    done.add_row(bar, Text(_done_total(snapshot.done, total, snapshot.unit, snapshot.note)))
    head.add_row("phase", shown(snapshot.phase))
    if not snapshot.counted:
        head.add_row("elapsed", duration(pace.elapsed()))
        return head
    head.add_row("done", done)
    head.add_row("pace", _pace_of(snapshot, pace))
    head.add_row("requests", _rate(snapshot, pace, limit))
    head.add_row("429s", _count(snapshot.rate_limited))
    if snapshot.waits is not None:
        head.add_row("budget waits", str(snapshot.waits))
    head.add_row("elapsed", duration(pace.elapsed()))
    head.add_row("ETA", duration(pace.eta(snapshot)))
    if not snapshot.parts:
        return head
    parts = Table(box=None, pad_edge=False)
    for name in ("", "phase", "done", ""):
        parts.add_column(name)
    for part in snapshot.parts:
        part_bar = ProgressBar(
            total=float(part.total) if part.total else None, completed=part.done, width=20
        )
        parts.add_row(
            shown(part.name), shown(part.phase), _done_total(part.done, part.total), part_bar
        )
    return Group(head, Text(""), parts)


# --- the reporter -----------------------------------------------------------------------------


class Reporter:
    """Polls the probe while the result is awaited and shows what it read."""

    def __init__(self, stream: TextIO, tracking: Tracking, watch: Watch) -> None:
        self.console = Console(file=stream, highlight=False)
        self.tracking = tracking
        self.watch = watch
        self.pace = Pace()
        self._last_phase: str | None = None
        self._last_line = 0.0
        self._said_waiting = False

    async def read(self) -> Snapshot | None:
        """The probe's snapshot, None if it could not be read now (never raises: progress
        must not break the wait it reports on)."""
        try:
            snapshot = await self.tracking.probe(self.watch)
        except Exception as exc:  # a query nobody answers yet, a database hiccup
            log.debug("progress of %s not read: %s", self.watch.workflow_id, exc)
            return None
        snapshot = with_counters(snapshot, self.watch.counters)
        if not snapshot.live_requests and self.tracking.budget:
            snapshot = replace(snapshot, budget_sent=await self._budget_sent())
        self.pace.add(snapshot)
        return snapshot

    async def _budget_sent(self) -> int | None:
        """The shared budget's count of admitted requests (None: no such row, or unreadable)."""
        try:
            async with self.watch.connect() as conn:
                if conn is None:
                    return None
                found = await conn.execute(
                    sql_text("SELECT requests FROM rate_limit_buckets WHERE bucket = :b"),
                    {"b": self.tracking.budget},
                )
                value = found.scalar()
        except Exception as exc:  # progress never breaks the wait it reports on
            log.debug("budget of %s not read: %s", self.tracking.budget, exc)
            return None
        return None if value is None else int(value)

    def _plain(self, snapshot: Snapshot | None, last: bool = False) -> None:
        if snapshot is None:
            if not self._said_waiting and not last:
                self._said_waiting = True
                self.console.print(
                    f"progress: waiting for {self.watch.workflow_id} to answer", soft_wrap=True
                )
            return
        now = time.monotonic()
        phase_changed = snapshot.phase != self._last_phase
        if last or phase_changed or now - self._last_line >= PLAIN_EVERY:
            self._last_phase, self._last_line = snapshot.phase, now
            line = plain_line(snapshot, self.pace, self.tracking.limit)
            self.console.print(line, soft_wrap=True, markup=False)

    def _view(self, snapshot: Snapshot | None) -> RenderableType:
        if snapshot is None:
            return Text(f"waiting for {self.watch.workflow_id} to answer …")
        return live_view(snapshot, self.pace, self.tracking.limit)

    async def follow(self, result: Awaitable[Any]) -> Any:
        """Await ``result`` while showing progress; a last read is shown once it is in."""
        task = asyncio.ensure_future(result)
        try:
            if self.console.is_terminal:
                return await self._live(task)
            return await self._lines(task)
        finally:
            if not task.done():
                task.cancel()
            await self.watch.close()

    async def _lines(self, task: asyncio.Future[Any]) -> Any:
        while not task.done():
            self._plain(await self.read())
            await asyncio.wait([task], timeout=POLL_SECONDS)
        value = task.result()  # a failure is raised before a last line
        self._plain(await self.read(), last=True)
        return value

    async def _live(self, task: asyncio.Future[Any]) -> Any:
        with Live(
            self._view(None), console=self.console, auto_refresh=False, transient=False
        ) as live:
            while not task.done():
                live.update(self._view(await self.read()), refresh=True)
                await asyncio.wait([task], timeout=POLL_SECONDS)
            value = task.result()
            last = await self.read()
            if last is not None:  # else the view keeps the last read that worked
                live.update(self._view(last), refresh=True)
        return value


async def followed(
    result: Awaitable[Any], tracking: Tracking | None, watch: Watch, stream: TextIO | None
) -> Any:
    """``await result``, with live progress on ``stream`` when the verb tracks its run."""
    if tracking is None or stream is None:
        return await result
    return await Reporter(stream, tracking, watch).follow(result)


async def details_probe(watch: Watch) -> Snapshot:
    """Any workflow: what it last said it is doing (``workflow.set_current_details``), for a
    verb with no probe of its own."""
    from temporalio.api.sdk.v1 import WorkflowMetadata

    handle = watch.client.get_workflow_handle(watch.workflow_id)
    metadata = await asyncio.wait_for(
        handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata),
        PROBE_TIMEOUT,
    )
    return Snapshot(phase=metadata.current_details or "running")


DETAILS = Tracking(details_probe)
