"""`db upgrade`: apply the alembic migrations to DATABASE_URL (or the embedded database)."""

from __future__ import annotations

import argparse
import asyncio

from cli.common import EXIT_OK, Verbs, add_verb, emit
from runtime import embedded_services
from settings import Settings
from storage.db import redact
from storage.migrate import current_head, upgrade


def register(verbs: Verbs) -> None:
    db = add_verb(verbs, "db", "database schema", description="Database schema commands.")
    actions = db.add_subparsers(dest="db_verb", required=True, metavar="ACTION")
    add_verb(actions, "upgrade", "apply alembic migrations (DATABASE_URL or embedded)", run)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    with embedded_services(need_temporal=False) as ep:
        await asyncio.to_thread(upgrade, ep.database_url)
        revision = current_head()
        emit(args, f"database {redact(ep.database_url)} is at revision {revision}",
             {"revision": revision})  # fmt: skip
    return EXIT_OK
