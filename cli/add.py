"""`add <entity> <scope> … [--wait]`: a manual add, one sub-command per entity a provider lets
you add (its ``ProviderCommands.add``). The request goes to the scope's running scheduler as a
priority signal (cli/scheduler.py), which syncs it ahead of any backlog."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from cli import CliError
from cli.commands import add_scope_argument, each, resolve_scope, scope_dest
from cli.common import EXIT_USAGE, Verbs, add_verb, database, services, temporal
from cli.launch import outcome, start_and_maybe_wait
from cli.pollers import no_worker, worker_polls
from cli.scheduler import BadRequest, entity_command, manual_add
from providers.ratelimit import Priority
from settings import Settings

PRIORITY_NAMES = [p.name.lower() for p in sorted(Priority, reverse=True)]  # manual first


def register(verbs: Verbs) -> None:
    add = add_verb(verbs, "add", "manual add: sync an entity now, ahead of any backlog")
    entities = add.add_subparsers(dest="entity", required=True, metavar="ENTITY")
    for spec, commands in each():
        for command in commands.add:
            kind = spec.kind(command.name)
            assert kind is not None and kind.entity, f"{spec.name} has no entity {command.name}"
            parser = add_verb(
                entities, command.name, command.help, run, description=command.description
            )
            add_scope_argument(parser, spec, command.scope_as_option)
            command.arguments(parser)
            default = Priority(kind.priority).name.lower()  # an entity kind's is a Priority
            parser.add_argument(
                "--priority", choices=PRIORITY_NAMES, default=default, help=f"(default: {default})"
            )
            parser.add_argument(
                "--wait", action="store_true", help="wait until its rows are stored"
            )
            parser.add_argument(
                "--timeout", type=float, default=300.0, help="seconds (default 300)"
            )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    spec, command = entity_command(args.entity)
    if command.scope_as_option and getattr(args, scope_dest(spec), None) is None:
        async with services(settings, temporal=False) as svc, database(svc) as engine:
            async with engine.connect() as conn:
                await resolve_scope(spec, args, conn)
    try:
        launch = manual_add(args, settings)  # checked before anything is sent
    except BadRequest as exc:
        print(f"error: {exc} (see `python starter.py add {args.entity} --help`)", file=sys.stderr)
        return EXIT_USAGE
    async with temporal(settings) as (_, client):
        queue = settings.TEMPORAL_TASK_QUEUE
        if args.wait and not await worker_polls(client, queue):
            # Nothing would answer the wait before its timeout: queue the request (a signal
            # needs no worker) and say so at once.
            await outcome(client, settings, replace(launch, update=None, follow=None), False)
            raise CliError(
                f"queued {launch.waiting_for} in {launch.id}, but {no_worker(queue)} "
                f"(it is served once one runs; see `{launch.look}`)"
            )
        return await start_and_maybe_wait(args, client, settings, launch)
