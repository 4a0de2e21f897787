"""The chaos suite, long form: every scenario of `tests/chaos/harness.py` on every provider it
applies to, with ten SIGKILLs per run and a 30 s 429 storm, and the table kept in CHAOS.md.

    .venv/bin/python -m bench.chaos                       # every scenario once, ~15 min
    .venv/bin/python -m bench.chaos --repeat 3            # three runs of each
    .venv/bin/python -m bench.chaos --only sigkill --only "fault storm"
    .venv/bin/python -m bench.chaos --provider pvp        # every scenario that runs on PvP
    .venv/bin/python -m bench.chaos --quick               # the CI form (tests/chaos)

One stack for the whole run (its own Postgres and persistent Temporal dev server, both
sandboxes in this process, `python worker.py` processes); every run gets a fresh database and
task queue, and its stored rows are compared with the sandbox's ground truth. Exit code 1 when
any run is not exact (a duplicate, a gap, a dead letter of an entity that exists, a failed run,
a 429 the client could have avoided, or a fault that was never injected).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time

from tests.chaos.harness import JOBS, SCENARIOS, Outcome, Stack, play, stack


def _table(outcomes: list[Outcome]) -> str:
    head = (
        f"| {'scenario':<17} | {'provider':<9} | {'fault injected':<42} | runs | rows"
        " compared | duplicates | gaps | dead letters | 429s (own limits) | 429s injected |"
    )
    rule = "|" + "|".join("-" * (len(c) + 0) for c in head.split("|")[1:-1]) + "|"
    lines = [head, rule]
    for o in outcomes:
        v = o.verdict
        lines.append(
            f"| {o.scenario:<17} | {o.provider:<9} | {o.injected:<42} | {o.completed}/{o.runs}"
            f" | {v.rows} | {v.duplicates} | {v.gaps} | {v.dead_letters} | {o.answered_429}"
            f" | {o.injected_429} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--repeat", type=int, default=1, help="runs per scenario and provider")
    parser.add_argument("--only", action="append", default=[], help="a scenario name")
    parser.add_argument("--quick", action="store_true", help="the quick form CI runs")
    parser.add_argument("--seed", type=int, default=None, help="seed of the kill points")
    parser.add_argument(
        "--provider", action="append", default=[], choices=sorted(JOBS), help="only this provider"
    )
    args = parser.parse_args(argv)
    names = {s.name for s in SCENARIOS}
    unknown = [n for n in args.only if n not in names]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; one of {sorted(names)}")
    seed = args.seed if args.seed is not None else random.randrange(1 << 20)
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only]
    outcomes: list[Outcome] = []
    started = time.monotonic()
    print(f"chaos, {'quick' if args.quick else 'long'} form, kill seed {seed}", flush=True)

    async def run_all(s: Stack) -> None:
        for scenario in chosen:
            for provider in scenario.providers:
                if args.provider and provider not in args.provider:
                    continue
                outcome = await play(
                    s, scenario, provider, long=not args.quick, repeat=args.repeat, seed=seed
                )
                outcomes.append(outcome)
                print(outcome.line(), flush=True)

    with stack() as s:  # started outside the event loop (migrations run their own)
        asyncio.run(run_all(s))
    print(f"\n{_table(outcomes)}\n")
    bad = [o for o in outcomes if not o.ok]
    print(
        f"{sum(o.runs for o in outcomes)} runs in {time.monotonic() - started:.0f} s; "
        f"{sum(o.completed for o in outcomes)} completed; "
        f"{sum(o.verdict.rows for o in outcomes)} rows compared; "
        f"duplicates {sum(o.verdict.duplicates for o in outcomes)}, "
        f"gaps {sum(o.verdict.gaps for o in outcomes)}, "
        f"dead letters {sum(o.verdict.dead_letters for o in outcomes)}; "
        f"{'all exact' if not bad else f'{len(bad)} NOT exact'}"
    )
    for o in bad:
        print(f"  {o.scenario}/{o.provider}: {'; '.join(o.verdict.problems)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
