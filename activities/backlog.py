"""Whether tasks wait on a task queue at a better Temporal priority level than a running call's.

A long activity holds its worker slot until it returns; Temporal's priority orders the tasks
waiting for the next free slot but never frees one. A call that pages for seconds at a time
(Discord's channel paging) asks :class:`BacklogWatch` between pages and ends early, at a
boundary where everything is stored, when a task of a better level (a new tenant's leading
channel) is waiting: the workflow calls again at once, and the new call queues behind it.

The server is asked with ``DescribeTaskQueue`` (``report_stats``: the approximate backlog per
priority key, over every partition), at most once per ``refresh`` seconds per queue and worker
process, however many calls ask. A server that cannot answer (an older one, no permission)
makes the watch say "nothing waits", so calls run their full length as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from temporalio import activity
from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

log = logging.getLogger("ratesync.backlog")

DEFAULT_PRIORITY_KEY = 3  # the server's level for a task without a priority key
ASK_TIMEOUT = timedelta(seconds=2)


class BacklogWatch:
    """The waiting tasks per priority level of activity task queues, refreshed on demand."""

    def __init__(self, refresh: float = 1.0) -> None:
        self.refresh = refresh
        self._levels: dict[str, dict[int, int]] = {}  # queue -> priority key -> tasks waiting
        self._asked: dict[str, float] = {}  # queue -> monotonic time of the last answer
        self._lock = asyncio.Lock()
        self.questions = 0  # DescribeTaskQueue calls made (tests, the bench)

    async def better_waiting(self) -> bool:
        """In a running activity: whether a task waits on its task queue at a better (lower)
        priority key than its own."""
        info = activity.info()
        own = info.priority.priority_key or DEFAULT_PRIORITY_KEY
        levels = await self._backlog(info.task_queue, info.namespace)
        return any(n > 0 and (key or DEFAULT_PRIORITY_KEY) < own for key, n in levels.items())

    async def _backlog(self, queue: str, namespace: str) -> dict[int, int]:
        if time.monotonic() - self._asked.get(queue, -1e18) < self.refresh:
            return self._levels.get(queue, {})
        async with self._lock:
            if time.monotonic() - self._asked.get(queue, -1e18) >= self.refresh:  # not just now
                self._levels[queue] = await self._ask(queue, namespace)
                self._asked[queue] = time.monotonic()
        return self._levels.get(queue, {})

    async def _ask(self, queue: str, namespace: str) -> dict[int, int]:
        self.questions += 1
        request = DescribeTaskQueueRequest(
            namespace=namespace,
            task_queue=TaskQueue(name=queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            report_stats=True,
        )
        try:
            service = activity.client().workflow_service
            answer = await service.describe_task_queue(request, timeout=ASK_TIMEOUT)
        except Exception as exc:  # never a reason to fail a call: it just runs its full length
            log.debug("task queue backlog unknown: %s", type(exc).__name__)
            return {}
        return {
            int(key): int(stats.approximate_backlog_count)
            for key, stats in answer.stats_by_priority_key.items()
        }
