"""README's "Try it against the sandbox", run as written, command by command (issue 11 item 3).

Each line of its code block is run in the repository with the environment the block's `export`
lines build: a command checks its exit code (0) and the text after its `# →`; a command ending
in `&` keeps running in the background (its `# →` text is awaited before the next command,
as a reader would wait for it) and is stopped at the end with Ctrl-C (SIGINT), last started
first, each expected to exit 130 without a traceback; then `services stop` ends the embedded
servers the first command started, as the text under the block says.

Only what the block leaves to the defaults is set here, so that this run keeps to itself: the
embedded servers' DATA_DIR and ports (a temporary directory, free ports); DATABASE_URL,
TEMPORAL_ADDRESS and any Battle.net or Discord setting of the caller's are dropped, as on a
fresh machine. The sandbox's port 8787 is the block's own, as written.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import runtime

pytestmark = [pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]
HEADING = "### Try it against the sandbox"
DROPPED = ("DATABASE_URL", "TEMPORAL_", "BNET_", "DISCORD_", "PVP_", "EMBEDDED_", "DATA_DIR")


@dataclass
class Step:
    command: str
    expect: str  # the text after "# →" ("" when none)
    background: bool


def walkthrough(readme: str) -> list[Step]:
    """The steps of the section's first code block."""
    section = readme.partition(HEADING)[2]
    assert section, f"README has no {HEADING!r}"
    block = re.search(r"```\n(.*?)\n```", section, re.S)
    assert block, f"no code block under {HEADING!r}"
    steps = []
    for line in block.group(1).splitlines():
        command, _, expect = line.partition("# →")
        command = command.strip()
        if not command or command.startswith("#"):
            continue
        background = command.endswith("&")
        steps.append(Step(command.removesuffix("&").strip(), expect.strip(), background))
    return steps


def test_the_walkthrough_is_what_this_test_runs():
    steps = walkthrough((ROOT / "README.md").read_text())
    assert sum(s.background for s in steps) == 2  # the sandbox and the worker
    assert all(s.expect for s in steps if not s.command.startswith("export ")), steps
    commands = " ".join(s.command for s in steps)
    for verb in ("sandbox", "worker.py", "track guild", "sync battlenet", "add character",
                 "sync pvp", "status"):  # fmt: skip
        assert verb in commands, verb


def _argv(command: str) -> list[str]:
    argv = shlex.split(command)
    if argv[0] == ".venv/bin/python" and not (ROOT / ".venv/bin/python").exists():
        argv[0] = sys.executable  # a worktree without its own venv: this interpreter
    return argv


def _wait_for(text: str, log: Path, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        assert proc.poll() is None, f"exited {proc.returncode} before {text!r}: {log.read_text()}"
        assert time.monotonic() < deadline, f"no {text!r} in {timeout:g}s: {log.read_text()}"
        time.sleep(0.1)


def test_the_readme_walkthrough_runs_as_written(tmp_path: Path):
    assert not runtime.port_in_use(8787), "the walkthrough's sandbox port 8787 is taken"
    env = {k: v for k, v in os.environ.items() if not k.startswith(DROPPED)}
    env |= {
        "DATA_DIR": str(tmp_path / "data"),
        "EMBEDDED_POSTGRES_PORT": str(runtime.free_port()),
        "EMBEDDED_TEMPORAL_PORT": str(runtime.free_port()),
        "EMBEDDED_TEMPORAL_UI_PORT": str(runtime.free_port()),
    }
    jobs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    try:
        for n, step in enumerate(walkthrough((ROOT / "README.md").read_text())):
            if step.command.startswith("export "):
                key, _, value = step.command.removeprefix("export ").partition("=")
                env[key] = value
                continue
            if step.background:
                log = tmp_path / f"job-{n}.log"
                with open(log, "wb") as out:
                    proc = subprocess.Popen(
                        _argv(step.command), cwd=ROOT, env=env, stdout=out,
                        stderr=subprocess.STDOUT,
                    )  # fmt: skip
                jobs.append((step.command, proc, log))
                _wait_for(step.expect, log, proc)
                continue
            done = subprocess.run(
                _argv(step.command), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
            )
            output = done.stdout + done.stderr
            assert done.returncode == 0, f"{step.command}: exit {done.returncode}\n{output}"
            assert step.expect in output, f"{step.command}: no {step.expect!r} in\n{output}"
            assert "Traceback" not in output, f"{step.command}:\n{output}"
    finally:
        stopped = []
        for command, proc, log in reversed(jobs):  # Ctrl-C: the worker, then the sandbox
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            stopped.append((command, proc.returncode, log.read_text(errors="replace")))
        services = subprocess.run(
            _argv(".venv/bin/python starter.py services stop"), cwd=ROOT, env=env,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    for command, code, output in stopped:
        assert code == 130, f"{command}: Ctrl-C gave exit {code}\n{output[-2000:]}"
        assert "Traceback" not in output, f"{command}:\n{output[-3000:]}"
    assert services.returncode == 0 and "stopped" in services.stdout, services
    assert not runtime.port_in_use(int(env["EMBEDDED_TEMPORAL_PORT"])), "Temporal left running"
    assert not runtime.port_in_use(int(env["EMBEDDED_POSTGRES_PORT"])), "Postgres left running"
