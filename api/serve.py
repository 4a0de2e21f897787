"""Serving the read API: the app factory uvicorn calls in each API process.

`starter.py api` (cli/api.py) resolves the database first (DATABASE_URL, or the shared embedded
Postgres, migrated) and hands its URL to the processes in ``RATESYNC_API_DATABASE_URL`` (their
own environment: never a log line). The refresh hook connects to Temporal on its first call:
TEMPORAL_ADDRESS, or the embedded server while it runs.
"""

from __future__ import annotations

import asyncio
import os

from fastapi import FastAPI
from temporalio.client import Client

import logformat
from api.app import create_app
from settings import get_settings

DATABASE_ENV = "RATESYNC_API_DATABASE_URL"


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
    url = os.environ.get(DATABASE_ENV) or settings.DATABASE_URL
    if not url:
        raise RuntimeError(f"{DATABASE_ENV} or DATABASE_URL must name the database")
    return create_app(settings, url, temporal_source(settings))
