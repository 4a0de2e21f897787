"""Provider errors → Temporal ApplicationErrors (DESIGN §4): Temporal owns the retries."""

from __future__ import annotations

from datetime import timedelta

from temporalio.exceptions import ApplicationError

from providers.errors import ProviderError, RateLimited
from providers.ratelimit import BudgetExhausted

# Raised as non-retryable; listed here so retry policies can name them too.
NON_RETRYABLE = ["AuthFailed", "NotFound", "Forbidden"]


def to_application_error(exc: ProviderError) -> ApplicationError:
    """Keep the message (entity + status, never secrets) and the type name for retry policies."""
    kind = type(exc).__name__
    if isinstance(exc, RateLimited):
        return ApplicationError(
            str(exc), type=kind, next_retry_delay=timedelta(seconds=max(1.0, exc.retry_after))
        )
    return ApplicationError(str(exc), type=kind, non_retryable=not exc.retryable)


def budget_error(exc: BudgetExhausted) -> ApplicationError:
    """The bucket is spent for a while: let Temporal retry exactly when it refills."""
    return ApplicationError(
        str(exc), type="BudgetExhausted", next_retry_delay=timedelta(seconds=exc.wait_seconds)
    )
