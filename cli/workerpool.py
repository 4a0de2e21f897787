"""`python worker.py --processes N`: N worker processes on one machine, run as one command.

Each child is a full `python worker.py` (same settings, same environment), so Temporal spreads
the tasks across them; their API budgets are shared only with RATE_LIMIT_BACKEND=postgres (with
`local` each process paces itself: N processes send more than the limit and draw 429s, and one
line at the start says so).

- Start-up: the first child starts alone (it starts any embedded servers and migrates an
  embedded database, which N at once would race on); once it polls, the others start together.
  If the first one fails to start, the command exits with its code (1 failed start, 2 a bad
  setting) and starts no other.
- Metrics: with METRICS_PORT set, child K serves its own on METRICS_PORT + K - 1 (each is one
  scrape target); the N ports must all be valid.
- Output: every line a child writes goes to the same stream of this process, prefixed
  ``[worker K]`` (a JSON log line, LOG_FORMAT=json, gets a ``"worker": K`` field instead, so it
  stays one JSON object); one line says when all N poll.
- Stopping: the children run in their own process group (a terminal's Ctrl-C reaches this
  process only, and each child gets the signal once, from here); the first SIGINT or SIGTERM is
  forwarded to every child, each stops as `python worker.py` does (activities get 5 s), and the
  command exits as worker.py does: 130 after SIGINT, 0 after SIGTERM. A child still running
  STOP_TIMEOUT after the signal is killed. If this process dies (SIGKILL, OOM), its children
  are killed with it (SIGKILL: its end closed their output pipes, and a worker whose stdout is
  gone did not stop on SIGTERM; an orphan would go on polling with no one to stop it).
- A child that ends on its own (crashed, killed, OOM) is not restarted: one line names it and
  its exit status, and the others keep running (Temporal retries its activities on them). When
  the last one has ended, the command exits 1. Restart the command (or let the service manager
  do it) to get N again.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn

log = logging.getLogger("ratesync.workerpool")
WORKER_PY = Path(__file__).resolve().parents[1] / "worker.py"
READY_LINE = b"worker polling task queue"  # what worker.py prints once it polls


def tagged(number: int, line: str) -> str:
    """A child's output line marked with its number."""
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            return json.dumps({**record, "worker": number}, ensure_ascii=False)
    return f"[worker {number}] {line}"


STOP_TIMEOUT = 30.0  # seconds a child may take to stop after the signal before it is killed
EXIT_ON_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 0}  # worker.py's rule
FAILED = 1
USAGE = "usage: python worker.py [--processes N]"


def _child_of_pool() -> None:
    """preexec_fn: a process group of its own (a terminal's Ctrl-C reaches the pool only, which
    forwards it once) and SIGKILL when the pool dies (Linux PR_SET_PDEATHSIG; it fires when the
    pool's main thread, which starts every child, ends)."""
    os.setpgid(0, 0)
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


class UsageError(ValueError):
    """A bad command line: one line for stderr, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message if "--processes" in message else f"{message} ({USAGE})")


def _processes(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a number of processes; give a whole number of at least 1, "
            "e.g. --processes 3"
        )
    return number


def parse_args(argv: list[str]) -> argparse.Namespace:
    """worker.py's command line; UsageError (one line) on a bad one."""
    parser = _Parser(
        prog="python worker.py",
        description="Run the ratesync worker (settings from the environment and .env).",
    )
    parser.add_argument(
        "--processes",
        type=_processes,
        default=1,
        metavar="N",
        help="run N worker processes (default 1); share their API budgets with "
        "RATE_LIMIT_BACKEND=postgres",
    )
    return parser.parse_args(argv)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


@dataclass
class Child:
    number: int
    proc: subprocess.Popen[bytes]
    ready: threading.Event = field(default_factory=threading.Event)
    readers: list[threading.Thread] = field(default_factory=list)
    reported: bool = False  # its unexpected end was logged
    signalled: bool = False  # the stop signal was sent to it


class WorkerPool:
    """N `python worker.py` children (see the module docstring). ``command``: the child's argv
    (tests and benches may run another script); ``env``: its environment (default: ours);
    ``metrics_port``: METRICS_PORT, child K gets METRICS_PORT + K - 1."""

    def __init__(
        self,
        processes: int,
        task_queue: str,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
        metrics_port: int | None = None,
    ) -> None:
        self.processes = processes
        self.task_queue = task_queue
        self.command = command or [sys.executable, str(WORKER_PY)]
        self.env = env
        self.metrics_port = metrics_port
        self.children: list[Child] = []
        self.received: int | None = None
        self._write_lock = threading.Lock()

    # -- signals ---------------------------------------------------------------------------------

    def _caught(self, sig: int, _frame: Any) -> None:
        if self.received is None:  # later signals are not forwarded (as worker.py ignores them)
            self.received = sig
            self._forward(sig)

    def _forward(self, sig: int) -> None:
        for child in self._alive():
            if not child.signalled:
                child.signalled = True
                child.proc.send_signal(sig)  # Popen's own check: no error for one just ended

    def _alive(self) -> list[Child]:
        return [c for c in self.children if c.proc.poll() is None]

    # -- children --------------------------------------------------------------------------------

    def _say(self, line: str, target: IO[str] | None = None) -> None:
        with self._write_lock:
            out = target or sys.stdout
            out.write(line + "\n")
            out.flush()

    def _copy(self, child: Child, source: IO[bytes], target: IO[str]) -> None:
        for raw in source:
            if READY_LINE in raw:
                child.ready.set()
            self._say(tagged(child.number, raw.decode(errors="replace").rstrip("\n")), target)
        source.close()

    def child_env(self, number: int) -> dict[str, str] | None:
        """Child ``number``'s environment: ours, with its own METRICS_PORT."""
        if self.metrics_port is None:
            return self.env
        env = dict(os.environ if self.env is None else self.env)
        env["METRICS_PORT"] = str(self.metrics_port + number - 1)
        return env

    def _start(self, number: int) -> Child:
        proc = subprocess.Popen(
            self.command,
            cwd=WORKER_PY.parent,
            env=self.child_env(number),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_child_of_pool,
        )
        child = Child(number, proc)
        self.children.append(child)  # a signal from here on is forwarded to it too
        for source, target in ((proc.stdout, sys.stdout), (proc.stderr, sys.stderr)):
            assert source is not None
            reader = threading.Thread(target=self._copy, args=(child, source, target), daemon=True)
            reader.start()
            child.readers.append(reader)
        return child

    def _report_ended(self) -> None:
        """One line for each child that ended without being asked to."""
        if self.received is not None:
            return
        for child in self.children:
            code = child.proc.poll()
            if code is None or child.reported:
                continue
            child.reported = True
            left = len(self._alive())
            log.error(
                "worker process %d (pid %d) %s; it is not restarted: %d of %d worker "
                "processes keep running",
                child.number, child.proc.pid, describe_exit(code), left, self.processes,
            )  # fmt: skip

    # -- the command -----------------------------------------------------------------------------

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._caught) for sig in EXIT_ON_SIGNAL}
        try:
            code = self._run()
            if self.received is not None:
                name = signal.Signals(self.received).name
                self._say(f"worker processes stopping ({name}): sent it to each")
            return code
        finally:
            self._stop_all()
            for reader in (r for c in self.children for r in c.readers):
                reader.join(timeout=2)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _run(self) -> int:
        first = self._start(1)
        while not first.ready.is_set():
            if self.received is not None:  # a stop during its start (run() waits for it)
                return EXIT_ON_SIGNAL[signal.Signals(self.received)]
            code = first.proc.poll()
            if code is not None:  # a start that failed: its own code (1, or 2 a bad setting)
                return code if code > 0 else FAILED
            first.ready.wait(0.05)
        for number in range(2, self.processes + 1):
            if self.received is not None:
                break
            self._start(number)
        announced = False
        while self.received is None:
            self._report_ended()
            if not self._alive():
                log.error("every worker process has ended; stopping")
                return FAILED
            if not announced and all(c.ready.is_set() for c in self.children):
                announced = True
                self._say(
                    f"{self.processes} worker processes polling task queue {self.task_queue!r}"
                )
            time.sleep(0.05)
        return EXIT_ON_SIGNAL[signal.Signals(self.received)]

    def _stop_all(self) -> None:
        """Every child ended: the stop signal (SIGTERM when none came) to each that has not had
        it (one started while the signal came), then those past STOP_TIMEOUT are killed."""
        self._forward(self.received or signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in self.children:
            try:
                child.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error(
                    "worker process %d (pid %d) did not stop within %.0f s; killing it",
                    child.number, child.proc.pid, STOP_TIMEOUT,
                )  # fmt: skip
                child.proc.kill()
                child.proc.wait()


def run(processes: int, task_queue: str, backend: str, metrics_port: int | None = None) -> int:
    """`python worker.py --processes N` (N >= 2): its exit code. ``backend``:
    RATE_LIMIT_BACKEND (with `local` one line warns that the budgets are not shared);
    ``metrics_port``: METRICS_PORT (child K serves on METRICS_PORT + K - 1; exit 2 when the
    last would be past 65535)."""
    if metrics_port is not None and metrics_port + processes - 1 > 65535:
        print(
            f"error: METRICS_PORT {metrics_port} with --processes {processes} needs ports up "
            f"to {metrics_port + processes - 1}, past 65535; set a lower METRICS_PORT",
            file=sys.stderr,
        )
        return 2
    if backend == "local":
        log.warning(
            "RATE_LIMIT_BACKEND=local: each of the %d worker processes paces its own budget, "
            "so together they can exceed an API's limit and draw 429s; set "
            "RATE_LIMIT_BACKEND=postgres to share one budget",
            processes,
        )
    return WorkerPool(processes, task_queue, env=dict(os.environ), metrics_port=metrics_port).run()
