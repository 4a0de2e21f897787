"""Typed provider errors (DESIGN §4). Messages carry the entity and status, never credentials.

Whether Temporal may retry is a property of the *class*, never flipped on an instance:

    ProviderError
    ├── Transient            5xx, timeout, reset — retried in the client, then by Temporal
    │   └── MalformedBody    a body that does not parse (usually cut in transit)
    ├── RateLimited          429: a budget wait, never a spent attempt
    ├── BudgetExhausted      the next slot is further away than the caller may wait
    ├── NotFound             404 (non-retryable)
    ├── Forbidden            403 (non-retryable)
    ├── AuthFailed           bad credentials (non-retryable)
    ├── BadPayload           parsed, but not the shape we need: schema drift (non-retryable)
    │   └── BadInput         asked for something no valid request can be: a region outside
    │                        us/eu/kr/tw/cn, a slug with '/' or '.', an id that is not digits,
    │                        a URL off the configured host (non-retryable; nothing is sent)
    ├── UnexpectedStatus     another 4xx: it would recur on every attempt (non-retryable)
    └── CircuitOpen          sending more would risk a ban (non-retryable)
"""

from __future__ import annotations

import time


class ProviderError(Exception):
    """Base of everything a provider client raises. ``retryable`` tells Temporal what to do."""

    retryable = True

    def __init__(self, message: str, *, entity: str | None = None, status: int | None = None):
        self.entity = entity
        self.status = status
        super().__init__(message)


class RateLimited(ProviderError):
    """429, or rate-limit headers exhausted. The bucket is already paused for ``retry_after``."""

    def __init__(self, message: str, *, retry_after: float, entity: str | None = None):
        self.retry_after = retry_after
        super().__init__(message, entity=entity, status=429)


class BudgetExhausted(ProviderError):
    """The next slot is further away than the caller agreed to wait.

    ``resume_at`` is wall-clock epoch seconds: a workflow can sleep until then durably.
    """

    def __init__(self, bucket: str, wait_seconds: float) -> None:
        self.bucket = bucket
        self.wait_seconds = wait_seconds
        self.resume_at = time.time() + wait_seconds
        super().__init__(f"rate budget of {bucket!r} exhausted for {wait_seconds:.1f}s")


class Transient(ProviderError):
    """5xx, timeout, connection reset: retried a few times in the client, then by Temporal."""


class MalformedBody(Transient):
    """A body that is not valid JSON. Almost always a response cut in transit: retried like a
    5xx. (A body that parses but has the wrong shape is :class:`BadPayload`.)"""


class NotFound(ProviderError):
    """404: gone, renamed, hidden or private (Blizzard does not say which)."""

    retryable = False


class Forbidden(ProviderError):
    """403: no access (missing namespace, Discord Missing Access)."""

    retryable = False


class AuthFailed(ProviderError):
    """401 after one token refresh, or the token endpoint refused the credentials."""

    retryable = False


class BadPayload(ProviderError):
    """A payload that parsed but is missing what we need, or has it in the wrong type
    (schema drift): it would be the same on every attempt."""

    retryable = False


class BadInput(BadPayload):
    """What we were asked to fetch cannot be a valid request: a region that is not one of
    us/eu/kr/tw/cn, a realm/guild/character slug that could leave its path segment (``/``,
    ``.``, ``%``…), a Discord id that is not digits, a URL whose host is not the configured one.
    Refused before anything is sent (no token leaves the process); the same on every attempt.

    A subclass of :class:`BadPayload`, so a per-entity handler records a stored entity with an
    unusable name as unusable (the run goes on); Temporal sees the type name ``BadInput``.
    """


class UnexpectedStatus(ProviderError):
    """A 4xx we have no meaning for (400, 405, 422…): asking again gets the same answer."""

    retryable = False


class CircuitOpen(ProviderError):
    """The client stopped itself: sending more would risk an upstream ban (Discord's invalid
    request limit, a Cloudflare block). Nothing is sent until ``resume_at`` (epoch seconds)."""

    retryable = False

    def __init__(self, message: str, *, resume_at: float | None = None, entity: str | None = None):
        self.resume_at = resume_at
        super().__init__(message, entity=entity)


# Type names Temporal must not retry (retry policies name them; activities raise them so).
NON_RETRYABLE_TYPES = [
    cls.__name__
    for cls in (NotFound, Forbidden, AuthFailed, BadPayload, UnexpectedStatus, CircuitOpen)
]
