"""Serving the read API: the app factory uvicorn calls in each API process.

`starter.py api` (cli/api.py) resolves the database first (DATABASE_URL, or the shared embedded
Postgres, migrated) and hands its URL to the processes as their DATABASE_URL (their own
environment: never a log line), so each reads it through settings like any other setting.
The refresh hook connects to Temporal on its first call: TEMPORAL_ADDRESS, or the embedded
server while it runs.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from temporalio.client import Client

import logformat
from api.app import create_app
from settings import get_settings


def temporal_source(settings):  # type: ignore[no-untyped-def]
    """The refresh hook's Temporal client, connected once, on first use."""
    lock = asyncio.Lock()
    held: list[Client] = []

    async def client() -> Client:
        async with lock:
            if not held:
                from runtime import connect, port_in_use

                address = settings.TEMPORAL_ADDRESS
                if not address and port_in_use(settings.EMBEDDED_TEMPORAL_PORT):
                    address = f"127.0.0.1:{settings.EMBEDDED_TEMPORAL_PORT}"
                if not address:
                    raise ConnectionError("no Temporal server: set TEMPORAL_ADDRESS")
                held.append(await connect(address, settings.TEMPORAL_NAMESPACE))
            return held[0]

    return client


def from_env() -> FastAPI:
    settings = get_settings()
    logformat.install(settings.LOG_LEVEL, settings.LOG_FORMAT)  # each API process starts fresh
    if not settings.DATABASE_URL:
        raise RuntimeError("DATABASE_URL must name the database (`starter.py api` sets it)")
    return create_app(settings, settings.DATABASE_URL, temporal_source(settings))
