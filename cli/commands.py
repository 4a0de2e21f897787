"""What a provider adds to the generic verbs: its spec's ``cli`` names a
:class:`ProviderCommands` (``"cli.<provider>:COMMANDS"``).

`sync`, `track`, `add`, `status`, `reset` and `scheduler` loop over the registry and name no
provider. A provider's module declares its sub-commands (`sync <name>`, `track <entity>`…),
the options only it has, and how the command line reads its scope; the generic verb adds what
every provider shares (the scope option or argument, --wait, --json) and runs the command.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from cli.launch import Launch
from providers.registry import SPECS
from providers.spec import ProviderSpec, load
from settings import Settings

Arguments = Callable[[argparse.ArgumentParser], None]


def no_arguments(parser: argparse.ArgumentParser) -> None:
    return None


@dataclass(frozen=True)
class Scope:
    """How the command line reads a provider's scope (``spec.scope``)."""

    noun: str  # one value, as messages name it ("a … scheduler needs --option <noun>")
    help: str
    type: Callable[[str], Any] = str
    choices: Sequence[str] | None = None

    @property
    def metavar(self) -> str | None:
        return None if self.choices else self.noun.upper().replace(" ", "_")


@dataclass(frozen=True)
class SyncCommand:
    """`sync <name> [scope option] … [--wait]`: start a sync of one scope now."""

    name: str
    help: str
    description: str  # ends with an example
    launch: Callable[[argparse.Namespace, Settings, str], Launch]  # (args, settings, scope)
    arguments: Arguments = no_arguments
    check: Callable[[AsyncConnection, str], Awaitable[None]] | None = None  # before the start


@dataclass(frozen=True)
class TrackCommand:
    """`track <name> <scope> …`: register an entity to keep in sync; returns its row id."""

    name: str
    help: str
    description: str
    register: Callable[[AsyncConnection, str, argparse.Namespace], Awaitable[int]]
    label: Callable[[str, argparse.Namespace], str]  # the entity, as "tracking …" names it
    arguments: Arguments = no_arguments
    # the scope as its option (the spec's ``scope_option``), not the first argument: when it
    # is left out, the provider's ``default_scope`` finds it (e.g. the one scope tracked)
    scope_as_option: bool = False


@dataclass(frozen=True)
class AddCommand:
    """`add <name> <scope> …`: a manual add for the scope's running scheduler. ``name`` is one
    of the spec's entity kinds; ``key`` is the request's entity key."""

    name: str
    help: str
    description: str
    key: Callable[[argparse.Namespace], str]
    arguments: Arguments = no_arguments
    scope_as_option: bool = False  # as TrackCommand's


@dataclass(frozen=True)
class ResetCommand:
    """`reset <provider> <scope option> … --yes`: clear sync cursors and progress."""

    help: str
    description: str
    what: Callable[[str, argparse.Namespace], str]  # what is cleared, for the confirmation
    kept: str  # what stays stored
    reset: Callable[[AsyncConnection, str, argparse.Namespace], Awaitable[dict[str, Any]]]
    summary: Callable[[dict[str, Any]], str]
    running: Callable[[str], str] | None = None  # id of a workflow that must not run meanwhile
    arguments: Arguments = no_arguments


@dataclass(frozen=True)
class ScopeView:
    """`status <scope option> X`: one scope's latest sync, as a table (live with --watch)."""

    help: str
    fetch: Callable[[AsyncConnection, str], Awaitable[dict[str, Any]]]
    render: Callable[[dict[str, Any]], str]


@dataclass(frozen=True)
class ProviderCommands:
    scope: Scope
    sync: tuple[SyncCommand, ...] = ()
    track: tuple[TrackCommand, ...] = ()
    add: tuple[AddCommand, ...] = ()
    reset: ResetCommand | None = None
    view: ScopeView | None = None
    # the scope of a command that left its scope option out (``scope_as_option``), from the
    # database; CliError (one line, naming the option) when it cannot tell
    default_scope: Callable[[AsyncConnection], Awaitable[str]] | None = None


def commands(spec: ProviderSpec) -> ProviderCommands:
    if spec.cli is None:
        return ProviderCommands(Scope(spec.scope, f"{spec.title} {spec.scope}"))
    found = load(spec.cli)
    assert isinstance(found, ProviderCommands), f"{spec.cli} is not a ProviderCommands"
    return found


def each() -> list[tuple[ProviderSpec, ProviderCommands]]:
    """Every provider of the registry with its commands, in registry order."""
    return [(spec, commands(spec)) for spec in SPECS]


def scope_dest(spec: ProviderSpec) -> str:
    """The argparse name of the scope: ``--some-scope`` → ``some_scope``."""
    return spec.scope_option.lstrip("-").replace("-", "_")


def scope_help(spec: ProviderSpec, text: str | None = None) -> str:
    default = f"; default: {spec.default_scope}" if spec.default_scope else ""
    return f"{text or commands(spec).scope.help}{default}"


def add_scope_option(
    parser: argparse.ArgumentParser,
    spec: ProviderSpec,
    help_text: str | None = None,
    required: bool | None = None,
) -> None:
    """``spec.scope_option``; required unless the spec names a default setting."""
    scope = commands(spec).scope
    parser.add_argument(
        spec.scope_option,
        dest=scope_dest(spec),
        type=scope.type,
        choices=scope.choices,
        metavar=scope.metavar,
        required=spec.default_scope is None if required is None else required,
        help=scope_help(spec, help_text),
    )


def add_scope_argument(
    parser: argparse.ArgumentParser, spec: ProviderSpec, as_option: bool = False
) -> None:
    """The scope as the first positional argument (`track`, `add`), or ``as_option`` as its
    optional option (found by the provider's ``default_scope`` when left out)."""
    scope = commands(spec).scope
    if as_option:
        add_scope_option(
            parser, spec, f"{scope.help} (default: the one tracked, if only one is)", False
        )
        return
    parser.add_argument(
        scope_dest(spec),
        type=scope.type,
        choices=scope.choices,
        metavar=scope.metavar,
        help=scope.help,
    )


def scope_of(spec: ProviderSpec, args: argparse.Namespace, settings: Settings) -> str | None:
    """The scope given on the command line, else the spec's default setting, else None."""
    value = getattr(args, scope_dest(spec), None)
    if value is None and spec.default_scope:
        value = getattr(settings, spec.default_scope)
    return None if value is None else str(value)


async def resolve_scope(spec: ProviderSpec, args: argparse.Namespace, conn: AsyncConnection) -> str:
    """The command's scope: as given, else the provider's ``default_scope``."""
    given = getattr(args, scope_dest(spec), None)
    if given is not None:
        return str(given)
    finder = commands(spec).default_scope
    if finder is None:
        raise ValueError(f"{spec.name} needs {spec.scope_option}")
    found = await finder(conn)
    setattr(args, scope_dest(spec), commands(spec).scope.type(found))
    return found
