"""`pip install .` (the Dockerfile's) carries every module of the product: each top-level
package and module is named in pyproject's setuptools tables (the read API's `api/`,
`observability/` and `logformat.py` were missing, so the image would lack them)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_SHIPPED = {"tests", "docs", "deploy", "requirements", "__pycache__"}


def test_every_top_level_package_and_module_is_installed():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    modules = set(tool["py-modules"])
    patterns = tool["packages"]["find"]["include"]
    for path in ROOT.iterdir():
        if path.name.startswith(".") or path.name in NOT_SHIPPED:
            continue
        if path.is_dir() and (path / "__init__.py").exists():
            assert any(fnmatch.fnmatch(path.name, p) for p in patterns), path.name
        elif path.suffix == ".py":
            assert path.stem in modules, path.name
