"""Start the Battle.net or Discord sandbox for a test and read its admin endpoints."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from sandbox.battlenet import BattleNetSandboxConfig, create_battlenet_app
from sandbox.discord import API_PREFIX, DiscordSandboxConfig, create_discord_app
from sandbox.discord_world import DiscordWorldConfig, TenantSpec
from sandbox.server import SandboxServer
from sandbox.world import BattleNetWorldConfig
from settings import Settings


@contextmanager
def battlenet_sandbox(**world: Any) -> Iterator[SandboxServer]:
    limits = {k: world.pop(k) for k in ("per_second", "per_hour") if k in world}
    config = BattleNetSandboxConfig(world=BattleNetWorldConfig(**world), **limits)
    with SandboxServer(create_battlenet_app(config)) as server:
        yield server


DISCORD_WORLD_FIELDS = ("seed", "tenants", "channels_per_tenant", "messages_per_channel", "specs")
DISCORD_HEADERS = {
    "Authorization": "Bot sandbox-bot-token",
    "User-Agent": "DiscordBot (https://github.com/ratesync, 1.0)",
}


@contextmanager
def discord_sandbox(**config: Any) -> Iterator[SandboxServer]:
    """The Discord sandbox on a free port. World fields (``seed``, ``tenants``,
    ``channels_per_tenant``, ``messages_per_channel``, ``specs``) and
    :class:`DiscordSandboxConfig` fields (``messages=(5, 5.0)``, ``global_per_second``, ...)
    may be mixed; the API base is ``server.url + API_PREFIX`` (see :func:`discord_api_base`).
    """
    world = {key: config.pop(key) for key in DISCORD_WORLD_FIELDS if key in config}
    if "specs" in world:
        world["specs"] = tuple(
            spec if isinstance(spec, TenantSpec) else TenantSpec.from_json(spec)
            for spec in world["specs"]
        )
    sandbox_config = DiscordSandboxConfig(world=DiscordWorldConfig(**world), **config)
    with SandboxServer(create_discord_app(sandbox_config)) as server:
        yield server


def discord_api_base(url: str) -> str:
    """The value for ``DISCORD_API_BASE_URL`` of a sandbox served at ``url``."""
    return url + API_PREFIX


def create_discord_tenant(url: str, **spec: Any) -> dict[str, Any]:
    """Add a guild through ``POST /_admin/tenants``; its layout (guild id, channels, counts)."""
    layout: dict[str, Any] = admin(url, "tenants", spec)
    return layout


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
