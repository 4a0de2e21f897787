"""ZwiftRacing payloads, validated (UPSTREAM §3.4-3.5; fixtures in tests/fixtures/zwiftracing).

Each parser checks what the sync reads and storage extracts in SQL (ids, names, categories,
ratings, dates, positions and times) and keeps the body as received (``raw``) for storage to
take in one statement. Unknown keys are tolerated (2026 payloads add ``seed``, ``velo``, ``zrs``
...); ``race``, ``power`` and ``phenotype`` may be null. A payload that parsed but has a field
of the wrong type is a :class:`BadPayload` naming the entity (schema drift: the same on every
attempt); JSON that does not parse is a :class:`MalformedBody` (usually a body cut in transit:
asked again).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from providers.errors import BadPayload, MalformedBody

__all__ = [
    "PAGE_SIZE",
    "ClubPage",
    "EventAnswer",
    "ResultsAnswer",
    "RiderAnswer",
    "RidersAnswer",
    "SignupsAnswer",
    "decode",
    "parse_club_page",
    "parse_event",
    "parse_results",
    "parse_rider",
    "parse_riders",
    "parse_signups",
]

PAGE_SIZE = 1000  # riders per club page and ids per bulk POST
MAX_ID = 2**63 - 1  # stored as bigint


# -- decoding and field checks ------------------------------------------------------------------


def decode(raw: bytes, entity: str) -> Any:
    """The JSON of a body; MalformedBody (a Transient) when it does not parse."""
    try:
        return orjson.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise MalformedBody(
            f"zwift: malformed JSON for {entity} ({len(raw)} bytes)", entity=entity
        ) from exc


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_id(value: Any) -> bool:
    return _is_int(value) and 0 <= value <= MAX_ID


def id_of(value: Any, minimum: int = 1) -> int | None:
    """An id as an int (not a bool) or as text of ASCII digits, in ``minimum``..MAX_ID; None for
    anything else. The one check behind the client's, the workflow's and the CLI's."""
    if _is_int(value):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        number = int(value)
    else:
        return None
    return number if minimum <= number <= MAX_ID else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_object(value: Any) -> bool:
    return isinstance(value, dict)


def _is_digits_id(value: Any) -> bool:
    """An event id: digits in a string (as served) or an int."""
    if isinstance(value, str):
        return value.isascii() and value.isdigit() and len(value) <= 18
    return _is_id(value)


# field -> (what it must be, check, may it be null); absent fields are fine unless required.
Field = tuple[str, Callable[[Any], bool], bool]

RIDER_FIELDS: dict[str, Field] = {
    "name": ("a string", _is_str, True),
    "gender": ("a string", _is_str, True),
    "country": ("a string", _is_str, True),
    "height": ("a number", _is_number, True),
    "weight": ("a number", _is_number, True),
    "zpCategory": ("a string", _is_str, True),
    "zpFTP": ("a number", _is_number, True),
    "power": ("an object", _is_object, True),
    "race": ("an object", _is_object, True),
    "phenotype": ("an object", _is_object, True),
    "club": ("an object", _is_object, True),
}
RATING_FIELDS: dict[str, Field] = {
    "rating": ("a number", _is_number, True),
    "date": ("an integer (epoch seconds)", _is_int, True),
    "mixed": ("an object", _is_object, True),
}
RACE_FIELDS: dict[str, Field] = {
    "last": ("an object", _is_object, True),
    "current": ("an object", _is_object, True),
    "max30": ("an object", _is_object, True),
    "max90": ("an object", _is_object, True),
    "finishes": ("an integer", _is_int, True),
}
CLUB_FIELDS: dict[str, Field] = {"id": ("an integer id", _is_id, True)}
EVENT_FIELDS: dict[str, Field] = {
    "title": ("a string", _is_str, True),
    "type": ("a string", _is_str, True),
    "subType": ("a string", _is_str, True),
    "routeId": ("a string", _is_str, True),
    "distance": ("a number", _is_number, True),
}
RESULT_FIELDS: dict[str, Field] = {
    "name": ("a string", _is_str, True),
    "category": ("a string", _is_str, True),
    "time": ("a number", _is_number, True),
    "gap": ("a number", _is_number, True),
    "position": ("an integer", _is_int, True),
    "positionInCategory": ("an integer", _is_int, True),
    "rating": ("a number", _is_number, True),
    "ratingBefore": ("a number", _is_number, True),
    "ratingDelta": ("a number", _is_number, True),
    "ratingMax30": ("a number", _is_number, True),
    "ratingMax90": ("a number", _is_number, True),
}
SIGNUP_FIELDS: dict[str, Field] = {
    "name": ("a string", _is_str, True),
    "category": ("a string", _is_str, True),
    "rating": ("a number", _is_number, True),
    "club": ("an object", _is_object, True),
}


def _bad(entity: str, message: str) -> BadPayload:
    return BadPayload(f"zwift: {entity}: {message}", entity=entity)


def _check(data: dict[str, Any], fields: dict[str, Field], where: str, entity: str) -> None:
    for name, (expected, check, nullable) in fields.items():
        if name not in data or (data[name] is None and nullable):
            continue
        value = data[name]
        if not check(value):
            raise _bad(entity, f"{where}{name} is {type(value).__name__}, not {expected}")


def _object(data: Any, entity: str, what: str = "a JSON object") -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _bad(entity, f"expected {what}, got {type(data).__name__}")
    return data


def _list(data: Any, entity: str, where: str) -> list[Any]:
    if not isinstance(data, list):
        raise _bad(entity, f"{where} is {type(data).__name__}, not an array")
    return data


def check_rider(rider: Any, entity: str, where: str = "") -> int:
    """Check one rider object (see :data:`RIDER_FIELDS`); its ``riderId``."""
    if not isinstance(rider, dict):
        raise _bad(entity, f"{where}rider is {type(rider).__name__}, not an object")
    rider_id: Any = rider.get("riderId")
    if not _is_id(rider_id):
        raise _bad(entity, f"{where}rider has no integer riderId")
    where = f"{where}rider {rider_id}: "
    _check(rider, RIDER_FIELDS, where, entity)
    race = rider.get("race")
    if isinstance(race, dict):
        _check(race, RACE_FIELDS, f"{where}race.", entity)
        for block in ("last", "current", "max30", "max90"):
            if isinstance(race.get(block), dict):
                _check(race[block], RATING_FIELDS, f"{where}race.{block}.", entity)
    club = rider.get("club")
    if isinstance(club, dict):
        _check(club, CLUB_FIELDS, f"{where}club.", entity)
    return int(rider_id)


def _event_id(data: dict[str, Any], entity: str, expected: int) -> int:
    value: Any = data.get("eventId")
    if not _is_digits_id(value):
        raise _bad(entity, "no eventId of digits")
    if int(value) != expected:
        raise _bad(entity, f"answered for event {int(value)}, not {expected}")
    return expected


def _start(data: dict[str, Any], entity: str) -> int:
    value: Any = data.get("time")
    if not _is_int(value):
        raise _bad(entity, f"time is {type(value).__name__}, not an integer (epoch seconds)")
    return int(value)


# -- answers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClubPage:
    """One ``GET /public/clubs/{id}[/{fromRiderId}]`` answer, validated.

    The page listed ``listed`` riders, ascending, all ``>= cursor`` (the cursor is inclusive:
    the rider it names comes again); ``rider_ids`` are those the caller has not had yet (all of
    them, unless :meth:`~providers.zwift.client.ZwiftClient.club_pages` dropped the repeat).
    ``is_last`` when the page listed fewer than :data:`PAGE_SIZE` riders, else the next page
    starts at the last rider listed (:attr:`next_cursor`).
    """

    club_id: int
    name: str | None
    cursor: int
    rider_ids: list[int] = field(repr=False)
    raw: bytes = field(repr=False)
    listed: int = 0
    last_listed: int | None = None

    @property
    def count(self) -> int:
        return len(self.rider_ids)

    @property
    def is_last(self) -> bool:
        return self.listed < PAGE_SIZE

    @property
    def next_cursor(self) -> int | None:
        return None if self.is_last else self.last_listed


@dataclass(frozen=True)
class RidersAnswer:
    """``POST /public/riders``: the riders found (the order sent; unknown ids left out)."""

    rider_ids: list[int] = field(repr=False)
    raw: bytes = field(repr=False)

    def missing(self, asked: Sequence[int]) -> list[int]:
        """The ids asked for that did not come back."""
        found = set(self.rider_ids)
        return [i for i in dict.fromkeys(asked) if i not in found]


@dataclass(frozen=True)
class RiderAnswer:
    rider_id: int
    rider: dict[str, Any] = field(repr=False)
    raw: bytes = field(repr=False)


@dataclass(frozen=True)
class EventAnswer:
    event_id: int
    starts_at: int  # epoch seconds
    title: str | None
    event: dict[str, Any] = field(repr=False)
    raw: bytes = field(repr=False)


@dataclass(frozen=True)
class SignupsAnswer:
    event_id: int
    rider_ids: list[int] = field(repr=False)
    raw: bytes = field(repr=False)


@dataclass(frozen=True)
class ResultsAnswer:
    event_id: int
    starts_at: int
    rider_ids: list[int] = field(repr=False)
    raw: bytes = field(repr=False)


def parse_club_page(raw: bytes, *, club_id: int, cursor: int = 0) -> ClubPage:
    """``{"clubId", "name", "riders": [...]}``: riders ascending, ``>= cursor``, ≤ 1000."""
    entity = f"club {club_id}"
    body = _object(decode(raw, entity), entity)
    answered = body.get("clubId")
    if not _is_id(answered):
        raise _bad(entity, "no integer clubId")
    if answered != club_id:
        raise _bad(entity, f"answered for club {answered}")
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        raise _bad(entity, f"name is {type(name).__name__}, not a string")
    riders = _list(body.get("riders"), entity, "riders")
    if len(riders) > PAGE_SIZE:
        raise _bad(entity, f"{len(riders)} riders in one page (at most {PAGE_SIZE})")
    ids: list[int] = []
    for index, rider in enumerate(riders):
        rider_id = check_rider(rider, entity, f"riders[{index}]: ")
        if ids and rider_id <= ids[-1]:
            raise _bad(entity, f"riders not ascending by riderId ({ids[-1]} then {rider_id})")
        if rider_id < cursor:
            raise _bad(entity, f"rider {rider_id} is before the cursor {cursor}")
        ids.append(rider_id)
    return ClubPage(
        club_id=club_id, name=name, cursor=cursor, rider_ids=ids, raw=raw,
        listed=len(ids), last_listed=ids[-1] if ids else None,
    )  # fmt: skip


def parse_riders(raw: bytes, *, asked: Sequence[int]) -> RidersAnswer:
    """A bare array of rider objects, each one of the ids asked for, each once."""
    entity = f"riders ({len(asked)} ids)"
    riders = _list(decode(raw, entity), entity, "the answer")
    wanted = set(asked)
    ids: list[int] = []
    for index, rider in enumerate(riders):
        rider_id = check_rider(rider, entity, f"[{index}]: ")
        if rider_id not in wanted:
            raise _bad(entity, f"rider {rider_id} was not asked for")
        ids.append(rider_id)
    if len(set(ids)) != len(ids):
        raise _bad(entity, "a rider came back twice")
    return RidersAnswer(rider_ids=ids, raw=raw)


def parse_rider(raw: bytes, *, rider_id: int) -> RiderAnswer:
    entity = f"rider {rider_id}"
    rider = _object(decode(raw, entity), entity)
    answered = check_rider(rider, entity)
    if answered != rider_id:
        raise _bad(entity, f"answered for rider {answered}")
    return RiderAnswer(rider_id=rider_id, rider=rider, raw=raw)


def parse_event(raw: bytes, *, event_id: int) -> EventAnswer:
    entity = f"event {event_id}"
    event = _object(decode(raw, entity), entity)
    _event_id(event, entity, event_id)
    starts_at = _start(event, entity)
    _check(event, EVENT_FIELDS, "", entity)
    title = event.get("title")
    return EventAnswer(event_id, starts_at, title, event, raw)


def parse_signups(raw: bytes, *, event_id: int) -> SignupsAnswer:
    """``{"eventId", "signups": [{"riderId", ...}]}`` (or a bare array of signups: the shape
    is unverified upstream, UPSTREAM §3.5)."""
    entity = f"event {event_id} signups"
    data = decode(raw, entity)
    if isinstance(data, dict):
        _event_id(data, entity, event_id)
        rows = _list(data.get("signups"), entity, "signups")
    else:
        rows = _list(data, entity, "the answer")
    ids: list[int] = []
    for index, row in enumerate(rows):
        row = _object(row, entity, f"signups[{index}] to be an object")
        rider_id: Any = row.get("riderId")
        if not _is_id(rider_id):
            raise _bad(entity, f"signups[{index}] has no integer riderId")
        _check(row, SIGNUP_FIELDS, f"signups[{index}] (rider {rider_id}): ", entity)
        ids.append(int(rider_id))
    if len(set(ids)) != len(ids):
        raise _bad(entity, "a rider is signed up twice")
    return SignupsAnswer(event_id=event_id, rider_ids=ids, raw=raw)


def parse_results(raw: bytes, *, event_id: int) -> ResultsAnswer:
    """``results.json``'s shape: the event header and ``results`` in finishing order."""
    entity = f"event {event_id} results"
    body = _object(decode(raw, entity), entity)
    _event_id(body, entity, event_id)
    starts_at = _start(body, entity)
    _check(body, EVENT_FIELDS, "", entity)
    rows = _list(body.get("results"), entity, "results")
    ids: list[int] = []
    for index, row in enumerate(rows):
        row = _object(row, entity, f"results[{index}] to be an object")
        rider_id: Any = row.get("riderId")
        if not _is_id(rider_id):
            raise _bad(entity, f"results[{index}] has no integer riderId")
        _check(row, RESULT_FIELDS, f"results[{index}] (rider {rider_id}): ", entity)
        ids.append(int(rider_id))
    if len(set(ids)) != len(ids):
        raise _bad(entity, "a rider has two results")
    return ResultsAnswer(event_id=event_id, starts_at=starts_at, rider_ids=ids, raw=raw)
