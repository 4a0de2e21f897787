"""`api [--host] [--port] [--workers N]`: serve the read API and the dashboard (api/)."""

from __future__ import annotations

import argparse
import asyncio
import os

import logformat
from cli import CliError
from cli.common import Verbs, add_verb
from settings import Settings


def register(verbs: Verbs) -> None:
    parser = add_verb(
        verbs,
        "api",
        "serve the read API over the mirror (and the dashboard at /)",
        run,
        description="Serve the read-only HTTP API over Postgres (never an upstream call): "
        "/v1/… (OpenAPI at /openapi.json), the dashboard at /, /healthz. "
        "Example: python starter.py api --port 8000",
    )
    parser.add_argument("--host", help="address to listen on (default API_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=_port, help="port (default API_PORT, 8000)")
    parser.add_argument(
        "--workers", type=int, default=1, choices=range(1, 65), metavar="N",
        help="API processes sharing the port (default 1)",
    )  # fmt: skip


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a port (1 .. 65535)")
    return int(text)


def run(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from runtime import embedded_services
    from settings import get_settings
    from storage.migrate import upgrade

    port = args.port if args.port is not None else settings.API_PORT
    logformat.install(settings.LOG_LEVEL, settings.LOG_FORMAT)
    with embedded_services(need_temporal=False) as ep:
        if ep.embedded_database:
            upgrade(ep.database_url)
        asyncio.run(_reachable(ep.database_url))
        # the API processes' (and, with one, this process's) DATABASE_URL: the resolved one
        os.environ["DATABASE_URL"] = ep.database_url
        get_settings.cache_clear()
        print(f"read API on http://{args.host or settings.API_HOST}:{port}/", flush=True)
        uvicorn.run(
            "api.serve:from_env",
            factory=True,
            host=args.host or settings.API_HOST,
            port=port,
            workers=args.workers,
            log_level="warning",
            access_log=False,
            # LOG_FORMAT=json: uvicorn's own lines through ratesync's formatter, not its own
            log_config=None if settings.LOG_FORMAT == "json" else uvicorn.config.LOGGING_CONFIG,
        )
    return 0


async def _reachable(database_url: str) -> None:
    """One line, before serving, when the database does not answer (never its password)."""
    import asyncpg

    from storage.db import redact, sync_url

    try:
        conn = await asyncpg.connect(sync_url(database_url), timeout=5)
    except Exception as exc:
        raise CliError(
            f"the database at {redact(database_url)} does not answer ({type(exc).__name__}): "
            "check DATABASE_URL, or unset it for the embedded one"
        ) from None
    await conn.close()
