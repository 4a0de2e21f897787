"""Mythic keystone and professions payloads (the per-character progress endpoints)."""

from __future__ import annotations

import random

from sandbox import wow_static as wd
from sandbox.wow_payloads import (
    CharacterState,
    Payload,
    char_path,
    character_ref,
    link,
    race_name,
    realm_ref,
    seeded_rng,
    spec_of,
    static_link,
)

# ---------------------------------------------------------------------------------------------
# Mythic keystone profile


def _rating_color(rating: float) -> Payload:
    if rating >= 2000:
        return {"r": 255, "g": 128, "b": 0, "a": 1.0}
    if rating >= 1500:
        return {"r": 163, "g": 53, "b": 238, "a": 1.0}
    return {"r": 0, "g": 112, "b": 221, "a": 1.0}


def _run_member(c: CharacterState, ilvl: int) -> Payload:
    spec_id, spec_name = spec_of(c)
    region = c.region
    return {
        "character": {
            "name": c.name,
            "id": c.id,
            "realm": realm_ref(region, c.realm, with_name=False),
        },
        "specialization": {
            "key": static_link(region, f"/data/wow/playable-specialization/{spec_id}"),
            "name": spec_name,
            "id": spec_id,
        },
        "race": {
            "key": static_link(region, f"/data/wow/playable-race/{c.race_id}"),
            "name": race_name(c.faction, c.race_id),
            "id": c.race_id,
        },
        "equipped_item_level": ilvl,
    }


def _best_run(c: CharacterState, party: list[CharacterState], rng: random.Random) -> Payload:
    region = c.region
    dungeon_id, dungeon = rng.choice(wd.DUNGEONS)
    affixes = rng.sample(wd.AFFIXES, 4)
    return {
        "completed_timestamp": c.last_login_ms - rng.randint(0, 6 * 86_400_000),
        "duration": rng.randint(1_200_000, 2_700_000),
        "keystone_level": rng.randint(2, 20),
        "keystone_affixes": [
            {"key": static_link(region, f"/data/wow/keystone-affix/{aid}"), "name": name, "id": aid}
            for aid, name in affixes
        ],
        # Only c's own state may show here: a teammate's touch must not change c's payload
        # without moving c's Last-Modified, so teammates' item levels are derived from c's.
        "members": [_run_member(m, c.equipped_item_level - rng.randint(0, 8)) for m in [c, *party]],
        "dungeon": {
            "key": link(region, f"/data/wow/mythic-keystone/dungeon/{dungeon_id}", "dynamic"),
            "name": dungeon,
            "id": dungeon_id,
        },
        "is_completed_within_time": rng.random() < 0.7,
    }


def mythic_payload(c: CharacterState, others: list[CharacterState], seed: int) -> Payload:
    """``others`` are candidate party members; 4 are picked deterministically per run."""
    rng = seeded_rng(seed, "mythic", c.region, c.id)
    kind = rng.random()  # < 0.75 ran keys this week; < 0.85 rated but no runs; else never ran
    base_rating = rng.uniform(300.0, 2900.0)
    if c.level < wd.MAX_LEVEL:
        kind = 1.0  # keystones need the level cap
    current: Payload = {
        "period": {
            "key": link(
                c.region, f"/data/wow/mythic-keystone/period/{wd.MYTHIC_PERIOD}", "dynamic"
            ),
            "id": wd.MYTHIC_PERIOD,
        }
    }
    if kind < 0.75:
        pool = [o for o in others if o.id != c.id] or [c]
        current["best_runs"] = [
            _best_run(c, [rng.choice(pool) for _ in range(4)], rng)
            for _ in range(rng.randint(1, 4))
        ]
    payload: Payload = {
        "_links": {"self": link(c.region, char_path(c) + "/mythic-keystone-profile")},
        "current_period": current,
        "seasons": [
            {"key": link(c.region, char_path(c) + f"/mythic-keystone-profile/season/{n}"), "id": n}
            for n in wd.MYTHIC_SEASONS
        ],
        "character": character_ref(c),
    }
    if kind < 0.85:
        rating = round(base_rating + c.rating_bonus, 3)
        payload["current_mythic_rating"] = {"color": _rating_color(rating), "rating": rating}
    return payload


# ---------------------------------------------------------------------------------------------
# Professions


def _profession(region: str, entry: tuple[int, str, int, str], rng: random.Random) -> Payload:
    prof_id, name, tier_id, tier_name = entry
    prof = {
        "key": static_link(region, f"/data/wow/profession/{prof_id}"),
        "name": name,
        "id": prof_id,
    }
    if not tier_id:  # old-style secondary: points at the top level, no tiers
        points = rng.randint(1, 950)
        return {"profession": prof, "skill_points": points, "max_skill_points": 950}
    max_points = 175
    recipes = []
    for _ in range(rng.randint(0, 5)):
        recipe_id = rng.randint(250_000, 300_000)
        label = f"{rng.choice(wd.RECIPE_WORDS)} {rng.choice(wd.RECIPE_QUALIFIERS)}"
        recipes.append(
            {
                "key": static_link(region, f"/data/wow/recipe/{recipe_id}"),
                "name": label,
                "id": recipe_id,
            }
        )
    tier = {
        "skill_points": rng.randint(1, max_points),
        "max_skill_points": max_points,
        "tier": {"name": tier_name, "id": tier_id},
        "known_recipes": recipes,
    }
    return {"profession": prof, "tiers": [tier]}


def professions_payload(c: CharacterState, seed: int) -> Payload:
    rng = seeded_rng(seed, "professions", c.region, c.id)
    payload: Payload = {
        "_links": {"self": link(c.region, char_path(c) + "/professions")},
        "character": character_ref(c),
    }
    if rng.random() < 0.1:  # never trained anything: the lists are missing
        return payload
    primaries = rng.sample(wd.PRIMARY_PROFESSIONS, rng.randint(0, 2))
    secondaries = rng.sample(wd.SECONDARY_PROFESSIONS, rng.randint(0, 3))
    payload["primaries"] = [_profession(c.region, p, rng) for p in primaries]
    payload["secondaries"] = [_profession(c.region, s, rng) for s in secondaries]
    return payload
