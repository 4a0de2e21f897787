"""A deterministic, seeded Discord world: guilds (tenants), channels, threads and message ids.

Everything derives from ``random.Random(f"...")`` streams seeded by the world seed, the tenant's
index and seed, and the channel id (never the global generator, never ``hash()``). A channel
holds only its message ids, ascending, in a compact ``array('q')``; message JSON is rendered
lazily by :mod:`sandbox.discord_payloads` and cached as bytes per message.

Ids are real-looking snowflakes (``ms = (id >> 22) + 1420070400000``, guilds created in
2020 to 2023). Message ids grow with their index and about one message in ten shares its
predecessor's millisecond (same worker/process, next increment), so timestamp ties exist.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from sandbox.discord_channel import (
    DISCORD_EPOCH_MS,
    Channel,
    ThreadInfo,
    iso_timestamp,
    parse_iso_ms,
    snowflake,
    snowflake_ms,
)

__all__ = [
    "DISCORD_EPOCH_MS",
    "Channel",
    "DiscordWorld",
    "DiscordWorldConfig",
    "Tenant",
    "TenantSpec",
    "ThreadInfo",
    "User",
    "iso_timestamp",
    "parse_iso_ms",
    "snowflake",
    "snowflake_ms",
]

_FIRST_GUILD_MS = 1_577_836_800_000  # 2020-01-01
_LAST_GUILD_MS = 1_672_531_200_000  # 2023-01-01


# ---------------------------------------------------------------------------------------------
# Configuration


_COUNT_LISTS = (
    "text_channels",
    "announcement_channels",
    "voice_channels",
    "stage_channels",
    "forum_threads",
    "active_threads",
    "archived_threads",
)


@dataclass(frozen=True)
class TenantSpec:
    """One guild's layout. Each tuple holds one message count per channel (or thread).

    ``forum_threads``: one forum channel with one public thread per count. ``active_threads``
    and ``archived_threads``: public threads under the first text channel. ``no_history_channels``
    and ``forbidden_channels``: text channels holding ``hidden_messages`` messages in truth that
    answer 200 ``[]`` and 403 Missing Access. ``seed=None`` derives one from the world seed.
    """

    name: str = "Sandbox Guild"
    text_channels: tuple[int, ...] = (200,)
    announcement_channels: tuple[int, ...] = ()
    voice_channels: tuple[int, ...] = ()
    stage_channels: tuple[int, ...] = ()
    forum_threads: tuple[int, ...] = ()
    active_threads: tuple[int, ...] = ()
    archived_threads: tuple[int, ...] = ()
    no_history_channels: int = 0
    forbidden_channels: int = 0
    hidden_messages: int = 10
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in _COUNT_LISTS:
            counts = tuple(int(count) for count in getattr(self, name))
            if any(count < 0 for count in counts):
                raise ValueError(f"{name}: message counts must be >= 0")
            object.__setattr__(self, name, counts)
        for name in ("no_history_channels", "forbidden_channels", "hidden_messages"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0")
        if (self.active_threads or self.archived_threads) and not self.text_channels:
            raise ValueError("active/archived threads need at least one text channel")

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> TenantSpec:
        """Build from a JSON object (lists for the counts); ValueError on unknown fields."""
        known = {f.name for f in fields(cls)}
        unknown = set(body) - known
        if unknown:
            raise ValueError(f"unknown tenant fields: {sorted(unknown)}")
        values: dict[str, Any] = {}
        for key, value in body.items():
            if key in _COUNT_LISTS:
                if not isinstance(value, list | tuple):
                    raise ValueError(f"{key} must be a list of message counts")
                values[key] = tuple(int(count) for count in value)
            elif key == "name":
                values[key] = str(value)
            elif key == "seed":
                values[key] = None if value is None else int(value)
            else:
                values[key] = int(value)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(self).items()}


@dataclass(frozen=True)
class DiscordWorldConfig:
    """``tenants`` generated guilds of ``channels_per_tenant`` text channels, plus ``specs``."""

    seed: int = 42
    tenants: int = 1
    channels_per_tenant: int = 3
    messages_per_channel: int = 200
    specs: tuple[TenantSpec, ...] = field(default_factory=tuple)

    def tenant_specs(self) -> list[TenantSpec]:
        generated = [
            TenantSpec(
                name=f"Sandbox Guild {index + 1}",
                text_channels=(self.messages_per_channel,) * self.channels_per_tenant,
            )
            for index in range(self.tenants)
        ]
        return [*generated, *self.specs]


# ---------------------------------------------------------------------------------------------
# Entities


@dataclass
class User:
    id: int
    username: str
    global_name: str | None
    avatar: str | None
    bot: bool = False
    public_flags: int = 0


@dataclass
class Tenant:
    guild_id: int
    name: str
    spec: TenantSpec
    seed: int
    owner_id: int
    users: list[User]
    webhook: User
    channels: list[Channel]

    def layout(self) -> dict[str, Any]:
        """The admin view: guild id and every channel with its current message count."""
        return {
            "guild_id": str(self.guild_id),
            "name": self.name,
            "channels": [
                {
                    "id": str(ch.id),
                    "type": ch.type,
                    "name": ch.name,
                    "parent_id": None if ch.parent_id is None else str(ch.parent_id),
                    "messages": len(ch.ids),
                    "access": ch.access,
                    "thread": ch.is_thread,
                }
                for ch in self.channels
            ],
        }


_NAMES = (
    "ada", "bruno", "chiara", "dmitri", "elena", "farid", "greta", "hiro", "ines", "jonas",
    "kemal", "lena", "mateo", "nadia", "oskar", "priya", "quinn", "rosa", "sven", "tariq",
)  # fmt: skip


def _hex(rng: random.Random, digits: int = 32) -> str:
    return f"{rng.getrandbits(digits * 4):0{digits}x}"


class DiscordWorld:
    """All tenants and channels; tenants can be added at runtime."""

    def __init__(self, config: DiscordWorldConfig, cache_limit: int = 300_000) -> None:
        self.config = config
        self.tenants: dict[int, Tenant] = {}
        self.channels: dict[int, Channel] = {}
        self.cache_limit = cache_limit
        self.cached_messages = 0
        for spec in config.tenant_specs():
            self.add_tenant(spec)

    def drop_caches(self) -> None:
        for channel in self.channels.values():
            channel.cache.clear()
        self.cached_messages = 0

    def _unique(self, value: int) -> int:
        while value in self.tenants or value in self.channels:
            value += 1
        return value

    def add_tenant(self, spec: TenantSpec) -> Tenant:
        index = len(self.tenants)
        seed = spec.seed if spec.seed is not None else self.config.seed * 1000 + index
        rng = random.Random(f"discord:{self.config.seed}:tenant:{index}:{seed}")
        created = rng.randrange(_FIRST_GUILD_MS, _LAST_GUILD_MS)
        guild_id = self._unique(snowflake(created, rng.randrange(32), rng.randrange(32), 0))
        users = [_user(rng, created, i) for i in range(12)]
        webhook = User(snowflake(created + 1000, 0, 0, 1), "Captain Hook", None, None, bot=True)
        tenant = Tenant(guild_id, spec.name, spec, seed, users[0].id, users, webhook, [])
        self.tenants[guild_id] = tenant
        _Builder(self, tenant, rng, created).build()
        return tenant

    def add_channel(self, tenant: Tenant, channel: Channel, messages: int) -> Channel:
        tenant.channels.append(channel)
        self.channels[channel.id] = channel
        if channel.has_messages:
            channel.seed_history(messages)
        return channel

    def new_id(self, ms: int, rng: random.Random) -> int:
        return self._unique(
            snowflake(ms, rng.randrange(32), rng.randrange(32), rng.randrange(4096))
        )


def _user(rng: random.Random, created: int, index: int) -> User:
    name = f"{_NAMES[rng.randrange(len(_NAMES))]}{rng.randrange(1000)}"
    ms = rng.randrange(_FIRST_GUILD_MS - 5 * 365 * 86_400_000, created)
    bot = index == 11
    return User(
        id=snowflake(ms, rng.randrange(32), rng.randrange(32), rng.randrange(4096)),
        username=name,
        global_name=None if bot or rng.random() < 0.2 else name.capitalize().rstrip("0123456789"),
        avatar=None if rng.random() < 0.15 else _hex(rng),
        bot=bot,
        public_flags=rng.choice((0, 0, 0, 64, 128, 256, 4194304)),
    )


class _Builder:
    """Lays out one tenant's categories, channels and threads in a fixed order."""

    def __init__(self, world: DiscordWorld, tenant: Tenant, rng: random.Random, ms: int) -> None:
        self.world, self.tenant, self.rng, self.ms, self.position = world, tenant, rng, ms, 0

    def _channel(
        self, kind: int, name: str, parent: int | None, messages: int, **extra: Any
    ) -> Channel:
        self.ms += self.rng.randrange(60_000, 3_600_000)
        cid = self.world.new_id(self.ms, self.rng)
        rng = random.Random(f"discord:{self.tenant.seed}:channel:{cid}")
        channel = Channel(
            id=cid,
            type=kind,
            guild_id=self.tenant.guild_id,
            name=name,
            position=self.position,
            parent_id=parent,
            rng=rng,
            **extra,
        )
        self.position += 1
        return self.world.add_channel(self.tenant, channel, messages)

    def _thread(self, kind: int, name: str, parent: Channel, messages: int, archived: bool) -> None:
        owner = self.tenant.users[self.rng.randrange(len(self.tenant.users))].id
        info = ThreadInfo(owner_id=owner, archived=archived, archive_ms=0)
        thread = self._channel(kind, name, parent.id, messages, thread=info)
        thread.position = 0
        last = thread.last_message_id()
        base = snowflake_ms(last) if last is not None else thread.created_ms
        info.archive_ms = base + (info.auto_archive_duration * 60_000 if archived else 0)

    def build(self) -> None:
        spec = self.tenant.spec
        text_cat = self._channel(4, "Text Channels", None, 0).id
        voice_cat = self._channel(4, "Voice Channels", None, 0).id
        texts = [
            self._channel(0, "general" if i == 0 else f"chat-{i}", text_cat, count)
            for i, count in enumerate(spec.text_channels)
        ]
        for i, count in enumerate(spec.announcement_channels):
            self._channel(5, f"announcements-{i + 1}", text_cat, count)
        forum = self._channel(15, "forum", text_cat, 0) if spec.forum_threads else None
        for i in range(spec.no_history_channels):
            self._channel(0, f"logs-{i + 1}", text_cat, spec.hidden_messages, access="no_history")
        for i in range(spec.forbidden_channels):
            self._channel(0, f"staff-{i + 1}", text_cat, spec.hidden_messages, access="forbidden")
        for i, count in enumerate(spec.voice_channels):
            self._channel(2, f"Voice {i + 1}", voice_cat, count)
        for i, count in enumerate(spec.stage_channels):
            self._channel(13, f"Stage {i + 1}", voice_cat, count)
        if forum is not None:
            for i, count in enumerate(spec.forum_threads):
                self._thread(11, f"Forum post {i + 1}", forum, count, archived=False)
        for i, count in enumerate(spec.active_threads):
            self._thread(11, f"Thread {i + 1}", texts[0], count, archived=False)
        for i, count in enumerate(spec.archived_threads):
            self._thread(11, f"Old thread {i + 1}", texts[0], count, archived=True)
