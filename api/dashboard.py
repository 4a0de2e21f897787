"""The live dashboard at ``GET /`` of the read API (work in progress)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from api.queries import Mirror
from api.refresh import ClientSource


def mount_dashboard(
    app: FastAPI, mirror_of: Callable[[], Mirror], settings: Any, temporal: ClientSource | None
) -> None:
    """Add ``GET /`` and its JSON to ``app``."""
