"""Column shapes every migration uses (kept stable: changing them changes old migrations)."""

from __future__ import annotations

import sqlalchemy as sa


def id_column() -> sa.Column:
    return sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True)


def timestamp(name: str, nullable: bool = True, now: bool = False) -> sa.Column:
    default = sa.func.now() if now else None
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=default)
