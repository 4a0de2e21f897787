"""Battle.net-specific admin routes: ground truth, touches, PvP snapshots, per-character request
counts, the issued tokens and token revocation.

Truth payloads come from the same builders the API uses, so they equal what the API serves at
that moment. Admin routes are never rate limited and never counted as API requests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.common import bad_request, http_date

if TYPE_CHECKING:
    from sandbox.battlenet import BattleNetSandbox
    from sandbox.world import BattleNetWorld
    from sandbox.wow_pvp import PvpBoard

__all__ = ["battlenet_admin_routes"]


def _sandbox(request: Request) -> BattleNetSandbox:
    sandbox: BattleNetSandbox = request.app.state.sandbox
    return sandbox


def _not_found(what: str) -> JSONResponse:
    return JSONResponse({"error": f"unknown {what}"}, status_code=404)


def _region(request: Request) -> str | None:
    region = request.query_params.get("region") or request.path_params.get("region", "")
    world = _sandbox(request).world
    return region.lower() if region.lower() in world.regions else None


def _entity_args(request: Request) -> tuple[str, str, str]:
    params = request.path_params
    return params["region"].lower(), params["realm"], params["name"]


async def revoke_tokens(request: Request) -> Response:
    return JSONResponse({"revoked": _sandbox(request).revoke_tokens()})


async def list_tokens(request: Request) -> Response:
    """Every access token issued so far (a secret scan searches for each) and how many are
    still valid."""
    sandbox = _sandbox(request)
    return JSONResponse({"issued": list(sandbox.issued_tokens), "active": len(sandbox.tokens)})


async def truth_guilds(request: Request) -> Response:
    region = _region(request)
    if region is None:
        return _not_found("region")
    guilds = _sandbox(request).world.guilds(region)
    return JSONResponse(
        [
            {
                "region": g.region,
                "realm_slug": g.realm_slug,
                "name_slug": g.name_slug,
                "name": g.name,
                "id": g.id,
                "member_count": g.member_count,
            }
            for g in guilds
        ]
    )


async def truth_characters(request: Request) -> Response:
    region = _region(request)
    if region is None:
        return _not_found("region")
    characters = _sandbox(request).world.characters(region)
    return JSONResponse(
        [
            {
                "region": c.region,
                "realm_slug": c.realm_slug,
                "name": c.name,
                "name_slug": c.name_slug,
                "id": c.id,
                "hidden": c.hidden,
                "guild_id": c.guild_id,
            }
            for c in characters
        ]
    )


def guild_truth(world: BattleNetWorld, region: str, realm: str, name: str) -> dict[str, Any] | None:
    info = world.find_guild(region, realm, name)
    if info is None:
        return None
    return {
        "guild": world.guild(region, realm, name),
        "roster": world.roster(region, realm, name),
        "last_modified": http_date(info.last_modified),
        "version": info.version,
    }


def character_truth(
    world: BattleNetWorld, region: str, realm: str, name: str
) -> dict[str, Any] | None:
    info = world.find_character(region, realm, name)
    if info is None:
        return None
    return {
        "id": info.id,
        "hidden": info.hidden,
        "guild_id": info.guild_id,
        "last_modified": http_date(info.last_modified),
        "version": info.version,
        "profile": world.character_profile(region, realm, name),
        "equipment": world.character_equipment(region, realm, name),
        "mythic_keystone_profile": world.character_mythic_keystone_profile(region, realm, name),
        "professions": world.character_professions(region, realm, name),
        "status": world.character_status(region, realm, name),
    }


async def truth_guild(request: Request) -> Response:
    truth = guild_truth(_sandbox(request).world, *_entity_args(request))
    return JSONResponse(truth) if truth is not None else _not_found("guild")


async def truth_character(request: Request) -> Response:
    truth = character_truth(_sandbox(request).world, *_entity_args(request))
    return JSONResponse(truth) if truth is not None else _not_found("character")


async def touch_guild(request: Request) -> Response:
    info = _sandbox(request).world.touch_guild(*_entity_args(request))
    if info is None:
        return _not_found("guild")
    return JSONResponse(
        {"id": info.id, "version": info.version, "last_modified": http_date(info.last_modified)}
    )


async def touch_character(request: Request) -> Response:
    info = _sandbox(request).world.touch_character(*_entity_args(request))
    if info is None:
        return _not_found("character")
    return JSONResponse(
        {"id": info.id, "version": info.version, "last_modified": http_date(info.last_modified)}
    )


def _pvp_board(request: Request, create_snapshot: bool = False) -> PvpBoard | None:
    params = request.path_params
    season = params["season"]
    if not (season.isascii() and season.isdigit()):
        return None
    pvp = _sandbox(request).world.pvp
    if create_snapshot:
        return pvp.new_snapshot(params["region"], int(season), params["bracket"])
    return pvp.board(params["region"], int(season), params["bracket"])


async def truth_pvp(request: Request) -> Response:
    """The leaderboard exactly as the API serves it now, and its private characters."""
    board = _pvp_board(request)
    if board is None:
        return _not_found("region, season or bracket")
    return JSONResponse(
        {
            "leaderboard": board.payload(),
            "last_modified": http_date(board.last_modified),
            "private_character_ids": board.private_character_ids(),
        }
    )


async def pvp_new_snapshot(request: Request) -> Response:
    """Play games on ~10 % of the leaderboard's entries and bump its Last-Modified."""
    board = _pvp_board(request, create_snapshot=True)
    if board is None:
        return _not_found("region, season or bracket")
    return JSONResponse(
        {"snapshot": board.snapshot, "last_modified": http_date(board.last_modified)}
    )


async def character_requests(request: Request) -> Response:
    """``?ids=1,2,3`` → ``{"1": n, ...}``: requests to each character's profile endpoints."""
    raw = request.query_params.get("ids", "")
    try:
        ids = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        return bad_request("ids must be a comma-separated list of integers")
    if not ids:
        return bad_request("pass ids=1,2,3")
    return JSONResponse(_sandbox(request).character_request_counts(ids))


def battlenet_admin_routes() -> list[Route]:
    entity = "{region}/{realm}/{name}"
    pvp = "{region}/{season}/{bracket}"
    return [
        Route("/_admin/tokens", list_tokens, methods=["GET"]),
        Route("/_admin/tokens/revoke", revoke_tokens, methods=["POST"]),
        Route("/_admin/truth/guilds", truth_guilds, methods=["GET"]),
        Route("/_admin/truth/characters", truth_characters, methods=["GET"]),
        Route(f"/_admin/truth/guild/{entity}", truth_guild, methods=["GET"]),
        Route(f"/_admin/truth/character/{entity}", truth_character, methods=["GET"]),
        Route(f"/_admin/touch/guild/{entity}", touch_guild, methods=["POST"]),
        Route(f"/_admin/touch/character/{entity}", touch_character, methods=["POST"]),
        Route(f"/_admin/truth/pvp/{pvp}", truth_pvp, methods=["GET"]),
        Route(f"/_admin/pvp/new-snapshot/{pvp}", pvp_new_snapshot, methods=["POST"]),
        Route("/_admin/requests/characters", character_requests, methods=["GET"]),
    ]
