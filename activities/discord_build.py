"""Discord's part of a worker: the bot's client (built on first use) and its activities."""

from __future__ import annotations

from activities.discord import DiscordActivities, DiscordNotConfigured
from activities.discord_types import MAIN_SLOTS, channel_queue
from providers.aiohttp_transport import AiohttpTransport
from providers.discord import DiscordClient, DiscordLimiter
from providers.discord.shared import SharedDiscordState
from providers.ratelimit import Window
from providers.shared_limit import SharedRateLimiter, bucket_key, budget
from providers.spec import ActivitySet, BuildContext, aclose_each
from settings import Settings, parse_tenant_weights

GLOBAL_BUDGET = "discord global"


def discord_credential(settings: Settings) -> list[str]:
    token = settings.DISCORD_BOT_TOKEN
    return [settings.DISCORD_API_BASE_URL, token.get_secret_value() if token else ""]


def discord_bucket(settings: Settings) -> str:
    """The shared global budget's row (`rate_limit_buckets.bucket`) of the configured bot."""
    return bucket_key("discord", GLOBAL_BUDGET, discord_credential(settings))


class LazyDiscordClient:
    """The Discord client, built on first use: a worker without DISCORD_BOT_TOKEN still serves
    the other providers, and a Discord activity then fails with a clear, non-retryable error."""

    def __init__(self, settings: Settings, database_url: str = "") -> None:
        self.settings = settings
        weights = parse_tenant_weights(settings.DISCORD_TENANT_WEIGHTS)
        self.global_budget = budget(
            settings,
            database_url,
            GLOBAL_BUDGET,
            [Window(settings.DISCORD_GLOBAL_RATE_PER_SECOND, 1.0)],
            provider="discord",
            credential=discord_credential(settings),
            spread=True,
            weights=weights,
        )
        self.limiter = DiscordLimiter(
            global_per_second=settings.DISCORD_GLOBAL_RATE_PER_SECOND,
            invalid_budget=settings.DISCORD_INVALID_REQUEST_BUDGET,
            max_wait=settings.RATE_LIMIT_MAX_WAIT_SECONDS,
            tenant_weights=weights,
            global_limiter=self.global_budget,
        )
        # with a shared budget the learned routes and the breaker's count are shared too
        self.shared = (
            SharedDiscordState(self.limiter, database_url, self.global_budget.fingerprint)
            if isinstance(self.global_budget, SharedRateLimiter)
            else None
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
                max_response_bytes=self.settings.HTTP_MAX_RESPONSE_BYTES,
            )
        return self.client

    async def aclose(self) -> None:
        await aclose_each(self.client, self.shared, self.global_budget)


def build(ctx: BuildContext) -> ActivitySet:
    settings: Settings = ctx.settings
    client = LazyDiscordClient(settings, ctx.database_url)
    acts = DiscordActivities(
        ctx.engine,
        client,
        max_workers=settings.SYNC_MAX_CHANNEL_WORKERS,
        fetch_size=settings.SYNC_MESSAGE_FETCH_SIZE,
        recheck_seconds=settings.DISCORD_RECHECK_SECONDS,
        max_attempts=settings.SYNC_CHANNEL_MAX_ATTEMPTS,
    )
    return ActivitySet(
        main=acts.all(),
        # the listing and bookkeeping (short, database only); channel paging has its own queue
        concurrency=MAIN_SLOTS,
        queues={channel_queue(ctx.task_queue): (acts.paging(), settings.SYNC_MAX_CHANNEL_WORKERS)},
        resources={"client": client, "limiter": client.limiter},
        closers=[client.aclose],
    )
