"""The read API never loads a provider client or the HTTP layer (issue 14): it reads Postgres
only, so a site's pages can never wait on, or be banned by, an upstream API through it."""

from __future__ import annotations

import os
import subprocess
import sys

CHECK = """
import sys
import api.app, api.queries, api.refresh, api.serve, api.shape
bad = sorted(m for m in sys.modules if m in ("httpx", "aiohttp", "providers.http")
             or (m.startswith("providers.") and m.endswith(".client")))
print(",".join(bad))
"""


def test_the_api_imports_no_provider_client_and_no_http_layer():
    done = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"the API loads {done.stdout.strip()}"


def test_the_check_sees_a_client_when_one_is_loaded():
    done = subprocess.run(
        [sys.executable, "-c", "import providers.battlenet.client\n" + CHECK],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )  # fmt: skip
    assert "providers.battlenet.client" in done.stdout and "httpx" in done.stdout
