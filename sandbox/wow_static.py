"""Static World of Warcraft reference data the fake world is built from (BfA 8.2 era, as in the
recorded fixtures). Plain tables only; no logic."""

from __future__ import annotations

# fmt: off

STATIC_NS = "static-8.2.5_31884"
MAX_LEVEL = 120

# region -> [(realm name, slug, id)]
REALMS: dict[str, list[tuple[str, str, int]]] = {
    "eu": [
        ("Stormrage", "stormrage", 550),
        ("Draenor", "draenor", 1403),
        ("Argent Dawn", "argent-dawn", 536),
        ("Twisting Nether", "twisting-nether", 1316),
        ("Ravencrest", "ravencrest", 554),
        ("Silvermoon", "silvermoon", 549),
        ("Archimonde", "archimonde", 539),
        ("Conseil des Ombres", "conseil-des-ombres", 644),
    ],
    "us": [
        ("Area 52", "area-52", 3676),
        ("Stormrage", "stormrage", 60),
        ("Illidan", "illidan", 57),
        ("Tichondrius", "tichondrius", 11),
        ("Moon Guard", "moon-guard", 3675),
        ("Wyrmrest Accord", "wyrmrest-accord", 1171),
        ("Sargeras", "sargeras", 76),
        ("Emerald Dream", "emerald-dream", 162),
    ],
}
# Regions without their own list reuse the EU names with ids offset by this much.
OTHER_REGION_REALM_ID_OFFSET = 2000

FACTIONS = {"ALLIANCE": "Alliance", "HORDE": "Horde"}

RACES: dict[str, list[tuple[int, str]]] = {
    "ALLIANCE": [
        (1, "Human"), (3, "Dwarf"), (4, "Night Elf"), (7, "Gnome"), (11, "Draenei"),
        (22, "Worgen"), (29, "Void Elf"), (30, "Lightforged Draenei"), (32, "Kul Tiran"),
        (34, "Dark Iron Dwarf"), (25, "Pandaren"),
    ],
    "HORDE": [
        (2, "Orc"), (5, "Undead"), (6, "Tauren"), (8, "Troll"), (9, "Goblin"), (10, "Blood Elf"),
        (27, "Nightborne"), (28, "Highmountain Tauren"), (31, "Zandalari Troll"),
        (36, "Mag'har Orc"), (26, "Pandaren"),
    ],
}

# class id -> (class name, [(spec id, spec name)])
CLASSES: dict[int, tuple[str, list[tuple[int, str]]]] = {
    1: ("Warrior", [(71, "Arms"), (72, "Fury"), (73, "Protection")]),
    2: ("Paladin", [(65, "Holy"), (66, "Protection"), (70, "Retribution")]),
    3: ("Hunter", [(253, "Beast Mastery"), (254, "Marksmanship"), (255, "Survival")]),
    4: ("Rogue", [(259, "Assassination"), (260, "Outlaw"), (261, "Subtlety")]),
    5: ("Priest", [(256, "Discipline"), (257, "Holy"), (258, "Shadow")]),
    6: ("Death Knight", [(250, "Blood"), (251, "Frost"), (252, "Unholy")]),
    7: ("Shaman", [(262, "Elemental"), (263, "Enhancement"), (264, "Restoration")]),
    8: ("Mage", [(62, "Arcane"), (63, "Fire"), (64, "Frost")]),
    9: ("Warlock", [(265, "Affliction"), (266, "Demonology"), (267, "Destruction")]),
    10: ("Monk", [(268, "Brewmaster"), (270, "Mistweaver"), (269, "Windwalker")]),
    11: ("Druid", [(102, "Balance"), (103, "Feral"), (104, "Guardian"), (105, "Restoration")]),
    12: ("Demon Hunter", [(577, "Havoc"), (581, "Vengeance")]),
}

TITLES = [
    (400, "Famed Slayer of the Harbinger", "{name}, Famed Slayer of the Harbinger"),
    (372, "the Patient", "{name} the Patient"),
    (113, "Loremaster", "Loremaster {name}"),
    (81, "the Explorer", "{name} the Explorer"),
    (443, "Azerite Champion", "Azerite Champion {name}"),
]

GUILD_NAMES = [
    "Avalerion", "Method", "Echo", "Les Éclaireurs", "Raiders of the Lost Loot", "Pieces",
    "Nordic Wolves", "Ænigma", "Limit", "Blood Legion", "Fröhliche Zwerge", "Serenity",
    "Unseen", "Los Dragones", "Midnight Tea Party", "Vodka", "Sang Noir", "Árvores Antigas",
    "Complexity", "Big Dumb Guild", "Exodus", "Séance", "Ten Gold Pieces", "Honor Bound",
]

NAME_STARTS = [
    "Ae", "Al", "Ar", "Bel", "Bor", "Ca", "Dra", "El", "Fa", "Gal", "Ha", "Il", "Ka", "Kel",
    "Lo", "Ma", "Mor", "Na", "Or", "Pe", "Ra", "Sa", "She", "Tal", "Tha", "Ul", "Va", "Xa",
    "Yo", "Za", "Gae", "Ro", "Ebo", "Sy", "Ny", "Vi",
]
NAME_MIDDLES = ["", "", "", "la", "ri", "do", "ne", "va", "ka", "mi", "ro", "the", "zu", "lo"]
NAME_ENDS = [
    "day", "lon", "val", "ria", "nas", "rin", "dor", "mir", "wyn", "ra", "th", "nix", "gar",
    "las", "zar", "ren", "dra", "lie", "mo", "sh", "rak", "ion", "tus", "vy",
]
ACCENTED = {"a": "â", "e": "é", "i": "ï", "o": "ø", "u": "ü", "y": "ÿ"}

DUNGEONS = [
    (244, "Atal'Dazar"), (245, "Freehold"), (246, "Tol Dagor"), (247, "The MOTHERLODE!!"),
    (248, "Waycrest Manor"), (249, "Kings' Rest"), (250, "Temple of Sethraliss"),
    (251, "The Underrot"), (252, "Shrine of the Storm"), (353, "Siege of Boralus"),
]
AFFIXES = [
    (9, "Tyrannical"), (10, "Fortified"), (11, "Bursting"), (2, "Skittish"), (7, "Bolstering"),
    (6, "Raging"), (8, "Sanguine"), (12, "Grievous"), (13, "Explosive"), (119, "Beguiling"),
]
MYTHIC_PERIOD = 729
MYTHIC_SEASONS = (1, 2, 3)

PRIMARY_PROFESSIONS = [
    (171, "Alchemy", 2478, "Kul Tiran Alchemy"),
    (164, "Blacksmithing", 2477, "Kul Tiran Blacksmithing"),
    (333, "Enchanting", 2486, "Kul Tiran Enchanting"),
    (202, "Engineering", 2499, "Kul Tiran Engineering"),
    (182, "Herbalism", 2549, "Kul Tiran Herbalism"),
    (773, "Inscription", 2507, "Kul Tiran Inscription"),
    (755, "Jewelcrafting", 2517, "Kul Tiran Jewelcrafting"),
    (165, "Leatherworking", 2525, "Kul Tiran Leatherworking"),
    (186, "Mining", 2565, "Kul Tiran Mining"),
    (393, "Skinning", 2557, "Kul Tiran Skinning"),
    (197, "Tailoring", 2533, "Kul Tiran Tailoring"),
]
SECONDARY_PROFESSIONS = [
    (185, "Cooking", 2541, "Kul Tiran Cooking"),
    (356, "Fishing", 2585, "Kul Tiran Fishing"),
    (794, "Archaeology", 0, ""),
]
RECIPE_WORDS = ["Flask", "Potion", "Elixir", "Bracers", "Cloak", "Ring", "Feast", "Gem", "Belt"]
RECIPE_QUALIFIERS = ["of the Currents", "of Endless Fathoms", "of Agility", "of Intellect",
                     "of Strength", "of Stamina", "of the Undertow", "of Rising Death"]

# (slot type, slot name, inventory type, inventory name, kind); kind: armor | jewelry | weapon
EQUIPMENT_SLOTS = [
    ("HEAD", "Head", "HEAD", "Head", "armor"),
    ("NECK", "Neck", "NECK", "Neck", "jewelry"),
    ("SHOULDER", "Shoulders", "SHOULDER", "Shoulder", "armor"),
    ("BACK", "Back", "CLOAK", "Back", "armor"),
    ("CHEST", "Chest", "CHEST", "Chest", "armor"),
    ("WRIST", "Wrist", "WRIST", "Wrist", "armor"),
    ("HANDS", "Hands", "HAND", "Hands", "armor"),
    ("WAIST", "Waist", "WAIST", "Waist", "armor"),
    ("LEGS", "Legs", "LEGS", "Legs", "armor"),
    ("FEET", "Feet", "FEET", "Feet", "armor"),
    ("FINGER_1", "Ring 1", "FINGER", "Finger", "jewelry"),
    ("FINGER_2", "Ring 2", "FINGER", "Finger", "jewelry"),
    ("TRINKET_1", "Trinket 1", "TRINKET", "Trinket", "jewelry"),
    ("TRINKET_2", "Trinket 2", "TRINKET", "Trinket", "jewelry"),
    ("MAIN_HAND", "Main Hand", "WEAPON", "One-Hand", "weapon"),
    ("OFF_HAND", "Off Hand", "HOLDABLE", "Held In Off-hand", "jewelry"),
]
ITEM_ADJECTIVES = ["Soulspun", "Palace Sentinel", "Abyssal", "Tidebound", "Storm-Tossed",
                   "Coralshell", "Eelskin", "Naga", "Zanj'ir", "Azsharan", "Deepcoral", "Drowned"]
ITEM_NOUNS = {
    "HEAD": "Casque", "NECK": "Choker", "SHOULDER": "Pauldrons", "BACK": "Cloak",
    "CHEST": "Breastplate", "WRIST": "Vambraces", "HANDS": "Gauntlets", "WAIST": "Girdle",
    "LEGS": "Legplates", "FEET": "Sabatons", "FINGER_1": "Band", "FINGER_2": "Loop",
    "TRINKET_1": "Idol", "TRINKET_2": "Charm", "MAIN_HAND": "Crusher", "OFF_HAND": "Tome",
}
ARMOR_SUBCLASSES = [(1, "Cloth"), (2, "Leather"), (3, "Mail"), (4, "Plate")]
PRIMARY_STATS = [("STRENGTH", "Strength"), ("AGILITY", "Agility"), ("INTELLECT", "Intellect")]
SECONDARY_STATS = [("CRIT_RATING", "Critical Strike"), ("HASTE_RATING", "Haste"),
                   ("MASTERY_RATING", "Mastery"), ("VERSATILITY", "Versatility")]
# fmt: on
