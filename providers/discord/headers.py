"""What Discord's rate-limit headers and 429 answers say (UPSTREAM §2.4): pure parsing.

- :func:`parse_rate_headers`: a response's ``X-RateLimit-*`` headers → :class:`RateHeaders`
  (limit, remaining, seconds to the reset, bucket hash), or None when unusable.
- :func:`parse_429`: a 429 → :class:`RateLimitHit` (scope ``user``/``global``/``shared``, or
  ``cloudflare`` for a block without Discord's headers, and the seconds to wait).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from providers.http import MAX_RETRY_AFTER, parse_retry_after

__all__ = ["SCOPES", "RateHeaders", "RateLimitHit", "parse_429", "parse_rate_headers"]

SCOPES = ("user", "global", "shared", "cloudflare")


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def _one_line(value: Any) -> str:
    """A body's ``message`` as one line: a string or number, never a container's repr."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return ""
    return " ".join(str(value).split())


@dataclass(frozen=True)
class RateHeaders:
    """What a response's ``X-RateLimit-*`` headers say about its bucket."""

    limit: int
    remaining: int
    reset_after: float | None  # seconds from receipt; None when neither reset header is usable
    bucket: str | None


def parse_rate_headers(headers: Mapping[str, str], wall_now: float) -> RateHeaders | None:
    """Parse the bucket headers; None when the response carries no (usable) limit/remaining.

    ``X-RateLimit-Reset-After`` is preferred; the epoch ``X-RateLimit-Reset`` is used against
    ``wall_now`` only when Reset-After is missing (the local clock may be off).
    """
    h = _lower(headers)
    limit = _float(h.get("x-ratelimit-limit"))
    remaining = _float(h.get("x-ratelimit-remaining"))
    if limit is None or remaining is None or limit < 1:
        return None
    reset_after = _float(h.get("x-ratelimit-reset-after"))
    if reset_after is None:
        reset = _float(h.get("x-ratelimit-reset"))
        if reset is not None:
            reset_after = reset - wall_now
    if reset_after is not None:
        reset_after = min(MAX_RETRY_AFTER, max(0.0, reset_after))
    bucket = h.get("x-ratelimit-bucket") or None
    return RateHeaders(int(limit), max(0, int(remaining)), reset_after, bucket)


@dataclass(frozen=True)
class RateLimitHit:
    """A 429 answer, understood."""

    scope: str  # "user", "global", "shared" or "cloudflare"
    retry_after: float  # seconds; body retry_after, else Retry-After, else 1 s
    message: str = ""

    @property
    def counts_as_invalid(self) -> bool:
        return self.scope != "shared"


def parse_429(headers: Mapping[str, str], body: bytes) -> RateLimitHit:
    """Classify a 429 by ``X-RateLimit-Scope``/``X-RateLimit-Global``/body ``global``.

    A 429 with neither a Discord JSON body nor any ``X-RateLimit-*`` header comes from Cloudflare
    (e.g. ``error code: 1015``): the IP is blocked.
    """
    h = _lower(headers)
    data: Any = None
    try:
        data = json.loads(body) if body else None
    except (ValueError, RecursionError):  # not JSON, or nested too deeply to be Discord's
        data = None
    payload = data if isinstance(data, dict) else {}
    discord_headers = any(k.startswith("x-ratelimit-") for k in h)
    body_retry = payload.get("retry_after")
    retry_after: float | None = None
    if isinstance(body_retry, int | float) and not isinstance(body_retry, bool):
        retry_after = _float(str(body_retry))
    if retry_after is None:
        retry_after = parse_retry_after(h.get("retry-after"))
    message = _one_line(payload.get("message"))[:200]
    if not discord_headers and "retry_after" not in payload:
        return RateLimitHit("cloudflare", retry_after or 0.0, message)
    retry = min(MAX_RETRY_AFTER, max(0.0, retry_after if retry_after is not None else 1.0))
    scope = (h.get("x-ratelimit-scope") or "").strip().lower()
    if scope not in ("user", "global", "shared"):
        is_global = h.get("x-ratelimit-global", "").strip().lower() == "true"
        scope = "global" if is_global or payload.get("global") is True else "user"
    elif payload.get("global") is True:
        scope = "global"
    return RateLimitHit(scope, retry, message)
