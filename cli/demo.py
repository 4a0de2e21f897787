"""`demo`: the whole stack on one machine against the Battle.net sandbox (demo.py)."""

from __future__ import annotations

import argparse

from cli import CliError
from cli.common import Verbs, add_verb
from settings import Settings


def register(verbs: Verbs) -> None:
    parser = add_verb(
        verbs,
        "demo",
        "embedded Temporal + Postgres + sandbox + worker: track guilds, sync, print a summary",
        run,
    )
    parser.add_argument("--guilds", type=int, default=4, help="sandbox guilds to track")
    parser.add_argument("--roster-max", type=int, default=120, help="largest roster")
    parser.add_argument(
        "--zwift-seconds", type=float, default=30.0, metavar="SECONDS",
        help="then ZwiftRacing club schedulers at time scale 360 for this long (0: skip; "
        "default 30: three simulated hours, three listings of the 1-per-hour club endpoint)",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep running for the Web UI")


async def run(args: argparse.Namespace, settings: Settings) -> int:
    # Lazy: demo.py imports the worker (every provider's activities) and the sandbox servers,
    # about a second that --help and the other verbs should not pay.
    try:
        from demo import run_demo
    except ModuleNotFoundError as exc:  # a runtime-only install (requirements/runtime.txt)
        raise CliError(
            f"demo needs the sandbox extra ({exc.name} is not installed): "
            "pip install -r requirements/dev.txt, or pip install 'ratesync[sandbox]'"
        ) from None

    return await run_demo(args, settings)
