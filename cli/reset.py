"""`reset <provider> <scope option> … --yes`: clear a scope's sync cursors and progress so the
next sync starts from the beginning (stored rows are kept), one sub-command per provider that
declares it (its ``ProviderCommands.reset``)."""

from __future__ import annotations

import argparse
import sys

from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from cli import CliError
from cli.commands import ResetCommand, add_scope_option, each, scope_of
from cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    Verbs,
    add_verb,
    connect_quickly,
    database,
    emit,
    running_temporal,
    services,
)
from providers.spec import ProviderSpec
from settings import Settings


def register(verbs: Verbs) -> None:
    reset = add_verb(
        verbs,
        "reset",
        "clear sync cursors and progress (stored rows are kept)",
        description="Clear sync cursors and progress so the next sync starts from the beginning.",
    )
    providers = reset.add_subparsers(dest="provider", required=True, metavar="PROVIDER")
    for spec, commands in each():
        command = commands.reset
        if command is None:
            continue
        parser = add_verb(providers, spec.name, command.help, run, description=command.description)
        add_scope_option(parser, spec)
        command.arguments(parser)
        parser.add_argument("--yes", action="store_true", help="confirm")
        parser.set_defaults(spec=spec, command=command)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    spec: ProviderSpec = args.spec
    command: ResetCommand = args.command
    scope = scope_of(spec, args, settings)
    assert scope is not None  # the option is required when the spec has no default
    if not args.yes:
        print(
            f"error: this clears the sync cursors and progress of {command.what(scope, args)} "
            f"({command.kept}; the next sync re-reads from the beginning); add --yes to confirm",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if command.running is not None:
        await refuse_while_running(settings, command.running(scope))
    async with services(settings, temporal=False) as svc, database(svc) as engine:
        async with engine.begin() as conn:
            data = await command.reset(conn, scope, args)
    emit(args, command.summary(data), data)
    return EXIT_OK


async def refuse_while_running(settings: Settings, workflow_id: str) -> None:
    """A running sync would write its cursors straight back after a reset: refuse instead.

    Asks Temporal when it is up (the embedded server counts only if it is already running:
    without it nothing can be syncing)."""
    address = running_temporal(settings)
    if address is None:
        return
    try:
        client = await connect_quickly(address, settings)
        described = await client.get_workflow_handle(workflow_id).describe()
    except RPCError:
        return  # never started, or gone
    except (OSError, RuntimeError, TimeoutError) as exc:
        raise CliError(
            f"cannot check whether {workflow_id} is running (Temporal at {address}: {exc}); "
            "reset needs to know: start Temporal or fix TEMPORAL_ADDRESS"
        ) from None
    if described.status == WorkflowExecutionStatus.RUNNING:
        raise CliError(
            f"{workflow_id} is running and would write its cursors back; wait for it or stop it "
            f"(`temporal workflow terminate -w {workflow_id}`), then reset"
        )
