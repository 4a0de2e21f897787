"""Discord REST v10: client, header-driven rate limiting and payload helpers."""

from providers.discord.client import DiscordClient, check_snowflake
from providers.discord.parse import (
    MessagesPage,
    parse_messages_page,
    snowflake,
    snowflake_from_time,
    snowflake_time,
)
from providers.discord.ratelimit import DiscordLimiter

__all__ = [
    "DiscordClient",
    "DiscordLimiter",
    "MessagesPage",
    "check_snowflake",
    "parse_messages_page",
    "snowflake",
    "snowflake_from_time",
    "snowflake_time",
]
