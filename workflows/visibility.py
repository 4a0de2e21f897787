"""Search attributes (Provider, Scope, SyncKind) and reporting back to a scheduler.

The attributes must be registered on the server: the embedded dev server does it at start,
`python starter.py temporal setup` does it on any other server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

with workflow.unsafe.imports_passed_through():
    from workflows.scheduler_types import ChildDone

PROVIDER = SearchAttributeKey.for_keyword("Provider")
SCOPE = SearchAttributeKey.for_keyword("Scope")
SYNC_KIND = SearchAttributeKey.for_keyword("SyncKind")
NAMES = ("Provider", "Scope", "SyncKind")


def region_sync_id(region: str) -> str:
    """The workflow id of a region's Battle.net sync, whoever starts it (the CLI or a scheduler):
    one such sync runs per region at a time."""
    return f"battlenet-sync/{region}"


def search_attributes(provider: str, scope: str, kind: str) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(PROVIDER, provider),
            SearchAttributePair(SCOPE, scope),
            SearchAttributePair(SYNC_KIND, kind),
        ]
    )


async def report_done(report_to: str | None, status: str, detail: str = "") -> None:
    """Tell the scheduler that started this workflow that it ended (no-op without one).

    Signalled by workflow id without run id, so it reaches the scheduler's latest run even
    after it continued-as-new. A scheduler that is gone is not an error of this workflow.
    """
    if not report_to:
        return
    handle = workflow.get_external_workflow_handle(report_to)
    try:
        await handle.signal("child_done", ChildDone(workflow.info().workflow_id, status, detail))
    except Exception as exc:  # the scheduler was stopped meanwhile
        workflow.logger.info("could not report to %s: %s", report_to, exc)


T = TypeVar("T")


async def reporting(
    report_to: str | None,
    body: Awaitable[T],
    status_of: Callable[[T], str] = lambda _: "completed",
    detail: Callable[[], str] = lambda: "",
) -> T:
    """Run a scheduler's child body and report how it ended (not when it continues-as-new:
    the next run reports)."""
    status = "failed"
    try:
        result = await body
        status = status_of(result)
        return result
    except workflow.ContinueAsNewError:
        status = "continued"
        raise
    finally:
        if status != "continued":
            await report_done(report_to, status, detail())
