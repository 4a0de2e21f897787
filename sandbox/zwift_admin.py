"""ZwiftRacing-specific admin routes (never rate limited, never counted as API requests).

Truth payloads come from the same builders the API uses, as of the sandbox's wall clock now,
so they equal what the API would serve at that moment.

- ``GET /_admin/truth``: everything a complete sync should hold now: clubs with their rider ids,
  every rider's club, name, category, current rating and how many rating changes it has had,
  every event with its class (past / running / urgent / near / far), visible signups and (once
  finished) the rider ids of its results.
- ``GET /_admin/truth/clubs/{club_id}``: ``{"club_id", "name", "rider_ids"}``.
- ``GET /_admin/truth/riders/{rider_id}``: the rider object the API serves now.
- ``GET /_admin/truth/events/{event_id}``: ``{"truth", "event", "signups", "results"}`` (the
  three API payloads; ``results`` null before the event finished).
- ``POST /_admin/events`` body ``{"starts_in": <simulated seconds from now>, "signups": N}``
  (signups optional; ``starts_in`` >= 0: the past is fixed): a new event → its truth.
  Ratings of its finishers change once it ends.
- ``GET /_admin/clock``: ``{"now", "start", "time_scale", "simulated_elapsed"}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.common import bad_request, read_json

if TYPE_CHECKING:
    from sandbox.zwift import ZwiftSandbox

__all__ = ["zwift_admin_routes"]


def _sandbox(request: Request) -> ZwiftSandbox:
    sandbox: ZwiftSandbox = request.app.state.sandbox
    return sandbox


def _not_found(what: str) -> JSONResponse:
    return JSONResponse({"error": f"unknown {what}"}, status_code=404)


def _id(request: Request, name: str) -> int | None:
    raw = str(request.path_params[name])
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None


async def truth(request: Request) -> Response:
    sandbox = _sandbox(request)
    return JSONResponse(sandbox.world.truth(sandbox.wall()))


async def truth_club(request: Request) -> Response:
    club_id = _id(request, "club_id")
    club = _sandbox(request).world.clubs.get(club_id) if club_id is not None else None
    if club is None:
        return _not_found("club")
    return JSONResponse({"club_id": club.id, "name": club.name, "rider_ids": club.rider_ids})


async def truth_rider(request: Request) -> Response:
    sandbox = _sandbox(request)
    rider_id = _id(request, "rider_id")
    rider = sandbox.world.riders.get(rider_id) if rider_id is not None else None
    if rider is None:
        return _not_found("rider")
    return JSONResponse(sandbox.world.rider_payload(rider, sandbox.wall()))


async def truth_event(request: Request) -> Response:
    sandbox = _sandbox(request)
    world, now = sandbox.world, sandbox.wall()
    event_id = _id(request, "event_id")
    event = world.events.get(event_id) if event_id is not None else None
    if event is None:
        return _not_found("event")
    return JSONResponse(
        {
            "truth": world.event_truth(event, now),
            "event": world.event_payload(event, now),
            "signups": world.signups_payload(event, now),
            "results": world.results_payload(event, now),
        }
    )


async def add_event(request: Request) -> Response:
    sandbox = _sandbox(request)
    world, now = sandbox.world, sandbox.wall()
    try:
        body = await read_json(request)
        unknown = set(body) - {"starts_in", "signups"}
        if unknown:
            raise ValueError(f"unknown event fields: {sorted(unknown)}")
        starts_in = float(body["starts_in"])
        if not starts_in >= 0:  # the past (its results, the ratings they moved) is fixed
            raise ValueError("starts_in must be >= 0 (simulated seconds from now)")
        signups = body.get("signups")
        count = None if signups is None else int(signups)
        if count is not None and count < 0:
            raise ValueError("signups must be >= 0")
    except KeyError:
        return bad_request("starts_in (simulated seconds from now) is required")
    except (ValueError, TypeError) as exc:
        return bad_request(str(exc))
    offset = (now - world.start) * world.time_scale + starts_in  # simulated, from the start
    event = world.add_event(offset, count)
    return JSONResponse(world.event_truth(event, now))


async def clock(request: Request) -> Response:
    sandbox = _sandbox(request)
    world, now = sandbox.world, sandbox.wall()
    return JSONResponse(
        {
            "now": now,
            "start": world.start,
            "time_scale": world.time_scale,
            "simulated_elapsed": (now - world.start) * world.time_scale,
        }
    )


def zwift_admin_routes() -> list[Route]:
    return [
        Route("/_admin/truth", truth, methods=["GET"]),
        Route("/_admin/truth/clubs/{club_id}", truth_club, methods=["GET"]),
        Route("/_admin/truth/riders/{rider_id}", truth_rider, methods=["GET"]),
        Route("/_admin/truth/events/{event_id}", truth_event, methods=["GET"]),
        Route("/_admin/events", add_event, methods=["POST"]),
        Route("/_admin/clock", clock, methods=["GET"]),
    ]
