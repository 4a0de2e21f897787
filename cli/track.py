"""`track <entity> <scope> …`: register an entity to keep in sync, one sub-command per entity a
provider declares (its ``ProviderCommands.track``)."""

from __future__ import annotations

import argparse

from cli.commands import TrackCommand, add_scope_argument, each, resolve_scope
from cli.common import EXIT_OK, Verbs, add_verb, database, emit, services
from settings import Settings


def register(verbs: Verbs) -> None:
    track = add_verb(verbs, "track", "register an entity to keep in sync")
    entities = track.add_subparsers(dest="entity", required=True, metavar="ENTITY")
    for spec, commands in each():
        for command in commands.track:
            parser = add_verb(
                entities, command.name, command.help, run, description=command.description
            )
            add_scope_argument(parser, spec, command.scope_as_option)
            command.arguments(parser)
            parser.set_defaults(spec=spec, command=command)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    command: TrackCommand = args.command
    async with services(settings, temporal=False) as svc, database(svc) as engine:
        async with engine.begin() as conn:
            scope = await resolve_scope(args.spec, args, conn)
            row_id = await command.register(conn, scope, args)
    label = command.label(scope, args)
    emit(args, f"tracking {label} (id {row_id})", {"entity": args.entity, "id": row_id})
    return EXIT_OK
