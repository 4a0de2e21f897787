"""The secret scanner of the chaos scenario "secret scan" (`tests/chaos/test_secret_scan.py`).

Every place a secret could end up is read as text and searched for each needle:

- Temporal: every workflow history of the namespace (the whole serialized history, with each
  payload — inputs, results, memos, search attributes, heartbeat details, failures' encoded
  attributes — base64-decoded, since a history's JSON carries payloads as base64), and the
  descriptions of running workflows (pending activities' heartbeat details, memo, attributes);
- files: every file under a directory (the worker's log, DATA_DIR), read as bytes;
- Postgres: every row of every table of the database's public schema, as JSON text;
- any captured text (``status`` output).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToJson
from sqlalchemy import text
from temporalio.client import Client

from storage.db import create_engine


@dataclass(frozen=True)
class Hit:
    needle: str  # the needle's name (never its value)
    source: str  # "history", "describe", "file", "postgres", "output"
    where: str  # workflow id, path, table…

    def __str__(self) -> str:
        return f"{self.needle} in {self.source}: {self.where}"


def needles_for(values: dict[str, str]) -> dict[str, str]:
    """The secrets and the encodings they would travel in (HTTP Basic auth of id:secret)."""
    out = {name: value for name, value in values.items() if value}
    client_id, secret = values.get("client_id"), values.get("client_secret")
    if client_id and secret:
        out["client_secret (basic auth)"] = base64.b64encode(
            f"{client_id}:{secret}".encode()
        ).decode()
    out.pop("client_id", None)  # an identifier, not a secret
    return out


def search(source: str, where: str, data: str | bytes, needles: dict[str, str]) -> list[Hit]:
    blob = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
    return [Hit(name, source, where) for name, value in needles.items() if value.encode() in blob]


# -- Temporal --------------------------------------------------------------------------------


def with_decoded_payloads(serialized: str) -> str:
    """The JSON text plus the decoded bytes of every base64 payload in it."""
    parts = [serialized]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("data"), str) and isinstance(node.get("metadata"), dict):
                parts.append(_b64(node["data"]))
                parts.extend(_b64(v) for v in node["metadata"].values() if isinstance(v, str))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(serialized))
    return "\n".join(parts)


def _b64(value: str) -> str:
    try:
        return base64.b64decode(value, validate=False).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return value


async def history_texts(client: Client) -> list[tuple[str, str]]:
    """(workflow id/run id, history JSON with payloads decoded) of every workflow run."""
    out: list[tuple[str, str]] = []
    async for execution in client.list_workflows():
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        history = await handle.fetch_history()
        out.append((f"{execution.id}/{execution.run_id}", with_decoded_payloads(history.to_json())))
    return out


async def describe_texts(client: Client) -> list[tuple[str, str]]:
    """Descriptions of the running workflows (pending activities with heartbeat details)."""
    out: list[tuple[str, str]] = []
    async for execution in client.list_workflows("ExecutionStatus = 'Running'"):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        try:
            described = await handle.describe()
        except Exception:  # ended between the list and the describe
            continue
        serialized = MessageToJson(described.raw_description)
        out.append((execution.id, with_decoded_payloads(serialized)))
    return out


# -- files and Postgres ------------------------------------------------------------------------


def file_blobs(root: Path) -> Iterator[tuple[str, bytes]]:
    if not root.exists():
        return
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            yield str(path), path.read_bytes()
        except OSError as exc:  # a socket or a file that vanished: say so, do not skip silently
            yield str(path), f"<unreadable: {exc}>".encode()


async def postgres_rows(database_url: str) -> list[tuple[str, str]]:
    """(table, all its rows as JSON text) for every table of the public schema."""
    engine = create_engine(database_url, pool_size=1)
    out: list[tuple[str, str]] = []
    try:
        async with engine.connect() as conn:
            tables = (
                await conn.execute(
                    text(
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                        "ORDER BY tablename"
                    )
                )
            ).scalars()
            for table in list(tables):
                rows = await conn.execute(
                    text(f"SELECT coalesce(json_agg(t)::text, '') FROM public.\"{table}\" t")
                )
                out.append((table, rows.scalar_one()))
    finally:
        await engine.dispose()
    return out


@dataclass
class Scan:
    """Everything searched, and the hits."""

    needles: dict[str, str]
    hits: list[Hit]
    searched: dict[str, int]  # source → how many items were searched

    def add(self, source: str, items: Iterable[tuple[str, str | bytes]]) -> None:
        for where, data in items:
            self.searched[source] = self.searched.get(source, 0) + 1
            self.hits.extend(search(source, where, data, self.needles))

    def of(self, needle: str) -> list[Hit]:
        return [h for h in self.hits if h.needle == needle]

    def report(self) -> str:
        return "; ".join(str(h) for h in self.hits) or "no secret found"
