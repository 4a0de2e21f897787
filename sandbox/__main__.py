"""``python -m sandbox``: serve the Battle.net WoW API sandbox on 127.0.0.1.

Example::

    python -m sandbox --port 8787 --seed 7 --regions eu,us --guilds-per-region 5
"""

from __future__ import annotations

import argparse
import sys

from sandbox.battlenet import BattleNetSandboxConfig
from sandbox.server import PortInUseError, serve_forever
from sandbox.world import BattleNetWorldConfig

_DEFAULT = "(default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    defaults, world = BattleNetSandboxConfig(), BattleNetWorldConfig()
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Serve a strict, seeded imitation of the Battle.net WoW API "
        "(token, guild, roster, character and PvP endpoints, 429s, 304s, admin endpoints).",
        epilog="Example: python -m sandbox --port 8787 --seed 7 --guilds-per-region 5",
    )
    add = parser.add_argument
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
    return parser


def _season_range(text: str) -> tuple[int, int]:
    first, _, last = text.partition("-")
    return int(first), int(last or first)


def config_from_args(args: argparse.Namespace) -> BattleNetSandboxConfig:
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    try:
        serve_forever(
            config,
            host=args.host,
            port=args.port,
            on_listening=lambda url: print(f"Battle.net sandbox listening on {url}", flush=True),
        )
    except PortInUseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
