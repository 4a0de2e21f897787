"""Typed provider errors (DESIGN §4). Messages carry the entity and status, never credentials."""

from __future__ import annotations


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


class Transient(ProviderError):
    """5xx, timeout, connection reset, truncated body: retry with backoff."""


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
    """Malformed JSON or a payload missing what we need (schema drift)."""

    retryable = False


class CircuitOpen(ProviderError):
    """The client stopped itself: sending more would risk an upstream ban (Discord's invalid
    request limit, a Cloudflare block). Nothing is sent until ``resume_at`` (epoch seconds)."""

    retryable = False

    def __init__(self, message: str, *, resume_at: float | None = None, entity: str | None = None):
        self.resume_at = resume_at
        super().__init__(message, entity=entity)
