"""`temporal setup`: register the search attributes Provider, Scope, SyncKind (idempotent; the
embedded dev server registers them itself)."""

from __future__ import annotations

import argparse

from cli.common import EXIT_OK, Verbs, add_verb, emit, temporal
from cli.scheduler import setup_search_attributes
from settings import Settings


def register(verbs: Verbs) -> None:
    parser = add_verb(verbs, "temporal", "Temporal server set-up")
    actions = parser.add_subparsers(dest="temporal_verb", required=True, metavar="ACTION")
    add_verb(
        actions, "setup", "register the search attributes Provider, Scope, SyncKind (idempotent)",
        run,
    )  # fmt: skip


async def run(args: argparse.Namespace, settings: Settings) -> int:
    async with temporal(settings) as (_, client):
        added = await setup_search_attributes(client)
    emit(args, f"search attributes added: {', '.join(added) or 'none (already there)'}",
         {"added": added})  # fmt: skip
    return EXIT_OK
