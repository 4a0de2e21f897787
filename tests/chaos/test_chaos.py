"""The chaos suite, quick form: every scenario of `tests/chaos/harness.py` once, on the
providers of its `quick` subset (all three for SIGKILLs), with two SIGKILLs instead of ten and a
5 s 429 storm instead of 30 s. The long form (`python -m bench.chaos`) runs every scenario on
every provider; its table is CHAOS.md."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import pytest

from sandbox.common import Faults
from tests.chaos.harness import JOBS, QUICK_SEED, SCENARIOS, STORM, Stack, play, stack

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

CASES = [
    pytest.param(scenario, provider, id=f"{scenario.name.replace(' ', '-')}-{provider}")
    for scenario in SCENARIOS
    for provider in (scenario.quick or scenario.providers)
]


@pytest.fixture(scope="module")
def chaos_stack() -> Iterator[Stack]:
    with stack() as s:
        yield s


@pytest.mark.parametrize(("scenario", "provider"), CASES)
async def test_the_sync_finishes_with_exact_data(chaos_stack, scenario, provider):
    seed = int(os.environ.get("CHAOS_SEED", random.randrange(1 << 20)))
    outcome = await play(chaos_stack, scenario, provider, long=False, seed=seed)
    print(f"\nseed {seed}: {outcome.line()}")
    assert outcome.ok, outcome.line()
    assert outcome.verdict.rows > 0


@pytest.mark.parametrize("provider", ["battlenet", "pvp", "discord"])
async def test_the_verdict_sees_what_is_missing(chaos_stack, provider):
    """The comparison can fail: an empty mirror has a gap for every row of the truth."""
    job = JOBS[provider](chaos_stack)
    database_url = chaos_stack.fresh_database()
    await job.prepare(database_url)
    verdict = await job.verify(database_url)
    assert verdict.gaps > 0 and not verdict.exact


def test_the_quick_fault_seed_injects_every_kind_early():
    faults = Faults(seed=QUICK_SEED, **STORM)
    kinds = set()
    for _ in range(20):
        decision = faults.decide("/any")
        kinds.add("truncate" if decision.truncate else decision.action)
    assert {"error", "reset", "truncate"} <= kinds
