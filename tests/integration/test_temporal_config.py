"""A real `python worker.py` reaching a Temporal server through Temporal's own environment
configuration: a TOML profile (TEMPORAL_CONFIG_FILE + TEMPORAL_PROFILE) names the namespace and
an API key, on a dev server started *without* ratesync's search attributes. The worker registers
them at start, serves the profile's namespace (a BattleNetSync started there with its search
attributes completes), and the API key is in none of its log lines (LOG_FORMAT=json, DEBUG).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

import runtime
from activities.types import BattleNetSyncInput, SyncCounts
from tests.integration.worker_process import ROOT, stop_worker
from workflows.battlenet import BattleNetSync
from workflows.visibility import search_attributes

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
NAMESPACE = "ratesync-profiled"


def _start_worker(env: dict[str, str], out: Path, log: Path) -> subprocess.Popen[bytes]:
    """`python worker.py`: stdout (its start lines) to ``out``, stderr (its logs) to ``log``."""
    with open(out, "wb") as stdout, open(log, "wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=stdout, stderr=stderr
        )


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:]


async def _until_polling(proc: subprocess.Popen[bytes], out: Path, log: Path) -> None:
    for _ in range(300):
        if "worker polling task queue" in out.read_text():  # noqa: ASYNC240 (a small file)
            return
        if proc.poll() is not None:
            break
        await asyncio.sleep(0.1)
    raise AssertionError(f"the worker did not start polling (exit {proc.poll()}): {_tail(log)}")


async def test_a_toml_profile_reaches_the_server_and_the_worker_registers_search_attributes(
    database_url, task_queue, tmp_path
):
    key = f"tmprl-key-{uuid.uuid4().hex}"
    env = await WorkflowEnvironment.start_local(
        namespace=NAMESPACE,
        dev_server_existing_path=runtime.temporal_binary(),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )  # no search_attributes: a server nobody ran `temporal setup` on
    proc: subprocess.Popen[bytes] | None = None
    try:
        address = env.client.service_client.config.target_host
        assert await runtime.missing_search_attributes(env.client) == list(
            runtime.SEARCH_ATTRIBUTES
        )
        config = tmp_path / "temporal.toml"
        config.write_text(
            f'[profile.default]\naddress = "127.0.0.1:1"\nnamespace = "not-this-one"\n\n'
            f'[profile.ratesync]\naddress = "{address}"\nnamespace = "{NAMESPACE}"\n'
            f'api_key = "{key}"\n[profile.ratesync.tls]\ndisabled = true\n'
        )  # TLS off: the dev server speaks plain gRPC (Temporal Cloud: leave it on)
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
        child_env.update(
            HOME=str(tmp_path), DATA_DIR=str(tmp_path / "data"), DATABASE_URL=database_url,
            TEMPORAL_ADDRESS=address, TEMPORAL_CONFIG_FILE=str(config),
            TEMPORAL_PROFILE="ratesync", TEMPORAL_TASK_QUEUE=task_queue,
            LOG_FORMAT="json", LOG_LEVEL="DEBUG",
        )  # fmt: skip
        child_env.pop("TEMPORAL_NAMESPACE", None)  # the profile's namespace, not `default`
        log, out = tmp_path / "worker.log", tmp_path / "worker.out"
        proc = _start_worker(child_env, out, log)
        await _until_polling(proc, out, log)
        assert await runtime.missing_search_attributes(env.client) == []

        # The profile's namespace is what the worker serves; the attributes take a start.
        client = await Client.connect(
            address, namespace=NAMESPACE, data_converter=pydantic_data_converter
        )
        counts = await asyncio.wait_for(
            client.execute_workflow(
                BattleNetSync.run, BattleNetSyncInput(region="eu"),
                id=f"battlenet-sync/eu/profiled-{task_queue}", task_queue=task_queue,
                search_attributes=search_attributes("battlenet", "eu", "sync"),
            ),
            timeout=60,
        )  # fmt: skip
        # (a start whose attributes are not registered fails: "no mapping defined for …")
        assert isinstance(counts, SyncCounts) and counts.guilds == 0
    finally:
        if proc is not None:
            stop_worker(proc)
        await env.shutdown()
    assert proc is not None and proc.returncode == 0, _tail(log)
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    registered = [x for x in lines if x["message"].startswith("search attributes registered")]
    assert registered and "Provider, Scope, SyncKind" in registered[0]["message"], lines[:20]
    assert any(x.get("workflow_id", "").startswith("battlenet-sync/eu") for x in lines), lines
    assert key not in text and key not in out.read_text()
