"""`temporal setup`: register the search attributes Provider, Scope, SyncKind (idempotent; the
embedded dev server registers them itself, and the worker adds missing ones at its start where
the server allows it). Connects as every command does: TEMPORAL_ADDRESS through Temporal's
environment configuration (TEMPORAL_PROFILE, TEMPORAL_API_KEY, TEMPORAL_TLS_*)."""

from __future__ import annotations

import argparse

from temporalio.service import RPCError

from cli import CliError
from cli.common import EXIT_OK, Verbs, add_verb, emit, temporal
from runtime import SEARCH_ATTRIBUTES, add_search_attributes, missing_search_attributes
from settings import Settings


def register(verbs: Verbs) -> None:
    parser = add_verb(verbs, "temporal", "Temporal server set-up")
    actions = parser.add_subparsers(dest="temporal_verb", required=True, metavar="ACTION")
    add_verb(
        actions, "setup", "register the search attributes Provider, Scope, SyncKind (idempotent)",
        run,
    )  # fmt: skip


async def run(args: argparse.Namespace, settings: Settings) -> int:
    async with temporal(settings) as (svc, client):
        try:
            added = await missing_search_attributes(client)
            if added:
                await add_search_attributes(client, added)
        except RPCError as exc:
            raise CliError(
                f"the server at {svc.temporal_address} refused to register the search "
                f"attributes ({exc.status.name}): this client needs operator rights; on "
                f"Temporal Cloud add {', '.join(SEARCH_ATTRIBUTES)} as Keyword search attributes "
                f"of namespace {client.namespace!r} in its settings"
            ) from None
    emit(args, f"search attributes added: {', '.join(added) or 'none (already there)'}",
         {"added": added})  # fmt: skip
    return EXIT_OK
