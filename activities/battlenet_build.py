"""Battle.net's part of a worker: one client id, one rate budget, its activities and queues.

PvP leaderboard imports and equipment batches run on their own task queues (concurrency from
PVP_SYNC_THREADS / PVP_PROCESSING_THREADS) and share the one Battle.net budget of the worker.
"""

from __future__ import annotations

from activities.battlenet import BattleNetActivities
from activities.pvp import PvpActivities
from providers.battlenet import BattleNetClient
from providers.ratelimit import Limiter, Window
from providers.shared_limit import bucket_key, budget
from providers.spec import ActivitySet, BuildContext
from settings import Settings

BUDGET = "battlenet"


def bnet_credential(settings: Settings) -> list[str]:
    return [settings.BNET_API_BASE_URL, settings.BNET_CLIENT_ID or ""]


def bnet_bucket(settings: Settings) -> str:
    """The shared budget's row (`rate_limit_buckets.bucket`) of the configured client id."""
    return bucket_key("battlenet", BUDGET, bnet_credential(settings))


def bnet_limiter(settings: Settings, database_url: str = "") -> Limiter:
    """One bucket for the whole Battle.net client id: both windows enforced at once; shared by
    every process using the client id when RATE_LIMIT_BACKEND=postgres."""
    return budget(
        settings,
        database_url,
        BUDGET,
        [Window(settings.BNET_RATE_PER_SECOND, 1.0), Window(settings.BNET_RATE_PER_HOUR, 3600.0)],
        provider="battlenet",
        credential=bnet_credential(settings),
        spread=True,
        # a manual character add is 4 requests: keep 4 places for them while one runs
        manual_reserve=4 if settings.BNET_RATE_PER_SECOND >= 50 else 0,
    )


def bnet_client(settings: Settings, limiter: Limiter) -> BattleNetClient:
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
        max_response_bytes=settings.HTTP_MAX_RESPONSE_BYTES,
    )


def pvp_queues(settings: Settings, task_queue: str | None) -> tuple[str, str]:
    """The PvP activity queues; a custom main queue (tests, demo) gets its own pair."""
    if task_queue and task_queue != settings.TEMPORAL_TASK_QUEUE:
        return f"{task_queue}.pvp-sync", f"{task_queue}.pvp-processing"
    return settings.PVP_SYNC_TASK_QUEUE, settings.PVP_PROCESSING_TASK_QUEUE


def build(ctx: BuildContext) -> ActivitySet:
    settings: Settings = ctx.settings
    limiter = bnet_limiter(settings, ctx.database_url)
    client = bnet_client(settings, limiter)
    acts = BattleNetActivities(ctx.engine, client, settings.BNET_NOT_FOUND_RECHECK_SECONDS)
    pvp = PvpActivities(ctx.engine, client, settings.BNET_NOT_FOUND_RECHECK_SECONDS)
    sync_queue, processing_queue = pvp_queues(
        settings, ctx.task_queue if ctx.custom_queue else None
    )
    return ActivitySet(
        main=acts.all(),
        concurrency=max(8, settings.BNET_MAX_CONCURRENT),
        queues={
            sync_queue: (pvp.sync_queue(), settings.PVP_SYNC_THREADS),
            processing_queue: (pvp.processing_queue(), settings.PVP_PROCESSING_THREADS),
        },
        resources={"client": client, "limiter": limiter},
        closers=[client.aclose, *([limiter.aclose] if hasattr(limiter, "aclose") else [])],
    )
