"""ZwiftRacing parsers: the real captures parse; drifted payloads are BadPayload naming the
entity; bodies cut in transit are MalformedBody (asked again)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from providers.errors import BadPayload, MalformedBody, Transient
from providers.zwift.parse import (
    PAGE_SIZE,
    parse_club_page,
    parse_event,
    parse_results,
    parse_rider,
    parse_riders,
    parse_signups,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "zwiftracing"


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def data(name: str) -> Any:
    return json.loads(raw(name))


def encode(value: Any) -> bytes:
    return orjson.dumps(value)


# --- the real captures -----------------------------------------------------------------------


def test_the_club_capture_parses() -> None:
    page = parse_club_page(raw("club.json"), club_id=20650)
    assert page.club_id == 20650 and page.name == "Tea & Scone" and page.count == 39
    assert page.rider_ids == sorted(page.rider_ids) and page.rider_ids[0] == 8208
    assert page.is_last and page.next_cursor is None
    assert page.raw == raw("club.json")  # stored as received


def test_the_club_capture_from_a_cursor_starts_with_the_cursor_rider() -> None:
    page = parse_club_page(raw("club_from.json"), club_id=20650, cursor=4598636)
    assert page.rider_ids[0] == 4598636 and page.count == 18


def test_the_rider_captures_parse() -> None:
    now = parse_rider(raw("rider.json"), rider_id=4598636)
    then = parse_rider(raw("rider_epoch.json"), rider_id=4598636)
    assert now.rider["race"]["current"]["rating"] > then.rider["race"]["current"]["rating"]
    assert now.rider["club"] == {"id": 20650, "name": "Tea & Scone"}


def test_the_bulk_capture_parses_in_the_order_sent() -> None:
    answer = parse_riders(raw("riders.json"), asked=[4598636, 5574, 99])
    assert answer.rider_ids == [4598636, 5574]
    assert answer.missing([4598636, 5574, 99]) == [99]


def test_the_results_capture_parses() -> None:
    answer = parse_results(raw("results.json"), event_id=5188741)
    assert answer.event_id == 5188741 and answer.starts_at == 1762974000
    assert len(answer.rider_ids) == 548 and len(set(answer.rider_ids)) == 548


def test_riders_without_race_power_or_phenotype_parse() -> None:
    rider = data("rider.json")
    rider.update(power=None, race=None, phenotype=None)  # a lapsed rider
    rider.update(seed=3, velo={"race": 1.2}, zrs=4, weightChangedAt=1764000000)  # 2026 keys
    del rider["club"]
    assert parse_rider(encode(rider), rider_id=4598636).rider_id == 4598636
    rider["race"] = {"current": None, "finishes": 0}
    parse_rider(encode(rider), rider_id=4598636)


def test_an_event_and_its_signups_parse() -> None:
    header = {k: v for k, v in data("results.json").items() if k != "results"}
    event = {**header, "numLaps": "4", "categories": "A,B", "signups": "20,29"}
    answer = parse_event(encode(event), event_id=5188741)
    assert answer.starts_at == 1762974000 and answer.title == "CTT Winter Series on Zwift"
    signups = {"eventId": "5188741", "signups": [{"riderId": 8, "category": "A"}, {"riderId": 9}]}
    assert parse_signups(encode(signups), event_id=5188741).rider_ids == [8, 9]
    assert parse_signups(encode([{"riderId": 8}]), event_id=5188741).rider_ids == [8]


# --- drift -----------------------------------------------------------------------------------


def _rider_with(path: list[str | int], value: Any) -> dict[str, Any]:
    rider = copy.deepcopy(data("rider.json"))
    target: Any = rider
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return rider


@pytest.mark.parametrize(
    ("path", "value", "said"),
    [
        (["riderId"], "4598636", "no integer riderId"),
        (["riderId"], True, "no integer riderId"),
        (["name"], 5, "name is int"),
        (["zpCategory"], ["B"], "zpCategory is list"),
        (["weight"], "77", "weight is str"),
        (["race"], [], "race is list"),
        (["race", "current", "rating"], "1803", "race.current.rating is str"),
        (["race", "current", "date"], 1764788400.5, "race.current.date is float"),
        (["club", "id"], "20650", "club.id is str"),
    ],
)
def test_a_drifted_rider_is_bad_payload_naming_it(
    path: list[str | int], value: Any, said: str
) -> None:
    with pytest.raises(BadPayload) as caught:
        parse_rider(encode(_rider_with(path, value)), rider_id=4598636)
    assert caught.value.entity == "rider 4598636"
    assert said in str(caught.value) and "rider 4598636" in str(caught.value)
    assert not isinstance(caught.value, Transient) and caught.value.retryable is False


def test_a_rider_answer_for_another_rider_is_bad_payload() -> None:
    with pytest.raises(BadPayload, match="answered for rider 4598636"):
        parse_rider(raw("rider.json"), rider_id=5574)
    with pytest.raises(BadPayload, match="expected a JSON object"):
        parse_rider(encode([data("rider.json")]), rider_id=4598636)


def _club_with(change: Any) -> bytes:
    club = data("club.json")
    change(club)
    return encode(club)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda c: c.update(clubId="20650"), "no integer clubId"),
        (lambda c: c.update(clubId=1), "answered for club 1"),
        (lambda c: c.update(riders={}), "riders is dict, not an array"),
        (lambda c: c["riders"].reverse(), "not ascending"),
        (lambda c: c["riders"].append(c["riders"][-1]), "not ascending"),
        (lambda c: c["riders"][3].update(riderId=None), "riders[3]: rider has no integer riderId"),
        (lambda c: c["riders"][0]["race"].update(current=[]), "race.current is list"),
        (lambda c: c.update(riders=[c["riders"][0]] * (PAGE_SIZE + 1)), "1001 riders"),
    ],
)
def test_a_drifted_club_page_is_bad_payload_naming_the_club(change: Any, said: str) -> None:
    with pytest.raises(BadPayload) as caught:
        parse_club_page(_club_with(change), club_id=20650)
    assert caught.value.entity == "club 20650" and said in str(caught.value)


def test_a_club_page_before_its_cursor_is_bad_payload() -> None:
    with pytest.raises(BadPayload, match="before the cursor"):
        parse_club_page(raw("club.json"), club_id=20650, cursor=8209)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"riders": []}, "the answer is dict, not an array"),
        ([{"riderId": 1}], "rider 1 was not asked for"),
        ([data("rider.json"), data("rider.json")], "came back twice"),
        (["x"], "rider is str"),
    ],
)
def test_a_drifted_bulk_answer_is_bad_payload(body: Any, said: str) -> None:
    with pytest.raises(BadPayload) as caught:
        parse_riders(encode(body), asked=[4598636, 5574])
    assert caught.value.entity == "riders (2 ids)" and said in str(caught.value)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda r: r.update(eventId=5188741.0), "no eventId of digits"),
        (lambda r: r.update(eventId="1"), "answered for event 1"),
        (lambda r: r.update(time="1762974000"), "time is str"),
        (lambda r: r.update(results=None), "results is NoneType"),
        (lambda r: r["results"][5].update(riderId="1"), "results[5] has no integer riderId"),
        (lambda r: r["results"][5].update(time="25:06"), "time is str"),
        (lambda r: r["results"][5].update(ratingDelta=[1]), "ratingDelta is list"),
        (lambda r: r["results"][5].update(positionInCategory=1.5), "positionInCategory is float"),
        (lambda r: r["results"].append(r["results"][0]), "two results"),
    ],
)
def test_drifted_results_are_bad_payload_naming_the_event(change: Any, said: str) -> None:
    results = data("results.json")
    change(results)
    with pytest.raises(BadPayload) as caught:
        parse_results(encode(results), event_id=5188741)
    assert caught.value.entity == "event 5188741 results" and said in str(caught.value)


def test_drifted_events_and_signups_are_bad_payload() -> None:
    with pytest.raises(BadPayload, match="event 7: no eventId"):
        parse_event(encode({"time": 1}), event_id=7)
    with pytest.raises(BadPayload, match="title is int"):
        parse_event(encode({"eventId": "7", "time": 1, "title": 3}), event_id=7)
    with pytest.raises(BadPayload, match=r"event 7 signups: signups\[0\] has no integer riderId"):
        parse_signups(encode({"eventId": "7", "signups": [{"riderId": "8"}]}), event_id=7)
    with pytest.raises(BadPayload, match="signed up twice"):
        parse_signups(encode([{"riderId": 8}, {"riderId": 8}]), event_id=7)
    with pytest.raises(BadPayload, match="signups is NoneType"):
        parse_signups(encode({"eventId": "7"}), event_id=7)


@pytest.mark.parametrize(
    ("parse", "name", "entity"),
    [
        (lambda b: parse_rider(b, rider_id=4598636), "rider.json", "rider 4598636"),
        (lambda b: parse_club_page(b, club_id=20650), "club.json", "club 20650"),
        (lambda b: parse_results(b, event_id=5188741), "results.json", "event 5188741 results"),
        (lambda b: parse_riders(b, asked=[4598636, 5574]), "riders.json", "riders (2 ids)"),
    ],
)
def test_a_body_cut_in_transit_is_malformed_and_retryable(
    parse: Any, name: str, entity: str
) -> None:
    body = raw(name)
    with pytest.raises(MalformedBody) as caught:
        parse(body[: len(body) // 2])
    assert caught.value.entity == entity and caught.value.retryable
