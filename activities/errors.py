"""The one error path of every activity (DESIGN §4): what Temporal is told when work fails.

``activity_errors(what)`` wraps an activity body. Provider errors become ``ApplicationError``s
typed by class name (retry policies name them); a spent budget or a 429 carries the exact delay;
database trouble becomes one line — the driver's error class and first message line, never the
SQL or its parameters — retryable when the server was unreachable, non-retryable when it refused
the data (that would recur on every attempt). A payload of the wrong type that a parser did not
catch becomes a ``BadPayload`` naming ``what``. Temporal owns retries.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from temporalio.exceptions import ApplicationError

from providers.errors import NON_RETRYABLE_TYPES, BudgetExhausted, ProviderError, RateLimited

# Raised as non-retryable; listed here so retry policies can name them too.
NON_RETRYABLE = [*NON_RETRYABLE_TYPES, "BadInput"]
# Postgres SQLSTATE classes that mean "the data was refused" (22 data exception, 23 integrity
# constraint violation other than a unique race, 42 syntax/undefined): the same on every attempt.
_REFUSED_SQLSTATES = ("22", "42")


def to_application_error(exc: ProviderError) -> ApplicationError:
    """Keep the message (entity + status, never secrets) and the type name for retry policies."""
    kind = type(exc).__name__
    if isinstance(exc, BudgetExhausted):
        return budget_error(exc)
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


def database_error(exc: SQLAlchemyError, what: str) -> ApplicationError:
    """One line for a database failure: no statement, no parameters."""
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).splitlines() or [""])[0][:200]
    sqlstate = str(getattr(orig, "sqlstate", "") or getattr(orig, "pgcode", "") or "")
    refused = sqlstate.startswith(_REFUSED_SQLSTATES)
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        refused = False
    if sqlstate.startswith("53"):  # disk full, out of memory, too many connections
        return ApplicationError(
            f"{what}: the database server is out of resources ({type(orig).__name__}: {first});"
            " free disk space on its data directory (or memory, connections): the sync resumes"
            " by itself",
            type="DatabaseError",
        )
    message = f"{what}: database {'refused the data' if refused else 'error'} "
    message += f"({type(orig).__name__}: {first})"
    return ApplicationError(
        message, type="BadPayload" if refused else "DatabaseError", non_retryable=refused
    )


@contextmanager
def activity_errors(what: str) -> Iterator[None]:
    """Turn what an activity body raises into the ApplicationError Temporal should see."""
    try:
        yield
    except ApplicationError:
        raise
    except ProviderError as exc:
        raise to_application_error(exc) from None
    except SQLAlchemyError as exc:
        raise database_error(exc, what) from None
    except (OSError, ConnectionError) as exc:  # the database or a socket went away
        raise ApplicationError(
            f"{what}: connection failed ({type(exc).__name__})", type="ConnectionError"
        ) from None
    except (KeyError, TypeError, AttributeError, ValueError, RecursionError) as exc:
        raise ApplicationError(
            f"{what}: unexpected payload shape ({type(exc).__name__})",
            type="BadPayload",
            non_retryable=True,
        ) from None


P = ParamSpec("P")
R = TypeVar("R")


def one_error_path(what: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorate an activity method (below ``@activity.defn``): its body runs inside
    :func:`activity_errors`."""

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with activity_errors(what):
                return await fn(*args, **kwargs)

        return wrapper

    return decorate
