"""Discord-specific admin routes (never rate limited, never counted as API requests).

- ``POST /_admin/tenants`` body: a :class:`~sandbox.discord_world.TenantSpec` as JSON → the
  tenant layout ``{"guild_id", "name", "channels": [{"id", "type", "name", "parent_id",
  "messages", "access", "thread"}]}``. ``GET /_admin/tenants`` → ``{"tenants": [layout...]}``;
  ``GET /_admin/tenants/{guild_id}`` → one layout with current counts.
- ``POST /_admin/channels/{channel_id}/messages`` body ``{"count": N, "delete": ["id", ...]}``
  (both optional) → ``{"channel_id", "added", "deleted", "messages", "newest_id"}``.
- ``GET /_admin/channels/{channel_id}/ids`` → ``{"channel_id", "ids": [ascending strings]}``.
- ``GET|POST /_admin/discord/faults``: :class:`DiscordFaults` (``{"clear": true}`` clears).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.common import bad_request, read_json
from sandbox.discord_world import Channel, TenantSpec

if TYPE_CHECKING:
    from sandbox.discord import DiscordSandbox

__all__ = ["DiscordFaults", "discord_admin_routes"]

_ROUTE_NAMES = ("any", "guild", "guild_channels", "active_threads", "archived_threads", "messages")


@dataclass
class DiscordFaults:
    """Forced Discord answers for the next requests of ``route`` (a route name or ``any``).

    Used up in this order, one per request, after the request passed the global and bucket
    limits: ``force_global_429`` (scope global), ``force_bucket_429`` (scope user, headers say
    remaining 0 and reset-after ``retry_after``), ``force_shared_429`` (scope shared, not an
    invalid request), then ``force_status`` for ``force_status_count`` requests (-1: until
    cleared); 403 answers ``Missing Access``, 404 ``Unknown Channel``, others a generic body.
    ``POST`` also accepts ``"force_status": {"status": 403, "count": N}``.
    """

    force_global_429: int = 0
    force_bucket_429: int = 0
    force_shared_429: int = 0
    retry_after: float = 1.0
    force_status: int = 0
    force_status_count: int = 0
    route: str = "messages"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def take(self, route: str) -> tuple[str, float] | None:
        """The forced answer for this request, if any: (kind, retry_after or status)."""
        if self.route not in ("any", route):
            return None
        for kind in ("global_429", "bucket_429", "shared_429"):
            name = f"force_{kind}"
            if getattr(self, name) > 0:
                setattr(self, name, getattr(self, name) - 1)
                return kind, self.retry_after
        if self.force_status and self.force_status_count != 0:
            if self.force_status_count > 0:
                self.force_status_count -= 1
            return "status", float(self.force_status)
        return None

    def update(self, body: Mapping[str, Any]) -> None:
        changes = dict(body)
        if changes.pop("clear", False):
            for f in fields(self):
                setattr(self, f.name, f.default)
        status = changes.get("force_status")
        if isinstance(status, Mapping):
            changes["force_status"] = status.get("status", 0)
            changes["force_status_count"] = status.get("count", -1)
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        for name, value in changes.items():
            setattr(self, name, _coerce(name, value))


def _coerce(name: str, value: Any) -> Any:
    if name == "route":
        if value not in _ROUTE_NAMES:
            raise ValueError(f"route must be one of {list(_ROUTE_NAMES)}")
        return value
    if name == "retry_after":
        if float(value) < 0:
            raise ValueError("retry_after must be >= 0")
        return float(value)
    number = int(value)
    if name == "force_status" and number != 0 and not 400 <= number <= 599:
        raise ValueError("force_status must be 0 or an HTTP error status")
    if number < 0 and name != "force_status_count":
        raise ValueError(f"{name} must be >= 0")
    return number


def _sandbox(request: Request) -> DiscordSandbox:
    sandbox: DiscordSandbox = request.app.state.sandbox
    return sandbox


def _not_found(what: str) -> JSONResponse:
    return JSONResponse({"error": f"unknown {what}"}, status_code=404)


def _channel(request: Request) -> Channel | None:
    raw = request.path_params["channel_id"]
    return _sandbox(request).world.channels.get(int(raw)) if raw.isdigit() else None


async def create_tenant(request: Request) -> Response:
    try:
        spec = TenantSpec.from_json(await read_json(request))
    except (ValueError, TypeError) as exc:
        return bad_request(str(exc))
    tenant = _sandbox(request).world.add_tenant(spec)
    return JSONResponse(tenant.layout())


async def list_tenants(request: Request) -> Response:
    tenants = _sandbox(request).world.tenants.values()
    return JSONResponse({"tenants": [tenant.layout() for tenant in tenants]})


async def get_tenant(request: Request) -> Response:
    raw = request.path_params["guild_id"]
    tenant = _sandbox(request).world.tenants.get(int(raw)) if raw.isdigit() else None
    return JSONResponse(tenant.layout()) if tenant else _not_found("guild")


async def change_messages(request: Request) -> Response:
    channel = _channel(request)
    if channel is None:
        return _not_found("channel")
    try:
        body = await read_json(request)
        count = int(body.get("count", 0))
        doomed = [int(mid) for mid in body.get("delete", [])]
    except (ValueError, TypeError) as exc:
        return bad_request(str(exc))
    if count < 0 or (count and not channel.has_messages):
        return bad_request("count must be >= 0, on a channel that holds messages")
    deleted = channel.delete(doomed)
    added = channel.append(count)
    newest = channel.last_message_id()
    return JSONResponse(
        {
            "channel_id": str(channel.id),
            "added": len(added),
            "deleted": deleted,
            "messages": len(channel.ids),
            "newest_id": None if newest is None else str(newest),
        }
    )


async def channel_ids(request: Request) -> Response:
    channel = _channel(request)
    if channel is None:
        return _not_found("channel")
    return JSONResponse({"channel_id": str(channel.id), "ids": [str(i) for i in channel.ids]})


async def get_faults(request: Request) -> Response:
    return JSONResponse(_sandbox(request).discord_faults.to_dict())


async def set_faults(request: Request) -> Response:
    faults = _sandbox(request).discord_faults
    try:
        faults.update(await read_json(request))
    except (ValueError, TypeError) as exc:
        return bad_request(str(exc))
    return JSONResponse(faults.to_dict())


def discord_admin_routes() -> list[Route]:
    return [
        Route("/_admin/tenants", create_tenant, methods=["POST"]),
        Route("/_admin/tenants", list_tenants, methods=["GET"]),
        Route("/_admin/tenants/{guild_id}", get_tenant, methods=["GET"]),
        Route("/_admin/channels/{channel_id}/messages", change_messages, methods=["POST"]),
        Route("/_admin/channels/{channel_id}/ids", channel_ids, methods=["GET"]),
        Route("/_admin/discord/faults", get_faults, methods=["GET"]),
        Route("/_admin/discord/faults", set_faults, methods=["POST"]),
    ]
