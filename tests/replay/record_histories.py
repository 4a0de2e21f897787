"""Record the workflow histories that tests/replay/test_replay.py replays.

Run it whenever a workflow changes on purpose (and keep the old files that running workflows
could still have):

    .venv/bin/python -m tests.replay.record_histories

It starts its own Postgres, Temporal dev server and sandbox, runs a small Battle.net sync that
continues-as-new once, and writes one JSON history per workflow run into histories/.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

import runtime
from activities.types import BattleNetSyncInput
from storage.migrate import upgrade
from tests.integration.battlenet_support import track_sandbox_guilds
from tests.sandbox_helpers import battlenet_sandbox, sandbox_settings
from worker import build_worker
from workflows.battlenet import BattleNetSync

HISTORIES = Path(__file__).resolve().parent / "histories"


async def record() -> list[Path]:
    data_dir = Path(tempfile.mkdtemp(prefix="ratesync-record-"))
    pg = runtime.start_postgres(data_dir, runtime.free_port())
    written: list[Path] = []
    try:
        await asyncio.to_thread(upgrade, pg.url())
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=runtime.temporal_binary(),
            data_converter=pydantic_data_converter,
        )
        async with env:
            client = env.client
            with battlenet_sandbox(
                guilds_per_region=2, roster_min=30, roster_max=30, hidden_ratio=0.1
            ) as sb:
                await track_sandbox_guilds(pg.url(), sb.url)
                settings = sandbox_settings(sb.url)
                queue = f"record-{uuid.uuid4().hex[:6]}"
                master_id = "battlenet-sync/eu/recorded"
                async with build_worker(client, settings, pg.url(), queue) as parts:
                    async with parts.worker:
                        await client.execute_workflow(
                            BattleNetSync.run,
                            BattleNetSyncInput(region="eu", page_size=10, batch_size=10),
                            id=master_id,
                            task_queue=queue,
                        )
                runs = [wf async for wf in client.list_workflows(f'WorkflowId = "{master_id}"')]
                children = [
                    wf async for wf in client.list_workflows(f'ParentWorkflowId = "{master_id}"')
                ]
                picked = runs + _one_per_type(children)
                for n, wf in enumerate(picked):
                    handle = client.get_workflow_handle(wf.id, run_id=wf.run_id)
                    history = await handle.fetch_history()
                    name = f"{wf.workflow_type}-{n}.json"
                    path = HISTORIES / name
                    document = {"workflow_id": wf.id, **history.to_json_dict()}
                    path.write_text(json.dumps(document, indent=1))
                    written.append(path)
    finally:
        pg.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return written


def _one_per_type(workflows: list[Any]) -> list[Any]:
    seen: dict[str, object] = {}
    for wf in workflows:
        seen.setdefault(wf.workflow_type, wf)
    return list(seen.values())


if __name__ == "__main__":
    HISTORIES.mkdir(exist_ok=True)
    for path in asyncio.run(record()):
        print(f"wrote {path.relative_to(HISTORIES.parent.parent.parent)}")
