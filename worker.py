"""Run the ratesync worker: `python worker.py` (task queue and concurrency from settings);
`python worker.py --processes N` runs N of them as one command (cli/workerpool.py).

`build_worker` is also what the demo, the CLI's in-process worker and the tests use, so every
path runs the same wiring.

Stopping: one SIGINT (Ctrl-C) or SIGTERM, at any moment from start-up on, stops it cleanly: it
stops polling, lets running activities finish for up to 5 s (then cancels them, and Temporal
retries them elsewhere), and exits without a traceback. Exit codes: 0 stopped by SIGTERM (what a
service manager or `docker stop` sends), 130 stopped by Ctrl-C (128 + SIGINT, as shells report
it), 1 failed to start, 2 a bad setting. Embedded servers it started stay up for the other
commands (`python starter.py services stop`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeVar

from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.worker import Worker

import logformat
from activities.clock import ClockInterceptor
from observability.exporter import MetricBuffer, install_runtime, serve_metrics
from providers.registry import SPECS
from providers.spec import ActivitySet, BuildContext, load
from runtime import (
    SEARCH_ATTRIBUTES,
    Endpoints,
    add_search_attributes,
    connect_configured,
    missing_search_attributes,
)
from settings import Settings, SettingsError, get_settings
from storage.db import create_engine, open_connections
from workflows.scheduler import Scheduler, child_states

WORKFLOWS: list[Any] = [Scheduler] + [w for spec in SPECS for p in spec.workflows for w in load(p)]
log = logging.getLogger("ratesync.worker")
STICKY_SCHEDULE_TO_START = timedelta(seconds=3)  # a dead worker's sticky tasks move on fast
GRACEFUL_SHUTDOWN = timedelta(seconds=5)  # running activities may finish before a stop cancels
# Connections opened before polling; the rest of the pool opens lazily, as work needs them.
WARM_CONNECTIONS = 10
T = TypeVar("T")


class WorkerGroup:
    """The worker's Workers, one per task queue (one client, one budget per provider), run as one:
    `async with group:` in tests and tools, `run()` / `shutdown()` in the worker process."""

    def __init__(self, workers: list[Worker]) -> None:
        self.workers = workers
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> WorkerGroup:
        for worker in self.workers:
            await self._stack.enter_async_context(worker)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def run(self) -> None:
        await asyncio.gather(*(w.run() for w in self.workers))

    async def shutdown(self) -> None:
        await asyncio.gather(*(w.shutdown() for w in self.workers))


@dataclass
class WorkerParts:
    worker: WorkerGroup
    providers: dict[str, ActivitySet]  # by provider name: its clients and limiters

    def resource(self, provider: str, name: str) -> Any:
        return self.providers[provider].resources[name]


def tune_gc() -> None:
    """A page of 100 messages parses into ~10,000 objects: the default generation-0 threshold
    (700) would run the collector a dozen times per page. Long-lived startup objects are frozen
    out of collection."""
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


@asynccontextmanager
async def build_worker(
    client: Client,
    settings: Settings,
    database_url: str,
    task_queue: str | None = None,
    graceful_shutdown: timedelta = GRACEFUL_SHUTDOWN,
) -> AsyncIterator[WorkerParts]:
    """A Worker with every provider's workflows and activities (from the registry), and the
    resources they own (closed on exit). ``graceful_shutdown``: how long a stop lets running
    activities finish before it cancels them (the demo's throw-away work does not wait)."""
    install_log_filters()
    tune_gc()
    # Connections open lazily; each provider says how many its activities may hold at once.
    pool_size = sum(s.db_connections(settings) for s in SPECS)
    engine = create_engine(database_url, pool_size=pool_size)
    await open_connections(engine, min(pool_size, WARM_CONNECTIONS))
    main_queue = task_queue or settings.TEMPORAL_TASK_QUEUE
    ctx = BuildContext(
        settings,
        engine,
        main_queue,
        bool(task_queue and task_queue != settings.TEMPORAL_TASK_QUEUE),
        database_url,
    )
    built = {spec.name: load(spec.activities)(ctx) for spec in SPECS}
    # Eager activity execution (the server hands a workflow's next activity straight back to
    # this worker) only bypasses Temporal's task-queue rate limit, which we never use as an API
    # budget: the application limiter governs every request. It saves a manual add a round trip.
    common: dict[str, Any] = {
        "graceful_shutdown_timeout": graceful_shutdown,
        "sticky_queue_schedule_to_start_timeout": STICKY_SCHEDULE_TO_START,
        # times handed to workflows or stored are on the server's clock, not this host's
        "interceptors": [ClockInterceptor()],
    }
    workers = [
        Worker(
            client,
            task_queue=main_queue,
            workflows=WORKFLOWS,
            # the Scheduler's look at children of its earlier runs, then every provider's
            activities=[child_states, *(a for part in built.values() for a in part.main)],
            max_concurrent_activities=sum(part.concurrency for part in built.values()),
            **common,
        )
    ]
    for part in built.values():
        for queue, (activities, concurrency) in part.queues.items():
            workers.append(
                Worker(
                    client,
                    task_queue=queue,
                    activities=activities,
                    max_concurrent_activities=concurrency,
                    **common,
                )
            )
    try:
        yield WorkerParts(WorkerGroup(workers), built)
    finally:
        for part in built.values():
            for close in part.closers:
                await close()
        await engine.dispose()


EXIT_ON_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 0}


class StopSignal:
    """The first SIGINT or SIGTERM, caught from the start of the event loop: a Ctrl-C while the
    worker still started (servers, migrations, connecting) was a CancelledError traceback, or
    was lost and the worker polled on; a SIGTERM then killed it (exit -15)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, announce: str | None = None) -> None:
        """``announce``: a line to print when the first signal comes (``{signal}`` in it is
        replaced by the signal's name)."""
        self.event = asyncio.Event()
        self.received: int | None = None
        self._announce = announce
        for sig in EXIT_ON_SIGNAL:
            loop.add_signal_handler(sig, self._caught, sig)

    def _caught(self, sig: int) -> None:
        first = self.received is None
        if first:
            self.received = sig
        self.event.set()  # before the announce: a closed stdout must not stop the stop
        if first and self._announce:
            with suppress(OSError):
                print(self._announce.format(signal=signal.Signals(sig).name), flush=True)

    @property
    def exit_code(self) -> int:
        return EXIT_ON_SIGNAL.get(signal.Signals(self.received), 0) if self.received else 0

    async def until(self, work: Awaitable[T]) -> T | None:
        """``work``'s result, or None (``work`` cancelled) if a stop signal comes first."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.create_task(self.event.wait())
        await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        return None


async def _serve() -> int:
    from runtime import embedded_services

    stop = StopSignal(
        asyncio.get_running_loop(),
        f"worker stopping ({{signal}}): running activities get up to "
        f"{GRACEFUL_SHUTDOWN.total_seconds():.0f} s to finish",
    )
    settings = get_settings()
    # METRICS_PORT: the SDK's metrics are served with ours; LOG_FORMAT=json: the core's lines too
    # are JSON. Both from a runtime set before connecting.
    buffer = install_runtime(settings.METRICS_PORT is not None, settings.LOG_FORMAT)
    with embedded_services() as endpoints:
        client = None if stop.received else await stop.until(_connect(settings, endpoints))
        if client is not None:
            await _poll_until_stopped(client, settings, endpoints, stop, buffer)
    return stop.exit_code


async def _connect(settings: Settings, endpoints: Endpoints) -> Client:
    """Migrate an embedded database, connect to Temporal (its environment configuration:
    runtime.temporal_profile) and make sure its search attributes are there."""
    from runtime import RuntimeStartError
    from storage.migrate import upgrade

    if endpoints.embedded_database:
        await asyncio.to_thread(upgrade, endpoints.database_url)
    try:
        client = await connect_configured(settings, endpoints.temporal_address)
    except RuntimeError as exc:
        if isinstance(exc, RuntimeStartError):
            raise
        raise RuntimeStartError(
            f"cannot reach Temporal at {endpoints.temporal_address} ({exc}); "
            "check TEMPORAL_ADDRESS, or unset it to start the embedded server"
        ) from None
    await _check_search_attributes(client, endpoints.temporal_address)
    return client


async def _check_search_attributes(client: Client, address: str) -> None:
    """Register the missing search attributes where the server allows it; where it refuses
    (Temporal Cloud, a client without operator rights) one line says what to do, instead of a
    raw RPCError ("no mapping defined for search attribute Scope") at a workflow's start."""
    from runtime import RuntimeStartError

    where = f"namespace {client.namespace!r} on {address}"
    fix = (
        "run `python starter.py temporal setup` once with rights to (on Temporal Cloud: add "
        f"{', '.join(SEARCH_ATTRIBUTES)} as Keyword search attributes of the namespace)"
    )
    try:
        missing = await missing_search_attributes(client)
    except RPCError as exc:
        raise RuntimeStartError(
            f"cannot list the search attributes of {where} ({exc.status.name}); {fix}"
        ) from None
    if not missing:
        return
    try:
        await add_search_attributes(client, missing)
    except RPCError as exc:
        raise RuntimeStartError(
            f"search attributes {', '.join(missing)} are not registered in {where} and the "
            f"server refused to add them ({exc.status.name}); {fix}"
        ) from None
    log.info("search attributes registered: %s", ", ".join(missing))


async def _poll_until_stopped(
    client: Client,
    settings: Settings,
    endpoints: Endpoints,
    stop: StopSignal,
    buffer: MetricBuffer | None = None,
) -> None:
    async with (
        build_worker(client, settings, endpoints.database_url) as parts,
        serve_metrics(settings, client, endpoints.database_url, buffer),  # METRICS_PORT
    ):
        log.info("worker polling %s", settings.TEMPORAL_TASK_QUEUE)
        if endpoints.temporal_ui:
            print(f"Temporal Web UI: {endpoints.temporal_ui}", flush=True)
        print(f"worker polling task queue {settings.TEMPORAL_TASK_QUEUE!r}", flush=True)
        run = asyncio.create_task(parts.worker.run())
        waiting = asyncio.create_task(stop.event.wait())
        await asyncio.wait([run, waiting], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        await parts.worker.shutdown()


# An activity failing with these is a wait Temporal retries at the delay the error carries
# (a 429 paused the bucket, or the budget is spent), not a fault.
EXPECTED_WAITS = frozenset({"RateLimited", "BudgetExhausted"})


class ExpectedWaitLine(logging.Filter):
    """The SDK logs every failed activity attempt as a WARNING with its traceback; an expected
    429 (or spent budget) becomes one WARNING line instead: activity, workflow, attempt, the
    error's own message (provider, status, entity: no secret) and when Temporal retries."""

    def filter(self, record: logging.LogRecord) -> bool:
        err = record.exc_info[1] if record.exc_info else None
        if not isinstance(err, ApplicationError) or err.type not in EXPECTED_WAITS:
            return True
        info: dict[str, Any] = getattr(record, "temporal_activity", None) or {}
        delay = err.next_retry_delay
        record.msg = "activity %s of %s (attempt %s) waits: %s: %s; Temporal retries it%s"
        record.args = (
            info.get("activity_type", "?"),
            info.get("workflow_id", "?"),
            info.get("attempt", "?"),
            err.type,
            " ".join(err.message.split()),
            f" in {delay.total_seconds():.1f}s" if delay is not None else "",
        )
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def install_log_filters() -> None:
    """Idempotent: the expected-wait filter on the SDK's activity logger (every process that
    runs activities: the worker, the demo, the CLI's in-process worker)."""
    activity_log = logging.getLogger("temporalio.activity")
    if not any(isinstance(f, ExpectedWaitLine) for f in activity_log.filters):
        activity_log.addFilter(ExpectedWaitLine())


def configure_logging(level: str, fmt: Literal["text", "json"] = "text") -> None:
    """The process's logging: LOG_LEVEL, LOG_FORMAT (``json``: one object per line with the
    workflow and activity context, logformat.py), alembic's chatter off, and the filters above
    (per-request lines are DEBUG: providers/http.py)."""
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logformat.install(level, fmt)
    install_log_filters()


def main(argv: list[str] | None = None) -> int:
    """``argv``: the command line after the script name (None: no options, as a caller that
    runs the worker in its own process passes)."""
    from cli import workerpool

    try:
        processes = workerpool.parse_args(argv or []).processes
        settings = get_settings()
    except (workerpool.UsageError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.LOG_LEVEL, settings.LOG_FORMAT)
    if processes > 1:  # N children, each this function with no options (cli/workerpool.py)
        return workerpool.run(
            processes, settings.TEMPORAL_TASK_QUEUE, settings.RATE_LIMIT_BACKEND,
            metrics_port=settings.METRICS_PORT,
        )  # fmt: skip
    from runtime import RuntimeStartError

    try:
        return asyncio.run(_serve())
    except RuntimeStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 1))  # a taken port setting is 2 (DESIGN §6)
    except KeyboardInterrupt:  # before the event loop's handler was in place
        return EXIT_ON_SIGNAL[signal.SIGINT]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
