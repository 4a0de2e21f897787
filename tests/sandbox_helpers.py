"""Start the Battle.net sandbox for a test and read its admin endpoints."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from sandbox.battlenet import BattleNetSandboxConfig, create_battlenet_app
from sandbox.server import SandboxServer
from sandbox.world import BattleNetWorldConfig
from settings import Settings


@contextmanager
def battlenet_sandbox(**world: Any) -> Iterator[SandboxServer]:
    limits = {k: world.pop(k) for k in ("per_second", "per_hour") if k in world}
    config = BattleNetSandboxConfig(world=BattleNetWorldConfig(**world), **limits)
    with SandboxServer(create_battlenet_app(config)) as server:
        yield server


def sandbox_settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "BNET_CLIENT_ID": "sandbox-client",
        "BNET_CLIENT_SECRET": "sandbox-secret",
        "BNET_API_BASE_URL": url,
        "BNET_OAUTH_URL": f"{url}/token",
        "RATE_LIMIT_MAX_WAIT_SECONDS": 30.0,
    }
    values.update(overrides)
    return Settings(**values)


def admin(url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    if body is None:
        response = httpx.get(f"{url}/_admin/{path}", timeout=30)
    else:
        response = httpx.post(f"{url}/_admin/{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()
