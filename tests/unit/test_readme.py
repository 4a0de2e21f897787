"""README is part of the contract: its commands are what CI runs, its table lists every setting."""

from __future__ import annotations

import re
from pathlib import Path

from cli.commands import each
from settings import Settings
from starter import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _block_after(heading: str) -> str:
    match = re.search(re.escape(heading) + r".*?```\n(.*?)\n```", README, re.S)
    assert match, f"no code block after {heading!r}"
    return match.group(1).strip()


def test_ci_runs_the_readme_test_command_verbatim():
    command = _block_after("Run the tests:")
    assert command in (ROOT / ".ci" / "run").read_text()


def test_readme_has_exactly_two_bootstrapping_set_up_commands():
    demo, tests = _block_after("Run the demo"), _block_after("Run the tests:")
    for command in (demo, tests):
        assert command.count("\n") == 0
        assert command.startswith("python3 -m venv .venv && ")
    assert demo.endswith("starter.py demo")


def test_every_setting_is_documented():
    for name in Settings.model_fields:
        assert f"`{name}`" in README, f"{name} is missing from the README configuration table"


def test_every_cli_verb_is_documented():
    parser = build_parser()
    action = parser._subparsers._group_actions[0]  # type: ignore[union-attr]
    for verb in dict(action.choices or {}):
        assert f"`{verb}" in README, f"verb {verb} is missing from the README"


def _reference_rows() -> list[list[str]]:
    """The CLI reference's commands, as words: `a\\|b` alternatives split."""
    reference = README[README.index("## CLI reference") : README.index("## Configuration")]
    commands = re.findall(r"^\| `([^`]+)` \|", reference, re.M)
    return [[alt for word in c.split() for alt in word.split("\\|")] for c in commands]


def test_every_provider_subcommand_is_in_the_cli_reference():
    rows = _reference_rows()

    def documented(*words: str) -> bool:
        return any(all(w in row for w in words) and row[0] == words[0] for row in rows)

    for spec, commands in each():
        for verb, subs in (("sync", commands.sync), ("track", commands.track),
                           ("add", commands.add)):  # fmt: skip
            for sub in subs:
                assert documented(verb, sub.name), f"`{verb} {sub.name}` is not in README"
        if commands.reset is not None:
            assert documented("reset", spec.name, spec.scope_option)
        if commands.view is not None:
            assert documented("status", spec.scope_option)
        assert documented("scheduler", "start", "status", spec.name)
