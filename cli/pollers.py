"""Whether a worker polls a task queue now: what `status`, `scheduler status` and `add --wait`
say instead of waiting on a query or a result that no worker will ever answer."""

from __future__ import annotations

import time

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

# An idle worker's long poll lasts up to ~70 s, and the server stamps a poller when a poll
# arrives: a live worker's stamp is never older than this.
LIVE_POLL_SECONDS = 90.0


def no_worker(task_queue: str) -> str:
    return f"no worker is polling task queue {task_queue!r}: start one with `python worker.py`"


async def worker_polls(client: Client, task_queue: str, within: float = LIVE_POLL_SECONDS) -> bool:
    """Whether a worker polled ``task_queue``'s workflow tasks in the last ``within`` seconds
    (the server keeps a poller listed for minutes after its worker exited)."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    now = time.time()
    return any(
        now - p.last_access_time.seconds <= within if p.HasField("last_access_time") else True
        for p in response.pollers
    )
