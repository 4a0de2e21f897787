"""ZwiftRacing's part of a worker: one API key, one rate budget per endpoint family, and the
club sync's activity.

Each family's window ("<count>/<seconds>", ZWIFT_RATE_<FAMILY>) is a budget of its own, shared
through Postgres by every process that uses the key (RATE_LIMIT_BACKEND=postgres): a second
worker, a one-off started from the CLI or a restarted worker never spends a slot twice, and an
hourly window survives the restart. The single-rider family keeps a place for manual rider adds.
ZWIFT_TIME_SCALE (the sandbox's S; 1 against the real API) divides every window, horizon and
cadence.
"""

from __future__ import annotations

from providers.ratelimit import Limiter, Window
from providers.shared_limit import budget
from providers.spec import ActivitySet, BuildContext, aclose_each
from providers.zwift.client import FAMILIES, ZwiftClient, parse_rate
from settings import Settings
from workflows.scheduler_types import parse_cadence

# a manual rider add is answered from GET /public/riders/{id}: one place kept for it
MANUAL_RESERVE = {"riders_get": 1}
# a kind's pass reads again what was read longer ago than half its cadence
FRESH_SHARE = 0.5


def _key(settings: Settings) -> str | None:
    return settings.ZWIFT_API_KEY.get_secret_value() if settings.ZWIFT_API_KEY else None


def scaled(settings: Settings, seconds: float) -> float:
    """Simulated ``seconds`` in real seconds at ZWIFT_TIME_SCALE."""
    return seconds / settings.ZWIFT_TIME_SCALE


def windows(settings: Settings) -> dict[str, Window]:
    """Each family's window from its setting, at the time scale."""
    found: dict[str, Window] = {}
    for family in FAMILIES:
        setting = f"ZWIFT_RATE_{family.upper()}"
        window = parse_rate(getattr(settings, setting), setting)
        found[family] = Window(window.limit, scaled(settings, window.period))
    return found


def zwift_limiters(settings: Settings, database_url: str = "") -> dict[str, Limiter]:
    """One budget per family for the configured key (fingerprinted with the base URL)."""
    return {
        family: budget(
            settings,
            database_url,
            family,
            [window],
            provider="zwift",
            credential=[settings.ZWIFT_API_BASE_URL, _key(settings) or ""],
            manual_reserve=MANUAL_RESERVE.get(family, 0),
        )
        for family, window in windows(settings).items()
    }


def zwift_client(settings: Settings, limiters: dict[str, Limiter]) -> ZwiftClient:
    return ZwiftClient(
        api_key=_key(settings),
        base_url=settings.ZWIFT_API_BASE_URL,
        limiters=limiters,
        max_response_bytes=settings.HTTP_MAX_RESPONSE_BYTES,
    )


def cadence_seconds(settings: Settings, kind: str) -> float | None:
    """A kind's cadence (SCHEDULER_ZWIFT_<KIND>_EVERY) in real seconds, None when off."""
    every = parse_cadence(str(getattr(settings, f"SCHEDULER_ZWIFT_{kind.upper()}_EVERY")))
    return None if every is None else scaled(settings, every)


def fresh_seconds(settings: Settings) -> dict[str, float]:
    """Per event kind: a read older than this is due again in its pass."""
    found: dict[str, float] = {}
    for kind in ("urgent", "near", "far", "results"):
        every = cadence_seconds(settings, kind)
        found[kind] = FRESH_SHARE * (every if every is not None else scaled(settings, 3600.0))
    return found


class LazyZwiftClient:
    """The client, built on first use: a worker without ZWIFT_API_KEY still serves the other
    providers, and a Zwift activity then fails at once with a clear, non-retryable error."""

    def __init__(self, settings: Settings, database_url: str = "") -> None:
        self.settings = settings
        self.limiters = zwift_limiters(settings, database_url)
        self.client: ZwiftClient | None = None

    def __call__(self) -> ZwiftClient:
        if self.client is None:
            self.client = zwift_client(self.settings, self.limiters)
        return self.client

    async def aclose(self) -> None:
        await aclose_each(self.client, *self.limiters.values())


def build(ctx: BuildContext) -> ActivitySet:
    from activities.zwift import ZwiftActivities

    settings: Settings = ctx.settings
    client = LazyZwiftClient(settings, ctx.database_url)
    acts = ZwiftActivities(
        ctx.engine,
        client,
        urgent_seconds=scaled(settings, settings.ZWIFT_URGENT_WITHIN_SECONDS),
        near_seconds=scaled(settings, settings.ZWIFT_NEAR_WITHIN_SECONDS),
        fresh_seconds=fresh_seconds(settings),
        far_per_run=settings.ZWIFT_FAR_EVENTS_PER_RUN,
    )
    return ActivitySet(
        main=acts.all(),
        concurrency=8,  # a club's kinds run side by side (different families); rider adds
        resources={"client": client, "limiters": client.limiters},
        closers=[client.aclose],
    )
