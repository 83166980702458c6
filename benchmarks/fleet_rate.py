"""One rate budget per key across a fleet: N processes, one key, the fake's limit.

Run ``python -m benchmarks.fleet_rate`` (every combination below, about 40 minutes;
``--help`` to choose: ``--limits 100 --processes 1,4,16`` takes a few). Every role is
a process of its own: the fake API (``FakeVideosAPI`` with ``RateLimit(requests=L,
per=1)``, a token bucket of L requests refilled at L/s, answering 429 with
``retry-after-ms`` beyond it) and N worker processes with one ``AsyncVideos`` each,
all on the same key. Together they create ``--jobs`` jobs and wait on each
(``create_and_wait``, every job of a worker at once, the client's default retries),
each worker its share.

For each limit (100, 50 and 10 requests/s), with and without the ``x-ratelimit-*``
headers (without them a client learns only from 429s), each budget (``per-process``:
each client's own pacer, as today; ``shared``: the fleet's one budget in PostgreSQL,
a throwaway server started for the run, a fresh budget each run) and each N (1, 2,
4, 8, 16): the share of
responses that were 429s, wall time against the ideal (the requests the fake
answered without a 429, at exactly the limit: ``requests / limit``), and the jobs
that failed (their retries spent on 429s); for the shared budget, the database
exchanges per request and their mean latency. Goals: <= 1 % 429s, wall <= 1.2x
ideal, no job failed.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import attrs

from benchmarks._fleet import Child, markdown_table, receive

TESTS = Path(__file__).resolve().parent.parent / "tests"
QUEUE_SECONDS = 0.0
RUN_SECONDS = 1.0
POLL_AFTER_MS = 1000
#: A bucket that refills in 1 s is full again after this pause between runs.
REFILL_SECONDS = 1.2
BUDGETS = ("per-process", "shared")
GOAL_SHARE = 0.01
GOAL_RATIO = 1.2


@attrs.frozen
class Outcome:
    limit: int
    headers: bool
    budget: str
    processes: int
    jobs: int
    requests: int
    rate_limited: int
    failed: int
    wall: float
    exchanges: int = 0
    exchange_ms: float = 0.0

    @property
    def share(self) -> float:
        return self.rate_limited / self.requests if self.requests else 0.0

    @property
    def ideal(self) -> float:
        return (self.requests - self.rate_limited) / self.limit

    @property
    def ratio(self) -> float:
        return self.wall / self.ideal if self.ideal else 0.0

    @property
    def passed(self) -> bool:
        return self.share <= GOAL_SHARE and self.ratio <= GOAL_RATIO and not self.failed

    def row(self) -> list[str]:
        return [
            f"{self.limit}/s",
            "yes" if self.headers else "no",
            self.budget,
            f"{self.processes}",
            f"{self.requests:,}",
            f"{100 * self.share:.1f}%",
            f"{self.wall:.1f}",
            f"{self.ideal:.1f}",
            f"{self.ratio:.2f}x",
            f"{self.failed}/{self.jobs}",
            f"{self.exchanges / self.requests:.2f} ({self.exchange_ms:.2f} ms)"
            if self.exchanges
            else "-",
            "PASS" if self.passed else "MISS",
        ]


HEADER = (
    "limit",
    "x-ratelimit headers",
    "budget",
    "processes",
    "requests",
    "429s",
    "wall s",
    "ideal s",
    "wall / ideal",
    "jobs failed",
    "db exchanges per request (mean latency)",
    "goal",
)


# -- the fake --------------------------------------------------------------------------


def fake_process(conn: Connection, limit: int, headers: bool) -> None:
    asyncio.run(_fake(conn, limit, headers))


async def _fake(conn: Connection, limit: int, headers: bool) -> None:
    from asyncvideos.testing import FakeVideosAPI, RateLimit

    async with FakeVideosAPI(
        rate_limit=RateLimit(requests=limit, per=1.0, headers=headers),
        queue_seconds=QUEUE_SECONDS,
        run_seconds=RUN_SECONDS,
        poll_after_ms=POLL_AFTER_MS,
    ) as api:
        conn.send({"base_url": api.base_url, "key": api.api_key})
        while (command := await receive(conn)) != "stop":
            if command == "reset":
                await asyncio.sleep(REFILL_SECONDS)  # the bucket is full again
                api.clear_requests()
                api.rate_limited = 0
                conn.send("ok")
            elif command == "count":
                conn.send((len(api.requests), api.rate_limited))


# -- a worker --------------------------------------------------------------------------


def worker_process(conn: Connection) -> None:
    asyncio.run(_worker(conn))


async def _worker(conn: Connection) -> None:
    from asyncvideos import AsyncVideos, AsyncVideosError

    while (run := await receive(conn)) != "stop":
        async with AsyncExitStack() as stack:
            client = await stack.enter_async_context(
                AsyncVideos(api_key=run["key"], base_url=run["base_url"])
            )
            store = None
            if run["budget"] == "shared":
                store = await stack.enter_async_context(_TimedStore.connect(run["database"]))
                client._share_rate_budget(store, run["name"])
            conn.send("ready")
            await receive(conn)  # go
            failed = 0

            async def job(index: int, client: AsyncVideos = client) -> None:
                nonlocal failed
                try:
                    await client.create_and_wait(f"fleet job {index}", wait_timeout=run["timeout"])
                except AsyncVideosError:
                    failed += 1

            await asyncio.gather(*(job(i) for i in range(run["jobs"])))
            conn.send(
                {
                    "failed": failed,
                    "done": time.time(),
                    "exchanges": 0 if store is None else store.exchanges,
                    "exchange_seconds": 0.0 if store is None else store.seconds,
                }
            )


class _TimedStore:
    """The PostgreSQL budget store on its own pool, timing each exchange."""

    def __init__(self, pool: Any) -> None:
        from asyncvideos.ledger._postgres_budget import PostgresBudgetStore

        self._pool = pool
        self._store = PostgresBudgetStore(pool)
        self.exchanges = 0
        self.seconds = 0.0

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str) -> AsyncIterator[_TimedStore]:
        from psycopg_pool import AsyncConnectionPool

        pool = AsyncConnectionPool(
            url, min_size=1, max_size=2, open=False, kwargs={"autocommit": True}
        )
        await pool.open(wait=True)
        try:
            yield cls(pool)
        finally:
            await pool.close()

    async def exchange(self, name: str, report: Any, want: int) -> Any:
        began = time.perf_counter()
        try:
            return await self._store.exchange(name, report, want)
        finally:
            self.exchanges += 1
            self.seconds += time.perf_counter() - began


# -- the coordinator -------------------------------------------------------------------


async def run_once(
    fake: Child, server: dict[str, str], workers: list[Child], *, jobs: int, timeout: float
) -> dict[str, Any]:
    await fake.ask("reset")
    shares = [jobs // len(workers) + (i < jobs % len(workers)) for i in range(len(workers))]
    name = f"bench-{secrets.token_hex(4)}"  # a budget nobody has learned: a cold start
    for worker, share in zip(workers, shares, strict=True):
        worker.send({**server, "jobs": share, "timeout": timeout, "name": name})
    for worker in workers:
        assert await worker.recv() == "ready"
    began = time.time()
    for worker in workers:
        worker.send("go")
    results = [await worker.recv() for worker in workers]
    requests, rate_limited = await fake.ask("count")
    exchanges = sum(r["exchanges"] for r in results)
    return {
        "requests": requests,
        "rate_limited": rate_limited,
        "failed": sum(r["failed"] for r in results),
        "wall": max(r["done"] for r in results) - began,
        "exchanges": exchanges,
        "exchange_ms": 1000 * sum(r["exchange_seconds"] for r in results) / max(exchanges, 1),
    }


async def bench(
    limits: list[int],
    header_modes: list[bool],
    budgets: list[str],
    processes: list[int],
    jobs: int,
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    async with AsyncExitStack() as stack:
        database = ""
        if "shared" in budgets:
            database = await _postgres(stack)
        pools: dict[int, list[Child]] = {}
        for n in processes:
            pools[n] = []
            for _ in range(n):
                child = Child(worker_process)
                stack.push_async_callback(child.stop)
                pools[n].append(child)
        for limit in limits:
            # Long enough for the slowest budget to drain every job, and then some.
            timeout = 20 * jobs * 4 / limit + 60
            for headers in header_modes:
                fake = Child(fake_process, limit, headers)
                try:
                    server = await fake.recv()
                    for budget in budgets:
                        for n in processes:
                            figures = await run_once(
                                fake,
                                {**server, "budget": budget, "database": database},
                                pools[n],
                                jobs=jobs,
                                timeout=timeout,
                            )
                            outcome = Outcome(limit, headers, budget, n, jobs, **figures)
                            print(" | ".join(outcome.row()), file=sys.stderr, flush=True)
                            outcomes.append(outcome)
                finally:
                    await fake.stop()
    return outcomes


async def _postgres(stack: AsyncExitStack) -> str:
    """A throwaway PostgreSQL server (tests/postgres_server.py), fsync on: a commit's
    real cost is part of an exchange's; the budget table in a new database."""
    sys.path.insert(0, str(TESTS))
    from postgres_server import PostgresServer, unavailable

    reason = unavailable()
    if reason is not None:
        raise SystemExit(f"--budget shared needs PostgreSQL: {reason}")
    server = stack.enter_context(PostgresServer(fsync=True))
    url = server.create_database("bench")
    async with _TimedStore.connect(url) as store:
        await store._store.create_table()
    return url


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet_rate")
    parser.add_argument("--limits", default="100,50,10", help="requests/s (100,50,10)")
    parser.add_argument("--processes", default="1,2,4,8,16", help="N (1,2,4,8,16)")
    parser.add_argument("--jobs", type=int, default=400, help="jobs in all, per run (400)")
    parser.add_argument(
        "--headers", choices=("both", "yes", "no"), default="both", help="x-ratelimit headers"
    )
    parser.add_argument("--budget", default=",".join(BUDGETS), help=f"{','.join(BUDGETS)}")
    args = parser.parse_args(argv)
    header_modes = {"both": [True, False], "yes": [True], "no": [False]}[args.headers]
    budgets = args.budget.split(",")
    for budget in budgets:
        if budget not in BUDGETS:
            parser.error(f"--budget: one of {', '.join(BUDGETS)}")
    began = time.monotonic()
    outcomes = asyncio.run(
        bench(_ints(args.limits), header_modes, budgets, _ints(args.processes), args.jobs)
    )
    print(
        f"{args.jobs} jobs per run created and waited on (create_and_wait, all at once), "
        f"split over N processes with one client each; jobs run {RUN_SECONDS:g} s, poll "
        f"hint {POLL_AFTER_MS} ms; the fake's token bucket holds the limit's requests and "
        f"refills in 1 s; ideal = requests not answered 429 / limit; goal: <= "
        f"{GOAL_SHARE:.0%} 429s, wall <= {GOAL_RATIO}x ideal, no job failed. "
        f"Whole run {time.monotonic() - began:.0f} s.\n"
    )
    print(markdown_table(HEADER, [o.row() for o in outcomes]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
