"""ZwiftRacing's part of a worker: one API key, one rate budget per endpoint family.

Each family's window ("<count>/<seconds>", ZWIFT_RATE_<FAMILY>) is a budget of its own, shared
through Postgres by every process that uses the key (RATE_LIMIT_BACKEND=postgres): a second
worker, a one-off started from the CLI or a restarted worker never spends a slot twice, and an
hourly window survives the restart. The single-rider family keeps a place for manual rider adds.
The sync kinds, the club scheduler and the activities that use these come with the rest of the
provider (issue 13).
"""

from __future__ import annotations

from providers.ratelimit import Limiter
from providers.shared_limit import budget
from providers.zwift.client import FAMILIES, ZwiftClient, parse_rate
from settings import Settings

# a manual rider add is answered from GET /public/riders/{id}: one place kept for it
MANUAL_RESERVE = {"riders_get": 1}


def _key(settings: Settings) -> str | None:
    return settings.ZWIFT_API_KEY.get_secret_value() if settings.ZWIFT_API_KEY else None


def zwift_limiters(settings: Settings, database_url: str = "") -> dict[str, Limiter]:
    """One budget per family for the configured key (fingerprinted with the base URL)."""
    limiters: dict[str, Limiter] = {}
    for family in FAMILIES:
        window = parse_rate(getattr(settings, f"ZWIFT_RATE_{family.upper()}"))
        limiters[family] = budget(
            settings,
            database_url,
            family,
            [window],
            provider="zwift",
            credential=[settings.ZWIFT_API_BASE_URL, _key(settings) or ""],
            manual_reserve=MANUAL_RESERVE.get(family, 0),
        )
    return limiters


def zwift_client(settings: Settings, limiters: dict[str, Limiter]) -> ZwiftClient:
    return ZwiftClient(
        api_key=_key(settings), base_url=settings.ZWIFT_API_BASE_URL, limiters=limiters
    )
