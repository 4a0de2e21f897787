"""The Battle.net World of Warcraft API sandbox: a strict imitation of the real API.

Every API request goes through the same checks, in this order (see ``../shared/UPSTREAM.md``
§1): (1) count it and run the strict limiter (429, not admitted, when over any window);
(2) injected faults; (3) ``Authorization: Bearer`` token (401); (4) ``profile-{region}``
(``dynamic-{region}`` for PvP game data) namespace from the query or the
``Battlenet-Namespace`` header (403); (5) unknown guild, unknown/hidden character, unknown PvP
season or bracket (404); (6) ``If-Modified-Since`` (304); (7) 200 with the payload.
Every request to ``/profile/wow/character/{realm}/{name}/...`` is also counted per character
id (whatever its answer) for ``/_admin/requests/characters``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
import string
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sandbox.battlenet_admin import battlenet_admin_routes
from sandbox.battlenet_endpoints import (
    ALIASES,
    ENDPOINTS,
    UNKNOWN_DATA,
    UNKNOWN_PROFILE,
    Endpoint,
    character_target,
)
from sandbox.common import (
    Counters,
    FaultDecision,
    Faults,
    SandboxApp,
    abort_connection,
    admin_routes,
    http_date,
    json_bytes,
    parse_http_date,
)
from sandbox.limits import MultiWindowLimiter
from sandbox.world import BattleNetWorld, BattleNetWorldConfig
from sandbox.wow_pvp import Resolved

__all__ = [
    "ENDPOINTS",
    "BattleNetSandbox",
    "BattleNetSandboxConfig",
    "Endpoint",
    "create_battlenet_app",
]

JSON_TYPE = "application/json;charset=UTF-8"
_TOKEN_ALPHABET = string.ascii_letters + string.digits


@dataclass
class BattleNetSandboxConfig:
    world: BattleNetWorldConfig = field(default_factory=BattleNetWorldConfig)
    per_second: int = 100
    per_hour: int = 36000
    client_id: str = "sandbox-client"
    client_secret: str = "sandbox-secret"
    token_ttl: int = 86399
    retry_after_header: bool = False


def error_body(status: int) -> dict[str, Any]:
    """The Battle.net error envelope, e.g. ``{"code":404,"type":"BLZWEBAPI00000404",...}``."""
    return {"code": status, "type": f"BLZWEBAPI00000{status}", "detail": HTTPStatus(status).phrase}


class BattleNetSandbox:
    """All state of one Battle.net sandbox app: world, limits, counters, faults and tokens."""

    def __init__(
        self, config: BattleNetSandboxConfig, clock: Callable[[], float] | None = None
    ) -> None:
        self.config = replace(config)  # set_limits changes it; keep the caller's copy intact
        self.clock = clock or time.monotonic
        self.world = BattleNetWorld(config.world)
        self.limiter = MultiWindowLimiter([(config.per_second, 1.0), (config.per_hour, 3600.0)])
        self.counters = Counters(endpoint.route for endpoint in ENDPOINTS)
        self.faults = Faults(seed=config.world.seed)
        self.tokens: dict[str, float] = {}
        self.issued_tokens: list[str] = []  # every token ever issued (GET /_admin/tokens)
        self.token_requests = 0
        self.character_requests: Counter[int] = Counter()

    # -- admin --------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        counters = self.counters.snapshot()
        return {
            "requests": counters["requests"],
            "by_route": counters["by_route"],
            "by_status": counters["by_status"],
            "throttled": counters["throttled"],
            "token_requests": self.token_requests,
            "max_in_window": self.limiter.max_in_window(),
            "max_arrivals_in_window": self.limiter.max_arrivals_in_window(),
            "first_request_at": counters["first_request_at"],
            "last_request_at": counters["last_request_at"],
            "limits": {"per_second": self.config.per_second, "per_hour": self.config.per_hour},
            "faults_injected": counters["faults_injected"],
        }

    def reset(self) -> None:
        """Zero counters and windows; the world, tokens and faults are kept."""
        self.counters.reset()
        self.limiter.reset()
        self.token_requests = 0
        self.character_requests.clear()

    def character_request_counts(self, ids: Iterable[int]) -> dict[str, int]:
        """Requests to ``/profile/wow/character/...`` per given character id (JSON keys)."""
        return {str(cid): self.character_requests[cid] for cid in ids}

    def _count_character(self, endpoint: Endpoint, request: Request, ns: str | None) -> None:
        target = character_target(endpoint, request.path_params)
        region = (ns or "").partition("-")[2].lower()
        if target is None or region not in self.world.regions:
            return
        info = self.world.find_character(region, *target)
        if info is not None:
            self.character_requests[info.id] += 1

    def set_limits(self, body: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(body) - {"per_second", "per_hour"}
        if unknown:
            raise ValueError(f"unknown limit fields: {sorted(unknown)}")
        per_second = int(body.get("per_second", self.config.per_second))
        per_hour = int(body.get("per_hour", self.config.per_hour))
        if per_second < 1 or per_hour < 1:
            raise ValueError("limits must be >= 1")
        self.config.per_second, self.config.per_hour = per_second, per_hour
        self.limiter.set_limit(1.0, per_second)
        self.limiter.set_limit(3600.0, per_hour)
        return {"per_second": per_second, "per_hour": per_hour}

    def revoke_tokens(self) -> int:
        revoked = len(self.tokens)
        self.tokens.clear()
        return revoked

    # -- OAuth --------------------------------------------------------------------------------

    def issue_token(self) -> str:
        token = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(34))
        self.tokens[token] = self.clock() + self.config.token_ttl
        self.issued_tokens.append(token)
        return token

    def token_valid(self, authorization: str | None) -> bool:
        scheme, _, token = (authorization or "").partition(" ")
        expires = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if expires is None:
            return False
        if expires <= self.clock():
            del self.tokens[token.strip()]
            return False
        return True

    async def token_endpoint(self, request: Request) -> Response:
        self.token_requests += 1
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        client_id, secret = _basic_credentials(request.headers.get("authorization"))
        if client_id is None:
            client_id = form.get("client_id", [None])[0]
            secret = form.get("client_secret", [None])[0]
        if client_id != self.config.client_id or secret != self.config.client_secret:
            body = {"error": "invalid_client", "error_description": "Invalid client credentials"}
            return _json(401, body)
        if form.get("grant_type", [None])[0] != "client_credentials":
            body = {
                "error": "unsupported_grant_type",
                "error_description": "Only grant_type=client_credentials is supported",
            }
            return _json(400, body)
        return _json(
            200,
            {
                "access_token": self.issue_token(),
                "token_type": "bearer",
                "expires_in": self.config.token_ttl,
                "sub": client_id,
            },
        )

    # -- API ----------------------------------------------------------------------------------

    def _region(self, namespace: str | None, kinds: tuple[str, ...]) -> str | None:
        kind, _, region = (namespace or "").partition("-")
        return region if kind in kinds and region in self.world.regions else None

    def _error(self, status: int, namespace: str | None) -> Response:
        headers = _base_headers(namespace)
        if status == 429 and self.config.retry_after_header:
            headers["Retry-After"] = "1"
        return self._sent(_json(status, error_body(status), headers))

    def _sent(self, response: Response) -> Response:
        self.counters.count_response(response.status_code)
        return response

    def _last_modified(
        self, endpoint: Endpoint, region: str, realm: str, name: str
    ) -> datetime | None:
        """The entity's Last-Modified, or None when it is unknown or hidden (→ 404)."""
        if endpoint.entity == "guild":
            guild = self.world.find_guild(region, realm, name)
            return guild.last_modified if guild else None
        if endpoint.entity == "character":
            character = self.world.find_character(region, realm, name)
            return character.last_modified if character and not character.hidden else None
        return None

    def _resolve(
        self, endpoint: Endpoint, region: str, params: Mapping[str, str]
    ) -> Resolved | None:
        """Last-Modified and a body renderer, or None when the resource does not exist."""
        if endpoint.entity.startswith("pvp"):
            return self.world.pvp.resolve(endpoint.entity, region, params)
        realm, name = params.get("realm", ""), params.get("name", "")
        last_modified = self._last_modified(endpoint, region, realm, name)
        if last_modified is None:
            return None

        def render() -> bytes:
            payload = endpoint.build(self.world, region, realm, name)
            return json_bytes(payload) if payload is not None else b""

        return last_modified, render

    async def _apply_fault(
        self, request: Request, fault: FaultDecision, ns: str | None
    ) -> Response | None:
        if fault.delay > 0:
            self.counters.count_fault("latency")
            await asyncio.sleep(fault.delay)
        if fault.action == "reset":
            self.counters.count_fault("reset")
            await abort_connection(request)
            return Response(status_code=500)  # never reaches the client: the socket is gone
        if fault.action in ("throttle", "error"):
            self.counters.count_fault("forced_429" if fault.action == "throttle" else "error")
            return self._error(fault.status, ns)
        return None

    async def handle(self, request: Request, endpoint: Endpoint) -> Response:
        self.counters.count_request(endpoint.route)
        ns = request.query_params.get("namespace") or request.headers.get("battlenet-namespace")
        self._count_character(endpoint, request, ns)
        if not self.limiter.try_admit(self.clock()):
            return self._error(429, ns)
        fault = self.faults.decide(request.url.path)
        faulted = await self._apply_fault(request, fault, ns)
        if faulted is not None:
            return faulted
        if not self.token_valid(request.headers.get("authorization")):
            return self._error(401, ns)
        region = self._region(ns, endpoint.namespaces)
        if region is None:
            return self._error(403, ns)
        resolved = self._resolve(endpoint, region, request.path_params)
        if resolved is None:
            return self._error(404, ns)
        last_modified, render = resolved
        headers = _success_headers(endpoint, ns, last_modified)
        since = parse_http_date(request.headers.get("if-modified-since"))
        if since is not None and since >= last_modified:
            return self._sent(Response(status_code=304, headers=headers))
        body = render()
        if not body:  # pragma: no cover - _resolve already checked existence
            return self._error(404, ns)
        if fault.truncate:
            self.counters.count_fault("truncate")
            body = body[: len(body) // 2]
        return self._sent(Response(body, status_code=200, headers=headers, media_type=JSON_TYPE))


def _basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    client_id, _, secret = decoded.partition(":")
    return client_id, secret


def _base_headers(namespace: str | None) -> dict[str, str]:
    headers = {
        "Date": http_date(datetime.now(UTC)),
        "x-trace-traceid": secrets.token_hex(16),
        "x-trace-spanid": secrets.token_hex(8),
        "x-trace-parentspanid": secrets.token_hex(8),
    }
    if namespace:
        headers["Battlenet-Namespace"] = namespace
    return headers


def _success_headers(endpoint: Endpoint, ns: str | None, last_modified: datetime) -> dict[str, str]:
    headers = _base_headers(ns)
    headers["Battlenet-Schema"] = endpoint.schema
    headers["Battlenet-Schema-Revision"] = str(endpoint.revision)
    headers["Last-Modified"] = http_date(last_modified)
    if endpoint.cache_control:
        headers["Cache-Control"] = endpoint.cache_control
    return headers


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    headers = headers or {"Date": http_date(datetime.now(UTC))}
    return Response(json_bytes(body), status_code=status, headers=headers, media_type=JSON_TYPE)


def _api_route(sandbox: BattleNetSandbox, path: str, endpoint: Endpoint) -> Route:
    async def handler(request: Request) -> Response:
        return await sandbox.handle(request, endpoint)

    return Route(path, handler, methods=["GET"], name=endpoint.route)


def battlenet_routes(sandbox: BattleNetSandbox) -> list[BaseRoute]:
    """API routes, the token endpoint and catch-alls that 404 like the real API."""
    routes: list[BaseRoute] = [_api_route(sandbox, ep.path, ep) for ep in ENDPOINTS]
    by_route = {ep.route: ep for ep in ENDPOINTS}
    routes += [_api_route(sandbox, path, by_route[route]) for route, path in ALIASES.items()]
    routes += [
        Route("/token", sandbox.token_endpoint, methods=["POST"]),
        Route("/oauth/token", sandbox.token_endpoint, methods=["POST"]),
        _api_route(sandbox, UNKNOWN_DATA.path, UNKNOWN_DATA),
        _api_route(sandbox, UNKNOWN_PROFILE.path, UNKNOWN_PROFILE),
    ]
    return routes


def create_battlenet_app(
    config: BattleNetSandboxConfig | None = None, *, clock: Callable[[], float] | None = None
) -> Starlette:
    """The Battle.net sandbox as an ASGI app; its state is ``app.state.sandbox``."""
    sandbox = BattleNetSandbox(config or BattleNetSandboxConfig(), clock=clock)
    routes = [*admin_routes(), *battlenet_admin_routes(), *battlenet_routes(sandbox)]
    app = SandboxApp(routes=routes)
    app.state.sandbox = sandbox
    return app
