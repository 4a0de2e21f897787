"""Run the ratesync worker: `python worker.py` (task queue and concurrency from settings).

`build_worker` is also what the demo, the CLI's in-process worker and the tests use, so every
path runs the same wiring.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from activities.battlenet import BattleNetActivities
from activities.discord import DiscordActivities, DiscordNotConfigured
from activities.pvp import PvpActivities
from providers.aiohttp_transport import AiohttpTransport
from providers.battlenet import BattleNetClient
from providers.discord import DiscordClient, DiscordLimiter
from providers.ratelimit import RateLimiter, Window
from settings import Settings, SettingsError, get_settings
from storage.db import create_engine
from workflows.battlenet import BattleNetEntitySync, BattleNetSync, CharacterBatchSync, GuildSync
from workflows.discord import ChannelSync, DiscordTenantSync
from workflows.pvp import PvpBracketSync, PvpSync
from workflows.scheduler import Scheduler

WORKFLOWS = [
    Scheduler, BattleNetSync, GuildSync, CharacterBatchSync, BattleNetEntitySync,
    PvpSync, PvpBracketSync, DiscordTenantSync, ChannelSync,
]  # fmt: skip
log = logging.getLogger("ratesync.worker")


async def connect(address: str, namespace: str) -> Client:
    return await Client.connect(
        address, namespace=namespace, data_converter=pydantic_data_converter
    )


class BackendUnavailable(RuntimeError):
    pass


def bnet_limiter(settings: Settings) -> RateLimiter:
    """One bucket for the whole Battle.net client id: both windows enforced at once."""
    if settings.RATE_LIMIT_BACKEND != "local":
        raise BackendUnavailable(
            "RATE_LIMIT_BACKEND=postgres (a budget shared by several workers) is not built yet; "
            "set RATE_LIMIT_BACKEND=local and run one worker per Battle.net client id"
        )
    return RateLimiter(
        "battlenet",
        [Window(settings.BNET_RATE_PER_SECOND, 1.0), Window(settings.BNET_RATE_PER_HOUR, 3600.0)],
        max_wait=settings.RATE_LIMIT_MAX_WAIT_SECONDS,
        spread=True,
        # a manual character add is 4 requests: keep 4 places for them while one runs
        manual_reserve=4 if settings.BNET_RATE_PER_SECOND >= 50 else 0,
    )


def bnet_client(
    settings: Settings, limiter: RateLimiter, region: str | None = None
) -> BattleNetClient:
    secret = settings.BNET_CLIENT_SECRET.get_secret_value() if settings.BNET_CLIENT_SECRET else None
    return BattleNetClient(
        client_id=settings.BNET_CLIENT_ID,
        client_secret=secret,
        api_base=settings.BNET_API_BASE_URL,
        oauth_url=settings.BNET_OAUTH_URL,
        limiter=limiter,
        locale=settings.BNET_LOCALE,
        timeout=settings.BNET_HTTP_TIMEOUT_SECONDS,
        max_connections=settings.BNET_MAX_CONCURRENT,
    )


class LazyDiscordClient:
    """The Discord client, built on first use: a worker without DISCORD_BOT_TOKEN still serves
    Battle.net, and a Discord activity then fails with a clear, non-retryable error."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.limiter = DiscordLimiter(
            global_per_second=settings.DISCORD_GLOBAL_RATE_PER_SECOND,
            invalid_budget=settings.DISCORD_INVALID_REQUEST_BUDGET,
            max_wait=settings.RATE_LIMIT_MAX_WAIT_SECONDS,
        )
        self.client: DiscordClient | None = None

    def __call__(self) -> DiscordClient:
        if self.client is None:
            token = self.settings.DISCORD_BOT_TOKEN
            if token is None or not token.get_secret_value().strip():
                raise DiscordNotConfigured(
                    "discord: DISCORD_BOT_TOKEN is not set; set it in the environment or .env "
                    "and restart the worker"
                )
            # One connection per channel worker (pages of a channel are sequential) plus a few
            # for listings; aiohttp parses the ~85 KB pages at a third of httpx's CPU cost.
            connections = self.settings.SYNC_MAX_CHANNEL_WORKERS + 4
            timeout = self.settings.DISCORD_HTTP_TIMEOUT_SECONDS
            self.client = DiscordClient(
                token=token.get_secret_value(),
                base_url=self.settings.DISCORD_API_BASE_URL,
                limiter=self.limiter,
                timeout=timeout,
                max_connections=connections,
                transport=AiohttpTransport(timeout=timeout, max_connections=connections),
            )
        return self.client

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()


class WorkerGroup:
    """The worker's Workers, one per task queue (one client, one Battle.net budget), run as one:
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
    bnet: BattleNetClient
    limiter: RateLimiter
    discord: LazyDiscordClient


def pvp_queues(settings: Settings, task_queue: str | None) -> tuple[str, str]:
    """The PvP activity queues; a custom main queue (tests, demo) gets its own pair."""
    if task_queue and task_queue != settings.TEMPORAL_TASK_QUEUE:
        return f"{task_queue}.pvp-sync", f"{task_queue}.pvp-processing"
    return settings.PVP_SYNC_TASK_QUEUE, settings.PVP_PROCESSING_TASK_QUEUE


def tune_gc() -> None:
    """A page of 100 messages parses into ~10,000 objects: the default generation-0 threshold
    (700) would run the collector a dozen times per page. Long-lived startup objects are frozen
    out of collection."""
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


@asynccontextmanager
async def build_worker(
    client: Client, settings: Settings, database_url: str, task_queue: str | None = None
) -> AsyncIterator[WorkerParts]:
    """A Worker with every workflow and activity, and the resources it owns (closed on exit)."""
    tune_gc()
    engine = create_engine(
        database_url,
        pool_size=max(5, settings.BNET_MAX_CONCURRENT // 2, settings.SYNC_MAX_CHANNEL_WORKERS),
    )
    limiter = bnet_limiter(settings)
    bnet = bnet_client(settings, limiter)
    acts = BattleNetActivities(engine, bnet, settings.BNET_NOT_FOUND_RECHECK_SECONDS)
    pvp = PvpActivities(engine, bnet, settings.BNET_NOT_FOUND_RECHECK_SECONDS)
    discord = LazyDiscordClient(settings)
    discord_acts = DiscordActivities(
        engine,
        discord,
        max_workers=settings.SYNC_MAX_CHANNEL_WORKERS,
        fetch_size=settings.SYNC_MESSAGE_FETCH_SIZE,
        recheck_seconds=settings.DISCORD_RECHECK_SECONDS,
        max_attempts=settings.SYNC_CHANNEL_MAX_ATTEMPTS,
    )
    sync_queue, processing_queue = pvp_queues(settings, task_queue)
    # Eager activity execution (the server hands a workflow's next activity straight back to
    # this worker) only bypasses Temporal's task-queue rate limit, which we never use as an API
    # budget: the application limiter governs every request. It saves a manual add a round trip.
    common: dict[str, Any] = {"graceful_shutdown_timeout": timedelta(seconds=5)}
    workers = [
        Worker(
            client,
            task_queue=task_queue or settings.TEMPORAL_TASK_QUEUE,
            workflows=WORKFLOWS,
            activities=acts.all() + discord_acts.all(),
            max_concurrent_activities=max(8, settings.BNET_MAX_CONCURRENT)
            + settings.SYNC_MAX_CHANNEL_WORKERS,
            **common,
        ),
        Worker(
            client, task_queue=sync_queue, activities=pvp.sync_queue(),
            max_concurrent_activities=settings.PVP_SYNC_THREADS, **common,
        ),
        Worker(
            client, task_queue=processing_queue, activities=pvp.processing_queue(),
            max_concurrent_activities=settings.PVP_PROCESSING_THREADS, **common,
        ),
    ]  # fmt: skip
    try:
        yield WorkerParts(WorkerGroup(workers), bnet, limiter, discord)
    finally:
        await discord.aclose()
        await bnet.aclose()
        await engine.dispose()


async def missing_search_attributes(client: Client) -> list[str]:
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

    from runtime import SEARCH_ATTRIBUTES

    found = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    return [name for name in SEARCH_ATTRIBUTES if name not in found.custom_attributes]


async def _serve() -> None:
    from runtime import RuntimeStartError, embedded_services
    from storage.migrate import upgrade

    settings = get_settings()
    bnet_limiter(settings)  # a bad backend setting fails before anything starts
    with embedded_services() as endpoints:
        if endpoints.embedded_database:
            await asyncio.to_thread(upgrade, endpoints.database_url)
        try:
            client = await connect(endpoints.temporal_address, settings.TEMPORAL_NAMESPACE)
        except RuntimeError as exc:
            raise RuntimeStartError(
                f"cannot reach Temporal at {endpoints.temporal_address} ({exc}); "
                "check TEMPORAL_ADDRESS, or unset it to start the embedded server"
            ) from None
        missing = await missing_search_attributes(client)
        if missing:
            raise RuntimeStartError(
                f"search attributes {', '.join(missing)} are not registered on "
                f"{endpoints.temporal_address}; run `python starter.py temporal setup` once"
            )
        async with build_worker(client, settings, endpoints.database_url) as parts:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            log.info("worker polling %s", settings.TEMPORAL_TASK_QUEUE)
            if endpoints.temporal_ui:
                print(f"Temporal Web UI: {endpoints.temporal_ui}", flush=True)
            print(f"worker polling task queue {settings.TEMPORAL_TASK_QUEUE!r}", flush=True)
            run = asyncio.create_task(parts.worker.run())
            await asyncio.wait(
                [run, asyncio.create_task(stop.wait())], return_when="FIRST_COMPLETED"
            )
            await parts.worker.shutdown()


def main() -> int:
    try:
        settings = get_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.basicConfig(
        level=settings.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from runtime import RuntimeStartError

    try:
        asyncio.run(_serve())
    except (RuntimeStartError, BackendUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
