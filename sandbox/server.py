"""Run a sandbox app for real, on 127.0.0.1: in a thread, in the foreground, or as a process.

- :class:`SandboxServer`: uvicorn in a background thread with its own event loop (tests).
- :func:`serve_forever`: uvicorn in the foreground (the ``python -m sandbox`` CLI).
- :class:`SandboxProcess`: ``python -m sandbox`` as a child process (benchmarks, so the
  sandbox does not share the GIL with the code under test).
"""

from __future__ import annotations

import ctypes
import errno
import importlib.util
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import uvicorn

from sandbox.battlenet import BattleNetSandboxConfig, create_battlenet_app
from sandbox.discord import DiscordSandboxConfig, create_discord_app
from sandbox.discord_limits import ROUTES as DISCORD_ROUTES
from sandbox.zwift import ZwiftSandboxConfig, create_zwift_app
from sandbox.zwift_limits import FAMILIES as ZWIFT_FAMILIES

__all__ = [
    "PortInUseError",
    "SandboxConfig",
    "SandboxProcess",
    "SandboxServer",
    "create_app",
    "serve_forever",
]

SandboxConfig = BattleNetSandboxConfig | DiscordSandboxConfig | ZwiftSandboxConfig

_PROJECT_ROOT = Path(__file__).resolve().parent.parent
_PR_SET_PDEATHSIG = 1


class PortInUseError(OSError):
    """The requested port is taken by another process."""


def _http_implementation() -> str:
    """httptools when it is installed (faster), else h11."""
    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"


def _uvicorn_config(app: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        http=_http_implementation(),
        limit_concurrency=None,
        date_header=False,  # the apps send their own Date header
        server_header=False,
        backlog=4096,
        timeout_graceful_shutdown=2,
    )


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket; :class:`PortInUseError` when the port is taken."""
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto
    # says TCP, and without it Nagle + delayed ACK add ~40 ms to every response.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            error = PortInUseError(f"port {port} is already in use; pass --port")
            error.errno = errno.EADDRINUSE
            raise error from exc
        raise
    sock.listen(4096)
    return sock


class _StartStop:
    """`with server:` starts it and stops it, whatever happens inside."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class SandboxServer(_StartStop):
    """An ASGI app served by uvicorn in a background thread (own event loop) on ``host``.

    ``port=0`` picks a free port; read it back from :attr:`url` after :meth:`start`.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; returns once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        sock = bind_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(_uvicorn_config(self.app))
        self._thread = threading.Thread(
            target=self._run, args=(sock,), name=f"sandbox-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sandbox server did not start: {self._error!r}")
            time.sleep(0.005)

    def _run(self, sock: socket.socket) -> None:
        assert self._server is not None
        try:
            self._server.run(sockets=[sock])
        except BaseException as exc:  # reported by start()
            self._error = exc
        finally:
            sock.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and join the thread (idempotent)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout)
        self._thread = None
        self._server = None


def create_app(config: SandboxConfig) -> Any:
    """The sandbox app for a Battle.net, a Discord or a ZwiftRacing config."""
    if isinstance(config, DiscordSandboxConfig):
        return create_discord_app(config)
    if isinstance(config, ZwiftSandboxConfig):
        return create_zwift_app(config)
    return create_battlenet_app(config)


def serve_forever(
    config: SandboxConfig,
    host: str = "127.0.0.1",
    port: int = 8787,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Serve the Battle.net (or Discord, or ZwiftRacing) sandbox in the foreground until
    SIGINT/SIGTERM.

    Raises :class:`PortInUseError` ("port 8787 is already in use; pass --port") when taken.
    ``on_listening`` gets the URL once the socket accepts connections.
    """
    sock = bind_socket(host, port)
    url = f"http://{host}:{sock.getsockname()[1]}"
    announce = (lambda: on_listening(url)) if on_listening is not None else (lambda: None)
    server = _Announcing(_uvicorn_config(create_app(config)), announce)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


class _Announcing(uvicorn.Server):
    """Says it listens once it has started, by when uvicorn handles SIGINT and SIGTERM itself
    (a clean shutdown): said before, a Ctrl-C at once hit the interpreter mid-start-up."""

    def __init__(self, config: uvicorn.Config, announce: Callable[[], None]) -> None:
        super().__init__(config)
        self.announce = announce

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            self.announce()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to send SIGTERM to this child when the parent (thread) dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def cli_args(config: SandboxConfig) -> list[str]:
    """The ``python -m sandbox`` options that reproduce ``config``."""
    if isinstance(config, DiscordSandboxConfig):
        return discord_cli_args(config)
    if isinstance(config, ZwiftSandboxConfig):
        return zwift_cli_args(config)
    world = config.world
    args = [
        f"--seed={world.seed}",
        f"--regions={','.join(world.regions)}",
        f"--guilds-per-region={world.guilds_per_region}",
        f"--roster-min={world.roster_min}",
        f"--roster-max={world.roster_max}",
        f"--guildless={world.guildless_characters}",
        f"--hidden-ratio={world.hidden_ratio}",
        f"--pvp-entries={world.pvp_entries}",
        "--pvp-seasons={}-{}".format(*world.pvp_seasons),
        f"--per-second={config.per_second}",
        f"--per-hour={config.per_hour}",
        f"--client-id={config.client_id}",
        f"--client-secret={config.client_secret}",
        f"--token-ttl={config.token_ttl}",
    ]
    if config.retry_after_header:
        args.append("--retry-after-header")
    return args


def discord_cli_args(config: DiscordSandboxConfig) -> list[str]:
    """The ``python -m sandbox --provider=discord`` options that reproduce ``config``."""
    world = config.world
    args = [
        "--provider=discord",
        f"--seed={world.seed}",
        f"--tenants={world.tenants}",
        f"--channels-per-tenant={world.channels_per_tenant}",
        f"--messages-per-channel={world.messages_per_channel}",
        *(f"--tenant-spec={json.dumps(spec.to_json())}" for spec in world.specs),
        f"--bot-token={config.bot_token}",
        f"--global-per-second={config.global_per_second}",
        *(
            "--{}-limit={}/{}".format(route.replace("_", "-"), *getattr(config, route))
            for route in DISCORD_ROUTES
        ),
        f"--invalid-limit={config.invalid_limit}",
        f"--invalid-period={config.invalid_period}",
    ]
    if config.lifted:
        args.append("--lifted")
    return args


def zwift_cli_args(config: ZwiftSandboxConfig) -> list[str]:
    """The ``python -m sandbox --provider=zwift`` options that reproduce ``config``."""
    world = config.world
    args = [
        "--provider=zwift",
        f"--seed={world.seed}",
        f"--club-sizes={','.join(str(n) for n in world.club_sizes)}",
        f"--clubless={world.clubless}",
        "--events={},{},{},{}".format(*world.event_counts().values()),
        f"--signups={world.signups_min}-{world.signups_max}",
        f"--api-key={config.api_key}",
        f"--time-scale={config.time_scale!r}",
        *(
            "--{}-limit={}/{!r}".format(family.replace("_", "-"), *getattr(config, family))
            for family in ZWIFT_FAMILIES
        ),
    ]
    if config.start is not None:
        args.append(f"--start={config.start!r}")
    if not config.retry_after_header:
        args.append("--no-retry-after-header")
    if config.lifted:
        args.append("--lifted")
    return args


class SandboxProcess(_StartStop):
    """A sandbox (Battle.net, or Discord / ZwiftRacing for their configs) in a separate
    ``python -m sandbox`` process.

    The child gets SIGTERM if the parent dies (Linux ``PR_SET_PDEATHSIG``; note it fires when
    the *thread* that started the child exits, so start it from a long-lived thread).
    """

    def __init__(
        self,
        config: SandboxConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.config: SandboxConfig = config or BattleNetSandboxConfig()
        self.host = host
        self.port = port
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 20.0) -> None:
        """Spawn the child and wait until ``/_admin/stats`` answers."""
        if self._proc is not None:
            raise RuntimeError("process already started")
        if self.port == 0:
            self.port = _free_port(self.host)
        command = [sys.executable, "-m", "sandbox", f"--host={self.host}", f"--port={self.port}"]
        preexec = _die_with_parent if sys.platform.startswith("linux") else None
        self._proc = subprocess.Popen(
            [*command, *cli_args(self.config)],
            cwd=_PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            preexec_fn=preexec,
        )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise RuntimeError(f"sandbox process exited with code {code} during start")
            try:
                if httpx.get(self.url + "/_admin/stats", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"sandbox process did not answer on {self.url} within {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait; SIGKILL if it does not exit in time (idempotent)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
