"""ratesync's metrics without servers: what the HTTP layer and the limiters count, how the SDK's
buffered metrics are served, the exporter's endpoint and per-child ports, and README's list.
(tests/integration/test_metrics.py checks a real worker against the sandboxes.)"""

from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cli.workerpool import WorkerPool
from cli.workerpool import run as run_pool
from observability import metrics
from observability.exporter import Exporter, SdkMetrics, child_port, period_text
from providers.discord import DiscordClient, DiscordLimiter
from providers.errors import RateLimited, Transient
from providers.http import ProviderHTTP
from providers.ratelimit import Priority, RateLimiter, Window, budget_held
from runtime import PortTaken

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = (
    "ratesync_upstream_requests_total",
    "ratesync_rate_limited_total",
    "ratesync_limiter_wait_seconds",
    "ratesync_bucket_utilisation",
    "ratesync_rows_upserted_total",
    "ratesync_sync_duration_seconds",
    "ratesync_scheduler_queue_depth",
    "ratesync_scheduler_oldest_wait_seconds",
)


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


class Client(ProviderHTTP):
    provider = "unit-test"

    async def get(self, url: str, priority: int = Priority.BULK) -> httpx.Response:
        response = await self.send("GET", url, entity="thing", priority=priority)
        self.classify(response, "thing")
        return response


def client(handler: Any, name: str = "unit bucket") -> Client:
    limiter = RateLimiter(name, [Window(100, 1.0)])
    return Client(limiter, transport=httpx.MockTransport(handler))


async def test_each_request_is_counted_by_bucket_and_answer_and_429s_by_scope() -> None:
    answers = iter(
        [
            httpx.Response(200, json={}),
            httpx.Response(429, headers={"X-RateLimit-Scope": "shared"}),
            httpx.Response(429, headers={"X-RateLimit-Scope": "<script>"}),  # no new series
            httpx.Response(503),
        ]
    )
    http = client(lambda request: next(answers), "bucket a")
    base = {s: value("ratesync_upstream_requests_total", provider="unit-test",
                     bucket="bucket a", status=s) for s in ("200", "429", "503")}  # fmt: skip
    await http.get("http://upstream.test/x")
    for _ in range(2):
        with pytest.raises(RateLimited):
            await http.get("http://upstream.test/x", priority=Priority.MANUAL)
    with pytest.raises(Transient):
        await http.get("http://upstream.test/x")
    for status, n in (("200", 1), ("429", 2), ("503", 1)):
        counted = value("ratesync_upstream_requests_total", provider="unit-test",
                        bucket="bucket a", status=status)  # fmt: skip
        assert counted - base[status] == n, status
    assert value("ratesync_rate_limited_total", provider="unit-test", scope="shared") >= 1
    assert value("ratesync_rate_limited_total", provider="unit-test", scope="bucket a") >= 1
    assert value("ratesync_rate_limited_total", provider="unit-test", scope="<script>") == 0
    await http.aclose()


async def test_a_request_without_an_answer_is_counted_by_what_became_of_it() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        kind = request.url.path.strip("/")
        if kind == "timeout":
            raise httpx.ReadTimeout("slow", request=request)
        if kind == "connect":
            raise httpx.ConnectError("refused", request=request)
        raise httpx.RemoteProtocolError("closed", request=request)

    http = client(fail, "bucket b")
    http.transient_retries = 0
    for kind, word in (("timeout", "timeout"), ("connect", "connect"), ("reset", "reset")):
        before = value("ratesync_upstream_requests_total", provider="unit-test",
                       bucket="bucket b", status=word)  # fmt: skip
        with pytest.raises(Transient):
            await http.get(f"http://upstream.test/{kind}")
        after = value("ratesync_upstream_requests_total", provider="unit-test",
                      bucket="bucket b", status=word)  # fmt: skip
        assert after - before == 1, kind
    await http.aclose()


async def test_the_bucket_is_the_budget_held_and_none_outside_any() -> None:
    seen: list[str | None] = []
    family = RateLimiter("riders_post", [Window(1, 60.0)])

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(budget_held())
        return httpx.Response(200, json={})

    http = client(answer, "not this one")
    http.limiter = _NoLimit()  # a client whose family limiters take the place (Zwift's way)
    async with family.slot():
        await http.send("POST", "http://upstream.test/riders", entity="riders")
    await http.send("POST", "http://upstream.test/token", entity="token", limited=False)
    assert seen == ["riders_post", None]
    assert budget_held() is None
    assert value("ratesync_upstream_requests_total", provider="unit-test", bucket="none",
                 status="200") >= 1  # fmt: skip
    await http.aclose()


class _NoLimit:
    name = "no limit"

    def slot(self, priority: int = Priority.BULK, max_wait: float | None = None) -> Any:
        from contextlib import asynccontextmanager

        @asynccontextmanager
        async def held() -> Any:
            yield

        return held()

    def pause(self, seconds: float) -> None:
        return None

    def on_rate_limited(self, retry_after: float | None) -> float:
        return 1.0


async def test_the_wait_for_a_place_is_observed_by_lane() -> None:
    limiter = RateLimiter("lanes", [Window(1, 0.2)])
    before = value("ratesync_limiter_wait_seconds_count", lane="urgent")
    slow = value("ratesync_limiter_wait_seconds_bucket", lane="urgent", le="0.1")
    async with limiter.slot(Priority.URGENT):
        pass
    async with limiter.slot(Priority.URGENT + 5):  # waits ~0.2 s for the window
        pass
    assert value("ratesync_limiter_wait_seconds_count", lane="urgent") - before == 2
    # the second waited past 0.1 s: only the first is in the 0.1 bucket
    assert value("ratesync_limiter_wait_seconds_bucket", lane="urgent", le="0.1") - slow == 1
    assert metrics.lane(Priority.MANUAL + 7) == "manual" and metrics.lane(-3) == "backfill"


async def test_a_discord_requests_wait_for_its_route_bucket_is_in_its_one_observation() -> None:
    """Failed before: only the global limit's place was observed, so a request that waited
    0.3 s for its route bucket (Remaining 0) showed no wait at all."""
    headers = {"X-RateLimit-Bucket": "hash-messages", "X-RateLimit-Limit": "1",
               "X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "0.3"}  # fmt: skip

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"[]", headers=headers)

    client = DiscordClient(
        token="unit-token", base_url="https://discord.test/api/v10", limiter=DiscordLimiter(),
        transport=httpx.MockTransport(handler),
    )  # fmt: skip
    count = value("ratesync_limiter_wait_seconds_count", lane="bulk")
    total = value("ratesync_limiter_wait_seconds_sum", lane="bulk")
    await client.messages_page(7, after=0)
    await client.messages_page(7, after=0)  # waits for the bucket's reset
    await client.aclose()
    assert value("ratesync_limiter_wait_seconds_count", lane="bulk") - count == 2
    assert value("ratesync_limiter_wait_seconds_sum", lane="bulk") - total >= 0.25


def test_runs_ended_counts_outcomes_and_times_only_runs_their_workflow_closed() -> None:
    from datetime import datetime, timedelta

    @dataclass
    class Row:
        provider: str
        kind: str
        status: str
        started_at: datetime | None = None
        finished_at: datetime | None = None

    t = datetime(2026, 1, 1)
    before = value("ratesync_sync_duration_seconds_count", provider="p", kind="k")
    metrics.runs_ended([Row("p", "k", "completed", t, t + timedelta(seconds=42))])
    metrics.runs_ended([Row("p", "k", "x")], outcome="abandoned")
    assert value("ratesync_sync_runs_total", provider="p", kind="k", outcome="completed") >= 1
    assert value("ratesync_sync_runs_total", provider="p", kind="k", outcome="abandoned") >= 1
    assert value("ratesync_sync_duration_seconds_count", provider="p", kind="k") - before == 1
    metrics.rows("unit_table", inserted=3, updated=0, unchanged=2)
    assert value("ratesync_rows_upserted_total", table="unit_table", outcome="updated") == 0
    assert value("ratesync_rows_upserted_total", table="unit_table", outcome="inserted") >= 3


@dataclass
class FakeMetric:
    name: str
    kind: int
    description: str | None = None
    unit: str | None = None


@dataclass
class FakeUpdate:
    metric: FakeMetric
    value: float
    attributes: dict[str, Any] = field(default_factory=dict)


class FakeBuffer:
    def __init__(self, updates: list[FakeUpdate]) -> None:
        self.updates = updates

    def retrieve_updates(self) -> list[FakeUpdate]:
        out, self.updates = self.updates, []
        return out


def test_the_sdks_buffered_metrics_become_counters_gauges_and_histograms() -> None:
    requests = FakeMetric("temporal_request", 0, "requests")
    slots = FakeMetric("temporal_worker_task_slots_available", 1)
    latency = FakeMetric("temporal_request_latency", 2, unit="s")
    attrs = {"service_name": "temporal-core-sdk", "operation": "Poll"}
    buffer = FakeBuffer(
        [
            FakeUpdate(requests, 1, attrs), FakeUpdate(requests, 2, attrs),
            FakeUpdate(slots, 5, {"worker_type": "ActivityWorker"}),
            FakeUpdate(slots, 3, {"worker_type": "ActivityWorker"}),
            FakeUpdate(latency, 0.02, attrs), FakeUpdate(latency, 7.0, attrs),
        ]
    )  # fmt: skip
    sdk = SdkMetrics(buffer)  # type: ignore[arg-type]
    sdk.drain()
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(sdk)
    text = generate_latest(registry).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("temporal_request_total", (("operation", "Poll"),))] == 3  # summed
    assert samples[("temporal_worker_task_slots_available",
                    (("worker_type", "ActivityWorker"),))] == 3  # the last value  # fmt: skip
    assert samples[("temporal_request_latency_count", (("operation", "Poll"),))] == 2
    bucket = "temporal_request_latency_bucket"
    assert samples[(bucket, (("le", "0.025"), ("operation", "Poll")))] == 1
    assert samples[(bucket, (("le", "+Inf"), ("operation", "Poll")))] == 2
    assert "service_name" not in text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_endpoint_serves_ours_and_the_local_budgets_utilisation(caplog: Any) -> None:
    limiter = RateLimiter("served budget", [Window(4, 60.0), Window(10, 3600.0)])
    metrics.track_budget(limiter, "unit-test")
    async with limiter.slot():
        pass
    exporter = Exporter(client=None, database_url="", task_queue="q", providers=[])
    exporter._dead_letters = _unreachable  # type: ignore[method-assign]  # no database here
    port = _free_port()
    async with exporter.serving(port, host="127.0.0.1"):
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"http://127.0.0.1:{port}/metrics")
        # a second endpoint on the same port is one line naming the setting, exit 2
        with pytest.raises(PortTaken, match="METRICS_PORT") as taken:
            async with Exporter(client=None, database_url="", task_queue="q",
                                providers=[]).serving(port, host="127.0.0.1"):  # fmt: skip
                pass
        assert taken.value.exit_code == 2
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    body = answer.text
    assert ('ratesync_bucket_utilisation{bucket="served budget",provider="unit-test",'
            'window="1m"} 0.25') in body  # fmt: skip
    assert 'window="1h"} 0.1' in body
    assert "ratesync_scheduler_queue_depth" in body  # the family, empty without a client
    # a source that cannot be read is left out, in one line; the others are served
    assert "ratesync_dead_letters" not in body
    assert any("the database is down" in r.getMessage() for r in caplog.records)
    assert period_text(1.0) == "1s" and period_text(900) == "15m" and period_text(0.5) == "0.5s"


async def _unreachable() -> list[Any]:
    await asyncio.sleep(0)
    raise ConnectionRefusedError("the database is down")


def test_each_worker_process_of_a_pool_serves_on_its_own_port(capsys: Any) -> None:
    pool = WorkerPool(3, "q", env={"A": "1"}, metrics_port=9464)
    envs = [pool.child_env(k) or {} for k in (1, 2, 3)]
    assert [env["METRICS_PORT"] for env in envs] == ["9464", "9465", "9466"]
    assert envs[1]["A"] == "1"
    assert WorkerPool(2, "q", env={"A": "1"}).child_env(2) == {"A": "1"}
    assert child_port(9464, 3) == 9466 and child_port(None, 3) is None
    assert run_pool(3, "q", "postgres", metrics_port=65534) == 2
    assert "METRICS_PORT 65534 with --processes 3" in capsys.readouterr().err


def test_readme_lists_every_metric_with_an_example_query() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `ratesync_")]
    named = {re.match(r"\| `(ratesync_\w+)", row)[1] for row in rows}  # type: ignore[index]
    assert named == set(CONTRACT)
    for row in rows:
        name = re.match(r"\| `(ratesync_\w+)", row)[1]  # type: ignore[index]
        query = row.rsplit("|", 2)[-2]
        assert name in query and "`" in query, row  # each with a PromQL example of its own
    served = generate_latest(metrics.REGISTRY).decode()
    for name in CONTRACT:
        if name.startswith(("ratesync_bucket", "ratesync_scheduler")):
            continue  # read at scrape time (the exporter's), checked above and in integration
        assert f"# TYPE {name} " in served, name
    assert "_created" not in served
