"""Battle.net API client: OAuth client-credentials token, namespaces, conditional requests.

The token is fetched once, cached, refreshed shortly before it expires and once more on a 401.
It is sent only as an ``Authorization`` header and never appears in a message or a log line.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

import httpx

from providers.errors import AuthFailed, BadPayload, Transient
from providers.http import Fetched, ProviderHTTP
from providers.ratelimit import Limiter, Priority

# Character endpoints we mirror: name → path suffix under /profile/wow/character/{realm}/{name}
CHARACTER_ENDPOINTS: dict[str, str] = {
    "profile": "",
    "equipment": "/equipment",
    "mythic": "/mythic-keystone-profile",
    "professions": "/professions",
}


class BattleNetClient(ProviderHTTP):
    provider = "battlenet"

    def __init__(
        self,
        *,
        client_id: str | None,
        client_secret: str | None,
        api_base: str,
        oauth_url: str,
        limiter: Limiter,
        locale: str = "en_GB",
        timeout: float = 15.0,
        max_connections: int = 50,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            limiter, timeout=timeout, max_connections=max_connections, transport=transport,
            headers={"Accept": "application/json", "User-Agent": "ratesync/0.1"},
        )  # fmt: skip
        self._client_id = client_id
        self._client_secret = client_secret
        self._api_base = api_base
        self._oauth_url = oauth_url
        self._locale = locale
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()
        self.token_fetches = 0

    def base_url(self, region: str) -> str:
        return self._api_base.replace("{region}", region).rstrip("/")

    # -- token ----------------------------------------------------------------------------

    async def _bearer(self, stale: str | None = None) -> str:
        async with self._token_lock:
            fresh = self._token is not None and self._token != stale
            if fresh and time.monotonic() < self._token_expires:
                assert self._token is not None
                return self._token
            self._token = await self._fetch_token()
            return self._token

    async def _fetch_token(self) -> str:
        if not self._client_id or not self._client_secret:
            raise AuthFailed("battlenet: BNET_CLIENT_ID and BNET_CLIENT_SECRET are not set")
        response = await self.send(
            "POST", self._oauth_url, entity="oauth token", limited=False,
            data={"grant_type": "client_credentials"},
            auth=httpx.BasicAuth(self._client_id, self._client_secret),
        )  # fmt: skip
        self.token_fetches += 1
        if response.status_code in (400, 401, 403):
            raise AuthFailed(
                f"battlenet: the token endpoint refused the credentials ({response.status_code}); "
                "check BNET_CLIENT_ID and BNET_CLIENT_SECRET"
            )
        if response.status_code >= 300:
            raise Transient(f"battlenet: token endpoint answered {response.status_code}")
        body = self.json_of(response, "oauth token")
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise Transient("battlenet: token endpoint answered without an access_token")
        expires_in = body.get("expires_in", 3600)
        if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
            raise BadPayload("battlenet: token endpoint answered a non-numeric expires_in")
        ttl = float(expires_in)
        # Refresh early: 10% of the lifetime, at least a minute, never a negative lifetime.
        self._token_expires = time.monotonic() + max(1.0, ttl - max(60.0, ttl * 0.1))
        return token

    # -- API ------------------------------------------------------------------------------

    async def get(
        self,
        region: str,
        path: str,
        *,
        entity: str,
        namespace: str = "profile",
        if_modified_since: str | None = None,
        priority: int = Priority.BULK,
        max_wait: float | None = None,
    ) -> Fetched:
        """GET a namespaced resource; 200 → data, 304 → not modified, else a typed error.

        Transient failures (5xx, resets, timeouts, cut bodies) are asked again a few times,
        each through the limiter; a 429 is raised at once (the bucket is paused)."""
        url = self.base_url(region) + path
        params = {"namespace": f"{namespace}-{region}", "locale": self._locale}

        async def once() -> Fetched:
            token = await self._bearer()
            for attempt in (1, 2):
                headers = {"Authorization": f"Bearer {token}"}
                if if_modified_since:
                    headers["If-Modified-Since"] = if_modified_since
                response = await self.send(
                    "GET", url, entity=entity, priority=priority, params=params,
                    headers=headers, max_wait=max_wait,
                )  # fmt: skip
                if response.status_code == 401 and attempt == 1:
                    token = await self._bearer(stale=token)
                    continue
                if response.status_code == 401:
                    raise AuthFailed(
                        f"battlenet: 401 on {entity} after a fresh token", entity=entity
                    )
                break
            self.classify(response, entity)
            last_modified = response.headers.get("last-modified")
            if response.status_code == 304:
                return Fetched(304, None, last_modified or if_modified_since)
            data = self.json_of(response, entity)
            return Fetched(response.status_code, data, last_modified, response.content)

        return await self.retrying(once)

    async def guild(self, region: str, realm: str, name_slug: str, **kw: Any) -> Fetched:
        path = f"/data/wow/guild/{quote(realm)}/{quote(name_slug)}"
        return await self.get(region, path, entity=f"guild {region}/{realm}/{name_slug}", **kw)

    async def roster(self, region: str, realm: str, name_slug: str, **kw: Any) -> Fetched:
        path = f"/data/wow/guild/{quote(realm)}/{quote(name_slug)}/roster"
        return await self.get(region, path, entity=f"roster {region}/{realm}/{name_slug}", **kw)

    async def character(
        self, region: str, realm: str, name: str, endpoint: str = "profile", **kw: Any
    ) -> Fetched:
        suffix = CHARACTER_ENDPOINTS[endpoint]
        path = f"/profile/wow/character/{quote(realm)}/{quote(name.lower(), safe='')}{suffix}"
        entity = f"character {region}/{realm}/{name.lower()} {endpoint}"
        return await self.get(region, path, entity=entity, **kw)
