"""Each generic verb as a user types it: `--help` works, and a typo'd provider (or entity) is
exit 2 with one line that names the valid choices (taken from the registry)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.commands import each
from providers.registry import names
from starter import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": "127.0.0.1:1",
        "DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
    }
    return subprocess.run(
        [sys.executable, "starter.py", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _choices(verb: str) -> list[str]:
    found: dict[str, list[str]] = {
        "sync": [c.name for _, cmds in each() for c in cmds.sync],
        "track": [c.name for _, cmds in each() for c in cmds.track],
        "add": [c.name for _, cmds in each() for c in cmds.add],
        "reset": [spec.name for spec, cmds in each() if cmds.reset is not None],
        "scheduler": names(),
    }
    return found[verb]


TYPOS = {
    "sync": ["sync", "nosuchprovider"],
    "track": ["track", "nosuchentity", "x", "y"],
    "add": ["add", "nosuchentity", "x", "y"],
    "reset": ["reset", "nosuchprovider", "--yes"],
    "scheduler": ["scheduler", "start", "nosuchprovider"],
}


@pytest.mark.parametrize("verb", sorted(TYPOS))
def test_typod_provider_is_exit_2_with_one_line_naming_the_choices(verb):
    done = _cli(*TYPOS[verb])
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "invalid choice" in lines[0]
    for choice in _choices(verb):
        assert f"'{choice}'" in lines[0]
    assert f"`python starter.py {verb} --help`" in lines[0]


@pytest.mark.parametrize("verb", [*sorted(TYPOS), "status"])
def test_help_exits_0_and_lists_the_providers_parts(verb):
    done = _cli(verb, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python starter.py {verb}")
    for choice in _choices(verb) if verb != "status" else []:
        assert choice in done.stdout


def test_status_typo_is_exit_2_with_one_line():
    done = _cli("status", "--wacth")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == ["error: unrecognized arguments: --wacth (see `python starter.py --help`)"]


def test_every_provider_subcommand_has_help_with_an_example():
    verbs = _subcommands(build_parser())
    for verb in ("sync", "track", "add", "reset"):
        subs = _subcommands(verbs[verb])
        assert sorted(subs) == sorted(_choices(verb))
        for name, parser in subs.items():
            text = " ".join(parser.format_help().split())
            assert "Example: python starter.py" in text, (verb, name)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = parser._subparsers._group_actions[0]  # type: ignore[union-attr]
    return dict(action.choices or {})
