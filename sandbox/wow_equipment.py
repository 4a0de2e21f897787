"""The character equipment payload: 16 generated items shaped like the recorded ones."""

from __future__ import annotations

import random

from sandbox import wow_static as wd
from sandbox.wow_payloads import (
    CharacterState,
    Payload,
    char_path,
    character_ref,
    link,
    seeded_rng,
    static_link,
)

_PLATE, _MAIL, _LEATHER = {1, 2, 6}, {3, 7}, {4, 10, 11, 12}
_STRENGTH, _INTELLECT = {1, 2, 6}, {5, 8, 9}
_BINDING = {"type": "ON_ACQUIRE", "name": "Binds when picked up"}
_MYTHIC = {"display_string": "Mythic", "color": {"r": 0, "g": 255, "b": 0, "a": 1.0}}


def _armor_subclass(class_id: int) -> tuple[int, str]:
    if class_id in _PLATE:
        return wd.ARMOR_SUBCLASSES[3]
    if class_id in _MAIL:
        return wd.ARMOR_SUBCLASSES[2]
    if class_id in _LEATHER:
        return wd.ARMOR_SUBCLASSES[1]
    return wd.ARMOR_SUBCLASSES[0]


def _primary_stat(class_id: int) -> tuple[str, str]:
    if class_id in _STRENGTH:
        return wd.PRIMARY_STATS[0]
    if class_id in _INTELLECT:
        return wd.PRIMARY_STATS[2]
    return wd.PRIMARY_STATS[1]


def _stat(kind: tuple[str, str], value: int, equip_bonus: bool = False) -> Payload:
    stat: Payload = {
        "type": {"type": kind[0], "name": kind[1]},
        "value": value,
        "display_string": f"+{value:,} {kind[1]}",
    }
    if equip_bonus:
        stat["is_equip_bonus"] = True
    return stat


def _stats(c: CharacterState, ilvl: int, kind: str, rng: random.Random) -> list[Payload]:
    stats = []
    if kind != "jewelry":
        stats.append(_stat(_primary_stat(c.class_id), ilvl * 3 // 4 + rng.randint(0, 40)))
    stats.append(_stat(("STAMINA", "Stamina"), ilvl + rng.randint(0, 400)))
    for secondary in rng.sample(wd.SECONDARY_STATS, 2):
        stats.append(_stat(secondary, rng.randint(40, 380), equip_bonus=True))
    return stats


def _sell_price(rng: random.Random) -> Payload:
    value = rng.randint(10_000, 1_500_000)
    gold, rest = divmod(value, 10_000)
    silver, copper = divmod(rest, 100)
    return {
        "value": value,
        "display_strings": {
            "header": "Sell Price:",
            "gold": str(gold),
            "silver": str(silver),
            "copper": str(copper),
        },
    }


def _item_classes(region: str, c: CharacterState, kind: str) -> tuple[Payload, Payload]:
    if kind == "weapon":
        class_id, class_name, sub_id, sub_name = 2, "Weapon", 4, "Mace"
    elif kind == "armor":
        class_id, class_name = 4, "Armor"
        sub_id, sub_name = _armor_subclass(c.class_id)
    else:
        class_id, class_name, sub_id, sub_name = 4, "Armor", 0, "Miscellaneous"
    item_class = {
        "key": static_link(region, f"/data/wow/item-class/{class_id}"),
        "name": class_name,
        "id": class_id,
    }
    subclass = {
        "key": static_link(region, f"/data/wow/item-class/{class_id}/item-subclass/{sub_id}"),
        "name": sub_name,
        "id": sub_id,
    }
    return item_class, subclass


def _weapon(ilvl: int, rng: random.Random) -> Payload:
    low = ilvl * 2 + rng.randint(0, 100)
    high = low * 2
    speed = rng.choice([2600, 3000, 3600])
    dps = round((low + high) / 2 / (speed / 1000), 5)
    return {
        "damage": {
            "min_value": low,
            "max_value": high,
            "display_string": f"{low:,} - {high:,} Damage",
            "damage_class": {"type": "PHYSICAL", "name": "Physical"},
        },
        "attack_speed": {"value": speed, "display_string": f"Speed {speed / 1000:.2f}"},
        "dps": {"value": dps, "display_string": f"({dps:.1f} damage per second)"},
    }


def _enchantment(region: str, rng: random.Random) -> Payload:
    source = rng.randint(150_000, 170_000)
    return {
        "display_string": "Enchanted: +60 Critical Strike",
        "source_item": {
            "key": static_link(region, f"/data/wow/item/{source}"),
            "name": "Enchant Ring - Accord of Critical Strike",
            "id": source,
        },
        "enchantment_id": rng.randint(5900, 6200),
        "enchantment_slot": {"id": 0, "type": "PERMANENT"},
    }


def _item(
    c: CharacterState, slot: tuple[str, str, str, str, str], ilvl: int, rng: random.Random
) -> Payload:
    slot_type, slot_name, inv_type, inv_name, kind = slot
    region, item_id = c.region, rng.randint(150_000, 175_000)
    item_class, subclass = _item_classes(region, c, kind)
    item: Payload = {
        "item": {"key": static_link(region, f"/data/wow/item/{item_id}"), "id": item_id}
    }
    if slot_type.startswith("FINGER") or (kind == "weapon" and rng.random() < 0.8):
        item["enchantments"] = [_enchantment(region, rng)]
    item.update(
        {
            "slot": {"type": slot_type, "name": slot_name},
            "quantity": 1,
            "context": rng.choice([5, 6, 11, 23, 35]),
            "bonus_list": [rng.randint(40, 6600) for _ in range(rng.randint(2, 5))],
            "quality": {"type": "EPIC", "name": "Epic"},
            "name": f"{rng.choice(wd.ITEM_ADJECTIVES)} {wd.ITEM_NOUNS[slot_type]}",
            "modified_appearance_id": rng.randint(90_000, 110_000) if kind != "jewelry" else 0,
            "media": {"key": static_link(region, f"/data/wow/media/item/{item_id}"), "id": item_id},
            "item_class": item_class,
            "item_subclass": subclass,
            "inventory_type": {"type": inv_type, "name": inv_name},
            "binding": _BINDING,
        }
    )
    if kind == "armor":
        armor = ilvl + rng.randint(0, 200)
        item["armor"] = {"value": armor, "display_string": f"{armor} Armor"}
    if kind == "weapon":
        item["weapon"] = _weapon(ilvl, rng)
    item["stats"] = _stats(c, ilvl, kind, rng)
    item["sell_price"] = _sell_price(rng)
    required = min(c.level, wd.MAX_LEVEL)
    item["requirements"] = {
        "level": {"value": required, "display_string": f"Requires Level {required}"}
    }
    item["level"] = {"value": ilvl, "display_string": f"Item Level {ilvl}"}
    if kind != "jewelry":
        max_durability = rng.choice([55, 80, 100, 120])
        current = rng.randint(1, max_durability)
        item["durability"] = {
            "value": current,
            "display_string": f"Durability {current} / {max_durability}",
        }
    if rng.random() < 0.5:
        item["name_description"] = _MYTHIC
    return item


def equipment_payload(c: CharacterState, seed: int) -> Payload:
    """Item levels follow ``c.equipped_item_level``, so touching the character changes them."""
    rng = seeded_rng(seed, "equipment", c.region, c.id)
    offsets = [rng.randint(-5, 5) for _ in wd.EQUIPMENT_SLOTS]
    items = [
        _item(c, slot, max(1, c.equipped_item_level + offset), rng)
        for slot, offset in zip(wd.EQUIPMENT_SLOTS, offsets, strict=True)
    ]
    return {
        "_links": {"self": link(c.region, char_path(c) + "/equipment")},
        "character": character_ref(c),
        "equipped_items": items,
    }
