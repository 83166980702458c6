"""Clocks for the fake API: the time a job's status is computed against.

A clock is anything with a ``now() -> float`` method returning unix seconds. The fake
reads it at request time, so a test controls job progression by moving a
:class:`ManualClock`; :class:`RealClock` follows wall-clock time. A clock may also
have a ``speed``: the fake divides every job duration by it, so jobs run faster
while the timestamps it serves stay true.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "RealClock"]


@runtime_checkable
class Clock(Protocol):
    """What the fake needs from a clock: the current time in unix seconds."""

    def now(self) -> float:
        """Return the current time in unix seconds."""
        ...


class ManualClock:
    """A clock that only moves when told to; for deterministic progression tests."""

    def __init__(self, start: float = 1_760_000_000.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        """Return the current (frozen) time."""
        return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (must not be negative); return the new time."""
        if seconds < 0:
            raise ValueError("a ManualClock cannot go backwards")
        self._now += seconds
        return self._now

    def set(self, when: float) -> None:
        """Jump to an absolute time (may go backwards: the caller asked for it)."""
        self._now = float(when)

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now!r})"


class RealClock:
    """Wall-clock time; jobs on it run ``speed`` times faster than configured.

    With ``speed=10.0`` a job configured to run for 5 s completes in half a real
    second, and its ``created_at`` and ``completed_at`` are the real moments, half a
    second apart: speed scales durations, never the time of day.
    """

    def __init__(self, speed: float = 1.0) -> None:
        if not speed > 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._origin_wall = time.time()
        # monotonic so that a system clock adjustment cannot move jobs backwards.
        self._origin_mono = time.monotonic()

    def now(self) -> float:
        """Return the current time in unix seconds."""
        return self._origin_wall + (time.monotonic() - self._origin_mono)

    def __repr__(self) -> str:
        return f"RealClock(speed={self.speed!r})"
