"""Chaos: the embedded Postgres's disk fills up mid-sync, then space comes back.

The data directory lives on a size-limited tmpfs (needs root: `mount -t tmpfs -o size=...`);
once a Battle.net sync is a third done, a file takes every free byte for a few seconds. While
the disk is full the database refuses writes; each activity fails with one line naming the fix
and is retried; nothing half-written is kept. When the file is deleted the sync finishes on
its own and every stored row equals the sandbox's truth.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.chaos.harness import Run, Stack, run_job

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

DISK_MB = 160  # the data directory after initdb and migrations is ~60 MB
HOLD_SECONDS = 6.0


@contextmanager
def small_disk(megabytes: int) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ratesync-disk-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        raise RuntimeError(
            f"cannot mount a {megabytes} MB tmpfs at {path} for the disk-full scenario (it needs"
            f" root with CAP_SYS_ADMIN): {mounted.stderr.strip()}"
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
        shutil.rmtree(path, ignore_errors=True)


def fill(path: Path) -> int:
    """Take every free byte of ``path``'s file system with one file; the bytes taken."""
    filler = path / "filler"
    taken = 0
    with open(filler, "wb") as out:
        chunk = b"\0" * (1 << 20)
        while True:
            try:
                out.write(chunk)
                out.flush()
                taken += len(chunk)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
                break
        small = b"\0" * 4096
        while True:  # the last pages
            try:
                os.write(out.fileno(), small)
                taken += len(small)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
                break
    return taken


@pytest.fixture(scope="module")
def disk_stack() -> Iterator[tuple[Stack, Path]]:
    with small_disk(DISK_MB) as disk:
        root = Path(tempfile.mkdtemp(prefix="ratesync-chaos-disk-"))
        stack = Stack(root)
        stack.pg_dir = disk / "pg"
        try:
            stack.start()
            yield stack, disk
        finally:
            stack.close()
            shutil.rmtree(root, ignore_errors=True)


async def test_a_full_disk_stalls_the_sync_and_space_coming_back_finishes_it(disk_stack):
    stack, disk = disk_stack
    full_for: list[int] = []

    async def disk_full(run: Run) -> None:
        if not await run.wait_requests(160):
            return
        full_for.append(await asyncio.to_thread(fill, disk))
        run.events.append("full")
        await asyncio.sleep(HOLD_SECONDS)
        (disk / "filler").unlink()
        run.events.append("space back")

    report = await run_job(stack, "battlenet", disk_full, timeout=180)
    assert report.events == ["full", "space back"], "the disk never filled before the sync ended"
    assert full_for and full_for[0] > 0
    assert report.failure is None, report.failure
    assert report.verdict.exact and report.verdict.rows > 0, report.verdict.problems
    logs = "".join(p.read_text(errors="replace") for p in stack.root.glob("worker-*.log"))
    told = [line for line in logs.splitlines() if "out of resources" in line]
    assert told, "no activity said the database was out of space"
    assert all("free disk space" in line for line in told)
