"""ratesync command line: `python starter.py <verb> …` (every verb has --help).

A thin entry point: each verb lives in its module under cli/ (`cli/sync.py`, `cli/track.py`…,
see cli/__init__.py), provider-specific sub-commands in `cli/<provider>.py`.

Exit codes: 0 done; 1 the operation failed (server unreachable, sync failed, timeout);
2 bad usage or a bad setting (the message names the fix).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from cli import (
    CliError,
    add,
    api,
    db,
    demo,
    reset,
    sandbox,
    scheduler,
    services,
    status,
    sync,
    temporal,
    track,
)
from cli.common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, PROG, Parser
from cli.unreachable import unreachable
from runtime import RuntimeStartError
from settings import SettingsError, load_settings

VERBS = (db, track, sync, status, reset, scheduler, add, temporal, services, sandbox, demo, api)


def build_parser() -> Parser:
    parser = Parser(
        prog=PROG,
        description="ratesync: mirror rate-limited APIs into PostgreSQL with Temporal.",
        epilog="Example: python starter.py track guild eu stormrage avalerion && "
        "python starter.py sync battlenet --region eu --wait",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        verb.register(verbs)
    return parser


async def _interruptible(command: Coroutine[Any, Any, Any]) -> Any:
    """Await ``command``; once a Ctrl-C has cancelled it (asyncio cancels the main task on
    SIGINT), whatever it raises instead of the cancellation — SQLAlchemy, closing a connection
    whose query was cut, raises PendingRollbackError — is the interruption, so the command ends
    as interrupted (130), not as failed."""
    try:
        return await command
    except Exception as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError() from exc
        raise


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    func: Callable[..., Any] = args.func
    try:
        result = func(args, settings)
        if isinstance(result, Coroutine):
            return int(asyncio.run(_interruptible(result)))
        return int(result)
    except (CliError, RuntimeStartError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", EXIT_FAILED))  # a taken port setting is 2
    except KeyboardInterrupt:
        print(
            "interrupted: a run already started goes on in a worker (`python worker.py`); "
            "follow it with `python starter.py status`",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except Exception as exc:  # a clear line instead of a traceback; details with LOG_LEVEL=DEBUG
        line = unreachable(exc, settings) or f"{type(exc).__name__}: {exc}"
        print(f"error: {line}", file=sys.stderr)
        if settings.LOG_LEVEL == "DEBUG":
            raise
        return EXIT_FAILED


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip interpreter teardown: temporalio can abort there (sdk-python#300)
