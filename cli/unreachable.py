"""A server that does not answer, said in one line naming the setting to check: the client
libraries' own errors are a Rust transport dump (Temporal) or a bare errno tuple (asyncpg)."""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from settings import Settings

_REASONS = (
    ("ConnectionRefused", "connection refused"),
    ("TimedOut", "timed out"),
    ("dns error", "unknown host"),
)


def unreachable(exc: BaseException, settings: Settings) -> str | None:
    """The one line for ``exc`` when it says a server could not be reached, else None."""
    text = str(exc)
    if isinstance(exc, RuntimeError) and text.startswith("Failed client connect"):
        reason = next((said for key, said in _REASONS if key in text), "no connection")
        if settings.TEMPORAL_ADDRESS:
            fix = "check TEMPORAL_ADDRESS (or unset it for the embedded server)"
            where = settings.TEMPORAL_ADDRESS
        else:
            fix = "start it with `python starter.py services start`"
            where = f"127.0.0.1:{settings.EMBEDDED_TEMPORAL_PORT}"
        return f"cannot reach the Temporal server at {where} ({reason}): {fix}"
    if isinstance(exc, OSError) and re.search(r"Connect call failed|Multiple exceptions", text):
        reason = os.strerror(exc.errno).lower() if exc.errno else "no connection"
        if settings.DATABASE_URL:
            parts = urlsplit(settings.DATABASE_URL)
            where = f"{parts.hostname}:{parts.port or 5432}"
            fix = "check DATABASE_URL (or unset it for the embedded server)"
        else:
            where = f"127.0.0.1:{settings.EMBEDDED_POSTGRES_PORT}"
            fix = "start it with `python starter.py services start`"
        return f"cannot reach PostgreSQL at {where} ({reason}): {fix}"
    return None
