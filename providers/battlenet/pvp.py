"""Parsing of PvP payloads: leaderboards (thousands of entries in one body) and equipment items.

Column values are taken out in plain lists (one per column) so storage can send a whole
leaderboard to Postgres in one statement.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from providers.battlenet.names import character_slug, valid_slug
from providers.errors import BadPayload
from storage.db import json_text


@dataclass
class LeaderboardColumns:
    """One list per column, index-aligned: entry i is (bnet_ids[i], realms[i], …)."""

    bracket_type: str | None
    bnet_ids: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    realms: list[str] = field(default_factory=list)
    ranks: list[int] = field(default_factory=list)
    ratings: list[int] = field(default_factory=list)
    played: list[int | None] = field(default_factory=list)
    won: list[int | None] = field(default_factory=list)
    lost: list[int | None] = field(default_factory=list)
    factions: list[str | None] = field(default_factory=list)
    tiers: list[int | None] = field(default_factory=list)
    entries_json: list[str] = field(default_factory=list)
    # entries left out: a name or realm slug that cannot be a path segment, an integer beyond
    # its column (rating 2**40, an id beyond 64 bits) or a NUL character in the entry
    rejected: int = 0

    def __len__(self) -> int:
        return len(self.bnet_ids)


def leaderboard_columns(payload: Any, entity: str) -> LeaderboardColumns:
    """The entries as columns. Any value of the wrong type (schema drift: ``"id": "abc"``, a
    string where an object belongs) is a :class:`BadPayload` naming the leaderboard, never a
    value Postgres would refuse later."""
    if not isinstance(payload, dict) or not isinstance(payload.get("entries"), list):
        raise BadPayload(f"leaderboard {entity} has no entries list", entity=entity)
    try:
        out = LeaderboardColumns(bracket_type=_opt(payload, "bracket", "type", str))
    except (KeyError, TypeError, ValueError) as exc:
        raise BadPayload(
            f"leaderboard {entity}: malformed bracket ({exc})", entity=entity
        ) from None
    seen: set[int] = set()
    for n, entry in enumerate(payload["entries"]):
        try:
            char = _object(entry["character"])
            bnet_id = _int(char["id"])
            realm = _str(_object(char["realm"])["slug"])
            name = _str(char["name"])
            rank, rating = _int(entry["rank"]), _int(entry["rating"])
            stats = entry.get("season_match_statistics") or {}
            played = _opt(stats, "played", None, int)
            won = _opt(stats, "won", None, int)
            lost = _opt(stats, "lost", None, int)
            faction = _opt(entry, "faction", "type", str)
            tier = _opt(entry, "tier", "id", int)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadPayload(
                f"leaderboard {entity}: malformed entry {n} ({type(exc).__name__}: {exc})",
                entity=entity,
            ) from None
        if bnet_id in seen:  # one row per character and snapshot
            continue
        text = json_text(entry)
        if not (
            valid_slug(realm)
            and valid_slug(character_slug(name))
            and _fits(bnet_id, 64)
            and all(_fits(v, 32) for v in (rank, rating, played, won, lost, tier))
            and _storable_text(name, realm, text)
        ):
            # upstream values are input too: a name or realm that cannot be a path segment,
            # an integer beyond its integer/bigint column, a NUL Postgres text/JSONB refuses:
            # never stored, never asked for
            out.rejected += 1
            continue
        seen.add(bnet_id)
        out.bnet_ids.append(bnet_id)
        out.names.append(name)
        out.realms.append(realm)
        out.ranks.append(rank)
        out.ratings.append(rating)
        out.played.append(played)
        out.won.append(won)
        out.lost.append(lost)
        out.factions.append(faction)
        out.tiers.append(tier)
        out.entries_json.append(text)
    return out


def _fits(value: int | None, bits: int) -> bool:
    """None, or an integer a signed ``bits``-bit Postgres column holds (integer: 32, bigint: 64)."""
    return value is None or -(2 ** (bits - 1)) <= value < 2 ** (bits - 1)


def _storable_text(*texts: str | None) -> bool:
    """No NUL, raw or as the JSON escape ``\\u0000``: Postgres text and JSONB refuse both."""
    return not any(t is not None and ("\x00" in t or "\\u0000" in t) for t in texts)


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return value


def _int(value: Any) -> int:
    """An integer, or a string of digits (as JSON sometimes carries ids); never a bool/float."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return int(value)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _opt(container: Any, key: str, sub: str | None, kind: type) -> Any:
    """``container[key][sub]`` (or ``container[key]``) when present; None when absent or null;
    TypeError when it is there with the wrong type."""
    value = _object(container).get(key)
    if value is not None and sub is not None:
        value = _object(value).get(sub)
    if value is None:
        return None
    if kind is int:
        return _int(value)
    if not isinstance(value, kind):
        raise TypeError(f"{key}: expected {kind.__name__}, got {type(value).__name__}")
    return value


# What differs between two characters wearing the same item; the rest (name, media, stats
# text…) is the item's own and is stored once, in `items.item_json`.
PER_CHARACTER_KEYS = (
    "slot", "quantity", "context", "bonus_list", "level", "enchantments", "sockets",
    "modified_appearance_id", "transmog", "azerite_details", "name_description",
)  # fmt: skip


@dataclass(frozen=True)
class EquippedItem:
    bnet_item_id: int
    slot: str
    name: str | None
    quality: str | None
    inventory_type: str | None
    item_class: str | None
    item_level: int | None
    raw: dict[str, Any]

    @property
    def detail(self) -> dict[str, Any]:
        """The character-specific part of the item (stored per leaderboard entry)."""
        return {k: self.raw[k] for k in PER_CHARACTER_KEYS if k in self.raw}


def equipped_items(payload: Any, entity: str) -> list[EquippedItem]:
    if not isinstance(payload, dict):
        raise BadPayload(f"equipment of {entity} is not an object", entity=entity)
    items = payload.get("equipped_items")
    if items is None:
        return []
    if not isinstance(items, list):
        raise BadPayload(f"equipment of {entity} is not a list", entity=entity)
    out = []
    for item in items:
        try:
            out.append(
                EquippedItem(
                    bnet_item_id=_int(_object(_object(item)["item"])["id"]),
                    slot=_str(_object(item["slot"])["type"]),
                    name=_opt(item, "name", None, str),
                    quality=_opt(item, "quality", "type", str),
                    inventory_type=_opt(item, "inventory_type", "type", str),
                    item_class=_opt(item, "item_class", "name", str),
                    item_level=_opt(item, "level", "value", int),
                    raw=item,
                )
            )
        except (KeyError, TypeError, ValueError):
            raise BadPayload(f"equipment of {entity}: malformed item", entity=entity) from None
        parsed = out[-1]
        strings = (parsed.slot, parsed.name, parsed.quality, parsed.inventory_type)
        if not (
            _fits(parsed.bnet_item_id, 64)
            and _fits(parsed.item_level, 32)
            and _storable_text(*strings, parsed.item_class, json_text(item))
        ):
            raise BadPayload(
                f"equipment of {entity}: an item value its column cannot hold", entity=entity
            )
    return out


def equipment_hash(body: bytes) -> str:
    """A content hash of the equipment body: unchanged gear → same hash, whatever the headers
    (Last-Modified moves when anything about the character changes, the gear often does not)."""
    return hashlib.sha256(body).hexdigest()
