"""A fleet sharing one rate budget, simulated in virtual time: exact, and seconds long.

``simulate()`` runs N processes' ``SharedPacer`` (the real one) on one store that
runs the real rules (``_budget.exchange``) after a round trip and under a row lock,
as PostgreSQL does, against the fake's real token bucket (``Limiter``), with the
benchmark's workload: every job created at once, then polled until it is done (1 s
after its create), each request retried on a 429 after the server's wait, at most
``MAX_RETRIES`` times, as the client does. Everything runs on one event loop whose
clock jumps to the next timer instead of sleeping (``VirtualTimeLoop``), so a
run of 80 simulated seconds takes about a second and gives the same figures every
time for a seed; the latencies (requests, exchanges, a loaded machine's late wake-ups)
are drawn from a seeded generator.

The benchmark (``python -m benchmarks.fleet_rate``) measures the real thing; this is
for the tests (exact, on every change to the rules) and for trying a change to the
rules in seconds: ``python tests/fleet_simulation.py`` prints its table.
"""

from __future__ import annotations

import asyncio
import random
import selectors
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asyncvideos import _budget
from asyncvideos._budget import BudgetRow, Grant, Report, SharedPacer
from asyncvideos._pacing import parse_duration
from asyncvideos._retry import retry_waits_enabled
from asyncvideos.testing import RateLimit
from asyncvideos.testing._ratelimit import Limiter

#: The client's default retries of one request.
MAX_RETRIES = 2
RUN_SECONDS = 1.0
POLL_SECONDS = 1.0


class _VirtualSelector(selectors.BaseSelector):
    """A selector with nothing to select: waiting for ``timeout`` moves the clock."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._loop = loop
        self._keys: dict[Any, selectors.SelectorKey] = {}

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = selectors.SelectorKey(fileobj, id(fileobj), events, data)
        self._keys[fileobj] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._keys.pop(fileobj)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise RuntimeError("the simulation waits on nothing: every task is stuck")
        self._loop.advance(timeout)
        return []

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._keys

    def close(self) -> None:
        self._keys.clear()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only to the next timer: sleeps take no time."""

    def __init__(self) -> None:
        self._now = 0.0
        super().__init__(_VirtualSelector(self))

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += max(seconds, 0.0)


@attrs.define
class Latency:
    """Seeded delays, in seconds: a request's way out and back, an exchange's round
    trip, and the late wake-ups of a loaded machine (``lag`` with chance ``lag_p``)."""

    rng: random.Random
    request: tuple[float, float] = (0.001, 0.004)
    exchange: tuple[float, float] = (0.002, 0.010)
    lock: float = 0.001
    lag: float = 0.030
    lag_p: float = 0.05

    def way(self) -> float:
        delay = self.rng.uniform(*self.request) / 2
        if self.rng.random() < self.lag_p:
            delay += self.rng.uniform(0, self.lag)
        return delay

    def trip(self) -> float:
        delay = self.rng.uniform(*self.exchange) / 2
        if self.rng.random() < self.lag_p:
            delay += self.rng.uniform(0, self.lag)
        return delay


class SimulatedStore:
    """The rules behind a round trip and the row's lock, as ``PostgresBudgetStore``."""

    def __init__(self, latency: Latency) -> None:
        self.latency = latency
        self.rows: dict[str, BudgetRow] = {}
        self.exchanges = 0
        self._lock = asyncio.Lock()

    async def exchange(self, name: str, report: Report, want: int) -> Grant:
        self.exchanges += 1
        await asyncio.sleep(self.latency.trip())
        async with self._lock:
            now = asyncio.get_running_loop().time()
            self.rows[name], grant = _budget.exchange(self.rows.get(name), now, report, want)
            await asyncio.sleep(self.latency.lock)
        await asyncio.sleep(self.latency.trip())
        return grant


@attrs.define
class Outcome:
    processes: int
    limit: int
    headers: bool
    requests: int = 0
    rate_limited: int = 0
    failed: int = 0
    wall: float = 0.0
    exchanges: int = 0

    @property
    def share(self) -> float:
        return self.rate_limited / self.requests if self.requests else 0.0

    @property
    def ideal(self) -> float:
        return (self.requests - self.rate_limited) / self.limit

    @property
    def ratio(self) -> float:
        return self.wall / self.ideal if self.ideal else 0.0

    def row(self) -> str:
        return (
            f"{self.limit:>4}/s headers={'yes' if self.headers else 'no ':3} N={self.processes:<3}"
            f" requests={self.requests:<5} 429s={100 * self.share:5.2f}%"
            f" wall={self.wall:6.1f} s ratio={self.ratio:.3f}x failed={self.failed}"
            f" exchanges/request={self.exchanges / max(self.requests, 1):.2f}"
        )


class _Server:
    """The fake's token bucket on the loop's clock, and its jobs: done 1 s after create."""

    def __init__(self, limit: int, headers: bool, latency: Latency) -> None:
        loop = asyncio.get_running_loop()
        self.limiter = Limiter(RateLimit(requests=limit, per=1.0, headers=headers), loop.time)
        self.latency = latency
        self.requests = 0
        self.rate_limited = 0

    async def send(self, pacer: SharedPacer) -> tuple[bool, float]:
        """One request through the pacer: whether it got through, and when (server time)."""
        await pacer.before_request()
        await asyncio.sleep(self.latency.way())
        verdict = self.limiter.take()
        at = asyncio.get_running_loop().time()
        self.requests += 1
        self.rate_limited += not verdict.allowed
        await asyncio.sleep(self.latency.way())
        pacer.after_response(200 if verdict.allowed else 429, verdict.headers)
        if verdict.allowed:
            return True, at
        return False, parse_duration(verdict.headers["retry-after-ms"] + "ms") or 0.1


async def _request(server: _Server, pacer: SharedPacer) -> float | None:
    """A request and its retries, as the client's retry loop: the server's time, or None."""
    for _ in range(MAX_RETRIES + 1):
        ok, value = await server.send(pacer)
        if ok:
            return value
        await asyncio.sleep(value)  # the server's retry-after
    return None


async def _job(server: _Server, pacer: SharedPacer) -> bool:
    created = await _request(server, pacer)
    if created is None:
        return False
    while True:
        polled = await _request(server, pacer)
        if polled is None:
            return False
        if polled >= created + RUN_SECONDS:
            return True
        await asyncio.sleep(POLL_SECONDS)


async def _run(outcome: Outcome, jobs: int, seed: int) -> None:
    latency = Latency(random.Random(seed))
    server = _Server(outcome.limit, outcome.headers, latency)
    store = SimulatedStore(latency)
    loop = asyncio.get_running_loop()
    began = loop.time()
    tasks = []
    for i in range(outcome.processes):
        pacer = SharedPacer(store, "fleet")
        share = jobs // outcome.processes + (i < jobs % outcome.processes)
        tasks += [asyncio.ensure_future(_job(server, pacer)) for _ in range(share)]
    results = await asyncio.gather(*tasks)
    outcome.wall = loop.time() - began
    outcome.failed = results.count(False)
    outcome.requests = server.requests
    outcome.rate_limited = server.rate_limited
    outcome.exchanges = store.exchanges


def simulate(
    processes: int, limit: int, *, headers: bool, jobs: int = 400, seed: int = 0
) -> Outcome:
    """One run of the benchmark's workload, simulated (see the module docstring)."""
    outcome = Outcome(processes, limit, headers)
    loop = VirtualTimeLoop()
    try:
        # The pacer pauses on a 429 only where retries wait (the suite turns them off).
        with retry_waits_enabled():
            loop.run_until_complete(_run(outcome, jobs, seed))
    finally:
        loop.close()
    return outcome


def steady(rate: float, *, requests: int = 3000, concurrency: int = 64, seed: int = 0) -> Outcome:
    """One process sending ``requests`` at a steady ``rate`` (one every ``1 / rate``
    s, up to ``concurrency`` at once) to a server with no limit and no budget
    headers: the ledger benchmark's flow of polls, one request at a time, where the
    budget never leaves its slow start."""
    outcome = Outcome(1, round(rate), False)  # its "limit": the rate offered
    loop = VirtualTimeLoop()

    async def run() -> None:
        latency = Latency(random.Random(seed))
        store = SimulatedStore(latency)
        pacer = SharedPacer(store, "steady")
        gate = asyncio.Semaphore(concurrency)
        running = asyncio.get_running_loop()
        began = running.time()

        async def one() -> None:
            async with gate:
                await pacer.before_request()
                await asyncio.sleep(latency.way() * 2)
                pacer.after_response(200, {})

        tasks = []
        for _ in range(requests):
            tasks.append(asyncio.ensure_future(one()))
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*tasks)
        outcome.wall = running.time() - began
        outcome.requests = requests
        outcome.exchanges = store.exchanges

    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    return outcome


if __name__ == "__main__":  # pragma: no cover - a tool for trying the rules
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    for headers in (True, False):
        for limit in (100, 50, 10):
            for n in (1, 2, 4, 8, 16):
                for seed in range(seeds):
                    print(simulate(n, limit, headers=headers, seed=seed).row(), flush=True)
