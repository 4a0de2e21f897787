"""A deterministic, seeded ZwiftRacing world: clubs, riders, events, signups and results.

Everything derives from ``random.Random(f"zwift:{seed}:...")`` streams (never the global
generator, never ``hash()``), so one seed gives one world, whatever the order of requests.

**Time.** The world lives on the wall clock of the sandbox's start (``start``, epoch seconds)
and a time scale ``S``: an offset of ``x`` simulated seconds is ``x / S`` real seconds. Events
are placed relative to the start in *simulated* time, so with ``S = 60`` an event 10 simulated
minutes away starts 10 real seconds after the sandbox did. The classes at the start:

- ``past``: started 2 h to 3 days before (simulated); finished, with results;
- ``urgent``: starts within 15 min; ``near``: within 60 min; ``far``: 90 min to 3 days ahead.

As the clock moves an event becomes urgent, starts, finishes (``starts_at + duration``) and then
has results; its class is always computed as of ``now`` (:meth:`ZwiftWorld.event_class`).

**Ratings move with results.** Every event that has finished by ``now`` has changed the rating
of each ranked finisher by its ``ratingDelta``; a rider's ``race`` block (current, max30, max90,
finishes) is computed as of the time asked for, so a rider read after an event finished shows
the new rating, and ``/public/riders/{id}/{time}`` shows it as of ``time``.

Payload shapes follow the real captures in ``tests/fixtures/zwiftracing/`` (UPSTREAM §3.4-3.5):
key order, types (``weight`` int or float, ``eventId`` a string, ``race: null`` for some riders,
``power``/``race``/``phenotype`` null for lapsed riders, ranked results with ``ratingDelta`` and
unranked ones with ``position`` and ``gap: null``). The event and signup objects are not in the
captures: their shape here (the results' event header plus ``numLaps``, ``staggeredStart``,
``categories``, ``signups`` as in the app's upcoming-event rows; signups as a list of riders) is
the sandbox's best guess **[unverified]**.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = [
    "EVENT_CLASSES",
    "Club",
    "Event",
    "Rider",
    "ZwiftWorld",
    "ZwiftWorldConfig",
    "mixed_category",
]

DAY = 86_400.0
URGENT_WITHIN = 15 * 60.0  # simulated seconds
NEAR_WITHIN = 60 * 60.0
EVENT_CLASSES = ("past", "running", "urgent", "near", "far")

_FIRST = (
    "Rob", "Jim", "Anna", "Ceri", "Andy", "Sofia", "Marta", "Tom", "Lena", "Piotr", "Kenji",
    "Ines", "Omar", "Freya", "Luca", "Nina", "Sam", "Aoife", "Jonas", "Zoe", "Matteo", "Ella",
)  # fmt: skip
_LAST = (
    "Griffin", "Billingsley", "Pritchard", "Cunningham", "Westmorland", "Whitlock", "Novak",
    "Hansen", "Moreau", "Rossi", "Tanaka", "Silva", "Kowalski", "O'Brien", "Jensen", "Müller",
)  # fmt: skip
_TAGS = ("", "", "", " [T&S]", " (ZSUNR)", " [mTNT]", " (border city wheelers)", " [DIRT]")
_CLUB_NAMES = ("Tea & Scone", "ZSUN Racing", "Team DIRT", "mTNT", "Border City Wheelers", "TFC")
_COUNTRIES = ("gb", "us", "ca", "gb-wls", "it", "gb-eng", "be", "ch", "se", "gb-sct", "de", "nl")
_AGES = ("Jnr", "Snr", "Mas", "Vet", "50+", "60+", "-")
_CATEGORIES = ("A+", "A", "B", "C", "D", "E")
_PHENOTYPES = ("Sprinter", "Puncheur", "Pursuiter", "Climber", "All-Rounder", "TT")
_SUBTYPES = ("Scratch", "Time Trial", "Ladder", "Points", "Team Time Trial")
_TITLES = ("CTT Winter Series on Zwift", "ZRL Race", "Tea & Scone Social Race", "TT Tuesday")
# (lowest rating, name, number): UPSTREAM §3.4; a lower number is a stronger tier.
_MIXED = (
    (2200.0, "Diamond", 1), (1900.0, "Ruby", 2), (1650.0, "Emerald", 3),
    (1450.0, "Sapphire", 4), (1300.0, "Amethyst", 5), (1150.0, "Platinum", 6),
    (1000.0, "Gold", 7), (850.0, "Silver", 8), (650.0, "Bronze", 9),
)  # fmt: skip


def mixed_category(rating: float) -> dict[str, Any]:
    """``{"category": "Emerald", "number": 3}`` for a rating."""
    for lowest, name, number in _MIXED:
        if rating >= lowest:
            return {"category": name, "number": number}
    return {"category": "Copper", "number": 10}


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class ZwiftWorldConfig:
    """The world's size. ``club_sizes``: one club per entry (one above 1000 pages the club
    endpoint); ``clubless``: riders in no club (manual adds, signups); event counts per class."""

    seed: int = 7
    club_sizes: tuple[int, ...] = (39, 320, 2345)
    clubless: int = 150
    past_events: int = 4
    urgent_events: int = 2
    near_events: int = 3
    far_events: int = 4
    signups_min: int = 10
    signups_max: int = 120

    def __post_init__(self) -> None:
        object.__setattr__(self, "club_sizes", tuple(int(n) for n in self.club_sizes))
        numbers = [*self.club_sizes, *(getattr(self, f.name) for f in fields(self)[2:])]
        if any(int(n) < 0 for n in numbers):
            raise ValueError("zwift world sizes must be >= 0")
        if self.signups_min > self.signups_max:
            raise ValueError("signups_min must be <= signups_max")

    def event_counts(self) -> dict[str, int]:
        return {
            "past": self.past_events,
            "urgent": self.urgent_events,
            "near": self.near_events,
            "far": self.far_events,
        }


# ---------------------------------------------------------------------------------------------
# Entities


@dataclass
class Rider:
    id: int
    name: str
    gender: str
    country: str
    age: str
    height: int
    weight: int | float
    category: str  # zpCategory
    ftp: int
    club_id: int | None
    base_rating: float | None  # None: race is null (never raced)
    base_date: int
    base_finishes: int
    dnfs: int
    wins: int
    podiums: int
    lapsed: bool = False  # power, race and phenotype null
    seed: str = ""
    # (finish time, rating after): the rating changes, in time order
    history: list[tuple[float, float]] = field(default_factory=list)

    def rating_at(self, now: float) -> tuple[float, int, int] | None:
        """(rating, its date as epoch s, finishes) as of ``now``; None without a race."""
        if self.base_rating is None:
            return None
        index = bisect.bisect_right(self.history, (now, float("inf")))
        if index == 0:
            return self.base_rating, self.base_date, self.base_finishes
        finished, rating = self.history[index - 1]
        return rating, int(finished), self.base_finishes + index

    def max_since(self, now: float, days: float) -> tuple[float, int]:
        """The best rating (and its date) among those in force during the last ``days``."""
        current = self.rating_at(now)
        assert current is not None
        best, best_date = current[0], current[1]
        cutoff = now - days * DAY
        index = bisect.bisect_right(self.history, (now, float("inf")))
        for finished, rating in self.history[:index]:
            if finished >= cutoff and rating > best:
                best, best_date = rating, int(finished)
        return best, best_date


@dataclass
class Club:
    id: int
    name: str
    rider_ids: list[int]  # ascending


@dataclass
class Signup:
    rider_id: int
    category: str
    at: float  # wall time it becomes visible


@dataclass
class Event:
    id: int
    title: str
    sub_type: str
    route_id: str
    distance: float  # km
    elevation: int
    laps: int
    staggered: bool
    starts_at: float  # wall epoch seconds
    duration: float  # real seconds
    signups: list[Signup]
    results: list[dict[str, Any]] = field(default_factory=list)  # filled by the timeline

    @property
    def finishes_at(self) -> float:
        return self.starts_at + self.duration


# ---------------------------------------------------------------------------------------------
# The world


class ZwiftWorld:
    """Every club, rider and event of one sandbox; payloads are rendered as of a given time."""

    def __init__(self, config: ZwiftWorldConfig, start: float, time_scale: float = 1.0) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self.config = config
        self.start = float(start)
        self.time_scale = float(time_scale)
        self.riders: dict[int, Rider] = {}
        self.clubs: dict[int, Club] = {}
        self.events: dict[int, Event] = {}
        self._added_events = 0
        self._build()

    # -- time ---------------------------------------------------------------------------------

    def real(self, simulated_seconds: float) -> float:
        """Real seconds for a simulated duration."""
        return simulated_seconds / self.time_scale

    def event_class(self, event: Event, now: float) -> str:
        """``past`` (finished), ``running``, ``urgent`` (< 15 min), ``near`` (< 60) or ``far``."""
        if now >= event.finishes_at:
            return "past"
        if now >= event.starts_at:
            return "running"
        ahead = event.starts_at - now
        if ahead < self.real(URGENT_WITHIN):
            return "urgent"
        if ahead < self.real(NEAR_WITHIN):
            return "near"
        return "far"

    # -- building -----------------------------------------------------------------------------

    def _rng(self, *parts: object) -> random.Random:
        return random.Random(":".join(["zwift", str(self.config.seed), *map(str, parts)]))

    def _build(self) -> None:
        config = self.config
        total = sum(config.club_sizes) + config.clubless
        rng = self._rng("ids")
        ids = sorted(rng.sample(range(1_000, 7_600_000), total)) if total else []
        rng.shuffle(ids)  # club membership does not follow id order
        club_ids = rng.sample(range(1_000, 99_999), len(config.club_sizes))
        cursor = 0
        for index, (club_id, size) in enumerate(zip(club_ids, config.club_sizes, strict=True)):
            members = sorted(ids[cursor : cursor + size])
            cursor += size
            name = _CLUB_NAMES[index % len(_CLUB_NAMES)]
            name = name if index < len(_CLUB_NAMES) else f"{name} {index // len(_CLUB_NAMES) + 1}"
            self.clubs[club_id] = Club(club_id, name, members)
            for rider_id in members:
                self.riders[rider_id] = self._rider(rider_id, club_id)
        for rider_id in ids[cursor:]:
            self.riders[rider_id] = self._rider(rider_id, None)
        self.riders = dict(sorted(self.riders.items()))
        event_rng = self._rng("events")
        for kind, count in config.event_counts().items():
            for index in range(count):
                offset = _offset(event_rng, kind)
                self._add_event(self._rng("event", kind, index), offset)
        self._timeline()

    def _rider(self, rider_id: int, club_id: int | None) -> Rider:
        rng = self._rng("rider", rider_id)
        height = rng.randint(155, 198)
        weight: int | float = rng.randint(52, 98)
        if rng.random() < 0.4:  # both types occur in one real club payload
            weight = round(weight + rng.choice((0.1, 0.25, 0.5, 0.8)), 2)
        wkg = rng.uniform(1.8, 5.6)
        ftp = round(wkg * float(weight))
        category = _CATEGORIES[min(5, max(0, int((5.4 - wkg) / 0.75)))]
        lapsed = rng.random() < 0.02
        raced = not lapsed and rng.random() > 0.05
        rating = round(300 + wkg * 330 + rng.gauss(0, 90), 6) if raced else None
        finishes = rng.randint(1, 80) if raced else 0
        return Rider(
            id=rider_id,
            name=f"{rng.choice(_FIRST)} {rng.choice(_LAST)}{rng.choice(_TAGS)}",
            gender="F" if rng.random() < 0.22 else "M",
            country=rng.choice(_COUNTRIES),
            age=rng.choice(_AGES),
            height=height,
            weight=weight,
            category=category,
            ftp=ftp,
            club_id=club_id,
            base_rating=rating,
            base_date=int(self.start - rng.uniform(1, 60) * DAY),
            base_finishes=finishes,
            dnfs=rng.randint(0, max(0, finishes // 8)),
            wins=rng.randint(0, finishes // 10),
            podiums=rng.randint(0, finishes // 5),
            lapsed=lapsed,
            seed=f"{rng.random():.6f}",
        )

    def _add_event(self, rng: random.Random, offset: float, signups: int | None = None) -> Event:
        """An event starting ``offset`` simulated seconds after the start (negative: before)."""
        config = self.config
        event_id = rng.randint(5_100_000, 5_399_999)
        while event_id in self.events:
            event_id += 1
        starts_at = self.start + self.real(offset)
        racers = [r for r in self.riders.values() if r.base_rating is not None]
        if signups is None:
            signups = rng.randint(config.signups_min, config.signups_max)
        chosen = rng.sample(racers, min(len(racers), signups))
        lead = self.real(2 * DAY)
        listed = [
            Signup(r.id, _race_category(r.category), starts_at - rng.uniform(self.real(60), lead))
            for r in chosen
        ]
        listed.sort(key=lambda s: (s.at, s.rider_id))
        distance = round(rng.uniform(12.0, 48.0), 4)
        event = Event(
            id=event_id,
            title=rng.choice(_TITLES),
            sub_type=rng.choice(_SUBTYPES),
            route_id=str(rng.randint(10_000_000, 3_999_999_999)),
            distance=distance,
            elevation=rng.randint(5, 900),
            laps=rng.randint(1, 6),
            staggered=rng.random() < 0.6,
            starts_at=starts_at,
            duration=self.real(rng.uniform(25, 80) * 60),
            signups=listed,
        )
        self.events[event_id] = event
        return event

    def add_event(self, starts_in: float, signups: int | None = None) -> Event:
        """An event starting ``starts_in`` simulated seconds after ``start`` (admin route)."""
        self._added_events += 1
        event = self._add_event(self._rng("added", self._added_events), starts_in, signups)
        self._timeline()
        return event

    def _timeline(self) -> None:
        """Results of every event and the rating changes they make, in finishing order."""
        for rider in self.riders.values():
            rider.history.clear()
        for event in sorted(self.events.values(), key=lambda e: (e.finishes_at, e.id)):
            event.results = self._results(event)

    def _results(self, event: Event) -> list[dict[str, Any]]:
        rng = self._rng("results", event.id)
        by_category: dict[str, list[tuple[float, Rider, bool]]] = {}
        for signup in event.signups:
            rider = self.riders[signup.rider_id]
            if rng.random() < 0.04:  # did not finish: absent from the results
                continue
            wkg = rider.ftp / float(rider.weight)
            speed = 7.0 + wkg * 1.9 + rng.gauss(0, 0.4)  # m/s
            seconds = event.distance * 1000 / max(4.0, speed)
            unranked = rng.random() < 0.05
            by_category.setdefault(signup.category, []).append((seconds, rider, unranked))
        overall = sorted(t for entries in by_category.values() for t, _, _ in entries)
        rows: list[dict[str, Any]] = []
        for category in sorted(by_category):
            entries = sorted(by_category[category], key=lambda e: (e[2], e[0], e[1].id))
            winner = entries[0][0]
            for place, (seconds, rider, unranked) in enumerate(entries, start=1):
                row = self._result_row(
                    event, rider, category, place, seconds, winner, unranked, overall, rng
                )
                rows.append(row)
        return rows

    def _result_row(
        self,
        event: Event,
        rider: Rider,
        category: str,
        place: int,
        seconds: float,
        winner: float,
        unranked: bool,
        overall: list[float],
        rng: random.Random,
    ) -> dict[str, Any]:
        before = rider.rating_at(event.finishes_at - 1e-6)
        assert before is not None  # only riders with a race sign up
        rating_before = before[0]
        row: dict[str, Any] = {"riderId": rider.id, "name": rider.name, "category": category}
        if unranked:  # as in the capture: whole seconds, no gap, no delta, an overall position
            position = bisect.bisect_left(overall, seconds) + 1
            row.update(time=int(seconds), gap=None, position=position)
            rating_after = rating_before
        else:
            row.update(time=round(seconds, 3), gap=round(seconds - winner, 3))
            rating_after = round(rating_before + rng.gauss(0, 18), 6)
        row["positionInCategory"] = place
        max30 = max(rider.max_since(event.finishes_at - 1e-6, 30)[0], rating_after)
        max90 = max(rider.max_since(event.finishes_at - 1e-6, 90)[0], rating_after)
        row.update(rating=rating_after, ratingBefore=rating_before)
        if not unranked:
            row["ratingDelta"] = rating_after - rating_before
            rider.history.append((event.finishes_at, rating_after))
        row.update(ratingMax30=max30, ratingMax90=max90)
        return row

    # -- payloads -----------------------------------------------------------------------------

    def rider_payload(
        self, rider: Rider, now: float, race_at: float | None = None
    ) -> dict[str, Any]:
        """The rider object (``rider.json``'s shape); ``race`` as of ``race_at`` (else now)."""
        rng = random.Random(f"zwift:{self.config.seed}:payload:{rider.id}")
        weight = float(rider.weight)
        payload: dict[str, Any] = {
            "riderId": rider.id,
            "name": rider.name,
            "gender": rider.gender,
            "country": rider.country,
            "age": rider.age,
            "height": rider.height,
            "weight": rider.weight,
            "zpCategory": rider.category,
            "zpFTP": rider.ftp,
            "power": None if rider.lapsed else _power(rng, rider.ftp, weight),
            "race": None if rider.lapsed else self._race(rider, race_at or now),
            "handicaps": {
                "profile": {
                    name: rng.uniform(-120, 90)
                    for name in ("flat", "rolling", "hilly", "mountainous")
                }
            },
            "phenotype": None if rider.lapsed else _phenotype(rng),
        }
        if rider.club_id is not None:
            payload["club"] = {"id": rider.club_id, "name": self.clubs[rider.club_id].name}
        return payload

    def _race(self, rider: Rider, at: float) -> dict[str, Any] | None:
        current = rider.rating_at(at)
        if current is None:
            return None
        rating, date, finishes = current
        block = {"rating": rating, "date": date, "mixed": mixed_category(rating)}
        race: dict[str, Any] = {"last": dict(block), "current": dict(block)}
        for name, days in (("max30", 30), ("max90", 90)):
            best, best_date = rider.max_since(at, days)
            race[name] = {
                "rating": best,
                "date": best_date,
                "expires": int(best_date + days * DAY),
                "mixed": mixed_category(best),
            }
        race.update(finishes=finishes, dnfs=rider.dnfs, wins=rider.wins, podiums=rider.podiums)
        return race

    def club_payload(
        self, club: Club, now: float, from_rider: int = 0, limit: int = 1000
    ) -> dict[str, Any]:
        """``{"clubId", "name", "riders"}``: members with ``riderId >= from_rider`` (inclusive,
        as the real API pages), ascending, at most ``limit``."""
        start = bisect.bisect_left(club.rider_ids, from_rider)
        page = club.rider_ids[start : start + limit]
        riders = [self.rider_payload(self.riders[i], now) for i in page]
        return {"clubId": club.id, "name": club.name, "riders": riders}

    def visible_signups(self, event: Event, now: float) -> list[Signup]:
        return [s for s in event.signups if s.at <= now]

    def _header(self, event: Event) -> dict[str, Any]:
        return {
            "eventId": str(event.id),
            "time": int(event.starts_at),
            "routeId": event.route_id,
            "distance": event.distance,
            "elevation": event.elevation,
            "title": event.title,
            "type": "Race",
            "subType": event.sub_type,
        }

    def event_payload(self, event: Event, now: float) -> dict[str, Any]:
        counts = dict.fromkeys("ABCDE", 0)
        for signup in self.visible_signups(event, now):
            counts[signup.category] += 1
        return {
            **self._header(event),
            "numLaps": str(event.laps),
            "staggeredStart": event.staggered,
            "categories": ",".join(counts),
            "signups": ",".join(str(n) for n in counts.values()),
        }

    def signups_payload(self, event: Event, now: float) -> dict[str, Any]:
        rows = []
        for signup in self.visible_signups(event, now):
            rider = self.riders[signup.rider_id]
            current = rider.rating_at(now)
            club = None
            if rider.club_id is not None:
                club = {"id": rider.club_id, "name": self.clubs[rider.club_id].name}
            rows.append(
                {
                    "riderId": rider.id,
                    "name": rider.name,
                    "category": signup.category,
                    "rating": None if current is None else current[0],
                    "club": club,
                }
            )
        return {"eventId": str(event.id), "time": int(event.starts_at), "signups": rows}

    def results_payload(self, event: Event, now: float) -> dict[str, Any] | None:
        """``results.json``'s shape once the event has finished; None before."""
        if now < event.finishes_at:
            return None
        return {**self._header(event), "results": [dict(row) for row in event.results]}

    # -- truth --------------------------------------------------------------------------------

    def truth(self, now: float) -> dict[str, Any]:
        """Everything a complete sync should hold as of ``now`` (admin ``/_admin/truth``)."""
        riders = {}
        for rider in self.riders.values():
            current = None if rider.lapsed else rider.rating_at(now)
            riders[str(rider.id)] = {
                "club_id": rider.club_id,
                "name": rider.name,
                "category": rider.category,
                "rating": None if current is None else current[0],
                "rating_changes": sum(1 for t, _ in rider.history if t <= now),
            }
        return {
            "now": now,
            "start": self.start,
            "time_scale": self.time_scale,
            "clubs": [
                {"club_id": c.id, "name": c.name, "rider_ids": list(c.rider_ids)}
                for c in self.clubs.values()
            ],
            "riders": riders,
            "events": [self.event_truth(e, now) for e in self.events.values()],
        }

    def event_truth(self, event: Event, now: float) -> dict[str, Any]:
        finished = now >= event.finishes_at
        return {
            "event_id": event.id,
            "title": event.title,
            "starts_at": int(event.starts_at),
            "finishes_at": event.finishes_at,
            "class": self.event_class(event, now),
            "signups": [s.rider_id for s in self.visible_signups(event, now)],
            "results": [row["riderId"] for row in event.results] if finished else None,
        }


def _race_category(zp_category: str) -> str:
    return "A" if zp_category == "A+" else zp_category


def _offset(rng: random.Random, kind: str) -> float:
    """Simulated seconds from the start for an event of class ``kind``."""
    if kind == "past":
        return -rng.uniform(2 * 3600, 3 * DAY)
    if kind == "urgent":
        return rng.uniform(2 * 60, URGENT_WITHIN - 60)
    if kind == "near":
        return rng.uniform(URGENT_WITHIN + 60, NEAR_WITHIN - 60)
    return rng.uniform(90 * 60, 3 * DAY)


def _power(rng: random.Random, ftp: int, weight: float) -> dict[str, Any]:
    factors = {"5": 3.0, "15": 2.75, "30": 2.3, "60": 1.85, "120": 1.4, "300": 1.22, "1200": 1.06}
    watts = {k: round(ftp * f * rng.uniform(0.92, 1.08)) for k, f in factors.items()}
    power: dict[str, Any] = {f"wkg{k}": w / weight for k, w in watts.items()}
    power.update({f"w{k}": w for k, w in watts.items()})
    power["CP"] = ftp * rng.uniform(1.0, 1.1)
    power["AWC"] = rng.uniform(9000, 26000)
    power["compoundScore"] = rng.uniform(400, 2200)
    return power


def _phenotype(rng: random.Random) -> dict[str, Any]:
    kinds = ("sprinter", "puncheur", "pursuiter", "climber", "tt")
    scores = {kind: round(rng.uniform(30, 99), 1) for kind in kinds}
    return {
        "scores": scores,
        "value": rng.choice(_PHENOTYPES),
        "bias": round(rng.uniform(0, 30), 1),
    }


def world_config_from_json(body: Mapping[str, Any]) -> ZwiftWorldConfig:
    """A world config from JSON (lists for ``club_sizes``); ValueError on unknown fields."""
    known = {f.name for f in fields(ZwiftWorldConfig)}
    unknown = set(body) - known
    if unknown:
        raise ValueError(f"unknown zwift world fields: {sorted(unknown)}")
    values: dict[str, Any] = {
        k: (tuple(int(n) for n in v) if k == "club_sizes" else int(v)) for k, v in body.items()
    }
    return ZwiftWorldConfig(**values)
