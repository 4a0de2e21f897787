"""``python -m sandbox``: serve the Battle.net WoW API (default) or Discord API sandbox.

Examples::

    python -m sandbox --port 8787 --seed 7 --regions eu,us --guilds-per-region 5
    python -m sandbox --provider discord --port 8788 --channels-per-tenant 50 \\
        --messages-per-channel 4000 --messages-limit 5/5
    python -m sandbox --provider zwift --port 8789 --time-scale 60 --club-sizes 39,1500
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import NoReturn

from sandbox.battlenet import BattleNetSandboxConfig
from sandbox.discord import API_PREFIX, DiscordSandboxConfig
from sandbox.discord_limits import ROUTES as DISCORD_ROUTES
from sandbox.discord_world import DiscordWorld, DiscordWorldConfig, TenantSpec
from sandbox.server import PortInUseError, SandboxConfig, serve_forever
from sandbox.world import BattleNetWorld, BattleNetWorldConfig
from sandbox.zwift import API_PREFIX as ZWIFT_API_PREFIX
from sandbox.zwift import ZwiftSandbox, ZwiftSandboxConfig
from sandbox.zwift_limits import FAMILIES as ZWIFT_FAMILIES
from sandbox.zwift_world import ZwiftWorldConfig

_DEFAULT = "(default: %(default)s)"
PROG = "python -m sandbox"


class _Terminated(Exception):
    """SIGTERM: a clean stop (exit 0), not death by the signal."""


class _Interrupted(Exception):
    """SIGINT (Ctrl-C): a clean stop that exits 130, as every verb's Ctrl-C does."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


def _on_sigint(signum: int, frame: object) -> None:
    raise _Interrupted


class _Parser(argparse.ArgumentParser):
    """A usage error is one line naming the fix, exit 2 (as `starter.py`'s own verbs)."""

    def error(self, message: str) -> NoReturn:
        text = f"error: {message} (see `{self.prog} --help`)"
        # what was typed is quoted: a newline or escape in it must not make several lines
        line = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
        self.exit(2, line + "\n")


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    defaults, world = BattleNetSandboxConfig(), BattleNetWorldConfig()
    parser = _Parser(
        prog=prog,
        description="Serve a sandbox of one provider's API on 127.0.0.1; providers: battlenet "
        "(default), discord and zwift. battlenet: a strict, seeded imitation of the Battle.net "
        "WoW API (token, guild, roster, character and PvP endpoints, 429s, 304s, admin "
        "endpoints), discord: one of the Discord REST API v10 (guild, channels, threads, "
        "messages; global, per-route and invalid-request limits), zwift: one of the "
        "ZwiftRacing.app public API (clubs, riders, events, signups, results; strict windows "
        "per endpoint family, divided by --time-scale).",
        epilog=f"Example: {prog} --port 8787 --seed 7 --guilds-per-region 5; "
        f"{prog} --provider discord --port 8788. Once listening it prints the `export` "
        "lines that point a worker at it.",
    )
    add = parser.add_argument
    add(
        "--provider",
        choices=("battlenet", "discord", "zwift"),
        default="battlenet",
        help="which API to serve (default: %(default)s)",
    )
    add("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    add("--port", type=int, default=8787, help="port; 0 picks a free one (default: %(default)s)")
    add("--seed", type=int, default=world.seed, help="world seed (default: %(default)s)")
    add("--regions", default=",".join(world.regions), help="comma list (default: %(default)s)")
    add("--guilds-per-region", type=int, default=world.guilds_per_region, help=_DEFAULT)
    add("--roster-min", type=int, default=world.roster_min, help=_DEFAULT)
    add("--roster-max", type=int, default=world.roster_max, help=_DEFAULT)
    add(
        "--guildless",
        type=int,
        default=world.guildless_characters,
        help="guildless characters per region (default: %(default)s)",
    )
    add(
        "--hidden-ratio",
        type=float,
        default=world.hidden_ratio,
        help="share of characters whose profile endpoints answer 404 (default: %(default)s)",
    )
    add(
        "--pvp-entries",
        type=int,
        default=world.pvp_entries,
        help="entries per PvP leaderboard (default: %(default)s)",
    )
    add(
        "--pvp-seasons",
        default="{}-{}".format(*world.pvp_seasons),
        help="first-last PvP season ids; the last is current (default: %(default)s)",
    )
    add("--per-second", type=int, default=defaults.per_second, help=_DEFAULT)
    add("--per-hour", type=int, default=defaults.per_hour, help=_DEFAULT)
    add("--client-id", default=defaults.client_id, help=_DEFAULT)
    add("--client-secret", default=defaults.client_secret, help=_DEFAULT)
    add("--token-ttl", type=int, default=defaults.token_ttl, help="seconds (default: %(default)s)")
    add("--retry-after-header", action="store_true", help="send Retry-After: 1 on 429s")
    _add_discord_options(parser)
    _add_zwift_options(parser)
    return parser


def _add_discord_options(parser: argparse.ArgumentParser) -> None:
    defaults, world = DiscordSandboxConfig(), DiscordWorldConfig()
    group = parser.add_argument_group("Discord (--provider discord)")
    add = group.add_argument
    add("--tenants", type=int, default=world.tenants, help="generated guilds " + _DEFAULT)
    add("--channels-per-tenant", type=int, default=world.channels_per_tenant, help=_DEFAULT)
    add("--messages-per-channel", type=int, default=world.messages_per_channel, help=_DEFAULT)
    add(
        "--tenant-spec",
        action="append",
        default=[],
        metavar="JSON",
        help='an extra guild, e.g. \'{"text_channels": [100, 2500], "forbidden_channels": 1}\' '
        "(repeatable)",
    )
    add("--bot-token", default=defaults.bot_token, help=_DEFAULT)
    add("--global-per-second", type=int, default=defaults.global_per_second, help=_DEFAULT)
    for route in DISCORD_ROUTES:
        add(
            "--{}-limit".format(route.replace("_", "-")),
            type=_limit_pair,
            default=getattr(defaults, route),
            metavar="N/SECONDS",
            help=f"{route} bucket, per major parameter (default: 5/5)",
        )
    add("--invalid-limit", type=int, default=defaults.invalid_limit, help=_DEFAULT)
    add("--invalid-period", type=float, default=defaults.invalid_period, help=_DEFAULT)
    add("--lifted", action="store_true", help="enforce no limit (headers are still sent)")


def _add_zwift_options(parser: argparse.ArgumentParser) -> None:
    defaults, world = ZwiftSandboxConfig(), ZwiftWorldConfig()
    group = parser.add_argument_group("ZwiftRacing (--provider zwift)")
    add = group.add_argument
    add(
        "--club-sizes",
        default=",".join(str(n) for n in world.club_sizes),
        help="riders per generated club, comma list (default: %(default)s)",
    )
    add("--clubless", type=int, default=world.clubless, help="riders in no club " + _DEFAULT)
    add(
        "--events",
        default="{},{},{},{}".format(*world.event_counts().values()),
        metavar="PAST,URGENT,NEAR,FAR",
        help="events per class at the start (default: %(default)s)",
    )
    add(
        "--signups",
        default=f"{world.signups_min}-{world.signups_max}",
        metavar="MIN-MAX",
        help="signups per event (default: %(default)s)",
    )
    add("--api-key", default=defaults.api_key, help=_DEFAULT)
    add(
        "--time-scale",
        type=float,
        default=defaults.time_scale,
        help="divides every window and places events in simulated time; 60 turns 1/15 min "
        "into 1/15 s (default: %(default)s)",
    )
    add("--start", type=float, default=None, help="world start, epoch seconds (default: now)")
    for family in ZWIFT_FAMILIES:
        add(
            "--{}-limit".format(family.replace("_", "-")),
            type=_limit_pair,
            default=getattr(defaults, family),
            metavar="N/SECONDS",
            help="{} window before the time scale (default: {}/{:g})".format(
                family, *getattr(defaults, family)
            ),
        )
    add(
        "--no-retry-after-header",
        action="store_true",
        help="429s carry only the body's retryAfter, no Retry-After header",
    )


def _limit_pair(text: str) -> tuple[int, float]:
    limit, _, period = text.partition("/")
    try:
        return int(limit), float(period)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N/SECONDS, got {text!r}") from None


def _season_range(text: str) -> tuple[int, int]:
    first, _, last = text.partition("-")
    return int(first), int(last or first)


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    if args.provider == "discord":
        return discord_config_from_args(args)
    if args.provider == "zwift":
        return zwift_config_from_args(args)
    regions = tuple(region.strip().lower() for region in args.regions.split(",") if region.strip())
    world = BattleNetWorldConfig(
        seed=args.seed,
        regions=regions,
        guilds_per_region=args.guilds_per_region,
        roster_min=args.roster_min,
        roster_max=args.roster_max,
        guildless_characters=args.guildless,
        hidden_ratio=args.hidden_ratio,
        pvp_entries=args.pvp_entries,
        pvp_seasons=_season_range(args.pvp_seasons),
    )
    return BattleNetSandboxConfig(
        world=world,
        per_second=args.per_second,
        per_hour=args.per_hour,
        client_id=args.client_id,
        client_secret=args.client_secret,
        token_ttl=args.token_ttl,
        retry_after_header=args.retry_after_header,
    )


def discord_config_from_args(args: argparse.Namespace) -> DiscordSandboxConfig:
    specs = tuple(TenantSpec.from_json(json.loads(text)) for text in args.tenant_spec)
    world = DiscordWorldConfig(
        seed=args.seed,
        tenants=args.tenants,
        channels_per_tenant=args.channels_per_tenant,
        messages_per_channel=args.messages_per_channel,
        specs=specs,
    )
    routes = {route: getattr(args, f"{route}_limit") for route in DISCORD_ROUTES}
    return DiscordSandboxConfig(
        world=world,
        bot_token=args.bot_token,
        global_per_second=args.global_per_second,
        invalid_limit=args.invalid_limit,
        invalid_period=args.invalid_period,
        lifted=args.lifted,
        **routes,
    )


def _counts(text: str, what: str, size: int | None = None) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"{what}: expected comma-separated integers, got {text!r}") from None
    if size is not None and len(counts) != size:
        raise ValueError(f"{what}: expected {size} comma-separated integers, got {text!r}")
    return counts


def zwift_config_from_args(args: argparse.Namespace) -> ZwiftSandboxConfig:
    past, urgent, near, far = _counts(args.events, "--events", 4)
    low, _, high = args.signups.partition("-")
    try:
        signups_min, signups_max = int(low), int(high or low)
    except ValueError:
        raise ValueError(f"--signups: expected MIN-MAX, got {args.signups!r}") from None
    world = ZwiftWorldConfig(
        seed=args.seed,
        club_sizes=_counts(args.club_sizes, "--club-sizes"),
        clubless=args.clubless,
        past_events=past,
        urgent_events=urgent,
        near_events=near,
        far_events=far,
        signups_min=signups_min,
        signups_max=signups_max,
    )
    if not args.time_scale > 0:
        raise ValueError("--time-scale must be > 0")
    families = {family: getattr(args, f"{family}_limit") for family in ZWIFT_FAMILIES}
    return ZwiftSandboxConfig(
        world=world,
        api_key=args.api_key,
        time_scale=args.time_scale,
        start=args.start,
        retry_after_header=not args.no_retry_after_header,
        lifted=args.lifted,
        **families,
    )


def _zwift_message(config: ZwiftSandboxConfig, url: str) -> str:
    """The ZwiftRacing sandbox's listening lines: base, key, a few clubs and events."""
    sandbox = ZwiftSandbox(config)  # seeded: the same ids the server built
    world = sandbox.world
    clubs = ", ".join(f"{c.id} ({len(c.rider_ids)} riders)" for c in world.clubs.values())
    now = sandbox.wall()
    events = ", ".join(
        f"{e.id} ({world.event_class(e, now)})"
        for e in sorted(world.events.values(), key=lambda e: e.starts_at)
    )
    return "\n".join(
        [
            f"ZwiftRacing sandbox listening on {url} (API base {url}{ZWIFT_API_PREFIX}, "
            f"time scale {config.time_scale:g})",
            "point a worker at it (this is the sandbox's test key):",
            f"export ZWIFT_API_BASE_URL={url}{ZWIFT_API_PREFIX}",
            f"export ZWIFT_API_KEY={config.api_key}",
            *([f"export ZWIFT_TIME_SCALE={config.time_scale:g}"] if config.time_scale != 1 else []),
            f"club ids: {clubs or '(none)'}",
            f"event ids: {events or '(none: add one with POST /_admin/events)'}",
        ]
    )


def _listening_message(config: SandboxConfig, url: str) -> str:
    """Where it listens, the `export` lines a worker needs and a few entities that exist.

    The credentials printed are the sandbox's own fixed test values (its --client-id,
    --client-secret, --bot-token, --api-key), never a user's secret.
    """
    if isinstance(config, ZwiftSandboxConfig):
        return _zwift_message(config, url)
    if isinstance(config, DiscordSandboxConfig):
        tenants = ", ".join(str(guild_id) for guild_id in DiscordWorld(config.world).tenants)
        return "\n".join(
            [
                f"Discord sandbox listening on {url} (API base {url}{API_PREFIX})",
                "point a worker at it (these are the sandbox's test credentials):",
                f"export DISCORD_API_BASE_URL={url}{API_PREFIX}",
                f"export DISCORD_BOT_TOKEN={config.bot_token}",
                f"tenant (guild) ids: {tenants or '(none: add one with POST /_admin/tenants)'}",
            ]
        )
    lines = [
        f"Battle.net sandbox listening on {url}",
        "point a worker at it (these are the sandbox's test credentials):",
        f"export BNET_API_BASE_URL={url}",
        f"export BNET_OAUTH_URL={url}/token",
        f"export BNET_CLIENT_ID={config.client_id}",
        f"export BNET_CLIENT_SECRET={config.client_secret}",
    ]
    world = BattleNetWorld(config.world)  # seeded: the same entities the server built
    for region in world.regions:
        guilds = world.guilds(region)
        if not guilds:
            continue
        guild = guilds[0]
        lines.append(
            f"a guild: {region} {guild.realm_slug} {guild.name_slug} "
            f"(python starter.py track guild {region} {guild.realm_slug} {guild.name_slug})"
        )
        members = world.guild_members(region, guild.realm_slug, guild.name_slug)
        visible = [member for member in members if not member.hidden]  # hidden ones 404
        if visible:
            member = visible[0]
            lines.append(f"a character: {region} {member.realm_slug} {member.name_slug}")
        break
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # uvicorn re-raises a SIGTERM it handled once it has shut down: with the default handler the
    # process then died of it (exit 143), not the clean exit 0 a service manager expects
    signal.signal(signal.SIGTERM, _on_sigterm)
    # and a SIGINT once it has shut down: left to Python, it was a KeyboardInterrupt that the
    # CLI answered with "a run goes on in a worker" (or, started in the background with SIGINT
    # ignored, exit 0); it is the sandbox's own clean stop, exit 130
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        serve_forever(
            config,
            host=args.host,
            port=args.port,
            on_listening=lambda url: print(_listening_message(config, url), flush=True),
        )
    except PortInUseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except _Terminated:
        return 0
    except _Interrupted:
        print("sandbox stopped (Ctrl-C)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
