"""ZwiftRacing.app public API: client (a limiter per endpoint family) and payload parsers."""

from providers.zwift.client import (
    DEFAULT_BASE_URL,
    FAMILIES,
    CallRecord,
    ZwiftClient,
    check_id,
    chunks,
    family_limiters,
    parse_rate,
    recording_calls,
)
from providers.zwift.parse import (
    PAGE_SIZE,
    ClubPage,
    EventAnswer,
    ResultsAnswer,
    RiderAnswer,
    RidersAnswer,
    SignupsAnswer,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "FAMILIES",
    "PAGE_SIZE",
    "CallRecord",
    "ClubPage",
    "EventAnswer",
    "ResultsAnswer",
    "RiderAnswer",
    "RidersAnswer",
    "SignupsAnswer",
    "ZwiftClient",
    "check_id",
    "chunks",
    "family_limiters",
    "parse_rate",
    "recording_calls",
]
