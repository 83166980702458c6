"""Crash safety on PostgreSQL: several worker processes on one database, killed at
seeded points (``tests/crash_harness.py``), 0 duplicated and 0 lost jobs.

The harness is the SQLite one's (``tests/test_crash_safety.py``), given a
``postgresql://`` ledger URL: a fresh database per batch on the session's
throwaway server. Each batch runs several workers at once, so the kills land
while other workers hold leases on, wait on and download the same ledger's
entries. A short run in the default suite; ``-m slow`` runs hundreds of kill
points under each policy and prints the figures.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from crash_harness import Batch, Figures, run_batch, run_batches
from postgres_server import PostgresServer
from test_crash_safety import POLICIES, assert_clean, report


def batch(server: PostgresServer, folder: Path, name: str, policy: str, **options: object) -> Batch:
    return Batch(
        ledger_url=server.create_database(),
        folder=folder / name,
        policy=policy,
        **options,  # type: ignore[arg-type]
    )


async def test_workers_killed_at_seeded_points_lose_nothing_and_pay_nothing_twice(
    postgres_server: PostgresServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = {
        "resend, 3 workers": batch(
            postgres_server, tmp_path, "resend", "resend", workers=3, kills=6, seed="pg"
        ),
        "adopt, 2 workers": batch(
            postgres_server, tmp_path, "adopt", "adopt", workers=2, kills=6, seed="pg"
        ),
    }
    results = await asyncio.gather(*(run_batch(b) for b in plan.values()))
    figures = dict(zip(plan, results, strict=True))
    with capsys.disabled():
        print("\n" + report("crash harness on PostgreSQL (default run):", figures))
    for name, found in figures.items():
        assert_clean(plan[name].policy, found)
    assert sum(found.kill_points for found in results) >= 12


@pytest.mark.slow
async def test_hundreds_of_kill_points_with_three_workers(
    postgres_server: PostgresServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    figures: dict[str, Figures] = {}
    for policy in POLICIES:
        batches = [
            batch(
                postgres_server,
                tmp_path,
                f"{policy}-{n}",
                policy,
                tasks=32,
                workers=3,
                kills=12,
                seed=f"pg-slow:{n}",
            )
            for n in range(8)
        ]
        figures[policy] = await run_batches(batches, parallel=2)
    with capsys.disabled():
        print("\n" + report("crash harness on PostgreSQL (-m slow):", figures))
    for policy, found in figures.items():
        assert_clean(policy, found)
    # Kills are planned per process run; one that finishes its work first is not killed.
    assert sum(found.kill_points for found in figures.values()) >= 400
