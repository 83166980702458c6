"""Webhooks for a fleet: replicas behind a round-robin balancer, each waiting on its jobs.

Run ``python -m benchmarks.fleet_webhooks`` (1, 2 and 4 replicas, before and after;
about 4 minutes with the default 60 s fallback; ``--help``). Every role is a process
of its own:

- the fake API (``FakeVideosAPI``), whose one webhook URL is the balancer's (with one
  replica, the replica's own: no balancer);
- a round-robin balancer that forwards each webhook POST to the next replica;
- N replicas, each its own ``AsyncVideos(webhooks=receiver)`` and ``WebhookReceiver``
  served by ``aiohttp.web``, each waiting (``wait_many``) on its share of the jobs:
  each job is a replica's drawn at random (seeded), as the replica that created it
  would be behind a balancer, while the balancer hands event k to replica k mod N.

Two modes: ``before``, each replica's receiver wakes only its own waits (today's
code without a shared ledger); ``after``, each replica shares its receiver through a
``PostgresLedger`` on one database (``ledger.share_webhooks(receiver)``: every
verified event is NOTIFY-ed and every replica LISTENs), PostgreSQL being a throwaway
server the benchmark starts (``fsync`` on).

The jobs are seeded in progress on the fake and finish at known times (``--lead`` s
after the start, spread over ``--spread`` s), so each replica measures the delay from
a job's completion to its ``WaitResult`` on the same clock. Reported per N: the share
of events that reached the replica waiting on their job, the delay's median and 95th
percentile, the fake's requests per job during the wait, and whether every job was
reported exactly once, completed. A wait whose event went to another replica ends at
the fallback poll (``--fallback``, the client's ``webhook_fallback_interval``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from contextlib import AsyncExitStack, ExitStack
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import attrs
from aiohttp import web

from benchmarks._fleet import (
    Child,
    balancer_process,
    markdown_table,
    median,
    percentile,
    receive,
    serving,
)

SETUP_SECONDS = 2.0
TESTS = Path(__file__).resolve().parent.parent / "tests"


@attrs.frozen
class Outcome:
    mode: str
    replicas: int
    jobs: int
    reached: int  # events that reached the replica waiting on their job
    events: int  # events received, over all replicas
    requests: int
    delays: tuple[float, ...]
    reports: int  # WaitResults, over all replicas
    exact: bool  # every job reported once, completed
    wall: float

    def row(self) -> list[str]:
        return [
            self.mode,
            f"{self.replicas}" + (" (no balancer)" if self.replicas == 1 else ""),
            f"{self.jobs}",
            f"{100 * self.reached / self.jobs:.0f}%",
            f"{1000 * median(self.delays):,.0f} ms",
            f"{1000 * percentile(self.delays, 0.95):,.0f} ms",
            f"{self.requests / self.jobs:.2f}",
            "yes" if self.exact else f"NO ({self.reports} results)",
            f"{self.wall:.1f}",
        ]


HEADER = (
    "mode",
    "replicas",
    "jobs",
    "events that reach the waiting replica",
    "completion -> WaitResult p50",
    "p95",
    "requests per job",
    "every job once",
    "wall s",
)


# -- the fake --------------------------------------------------------------------------


def fake_process(conn: Connection, webhook_url: str, secret: str, plan: dict[str, Any]) -> None:
    asyncio.run(_fake(conn, webhook_url, secret, plan))


async def _fake(conn: Connection, webhook_url: str, secret: str, plan: dict[str, Any]) -> None:
    from asyncvideos.testing import FakeVideosAPI

    async with FakeVideosAPI(
        queue_seconds=0, webhook_url=webhook_url, webhook_secret=secret
    ) as api:
        # Seeded queued at a whole second with no queue time, a job runs from exactly
        # that second, so its finish time is known to the microsecond.
        for video_id, ends in plan["finish"].items():
            api.set_outcome(video_id, "completed", duration=ends - plan["created"])
            api.add_videos({"id": video_id, "status": "queued", "created_at": plan["created"]})
        conn.send(api.base_url)
        while (command := await receive(conn)) != "stop":
            if command == "clear":
                api.clear_requests()
                conn.send("ok")
            elif command == "count":
                conn.send(len(api.requests))


# -- a replica -------------------------------------------------------------------------


def replica_process(conn: Connection, secret: str, fallback: float, database: str) -> None:
    asyncio.run(_replica(conn, secret, fallback, database))


async def _replica(conn: Connection, secret: str, fallback: float, database: str) -> None:
    from asyncvideos.webhooks import WebhookReceiver

    receiver = WebhookReceiver(secret)
    app = web.Application()
    app.router.add_post("/webhooks", receiver.handle)
    counts = Counter[str]()
    async with AsyncExitStack() as stack:
        if database:
            from asyncvideos.ledger import PostgresLedger

            ledger = await stack.enter_async_context(PostgresLedger(database))
            await stack.enter_async_context(ledger.share_webhooks(receiver))
        await _serve_replica(conn, receiver, app, counts, fallback)


async def _serve_replica(
    conn: Connection, receiver: Any, app: web.Application, counts: Counter[str], fallback: float
) -> None:
    from asyncvideos import AsyncVideos, Video
    from asyncvideos.testing import DEFAULT_API_KEY

    async with serving(app) as url:
        conn.send(f"{url}/webhooks")
        plan = await receive(conn)
        mine = set(plan["ids"])

        async def count() -> None:
            async for event in receiver.events():
                counts["events"] += 1
                counts["reached"] += event.video_id in mine

        counter = asyncio.ensure_future(count())
        async with AsyncVideos(
            api_key=DEFAULT_API_KEY,
            base_url=plan["base_url"],
            webhooks=receiver,
            webhook_fallback_interval=fallback,
        ) as client:
            videos = [Video(id=video_id, status="in_progress") for video_id in plan["ids"]]
            conn.send("ready")
            await receive(conn)  # go
            delays: list[float] = []
            seen: list[str] = []
            failed = 0
            async for result in client.wait_many(videos, wait_timeout=plan["timeout"]):
                delays.append(time.time() - plan["finish"][result.video_id])
                seen.append(result.video_id)
                failed += not (result.ok and result.video.status == "completed")
            conn.send({"delays": delays, "seen": seen, "failed": failed})
            # Keep receiving (and counting) until every replica is done.
            await receive(conn)
        counter.cancel()
        conn.send(dict(counts))
        await receive(conn)  # stop


# -- the coordinator -------------------------------------------------------------------


async def run_once(
    replicas: int, *, jobs: int, lead: float, spread: float, fallback: float, database: str = ""
) -> Outcome:
    from asyncvideos.testing import FakeVideosAPI

    secret = FakeVideosAPI.generate_webhook_secret()
    async with AsyncExitStack() as stack:
        children: list[Child] = []
        for _ in range(replicas):
            child = Child(replica_process, secret, fallback, database)
            stack.push_async_callback(child.stop)
            children.append(child)
        urls = [await child.recv() for child in children]
        hook = urls[0]
        if replicas > 1:
            balancer = Child(balancer_process, [url.rsplit("/", 1)[0] for url in urls])
            stack.push_async_callback(balancer.stop)
            hook = await balancer.recv() + "/webhooks"
        start = time.time() + SETUP_SECONDS
        finish = {f"video_fleet_{i:05d}": start + lead + spread * i / jobs for i in range(jobs)}
        plan = {"created": int(start) - 1, "finish": finish}
        fake = Child(fake_process, hook, secret, plan)
        stack.push_async_callback(fake.stop)
        base_url = await fake.recv()
        ids = list(finish)
        owner = random.Random(f"fleet:{replicas}:{jobs}")
        shares: list[list[str]] = [[] for _ in range(replicas)]
        for video_id in ids:
            shares[owner.randrange(replicas)].append(video_id)
        timeout = lead + spread + fallback + 60
        for index, child in enumerate(children):
            share = shares[index]
            child.send(
                {
                    "base_url": base_url,
                    "ids": share,
                    "finish": {i: finish[i] for i in share},
                    "timeout": timeout,
                }
            )
        for child in children:
            assert await child.recv() == "ready"
        await fake.ask("clear")
        began = time.monotonic()
        for child in children:
            child.send("go")
        results = [await child.recv() for child in children]
        wall = time.monotonic() - began
        requests = await fake.ask("count")
        counts = [await child.ask("counts") for child in children]
    seen = Counter(video_id for result in results for video_id in result["seen"])
    failed = sum(result["failed"] for result in results)
    return Outcome(
        mode="after" if database else "before",
        replicas=replicas,
        jobs=jobs,
        reached=sum(c.get("reached", 0) for c in counts),
        events=sum(c.get("events", 0) for c in counts),
        requests=requests,
        delays=tuple(d for result in results for d in result["delays"]),
        reports=sum(seen.values()),
        exact=failed == 0 and seen == Counter(ids),
        wall=wall,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet_webhooks")
    parser.add_argument("--replicas", default="1,2,4", help="replica counts (1,2,4)")
    parser.add_argument("--jobs", type=int, default=200, help="jobs in all (200)")
    parser.add_argument("--lead", type=float, default=3.0, help="s before the first finishes (3)")
    parser.add_argument("--spread", type=float, default=5.0, help="s over which they finish (5)")
    parser.add_argument(
        "--fallback", type=float, default=60.0, help="webhook_fallback_interval, s (60)"
    )
    parser.add_argument(
        "--mode", default="before,after", help="before (no ledger), after (PostgreSQL): both"
    )
    args = parser.parse_args(argv)
    modes = args.mode.split(",")
    if not set(modes) <= {"before", "after"}:
        parser.error("--mode: before, after or both")
    outcomes = []
    with ExitStack() as stack:
        database = _postgres(stack) if "after" in modes else ""
        for mode in modes:
            for replicas in (int(n) for n in args.replicas.split(",")):
                outcome = asyncio.run(
                    run_once(
                        replicas,
                        jobs=args.jobs,
                        lead=args.lead,
                        spread=args.spread,
                        fallback=args.fallback,
                        database=database if mode == "after" else "",
                    )
                )
                print(" | ".join(outcome.row()), file=sys.stderr, flush=True)
                outcomes.append(outcome)
    print(
        f"{args.jobs} jobs finishing over {args.spread:g} s, {args.lead:g} s after the "
        f"start; webhook_fallback_interval {args.fallback:g} s; before: each replica's "
        "receiver wakes only its own waits; after: receivers shared through a "
        "PostgresLedger (NOTIFY/LISTEN)\n"
    )
    print(markdown_table(HEADER, [o.row() for o in outcomes]))
    return 0


def _postgres(stack: ExitStack) -> str:
    """A throwaway PostgreSQL server (tests/postgres_server.py), fsync on; a database."""
    sys.path.insert(0, str(TESTS))
    from postgres_server import PostgresServer, unavailable

    reason = unavailable()
    if reason is not None:
        raise SystemExit(f"--mode after needs PostgreSQL: {reason}")
    server = stack.enter_context(PostgresServer(fsync=True))
    return server.create_database("bench")


if __name__ == "__main__":
    sys.exit(main())
