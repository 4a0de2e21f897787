"""Issue 11 item 6: one Ctrl-C stops `python starter.py demo` while it syncs, in seconds.

Before: asyncio cancelled every task at once (the worker's running activities among them) and
the sandbox, in the same process group, died of the Ctrl-C first: a traceback per activity and
one from the sandbox, the worker's "goes on in a worker" line, and a run that could take a
second Ctrl-C and ~40 s. Now: exit 130, one line, no traceback, the demo's servers gone.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import runtime
from tests.cli_support import ROOT

pytestmark = [pytest.mark.integration]


def _children(pid: int) -> list[int]:
    """The processes `pid` started (its servers and its sandbox)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if re.search(rf"^PPid:\s+{pid}$", text, re.M):
            found.append(int(status.parent.name))
    return found


def _requests(url: str) -> int:
    try:
        return int(httpx.get(f"{url}/_admin/stats", timeout=2).json()["requests"])
    except httpx.HTTPError:
        return 0


def test_one_ctrl_c_stops_the_demo_while_it_syncs(tmp_path):
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        demo = subprocess.Popen(
            [sys.executable, "starter.py", "demo", "--guilds", "2", "--roster-max", "120"],
            cwd=ROOT, env={**os.environ, "DATA_DIR": str(tmp_path / "never-used")},
            stdout=stdout, stderr=stderr, start_new_session=True,  # a terminal's foreground job
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "syncing" not in out.read_text():
            assert demo.poll() is None and time.monotonic() < deadline, err.read_text()[-3000:]
            time.sleep(0.1)
        found = re.search(r"sandbox:\s+(\S+)", out.read_text())
        assert found, out.read_text()
        sandbox = found.group(1)
        while _requests(sandbox) < 30:  # characters are being fetched
            assert demo.poll() is None and time.monotonic() < deadline, err.read_text()[-3000:]
            time.sleep(0.1)
        children = _children(demo.pid)
        assert len(children) >= 3, children  # Postgres, Temporal, the sandbox
        before = len(err.read_text().splitlines())
        began = time.monotonic()
        os.killpg(demo.pid, signal.SIGINT)  # what one Ctrl-C does
        code = demo.wait(30)
        took = time.monotonic() - began
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    said = err.read_text().splitlines()[before:]
    assert code == 130, said
    assert "Traceback" not in out.read_text() + err.read_text(), err.read_text()[-3000:]
    assert len(said) == 1 and said[0].startswith("interrupted: the demo stopped"), said
    assert took < 10, took
    assert all(runtime._gone(pid) for pid in children), children
    assert _requests(sandbox) == 0  # the sandbox no longer answers
