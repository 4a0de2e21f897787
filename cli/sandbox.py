"""`sandbox …`: serve a provider's sandbox API on 127.0.0.1; its options are `python -m
sandbox`'s (sandbox/__main__.py), passed through unchanged."""

from __future__ import annotations

import argparse

from cli.common import Verbs
from settings import Settings


def register(verbs: Verbs) -> None:
    parser = verbs.add_parser(
        "sandbox",
        help="serve a sandbox API on 127.0.0.1 (`sandbox --help` lists providers and options)",
        add_help=False,
        # everything after `sandbox` is the sandbox's: no option of ours (argparse's REMAINDER
        # alone would not take a leading --port, nor --help)
        prefix_chars="+",
    )
    parser.add_argument("sandbox_args", nargs=argparse.REMAINDER)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    # Lazy: the sandbox's ASGI apps and simulated worlds are a tenth of --help's start-up time,
    # and only this verb serves them.
    from sandbox.__main__ import main as sandbox_main

    return int(sandbox_main(args.sandbox_args, prog="python starter.py sandbox") or 0)
