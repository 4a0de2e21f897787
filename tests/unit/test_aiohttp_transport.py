"""The aiohttp transport behind the Discord client: same answers and errors as httpx's own."""

from __future__ import annotations

import pytest

from providers.aiohttp_transport import AiohttpTransport
from providers.discord import DiscordClient, DiscordLimiter
from providers.errors import Forbidden, RateLimited, Transient
from tests.sandbox_helpers import admin, create_discord_tenant, discord_api_base, discord_sandbox


def _client(url: str) -> DiscordClient:
    return DiscordClient(
        token="sandbox-bot-token",
        base_url=discord_api_base(url),
        limiter=DiscordLimiter(global_per_second=1000),
        transport=AiohttpTransport(timeout=5.0, max_connections=4),
    )


async def test_pages_headers_and_errors_through_aiohttp():
    with discord_sandbox(lifted=True) as sandbox:
        tenant = create_discord_tenant(sandbox.url, text_channels=[150], forbidden_channels=1)
        text = next(c for c in tenant["channels"] if c["type"] == 0 and c["access"] == "ok")
        denied = next(c for c in tenant["channels"] if c["access"] == "forbidden")
        client = _client(sandbox.url)
        try:
            first = await client.messages_page(int(text["id"]), after=0, limit=100)
            assert first.newest_id is not None
            second = await client.messages_page(int(text["id"]), after=first.newest_id, limit=100)
            assert (first.count, second.count, second.is_last) == (100, 50, True)
            truth = [int(i) for i in admin(sandbox.url, f"channels/{text['id']}/ids")["ids"]]
            assert first.newest_id == truth[99] and second.newest_id == truth[-1]
            with pytest.raises(Forbidden, match="50001"):
                await client.messages_page(int(denied["id"]), after=0)
            admin(sandbox.url, "discord/faults", {"force_bucket_429": 1, "retry_after": 0.2})
            with pytest.raises(RateLimited):
                await client.messages_page(int(text["id"]), after=0)
            admin(sandbox.url, "faults", {"reset_rate": 1.0})
            with pytest.raises(Transient, match="connection error"):
                await client.messages_page(int(text["id"]), after=0)
        finally:
            await client.aclose()
