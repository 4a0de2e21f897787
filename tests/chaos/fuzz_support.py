"""Strategies and checks for the fuzzing scenario (`tests/chaos/test_fuzz.py`).

Payloads are generated from the real fixtures (`tests/fixtures/`, `/work/shared/fixtures/`):
a fixture with a few structural mutations (a key dropped, a value of another type, huge or
negative numbers, non-finite floats, deep nesting, odd unicode, null), then serialised, and
raw bytes besides (truncated JSON, binary, non-JSON text, very deep nesting). CLI argument
lists are generated from the real parser tree of `starter.py`.

Quick form (CI): a few dozen examples per test, derandomized so CI always sees the same ones.
``CHAOS_LONG=1``: thousands, random (``CHAOS_FUZZ_EXAMPLES`` overrides the number).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from providers.errors import ProviderError

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_DIRS = (ROOT / "tests" / "fixtures", Path("/work/shared/fixtures"))

LONG = os.environ.get("CHAOS_LONG") == "1"


def fuzz_settings(quick: int = 40, long: int = 2000) -> settings:
    """``@settings`` of a fuzz test: ``quick`` examples in CI, ``long`` with CHAOS_LONG=1."""
    override = os.environ.get("CHAOS_FUZZ_EXAMPLES")
    examples = int(override) if override else (long if LONG else quick)
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=not LONG,
        database=None,  # nothing written into the repository
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )


# -- fixtures ---------------------------------------------------------------------------------


def fixture(relative: str) -> Any:
    """A fixture's JSON, from the first fixture directory that has it."""
    for base in FIXTURE_DIRS:
        path = base / relative
        if path.exists():
            return json.loads(path.read_text())
    raise FileNotFoundError(f"no fixture {relative} in {[str(d) for d in FIXTURE_DIRS]}")


def fixture_names(subdir: str) -> list[str]:
    names: set[str] = set()
    for base in FIXTURE_DIRS:
        names |= {p.name for p in (base / subdir).glob("*.json")}
    return sorted(names)


# -- hostile values and structural mutations ---------------------------------------------------

HUGE_INTS = [2**31, 2**63, -(2**63) - 1, 2**64, 10**30, 10**400, -1, 0]
ODD_TEXT = [
    "",
    " ",
    "\x00",
    "\n",
    "a\nb",
    "\u202e\u0000\ufeff",
    "\U0001f984" * 50,
    "x" * 5000,
    "../../../oauth/token",
    "123abc",
    "1e400",
    "\uff11\uff12\uff13",  # full-width digits
    "\u00b2\u00b3",  # superscript digits: str.isdigit() is True, int() refuses them
    "NaN",
    "-0",
]


def _deep(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for n in range(depth):
        value = [value] if n % 2 else {"k": value}
    return value


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(HUGE_INTS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(ODD_TEXT),
)
hostile_values = st.one_of(
    scalars,
    st.lists(scalars, max_size=4),
    st.dictionaries(st.text(max_size=8), scalars, max_size=4),
    st.integers(min_value=50, max_value=800).map(_deep),
)


def _children(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return list(node)
    if isinstance(node, list):
        return list(range(len(node)))
    return []


@st.composite
def mutated(draw: st.DrawFn, base: Any, max_mutations: int = 3) -> Any:
    """``base`` with 1..max_mutations structural mutations at random depths."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, max_mutations))):
        doc = _mutate_once(draw, doc)
    return doc


def _mutate_once(draw: st.DrawFn, doc: Any) -> Any:
    # Walk down a random path; mutate the node reached (or one of its children).
    parent: Any = None
    key: Any = None
    node = doc
    while _children(node) and draw(st.integers(0, 4)) > 0:
        keys = _children(node)
        parent, key = node, keys[draw(st.integers(0, len(keys) - 1))]
        node = node[key]
    op = draw(st.sampled_from(["replace", "drop", "wrap", "duplicate", "empty"]))
    if parent is None:  # the root itself
        if op == "replace":
            return draw(hostile_values)
        if op == "wrap":
            return [doc]
        if op == "empty":
            return {} if isinstance(doc, dict) else []
        return doc
    if op == "drop":
        if isinstance(parent, dict):
            del parent[key]
        else:
            parent.pop(key)
    elif op == "wrap":
        parent[key] = draw(st.sampled_from([[node], {"value": node}, str(node)[:100]]))
    elif op == "duplicate" and isinstance(parent, list):
        parent.insert(key, copy.deepcopy(node))
    elif op == "empty":
        parent[key] = {} if isinstance(node, dict) else [] if isinstance(node, list) else ""
    else:
        parent[key] = draw(hostile_values)
    return doc


def dumps(value: Any) -> bytes:
    """JSON as a server (or a broken proxy) might send it: NaN/Infinity pass through."""
    try:
        return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    except (RecursionError, ValueError):
        return b"[" * 5000


@st.composite
def raw_bodies(draw: st.DrawFn, base: Any) -> bytes:
    """Bytes of a response body: a mutated fixture, or a broken one."""
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "truncated", "raw"]))
    if kind == "mutated":
        return dumps(draw(mutated(base)))
    whole = dumps(base)
    if kind == "truncated":
        return whole[: draw(st.integers(0, max(0, len(whole) - 1)))]
    return draw(
        st.one_of(
            st.binary(max_size=200),
            st.sampled_from(
                [
                    b"",
                    b"null",
                    b"<html>502 Bad Gateway</html>",
                    b"[" * 100_000,
                    b'{"a":' * 100_000,
                    b"\xff\xfe\x00{",
                    b"1" * 5000,
                    b"Infinity",
                    b'"\\ud800"',
                    whole + b"garbage",
                ]
            ),
            st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
        )
    )


# -- the allowed outcomes ----------------------------------------------------------------------


def assert_typed(exc: BaseException, entity: str | None) -> None:
    """A failure a parser may raise: a ProviderError subclass, one line, naming the entity."""
    message = str(exc)
    assert isinstance(exc, ProviderError), (
        f"untyped {type(exc).__name__}: {message[:300]}"
    )  # the traceback follows (chained)
    assert "\n" not in message and "\r" not in message, f"multi-line message: {message[:300]!r}"
    assert 0 < len(message) <= 2000, f"message of {len(message)} characters"
    if entity is not None:
        assert entity in message, f"{message!r} does not name {entity!r}"


def outcome(call: Callable[[], Any], entity: str | None) -> Any:
    """Run ``call``; return its value, or None after checking the exception is allowed."""
    try:
        return call()
    except ProviderError as exc:
        assert_typed(exc, entity)
        return None


# -- CLI ---------------------------------------------------------------------------------------

UNREACHABLE_ENV = {
    "TEMPORAL_ADDRESS": "127.0.0.1:1",
    "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nothing",
    "LOG_LEVEL": "INFO",
}
NOT_RUN = ("sandbox", "demo", "api")  # they serve or start a whole stack: parsed, never run


@dataclass(frozen=True)
class Leaf:
    """One runnable command (``track guild``) and what it accepts."""

    path: tuple[str, ...]
    options: tuple[str, ...]
    positionals: int
    choices: tuple[str, ...]


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[Leaf]:
    out: list[Leaf] = []
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if subs:
        for name, sub in (subs[0].choices or {}).items():
            out.extend(leaves(sub, (*path, name)))
        return out
    options: list[str] = []
    positionals = 0
    choices: list[str] = []
    for action in parser._actions:
        options.extend(action.option_strings)
        if not action.option_strings:
            positionals += 1
        if action.choices:
            choices.extend(str(c) for c in action.choices)
    return [Leaf(path, tuple(options), positionals, tuple(choices))]


ARG_TEXT = st.one_of(
    st.sampled_from(
        [
            "eu", "us", "kr", "tw", "cn", "EU", "xx", "eu/x", "draenor", "realm/with", "a b",
            "1168516062791340136", "99999999999999999999", "9223372036854775808",
            "00000000000000000",
            "15m", "0s", "3000000d", "bogus", "off", "1e11", "-1", "0", "nan", "inf", "-inf",
            "1e400", "--", "-", "--help", "-h", "--json", "2v2,3v3", ",,,", "x" * 1100,
            "\u00b9" * 17, "\uff11" * 18, "\x7f", "'", '"', "%s", "{region}", "../../etc/passwd",
        ]
    ),
    st.text(
        alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
        max_size=30,
    ),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)  # fmt: skip


TENANT = "1168516062791340136"
# A valid command line of every command (the test checks each command has one): the fuzz
# changes one or two of its values, so most examples get past argparse to the verb itself.
VALID_ARGV: dict[tuple[str, ...], list[str]] = {
    ("db", "upgrade"): [],
    ("services", "start"): [],
    ("services", "stop"): [],
    ("services", "status"): [],
    ("track", "guild"): ["eu", "draenor", "Some Guild"],
    ("track", "character"): ["eu", "draenor", "sheday"],
    ("track", "tenant"): [TENANT],
    ("track", "club"): ["20650"],
    ("track", "event"): ["5123456", "--club", "20650"],
    ("sync", "battlenet"): ["--region", "eu", "--full"],
    ("sync", "pvp"): ["--region", "eu", "--season", "37", "--brackets", "2v2,3v3"],
    ("sync", "discord"): ["--tenant", TENANT],
    ("sync", "zwift"): ["--club", "20650", "--kind", "near"],
    ("status",): ["--tenant", TENANT],
    ("reset", "discord"): ["--tenant", TENANT, "--channel", TENANT, "--yes"],
    ("scheduler",): ["start", "battlenet", "--region", "eu", "--every", "15m"],
    ("add", "character"): ["eu", "draenor", "sheday", "--priority", "manual", "--timeout", "5"],
    ("add", "guild"): ["eu", "draenor", "Some Guild", "--priority", "urgent"],
    ("add", "rider"): ["5574", "--club", "20650", "--timeout", "5"],
    ("temporal", "setup"): [],
    ("sandbox",): ["--provider", "discord", "--port", "1"],
    ("demo",): ["--guilds", "1", "--roster-max", "5"],
    ("api",): ["--port", "8123", "--workers", "2"],
}


@st.composite
def argv_lists(draw: st.DrawFn, all_leaves: list[Leaf]) -> list[str]:
    """A command line: a real command path, then a mix of its options, choices and junk."""
    mode = draw(st.sampled_from(["valid", "valid", "valid", "leaf", "leaf", "prefix", "junk"]))
    if mode == "junk":
        return draw(st.lists(ARG_TEXT, max_size=5))
    if mode == "valid":
        leaf = draw(st.sampled_from(all_leaves))
        rest = list(VALID_ARGV[leaf.path])
        for _ in range(draw(st.integers(0, 2))):
            replace = draw(st.booleans())
            if rest and replace:
                rest[draw(st.integers(0, len(rest) - 1))] = draw(ARG_TEXT)
            else:
                extra = st.sampled_from(leaf.options) if leaf.options else ARG_TEXT
                rest.insert(draw(st.integers(0, len(rest))), draw(extra))
        return [*leaf.path, *rest]
    leaf = draw(st.sampled_from(all_leaves))
    path = list(leaf.path)
    if mode == "prefix":
        path = path[: draw(st.integers(0, len(path)))]
    pool = st.one_of(
        ARG_TEXT,
        st.sampled_from(leaf.options) if leaf.options else ARG_TEXT,
        st.sampled_from(leaf.choices) if leaf.choices else ARG_TEXT,
    )
    rest = draw(st.lists(pool, max_size=leaf.positionals + 4))
    return path + rest


@dataclass(frozen=True)
class CliRun:
    code: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def environment(values: dict[str, str], drop_prefixes: tuple[str, ...] = ()) -> Iterator[None]:
    """``os.environ`` with ``values`` set and every variable starting with a prefix removed,
    restored afterwards (hypothesis examples cannot use the function-scoped monkeypatch)."""
    with mock.patch.dict(os.environ, clear=False):
        for name in [n for n in os.environ if n.startswith(drop_prefixes)] if drop_prefixes else []:
            del os.environ[name]
        os.environ.update(values)
        yield


def run_cli(argv: list[str], data_dir: Path) -> CliRun:
    """``starter.main(argv)`` in-process with unreachable servers; SystemExit is an exit code."""
    from starter import build_parser, main

    out, err = io.StringIO(), io.StringIO()
    with (
        environment({**UNREACHABLE_ENV, "DATA_DIR": str(data_dir)}),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            if argv and argv[0] in NOT_RUN:
                build_parser().parse_args(argv)
                code = 0
            else:
                code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    return CliRun(code, out.getvalue(), err.getvalue())
