"""One Ctrl-C ends any command with exit 130 and the "interrupted" line, whatever the command
was awaiting when the signal came.

Before: CI saw `status --watch` exit 1 with "error: PendingRollbackError: Can't reconnect until
invalid transaction is rolled back" — the Ctrl-C had cancelled a database query, and SQLAlchemy,
closing the cut connection, raised that error in place of the cancellation, so the command
reported a failure instead of an interruption.

Each case runs `starter.main` in a process of its own (the signal is real: asyncio installs its
SIGINT handler only in a main thread) with a stand-in command.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.cli_support import ROOT

SCRIPT = textwrap.dedent(
    """
    import argparse, asyncio, os, signal, sys
    import starter

    async def command(args, settings):
        if {interrupt}:
            asyncio.get_running_loop().call_later(0.1, os.kill, os.getpid(), signal.SIGINT)
        try:
            await asyncio.sleep({sleep})
        except asyncio.CancelledError:
            {on_cancel}
        raise RuntimeError("the command's own failure")

    class Parser:
        def parse_args(self, argv):
            return argparse.Namespace(func=command)

    starter.build_parser = Parser
    code = starter.main([])
    sys.stdout.flush(); sys.stderr.flush()
    os._exit(code)
    """
)

# what SQLAlchemy does when the cancelled query's connection cannot be rolled back
REPLACED = 'raise RuntimeError("cannot reconnect until invalid transaction is rolled back")'


def _run(interrupt: bool, on_cancel: str, sleep: float = 30.0) -> subprocess.CompletedProcess[str]:
    script = SCRIPT.format(interrupt=interrupt, on_cancel=on_cancel, sleep=sleep)
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=dict(os.environ),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    "on_cancel", [REPLACED, "raise", "return 0"], ids=["error-in-place", "cancelled", "swallowed"]
)
def test_a_ctrl_c_is_an_interruption_whatever_the_command_raises(on_cancel: str) -> None:
    done = _run(interrupt=True, on_cancel=on_cancel)
    lines = done.stderr.strip().splitlines()
    if on_cancel == "return 0":  # the command chose to finish: its own exit code
        assert done.returncode == 0, done.stderr
        return
    assert done.returncode == 130, done.stderr
    assert len(lines) == 1 and lines[0].startswith("interrupted:"), done.stderr


def test_a_failure_without_a_ctrl_c_is_still_a_failure() -> None:
    done = _run(interrupt=False, on_cancel="raise", sleep=0.0)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == "error: RuntimeError: the command's own failure", done.stderr
