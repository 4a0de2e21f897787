"""The read API (FastAPI): the mirror as a site reads it, never an upstream call.

Paths are the contract of DESIGN.md §6 (README "Read API"). Every entity carries
``last_synced_at`` and ``stale``; an unknown entity is 404 with a JSON body naming it; a bad
parameter 422; page sizes are capped by API_MAX_PAGE_SIZE; no error body carries a stack trace.
The refresh hook (``POST /v1/refresh/…``) is the one path that talks to Temporal: it queues a
manual-priority request with the running scheduler and answers 202 at once.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import orjson
from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from temporalio.client import Client

from api.dashboard import mount_dashboard
from api.queries import Mirror, Staleness, character_slug, slugify, staleness_of
from api.refresh import ClientSource, NoScheduler, RefreshLimiter, Target, enqueue
from providers.battlenet.names import MAX_SLUG_LENGTH, valid_slug
from settings import Settings

log = logging.getLogger("ratesync.api")

Region = Literal["us", "eu", "kr", "tw", "cn"]
MAX_ID = 2**63 - 1
Snowflake = Annotated[int, Path(ge=1, le=MAX_ID)]
CURSOR = r"^[0-9]{1,9}-[0-9]{1,19}$"  # a ladder page's last (rank, row id)
NameText = Annotated[str, Path(min_length=1, max_length=MAX_SLUG_LENGTH)]


class Json(JSONResponse):
    """JSON by orjson, straight from the dicts the queries build (no second encoding pass)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class NotInMirror(Exception):
    def __init__(self, what: str) -> None:
        self.what = what


def _slug(value: str, what: str, to_slug: Any = slugify) -> str:
    slug = to_slug(value)
    if not valid_slug(slug):
        raise HTTPException(422, f"{what} {value[:40]!r} is not a valid name")
    return slug


def create_app(
    settings: Settings,
    database_url: str,
    temporal: ClientSource | None = None,
    *,
    staleness: Staleness | None = None,
) -> FastAPI:
    """The app over ``database_url``. ``temporal`` gives the client the refresh hook signals
    with (connected on first use); None: the hook answers 503."""
    page_cap = settings.API_MAX_PAGE_SIZE
    limiter = RefreshLimiter(settings.API_REFRESH_PER_MINUTE)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["mirror"] = await Mirror.open(database_url, staleness or staleness_of(settings))
        try:
            yield
        finally:
            await state["mirror"].aclose()

    app = FastAPI(
        title="ratesync read API",
        version="1",
        description="The mirror of rate-limited APIs, read from Postgres only.",
        lifespan=lifespan,
        default_response_class=Json,
    )

    def mirror() -> Mirror:
        return state["mirror"]

    def found(body: dict[str, Any] | None, what: str) -> Response:
        if body is None:
            raise NotInMirror(what)
        return Json(body)

    @app.exception_handler(NotInMirror)
    async def _not_found(_: Request, exc: NotInMirror) -> JSONResponse:
        return Json(
            {"error": "not_found", "detail": f"{exc.what} is not in the mirror"}, status_code=404
        )

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        error = {404: "not_found", 409: "conflict", 422: "invalid", 429: "too_many_requests",
                 503: "unavailable"}.get(exc.status_code, "error")  # fmt: skip
        return Json(
            {"error": error, "detail": exc.detail},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg")}
            for e in exc.errors()
        ]
        return Json({"error": "invalid", "detail": problems}, status_code=422)

    @app.exception_handler(Exception)
    async def _failed(_: Request, exc: Exception) -> JSONResponse:
        log.error("read API request failed: %s", type(exc).__name__)
        return Json({"error": "internal", "detail": "the request failed"}, 500)

    # --- health ----------------------------------------------------------------------------

    @app.get("/healthz", tags=["health"])
    async def healthz() -> JSONResponse:
        try:
            ok = await mirror().ping()
        except Exception as exc:
            return Json({"status": "unavailable", "database": type(exc).__name__}, status_code=503)
        return Json({"status": "ok", "database": "reachable" if ok else "?"})

    # --- World of Warcraft -----------------------------------------------------------------

    @app.get("/v1/wow/{region}/guilds/{realm}/{guild}", tags=["wow"])
    async def guild(region: Region, realm: NameText, guild: NameText) -> Response:
        _slug(realm, "realm"), _slug(guild, "guild")
        return found(await mirror().guild(region, realm, guild), f"guild {region}/{realm}/{guild}")

    @app.get("/v1/wow/{region}/characters/{realm}/{name}", tags=["wow"])
    async def character(
        region: Region, realm: NameText, name: NameText, raw: bool = False
    ) -> Response:
        _slug(realm, "realm"), _slug(name, "character", character_slug)
        body = await mirror().character(region, realm, name, raw=raw)
        return found(body, f"character {region}/{realm}/{name}")

    @app.get("/v1/wow/{region}/characters/{realm}/{name}/pvp", tags=["wow"])
    async def character_pvp(region: Region, realm: NameText, name: NameText) -> Response:
        _slug(realm, "realm"), _slug(name, "character", character_slug)
        body = await mirror().character_pvp(region, realm, name)
        return found(body, f"character {region}/{realm}/{name}")

    @app.get("/v1/wow/{region}/pvp/{season}/{bracket}", tags=["wow"])
    async def leaderboard(
        region: Region,
        season: Annotated[int, Path(ge=1, le=10_000)],
        bracket: Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[a-z0-9_-]+$")],
        limit: Annotated[int, Query(ge=1, le=page_cap)] = min(100, page_cap),
        cursor: Annotated[
            str | None, Query(max_length=40, pattern=r"^[0-9]{1,9}-[0-9]{1,19}$")
        ] = None,
    ) -> Response:
        rank, _, row = (cursor or "0-0").partition("-")
        after = (int(rank), min(int(row), MAX_ID))
        body = await mirror().leaderboard(region, season, bracket, limit, after)
        return found(body, f"leaderboard {region}/{season}/{bracket}")

    # --- Discord -----------------------------------------------------------------------------

    @app.get("/v1/discord/tenants/{guild_id}/channels", tags=["discord"])
    async def channels(guild_id: Snowflake) -> Response:
        return found(await mirror().channels(guild_id), f"tenant {guild_id}")

    @app.get("/v1/discord/channels/{channel_id}/messages", tags=["discord"])
    async def messages(
        channel_id: Snowflake,
        limit: Annotated[int, Query(ge=1, le=page_cap)] = min(50, page_cap),
        before: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
        after: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
        author_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    ) -> Response:
        body = await mirror().messages(channel_id, limit, before, after, author_id)
        return found(body, f"channel {channel_id}")

    # --- ZwiftRacing ---------------------------------------------------------------------------

    @app.get("/v1/zwift/clubs/{club_id}", tags=["zwift"])
    async def club(
        club_id: Snowflake, limit: Annotated[int, Query(ge=1, le=page_cap)] = page_cap
    ) -> Response:
        return found(await mirror().club(club_id, limit), f"club {club_id}")

    @app.get("/v1/zwift/riders/{rider_id}", tags=["zwift"])
    async def rider(rider_id: Snowflake) -> Response:
        return found(await mirror().rider(rider_id), f"rider {rider_id}")

    @app.get("/v1/zwift/events/{event_id}", tags=["zwift"])
    async def event(event_id: Snowflake) -> Response:
        return found(await mirror().event(event_id), f"event {event_id}")

    # --- the refresh hook ----------------------------------------------------------------------

    async def queue(request: Request, target: Target) -> JSONResponse:
        who = request.client.host if request.client else "-"
        wait = limiter.take(who)
        if wait > 0:
            raise HTTPException(
                429,
                f"at most {settings.API_REFRESH_PER_MINUTE} refresh calls a minute per client "
                f"(API_REFRESH_PER_MINUTE); try again in {wait:.0f} s",
                headers={"Retry-After": str(max(1, round(wait)))},
            )
        if temporal is None:
            raise HTTPException(503, "the refresh hook has no Temporal connection")
        try:
            client: Client = await temporal()
            body = await enqueue(client, target)
        except NoScheduler as exc:
            raise HTTPException(409, str(exc)) from None
        except Exception as exc:
            log.warning("refresh hook: Temporal did not take the request (%s)", type(exc).__name__)
            raise HTTPException(503, "Temporal is unreachable; try again") from None
        return Json(body, status_code=202)

    def bnet_target(region: str, kind: str, realm: str, name: str) -> Target:
        realm_slug = _slug(realm, "realm")
        _slug(name, kind, character_slug if kind == "character" else slugify)
        hint = f"python starter.py scheduler start battlenet --region {region}"
        return Target("battlenet", region, kind, f"{realm_slug}/{name.strip()}", hint)

    @app.post("/v1/refresh/wow/{region}/characters/{realm}/{name}", status_code=202,
              tags=["refresh"])  # fmt: skip
    async def refresh_character(
        request: Request, region: Region, realm: NameText, name: NameText
    ) -> JSONResponse:
        return await queue(request, bnet_target(region, "character", realm, name))

    @app.post("/v1/refresh/wow/{region}/guilds/{realm}/{guild}", status_code=202,
              tags=["refresh"])  # fmt: skip
    async def refresh_guild(
        request: Request, region: Region, realm: NameText, guild: NameText
    ) -> JSONResponse:
        return await queue(request, bnet_target(region, "guild", realm, guild))

    @app.post("/v1/refresh/discord/tenants/{guild_id}", status_code=202, tags=["refresh"])
    async def refresh_tenant(request: Request, guild_id: Snowflake) -> JSONResponse:
        hint = f"python starter.py scheduler start discord --tenant {guild_id}"
        return await queue(request, Target("discord", str(guild_id), "sync", "", hint))

    @app.post("/v1/refresh/zwift/riders/{rider_id}", status_code=202, tags=["refresh"])
    async def refresh_rider(
        request: Request,
        rider_id: Snowflake,
        club: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    ) -> JSONResponse:
        scope = club if club is not None else await mirror().rider_club(rider_id)
        if scope is None:
            raise HTTPException(
                422, f"rider {rider_id}: name its club (?club=ID): no single tracked club"
            )
        hint = f"python starter.py scheduler start zwift --club {scope}"
        return await queue(request, Target("zwift", str(scope), "rider", str(rider_id), hint))

    mount_dashboard(app, mirror, settings, temporal)
    return app
