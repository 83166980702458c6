"""Crash safety, proved by killing real processes (see ``tests/crash_harness.py``).

A real service process runs over the fake API and an SQLite ledger file, and
is killed with SIGKILL at seeded points: before the POST, after the server
made the job but before its answer was read, after the answer but before the
id was recorded, mid-wait, mid-download. It is restarted on the same ledger
until it finishes; then the fake's own records say whether every logical job
exists exactly once on the server, every completed one was downloaded whole
exactly once, and nothing is left in ``intent``. Under each policy where it
applies: ``resend`` against the fake (it honours keys), ``adopt`` with the
fake ignoring ``Idempotency-Key`` (as LiteLLM does), ``raise`` leaving only
``ambiguous`` entries. The default run kills a few dozen times; ``-m slow``
over a thousand times (and prints the figures).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from crash_harness import Batch, Figures, run_batch, run_batches

POLICIES = ("resend", "adopt", "raise")


def batches(
    folder: Path, policy: str, count: int, *, tasks: int, workers: int, kills: int, seed: str
) -> list[Batch]:
    return [
        Batch(
            ledger_url=f"sqlite:///{folder}/{policy}-{n}.db",
            folder=folder / f"{policy}-{n}",
            policy=policy,
            tasks=tasks,
            workers=workers,
            kills=kills,
            seed=f"{seed}:{n}",
        )
        for n in range(count)
    ]


def report(title: str, figures: dict[str, Figures]) -> str:
    lines = [title]
    for policy, f in figures.items():
        lines.append(
            f"  {policy:17} {f.kill_points:5} kill points in {f.batches} batches of "
            f"{f.jobs // max(f.batches, 1)} jobs: {f.duplicates} duplicates, {f.lost} lost, "
            f"{f.repeat_downloads} repeated downloads, {f.bad_files} bad files, "
            f"{f.intents_left} intents left, {f.ambiguous} ambiguous; {f.wall:.1f} s"
        )
    return "\n".join(lines)


def assert_clean(policy: str, figures: Figures) -> None:
    assert figures.problems == ()
    assert (figures.duplicates, figures.lost) == (0, 0)
    assert (figures.repeat_downloads, figures.bad_files, figures.intents_left) == (0, 0, 0)
    if policy != "raise":
        assert figures.ambiguous == 0  # the fake lists every field: adopt never hesitates


async def test_kills_at_seeded_points_lose_nothing_and_pay_nothing_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A few dozen kill points across the three policies, one and two workers."""

    def batch(name: str, policy: str, *, workers: int = 1, kills: int = 10) -> Batch:
        return Batch(
            ledger_url=f"sqlite:///{tmp_path}/{name}.db",
            folder=tmp_path / name,
            policy=policy,
            workers=workers,
            kills=kills,
            seed="default",
        )

    plan = {
        "resend": batch("resend", "resend"),
        "adopt": batch("adopt", "adopt"),
        "raise": batch("raise", "raise", kills=8),
        "resend, 2 workers": batch("fleet", "resend", workers=2, kills=4),
    }
    results = await asyncio.gather(*(run_batch(batch) for batch in plan.values()))
    figures = dict(zip(plan, results, strict=True))
    with capsys.disabled():
        print("\n" + report("crash harness (default run):", figures))
    for name, found in figures.items():
        assert_clean(plan[name].policy, found)
    # Kills are planned per process run; one that finishes its work first is not killed.
    assert sum(found.kill_points for found in results) >= 24
    assert figures["raise"].ambiguous > 0  # the kills did leave creates in doubt


@pytest.mark.slow
async def test_a_thousand_kill_points(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Over a thousand kill points: 0 duplicates and 0 lost under every policy."""
    figures: dict[str, Figures] = {}
    for policy in POLICIES:
        figures[policy] = await run_batches(
            batches(tmp_path, policy, 22, tasks=32, workers=2, kills=16, seed="slow"),
            parallel=3,
        )
    with capsys.disabled():
        print("\n" + report("crash harness (-m slow):", figures))
    for policy, found in figures.items():
        assert_clean(policy, found)
    assert sum(found.kill_points for found in figures.values()) >= 1000
