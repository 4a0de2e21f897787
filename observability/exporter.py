"""The worker's metrics endpoint: ``GET /metrics`` on ``METRICS_PORT`` (README "Metrics").

One endpoint per worker process serves, in Prometheus's text format:
- ratesync's own metrics (``observability.metrics``), counted where they happen;
- the Temporal SDK's runtime metrics (``temporal_*``: polls, task latencies, slots, …). The SDK
  records them into a ``MetricBuffer`` (:func:`install_runtime`, the process's default
  Temporal runtime, set before any client connects); they are drained every second into
  :class:`SdkMetrics` (counters summed, gauges last value, histograms bucketed here);
- figures read when scraped (at most every ``REFRESH_SECONDS``, shared by scrapes meanwhile):
  ``ratesync_scheduler_queue_depth`` / ``_oldest_wait_seconds{scheduler}`` from each running
  Scheduler of the worker's task queue (visibility list, then its ``status`` query: every
  worker reports the same truth, so a scheduler that moved to another worker leaves no stale
  figure behind; the wait is computed from when the oldest request was queued, as a query's
  own clock stands still), ``ratesync_dead_letters{provider}`` (rows in ``sync_failures``) and
  ``ratesync_bucket_utilisation{provider,bucket,window}`` (places used / limit: a shared
  budget's from the database, as ``status`` shows it, a local one's from this process).

It runs on the worker's event loop (aiohttp), so no thread touches the SDK or the limiters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from temporalio.client import Client
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_GAUGE,
    MetricBuffer,
    MetricBufferDurationFormat,
    Runtime,
    TelemetryConfig,
)

import logformat
from observability import metrics

log = logging.getLogger("ratesync.metrics")

BUFFER_SIZE = 200_000  # SDK metric updates held between drains (one a second)
DRAIN_SECONDS = 1.0
REFRESH_SECONDS = 1.0  # scrape-time figures are read at most this often (scrapes share)
QUERY_TIMEOUT = timedelta(seconds=3)
PART_TIMEOUT = 5.0  # seconds each source of scrape-time figures may take (a scrape's is 10)
MAX_SCHEDULERS = 1000
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# the SDK's durations, in seconds (MetricBufferDurationFormat.SECONDS)
SDK_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_DROPPED = frozenset({"service_name"})  # the same on every SDK series


def install_runtime(metrics: bool, log_format: Literal["text", "json"]) -> MetricBuffer | None:
    """The process's default Temporal runtime, where the SDK's default will not do: with
    ``metrics`` it records the SDK's metrics into a buffer (returned); with ``json`` logs the
    core's own lines are forwarded to Python's logging (logformat.core_logging). Call before
    any Temporal client or worker is made."""
    if not metrics and log_format != "json":
        return None
    buffer = MetricBuffer(BUFFER_SIZE, MetricBufferDurationFormat.SECONDS) if metrics else None
    telemetry = TelemetryConfig(metrics=buffer, logging=logformat.core_logging(log_format))
    Runtime.set_default(Runtime(telemetry=telemetry), error_if_already_set=False)
    return buffer


Labels = tuple[tuple[str, str], ...]


class SdkMetrics(Collector):
    """The SDK's buffered updates as Prometheus series (``drain`` every second)."""

    def __init__(self, buffer: MetricBuffer | None) -> None:
        self.buffer = buffer
        self._meta: dict[str, tuple[int, str]] = {}  # name -> (kind, description)
        self._values: dict[tuple[str, Labels], float] = {}  # counters (sums) and gauges
        self._hist: dict[tuple[str, Labels], list[float]] = {}  # bucket counts, then sum

    def drain(self) -> None:
        if self.buffer is None:
            return
        for update in self.buffer.retrieve_updates():
            metric = update.metric
            name = metric.name
            labels = tuple(
                sorted((k, str(v)) for k, v in update.attributes.items() if k not in _DROPPED)
            )
            self._meta.setdefault(name, (metric.kind, metric.description or name))
            key = (name, labels)
            if metric.kind == BUFFERED_METRIC_KIND_COUNTER:
                self._values[key] = self._values.get(key, 0.0) + float(update.value)
            elif metric.kind == BUFFERED_METRIC_KIND_GAUGE:
                self._values[key] = float(update.value)
            else:
                counts = self._hist.get(key)
                if counts is None:
                    counts = self._hist[key] = [0.0] * (len(SDK_BUCKETS) + 2)
                value = float(update.value)
                for i, bound in enumerate(SDK_BUCKETS):
                    if value <= bound:
                        counts[i] += 1
                counts[-2] += 1  # +Inf (the count)
                counts[-1] += value

    def collect(self) -> Iterable[Metric]:
        self.drain()
        families: dict[str, Any] = {}
        for (name, labels), value in self._values.items():
            kind, doc = self._meta[name]
            family = families.get(name)
            if family is None:
                cls = CounterMetricFamily if kind == BUFFERED_METRIC_KIND_COUNTER else \
                    GaugeMetricFamily  # fmt: skip
                family = families[name] = cls(name, doc, labels=[k for k, _ in labels])
            suffix = "_total" if kind == BUFFERED_METRIC_KIND_COUNTER else ""
            family.samples.append(_raw(name + suffix, dict(labels), value))
        for (name, labels), counts in self._hist.items():
            family = families.get(name)
            if family is None:
                family = families[name] = HistogramMetricFamily(name, self._meta[name][1])
            buckets = [(_bound(b), counts[i]) for i, b in enumerate(SDK_BUCKETS)]
            buckets.append(("+Inf", counts[-2]))
            base = dict(labels)
            for bound, count in buckets:
                family.samples.append(_raw(f"{name}_bucket", {**base, "le": bound}, count))
            family.samples.append(_raw(f"{name}_count", base, counts[-2]))
            family.samples.append(_raw(f"{name}_sum", base, counts[-1]))
        return list(families.values())


def _bound(value: float) -> str:
    return repr(float(value))


def _raw(name: str, labels: dict[str, str], value: float) -> Sample:
    return Sample(name, labels, value, None, None)


class ScrapedFigures(Collector):
    """The figures read at scrape time (schedulers, dead letters, bucket utilisation)."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        return list(self.families)


def period_text(seconds: float) -> str:
    """A window's period as ``status`` writes it: 1.0 → "1s", 3600 → "1h", 900 → "15m"."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    return f"{seconds:g}s"


class Exporter:
    """``/metrics`` of one worker process (see the module doc)."""

    def __init__(
        self,
        *,
        client: Client | None,
        database_url: str,
        task_queue: str,
        providers: Sequence[str],
        buffer: MetricBuffer | None = None,
    ) -> None:
        self.client = client
        self.task_queue = task_queue
        self.providers = list(providers)
        self.sdk = SdkMetrics(buffer)
        self.scraped = ScrapedFigures()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.sdk)
        self.registry.register(self.scraped)
        self._database_url = database_url
        self._engine: Any = None
        self._refreshed = float("-inf")
        self._lock = asyncio.Lock()

    # -- the figures read at scrape time ------------------------------------------------

    async def refresh(self, force: bool = False) -> None:
        async with self._lock:
            if not force and time.monotonic() - self._refreshed < REFRESH_SECONDS:
                return
            families: list[Metric] = []
            parts = (self._schedulers(), self._dead_letters(), self._utilisation())
            found = await asyncio.gather(
                *(asyncio.wait_for(part, PART_TIMEOUT) for part in parts), return_exceptions=True
            )
            for result in found:
                if isinstance(result, BaseException):  # one source down: the others are served
                    text = f"{type(result).__name__}: {result}"
                    log.warning("metrics: a figure read at scrape time: %s", " ".join(text.split()))
                else:
                    families.extend(result)
            self.scraped.families = families
            self._refreshed = time.monotonic()

    def _db(self) -> Any:
        if self._engine is None:
            from storage.db import create_engine

            self._engine = create_engine(self._database_url, pool_size=1)
        return self._engine

    async def _schedulers(self) -> list[Metric]:
        depth = GaugeMetricFamily(
            "ratesync_scheduler_queue_depth",
            "Requests waiting in a scheduler's queue",
            labels=["scheduler"],
        )
        oldest = GaugeMetricFamily(
            "ratesync_scheduler_oldest_wait_seconds",
            "Seconds the oldest request in a scheduler's queue has waited (0: none waits)",
            labels=["scheduler"],
        )
        if self.client is None:
            return [depth, oldest]
        from workflows.scheduler import Scheduler

        client = self.client
        query = (
            'WorkflowType = "Scheduler" AND ExecutionStatus = "Running" '
            f'AND TaskQueue = "{_quoted(self.task_queue)}"'
        )
        listed = client.list_workflows(query, limit=MAX_SCHEDULERS, rpc_timeout=QUERY_TIMEOUT)
        ids = [wf.id async for wf in listed]
        gate = asyncio.Semaphore(8)

        async def status(workflow_id: str) -> Any:
            async with gate:
                handle = client.get_workflow_handle(workflow_id)
                return await handle.query(Scheduler.status, rpc_timeout=QUERY_TIMEOUT)

        found = await asyncio.gather(*(status(i) for i in ids), return_exceptions=True)
        now = datetime.now(UTC)
        for workflow_id, state in zip(ids, found, strict=True):
            if isinstance(state, BaseException):
                continue  # no worker answers for it now: no figure rather than a stale one
            depth.add_metric([workflow_id], float(sum(state.queue_depth.values())))
            since = state.oldest_enqueued_at
            wait = max(0.0, (now - since).total_seconds()) if since is not None else 0.0
            if since is None and sum(state.queue_depth.values()):
                wait = state.oldest_wait_seconds  # a scheduler of an older version
            oldest.add_metric([workflow_id], wait)
        return [depth, oldest]

    async def _dead_letters(self) -> list[Metric]:
        from sqlalchemy import func, select

        from storage.models import sync_failures

        family = GaugeMetricFamily(
            "ratesync_dead_letters",
            "Rows in sync_failures (dead letters, parked Discord channels among them)",
            labels=["provider"],
        )
        async with self._db().connect() as conn:
            rows = await conn.execute(
                select(sync_failures.c.provider, func.count()).group_by(sync_failures.c.provider)
            )
            counts = {str(p): int(n) for p, n in rows}
        for provider in sorted(set(self.providers) | set(counts)):
            family.add_metric([provider], float(counts.get(provider, 0)))
        return [family]

    async def _utilisation(self) -> list[Metric]:
        from providers.ratelimit import RateLimiter

        family = GaugeMetricFamily(
            "ratesync_bucket_utilisation",
            "Places used / limit of a rate budget's window (a shared budget: every process's)",
            labels=["provider", "bucket", "window"],
        )
        shared: dict[str, tuple[str, str]] = {}  # stored bucket key -> (provider, name)
        seen: set[tuple[str, str, str]] = set()
        for limiter, provider in metrics.budgets():
            if isinstance(limiter, RateLimiter):
                for window, used in limiter.window_use():
                    key = (provider, limiter.name, period_text(window.period))
                    if key not in seen:
                        seen.add(key)
                        family.add_metric(list(key), used / window.limit)
            else:
                stored = getattr(getattr(limiter, "_store", None), "bucket", None)
                if stored:
                    shared[str(stored)] = (provider, str(limiter.name))
        if shared:
            from storage.budgets import rate_budgets

            async with self._db().connect() as conn:
                rows = await rate_budgets(conn)
            for row in rows:
                named = shared.get(str(row["bucket"]))
                if named is None:
                    continue
                for w in row["windows"] or []:
                    key = (*named, period_text(float(w["period"])))
                    if key in seen or not int(w["limit"]):
                        continue
                    seen.add(key)
                    used = int(w["leased"]) + int(w["cooling"])
                    family.add_metric(list(key), min(used, int(w["limit"])) / int(w["limit"]))
        return [family]

    # -- serving --------------------------------------------------------------------------

    async def render(self) -> bytes:
        await self.refresh()
        return generate_latest(metrics.REGISTRY) + generate_latest(self.registry)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await self.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def _drain_forever(self) -> None:
        while True:
            await asyncio.sleep(DRAIN_SECONDS)
            try:
                self.sdk.drain()
            except Exception as exc:
                log.warning("metrics: the SDK's buffer: %s", type(exc).__name__)

    @contextlib.asynccontextmanager
    async def serving(self, port: int, host: str = "0.0.0.0") -> AsyncIterator[Exporter]:
        """Serve ``/metrics`` on ``port`` while inside; a taken port is one line naming
        METRICS_PORT (``runtime.PortTaken``: exit 2)."""
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            from runtime import PortTaken

            raise PortTaken(
                f"METRICS_PORT {port} cannot be served ({exc.strerror or exc}); another "
                "program holds it: set METRICS_PORT to a free port (or unset it)"
            ) from None
        drain = asyncio.create_task(self._drain_forever(), name="metrics drain")
        log.info("metrics served at http://%s:%d/metrics", host, port)
        try:
            yield self
        finally:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
            await runner.cleanup()
            if self._engine is not None:
                await self._engine.dispose()


def serve_metrics(
    settings: Any, client: Client, database_url: str, buffer: MetricBuffer | None
) -> contextlib.AbstractAsyncContextManager[Exporter | None]:
    """The worker's endpoint on METRICS_PORT while inside (nothing when it is unset)."""
    if settings.METRICS_PORT is None:
        return contextlib.nullcontext()
    from providers.registry import SPECS

    exporter = Exporter(
        client=client,
        database_url=database_url,
        task_queue=settings.TEMPORAL_TASK_QUEUE,
        providers=[spec.name for spec in SPECS],
        buffer=buffer,
    )
    return exporter.serving(settings.METRICS_PORT)


def _quoted(value: str) -> str:
    """A value inside a visibility query's double quotes."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def child_port(base: int | None, number: int) -> int | None:
    """The METRICS_PORT of worker process ``number`` (1…N) of ``worker.py --processes N``."""
    return None if base is None else base + number - 1


__all__ = ["Exporter", "MetricBuffer", "child_port", "install_runtime", "serve_metrics"]
