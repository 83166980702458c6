"""The fleet's budget against the benchmark's workload, in virtual time (fleet_simulation).

The real ``SharedPacer`` processes and rules against the fake's real token bucket,
exact for a seed and about a tenth of a second per simulated run: the goals of
``benchmarks/fleet_rate.py`` (<= 1 % 429s, wall <= 1.2x ideal, no job failed),
checked on every change to the rules. The benchmark measures the real processes.
"""

from __future__ import annotations

import pytest
from fleet_simulation import simulate, steady

GOAL_SHARE = 0.01
GOAL_RATIO = 1.2


@pytest.mark.parametrize(
    ("processes", "limit", "headers"),
    [(1, 100, False), (16, 100, False), (8, 50, False), (16, 10, False), (16, 10, True)],
)
def test_the_fleet_meets_the_goals(processes: int, limit: int, headers: bool) -> None:
    outcome = simulate(processes, limit, headers=headers)
    assert outcome.failed == 0, outcome.row()
    assert outcome.share <= GOAL_SHARE, outcome.row()
    assert outcome.ratio <= GOAL_RATIO, outcome.row()
    # A lease is a block of slots: well under one exchange per request.
    assert outcome.exchanges < 0.6 * outcome.requests, outcome.row()


@pytest.mark.slow  # every N and limit, with and without headers (about 5 s)
@pytest.mark.parametrize("headers", [True, False])
@pytest.mark.parametrize("limit", [100, 50, 10])
def test_every_fleet_meets_the_goals(limit: int, headers: bool) -> None:
    for processes in (1, 2, 4, 8, 16):
        outcome = simulate(processes, limit, headers=headers)
        assert outcome.failed == 0, outcome.row()
        assert outcome.share <= GOAL_SHARE, outcome.row()
        assert outcome.ratio <= GOAL_RATIO, outcome.row()


@pytest.mark.parametrize("rate", [200, 800])
def test_a_steady_flow_leases_blocks_not_slots(rate: int) -> None:
    # One request at a time at a high rate, no limit, no headers (the budget stays in
    # its slow start): a process asks for a short block, not for the one request in
    # hand, so the store sees an exchange per five requests or fewer (0.27 when each
    # request asked for its own slot).
    outcome = steady(rate)
    assert outcome.exchanges <= 0.22 * outcome.requests, outcome.row()
