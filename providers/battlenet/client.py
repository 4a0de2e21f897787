"""Battle.net API client: OAuth client-credentials token, namespaces, conditional requests.

The token is fetched once, cached, refreshed shortly before it expires and once more on a 401.
It is sent only as an ``Authorization`` header and never appears in a message or a log line.

Before a token is attached, the request is checked: the region is one of us/eu/kr/tw/cn (it
is substituted into the API *host*), every path segment is a valid slug quoted whole
(``safe=''``), and the final URL's scheme, host and port are those BNET_API_BASE_URL names
for that region. Anything else is :class:`BadInput` and nothing is sent, not even to the
token endpoint.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any
from urllib.parse import quote, unquote

import httpx

from providers.battlenet.names import REGIONS, character_slug, check_region, check_slug
from providers.errors import AuthFailed, BadInput, BadPayload, Transient
from providers.http import DEFAULT_MAX_RESPONSE_BYTES, Fetched, ProviderHTTP, origin_of
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
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        super().__init__(
            limiter, timeout=timeout, max_connections=max_connections, transport=transport,
            headers={"Accept": "application/json", "User-Agent": "ratesync/0.1"},
            max_response_bytes=max_response_bytes,
            origins=[oauth_url, *(_base(api_base, r) for r in REGIONS)],
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

    origin_setting = "BNET_API_BASE_URL or BNET_OAUTH_URL"

    def base_url(self, region: str) -> str:
        return _base(self._api_base, check_region(region))

    def api_url(self, region: str, path: str, entity: str) -> str:
        """``path`` under the region's base URL, refused (BadInput) unless it stays there: a
        path of its own segments only (no ``..``, ``?``, ``#``, ``\\``), on the same scheme,
        host and port."""
        base = self.base_url(region)
        segments = path.split("/")
        if (
            segments[0] != ""
            or any(c in path for c in "?#\\")
            or any(unquote(seg) in (".", "..") or "/" in unquote(seg) for seg in segments[1:])
        ):
            raise BadInput(f"battlenet: refused the path of {entity}: it leaves its endpoint",
                           entity=entity)  # fmt: skip
        url = base + path
        expected = httpx.URL(base)
        got = httpx.URL(url)
        if origin_of(got) != origin_of(expected) or not got.path.startswith(expected.path):
            raise BadInput(f"battlenet: refused the URL of {entity}: not under BNET_API_BASE_URL",
                           entity=entity)  # fmt: skip
        return url

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
        try:
            ttl = float(expires_in)
        except OverflowError:  # an integer beyond a double
            ttl = math.inf
        if not math.isfinite(ttl):  # inf would cache the token forever, NaN never
            raise BadPayload("battlenet: token endpoint answered an expires_in that is not finite")
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
        url = self.api_url(region, path, entity)  # checked before any token is fetched
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
        path = f"/data/wow/guild/{_segment(realm, 'realm')}/{_segment(name_slug, 'guild name')}"
        return await self.get(region, path, entity=f"guild {region}/{realm}/{name_slug}", **kw)

    async def roster(self, region: str, realm: str, name_slug: str, **kw: Any) -> Fetched:
        path = (
            f"/data/wow/guild/{_segment(realm, 'realm')}/{_segment(name_slug, 'guild name')}/roster"
        )
        return await self.get(region, path, entity=f"roster {region}/{realm}/{name_slug}", **kw)

    async def character(
        self, region: str, realm: str, name: str, endpoint: str = "profile", **kw: Any
    ) -> Fetched:
        suffix = CHARACTER_ENDPOINTS[endpoint]
        slug = character_slug(name) if isinstance(name, str) else name
        path = (
            f"/profile/wow/character/{_segment(realm, 'realm')}/"
            f"{_segment(slug, 'character name')}{suffix}"
        )
        entity = f"character {region}/{realm}/{slug} {endpoint}"
        return await self.get(region, path, entity=entity, **kw)


def _base(api_base: str, region: str) -> str:
    return api_base.replace("{region}", region).rstrip("/")


def _segment(value: str, what: str) -> str:
    """One path segment: a valid slug (BadInput otherwise), quoted whole."""
    return quote(check_slug(value, what), safe="")
