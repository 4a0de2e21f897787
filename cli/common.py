"""What every verb shares: exit codes, the parser, output, and the servers a verb needs."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, NoReturn, TypeAlias

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

import logformat
from runtime import connect_configured, embedded_services, port_in_use
from settings import Settings
from storage.db import create_engine
from storage.migrate import upgrade

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it
PROG = "python starter.py"

# what `add_subparsers` returns (typeshed types it; argparse keeps the class private)
Verbs: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class Parser(argparse.ArgumentParser):
    """A usage error is one line naming the fix, exit 2 (README, "CLI reference")."""

    def error(self, message: str) -> NoReturn:
        # argparse quotes what was typed ("unrecognized arguments: a\nb"): a newline, CR or
        # escape sequence in it would make the error several lines or rewrite the terminal
        line = printable(f"error: {message} (see `{self.prog} --help`)")
        self.exit(EXIT_USAGE, line + "\n")


def printable(text: str) -> str:
    """``text`` with each non-printable code point escaped as in a repr (``\\n``, ``\\x1b``)."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def cause_message(exc: BaseException) -> str:
    """The root cause of a failed run in one line: the deepest application error's message
    along the whole chain (WorkflowFailureError → ChildWorkflowError → ActivityError →
    ApplicationError), else the deepest exception's. The wrappers' own messages ("Workflow
    execution failed", "Activity task failed") say nothing the worker did not know better."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:  # a cycle cannot loop forever
        chain.append(current)
        current = current.__cause__ or getattr(current, "cause", None)
    deepest = next((e for e in reversed(chain) if isinstance(e, ApplicationError)), chain[-1])
    text = getattr(deepest, "message", None) or str(deepest) or type(deepest).__name__
    return printable(" ".join(str(text).split()))


def json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def add_verb(
    verbs: Verbs,
    name: str,
    help_text: str,
    func: Callable[..., Any] | None = None,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """A verb (or a verb's sub-command) with its help; a leaf (``func``) also gets --json."""
    parser: argparse.ArgumentParser = verbs.add_parser(
        name, help=help_text, description=description or help_text
    )
    if func is not None:
        parser.set_defaults(func=func)
        json_option(parser)
    return parser


def emit(args: argparse.Namespace, human: str, data: Any) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, default=str, ensure_ascii=False), flush=True)
    else:
        print(human, flush=True)


def key_values(data: dict[str, Any]) -> str:
    """``key: value`` lines (nested values as JSON)."""
    return "\n".join(
        f"{key}: {json.dumps(value, default=str) if isinstance(value, dict | list) else value}"
        for key, value in data.items()
    )


@dataclass
class Services:
    settings: Settings
    database_url: str
    temporal_address: str
    temporal_ui: str | None


def json_logs(settings: Settings) -> None:
    """LOG_FORMAT=json: the command's log lines (its in-process worker's among them) are JSON
    objects on stderr at LOG_LEVEL, as the worker's are. With ``text`` a command keeps Python's
    default: warnings and errors only, as plain lines."""
    if settings.LOG_FORMAT == "json":
        from observability.exporter import install_runtime

        logformat.install(settings.LOG_LEVEL, "json")
        install_runtime(metrics=False, log_format="json")  # the Temporal core's lines too


@asynccontextmanager
async def services(settings: Settings, temporal: bool) -> AsyncIterator[Services]:
    """Resolve Postgres and Temporal (an unset setting: the shared embedded server, started on
    first use and left running for the other commands); migrate an embedded database."""
    json_logs(settings)
    with embedded_services(need_temporal=temporal) as ep:
        if ep.embedded_database:
            await asyncio.to_thread(upgrade, ep.database_url)
        yield Services(settings, ep.database_url, ep.temporal_address, ep.temporal_ui)


@asynccontextmanager
async def database(svc: Services) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(svc.database_url, pool_size=1)
    try:
        yield engine
    finally:
        await engine.dispose()


@asynccontextmanager
async def temporal(settings: Settings) -> AsyncIterator[tuple[Services, Client]]:
    """The servers (the shared embedded ones where a setting is unset) and a Temporal client
    (TEMPORAL_ADDRESS's through Temporal's environment configuration: API key, TLS, profile)."""
    async with services(settings, temporal=True) as svc:
        yield svc, await connect_configured(settings, svc.temporal_address)


def running_temporal(settings: Settings) -> str | None:
    """The address of a Temporal server that is already up: TEMPORAL_ADDRESS, or the embedded
    one while it runs (`status` and `reset` never start one; without it nothing is running)."""
    if settings.TEMPORAL_ADDRESS:
        return settings.TEMPORAL_ADDRESS
    if port_in_use(settings.EMBEDDED_TEMPORAL_PORT):
        return f"127.0.0.1:{settings.EMBEDDED_TEMPORAL_PORT}"
    return None


async def connect_quickly(address: str, settings: Settings) -> Client:
    return await asyncio.wait_for(connect_configured(settings, address), 5)
