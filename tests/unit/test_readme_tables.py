"""README's "What a site reads" names only tables and columns that exist in the schema."""

import re
from pathlib import Path

from storage import models

README = Path(__file__).resolve().parents[2] / "README.md"


def _section() -> str:
    text = README.read_text()
    start = text.index("## What a site reads")
    return text[start : text.index("\n## ", start + 1)]


def test_every_table_and_column_named_exists() -> None:
    tables = models.metadata.tables
    rows = [line for line in _section().splitlines() if line.startswith("| `")]
    assert len(rows) >= 8
    columns = {c.name for t in tables.values() for c in t.columns}
    for row in rows:
        named_tables, _, named_columns = (cell.strip() for cell in row.strip("|").split("|"))
        listed = re.findall(r"`([a-z_]+)`", named_tables)
        assert listed and all(t in tables for t in listed), row
        own = {c.name for t in listed for c in tables[t].columns}
        for column in re.findall(r"`([a-z_]+)`", named_columns):
            assert column in own, f"{column} is no column of {listed}"
    assert columns  # the schema loaded
