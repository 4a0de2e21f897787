"""`sync <name> [scope option] … [--wait]`: start a sync now, one sub-command per sync a
provider declares (its ``ProviderCommands.sync``)."""

from __future__ import annotations

import argparse

from cli.commands import SyncCommand, add_scope_option, each, scope_of
from cli.common import Verbs, add_verb, database, temporal
from cli.launch import start_and_maybe_wait
from providers.spec import ProviderSpec
from settings import Settings


def register(verbs: Verbs) -> None:
    sync = add_verb(verbs, "sync", "run a sync now", description="Run a sync now.")
    targets = sync.add_subparsers(dest="provider", required=True, metavar="PROVIDER")
    for spec, commands in each():
        for command in commands.sync:
            parser = add_verb(
                targets, command.name, command.help, run, description=command.description
            )
            add_scope_option(parser, spec)
            command.arguments(parser)
            parser.add_argument("--wait", action="store_true", help="wait for the result")
            parser.set_defaults(spec=spec, command=command)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    spec: ProviderSpec = args.spec
    command: SyncCommand = args.command
    scope = scope_of(spec, args, settings)
    assert scope is not None  # the option is required when the spec has no default
    async with temporal(settings) as (svc, client):
        if command.check is not None:
            async with database(svc) as engine, engine.connect() as conn:
                await command.check(conn, scope)
        launch = command.launch(args, settings, scope)
        return await start_and_maybe_wait(args, client, settings, launch, svc.database_url)
