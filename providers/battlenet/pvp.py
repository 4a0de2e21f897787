"""Parsing of PvP payloads: leaderboards (thousands of entries in one body) and equipment items.

Column values are taken out in plain lists (one per column) so storage can send a whole
leaderboard to Postgres in one statement.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from providers.errors import BadPayload


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

    def __len__(self) -> int:
        return len(self.bnet_ids)


def leaderboard_columns(payload: Any, entity: str) -> LeaderboardColumns:
    if not isinstance(payload, dict) or not isinstance(payload.get("entries"), list):
        raise BadPayload(f"leaderboard {entity} has no entries list", entity=entity)
    out = LeaderboardColumns(bracket_type=(payload.get("bracket") or {}).get("type"))
    seen: set[int] = set()
    for entry in payload["entries"]:
        try:
            char = entry["character"]
            bnet_id = int(char["id"])
            realm = str(char["realm"]["slug"])
            name = str(char["name"])
            rank, rating = int(entry["rank"]), int(entry["rating"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BadPayload(
                f"leaderboard {entity}: malformed entry ({exc})", entity=entity
            ) from None
        if bnet_id in seen:  # one row per character and snapshot
            continue
        seen.add(bnet_id)
        stats = entry.get("season_match_statistics") or {}
        out.bnet_ids.append(bnet_id)
        out.names.append(name)
        out.realms.append(realm)
        out.ranks.append(rank)
        out.ratings.append(rating)
        out.played.append(stats.get("played"))
        out.won.append(stats.get("won"))
        out.lost.append(stats.get("lost"))
        out.factions.append((entry.get("faction") or {}).get("type"))
        out.tiers.append((entry.get("tier") or {}).get("id"))
        out.entries_json.append(json.dumps(entry, ensure_ascii=False, separators=(",", ":")))
    return out


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
    items = payload.get("equipped_items") if isinstance(payload, dict) else None
    if items is None:
        return []
    if not isinstance(items, list):
        raise BadPayload(f"equipment of {entity} is not a list", entity=entity)
    out = []
    for item in items:
        try:
            bnet_item_id = int(item["item"]["id"])
            slot = str(item["slot"]["type"])
        except (KeyError, TypeError, ValueError):
            raise BadPayload(f"equipment of {entity}: malformed item", entity=entity) from None
        out.append(
            EquippedItem(
                bnet_item_id=bnet_item_id,
                slot=slot,
                name=item.get("name"),
                quality=(item.get("quality") or {}).get("type"),
                inventory_type=(item.get("inventory_type") or {}).get("type"),
                item_class=(item.get("item_class") or {}).get("name"),
                item_level=(item.get("level") or {}).get("value"),
                raw=item,
            )
        )
    return out


def equipment_hash(body: bytes) -> str:
    """A content hash of the equipment body: unchanged gear → same hash, whatever the headers
    (Last-Modified moves when anything about the character changes, the gear often does not)."""
    return hashlib.sha256(body).hexdigest()
