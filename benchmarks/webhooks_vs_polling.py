"""Waiting on 1,000 jobs that finish over ~5 s: ``wait_many`` by polling vs by webhooks.

Run ``python -m benchmarks.webhooks_vs_polling`` (about 1.5 minutes; ``--help``).
A small warm-up run of each mode comes first and is not reported.

Both modes run against the same ``FakeVideosAPI`` set-up, served by a child
process on loopback (so the API does not compete with the client for its
core): 1,000 jobs seeded in progress, the i-th finishing at
``start + lead + spread * i / jobs`` (by default 30 s to 35 s after the start,
which is one second after seeding begins, for the set-up: the jobs run a while,
as real ones do for minutes, and finish over 5 s; ``--lead 10`` for shorter). The
client holds each job's ``Video`` (as a service does after ``create()``) and
waits on all of them with one ``wait_many`` (concurrency 16, the default):

- **polling**: the fake's ``openai-poll-after-ms: 1000`` schedule;
- **webhooks**: the fake POSTs a signed ``video.completed`` to a
  ``WebhookReceiver`` served by ``aiohttp.web`` in the client's process, and
  the client is ``AsyncVideos(webhooks=receiver)`` (fallback interval 60 s).

Reported per mode: the requests the fake saw during the wait, and the delay
from each job's completion (its exact finish time on the fake's clock, which
is wall time at speed 1) to the moment ``wait_many`` yields its ``WaitResult``:
median, 95th percentile and maximum; and the CPU time of the client's process
(client and receiver; the fake is the child's).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from multiprocessing.connection import Connection
from typing import Any

import attrs
from aiohttp import web

from asyncvideos import AsyncVideos, Video
from asyncvideos.testing import DEFAULT_API_KEY, FakeVideosAPI
from asyncvideos.webhooks import WebhookReceiver

MODES = ("polling", "webhooks")
#: Time allowed for seeding and connecting before the jobs' clock starts.
SETUP_SECONDS = 1.0


@attrs.frozen
class Result:
    mode: str
    jobs: int
    requests: int
    delays: tuple[float, ...]
    wall: float
    cpu: float
    events: int
    #: The median delay from a job's completion to the fake sending its event.
    sent_ms: float | None = None

    @property
    def median_ms(self) -> float:
        return statistics.median(self.delays) * 1000

    @property
    def p95_ms(self) -> float:
        return statistics.quantiles(self.delays, n=20)[-1] * 1000

    @property
    def max_ms(self) -> float:
        return max(self.delays) * 1000


@asynccontextmanager
async def receiving(receiver: WebhookReceiver) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/webhooks", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/webhooks"
    finally:
        await runner.cleanup()


def _seed(api: FakeVideosAPI, plan: dict[str, Any]) -> None:
    # Seeded queued at a whole second in the past with no queue time, a job runs
    # from exactly that second, so its finish time is known to the µs. The fake's
    # clock is wall time (RealClock, speed 1), as is the client's.
    for video_id, ends in plan["finish"].items():
        api.set_outcome(video_id, "completed", duration=ends - plan["created"])
        api.add_videos({"id": video_id, "status": "queued", "created_at": plan["created"]})


def _count(api: FakeVideosAPI, plan: dict[str, Any]) -> tuple[int, int, list[float]]:
    # How late the fake itself sent each event: its share of the delay.
    late = [
        d.sent_at - plan["finish"][d.video_id]
        for d in api.webhook_deliveries
        if d.sent_at is not None
    ]
    return len(api.requests), len(api.webhook_deliveries), late


def _serve_fake(conn: Connection, url: str | None, secret: str | None) -> None:
    """The child process: the fake API, seeded by the plan it is sent, until told to stop."""
    asyncio.run(_fake_main(conn, url, secret))


async def _fake_main(conn: Connection, url: str | None, secret: str | None) -> None:
    loop = asyncio.get_running_loop()
    async with FakeVideosAPI(queue_seconds=0, webhook_url=url, webhook_secret=secret) as api:
        plan = await loop.run_in_executor(None, conn.recv)
        _seed(api, plan)
        conn.send(api.base_url)
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command == "clear":
                api.clear_requests()
                conn.send("ok")
            elif command == "count":
                conn.send(_count(api, plan))
            else:
                break


@asynccontextmanager
async def child_fake(
    url: str | None, secret: str | None, plan: dict[str, Any]
) -> AsyncIterator[tuple[str, Callable[[str], Awaitable[Any]]]]:
    """The fake in a child process; yields its base URL and ``ask(command)``."""
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_serve_fake, args=(child, url, secret), daemon=True)
    process.start()
    try:
        parent.send(plan)

        async def ask(command: str) -> Any:
            parent.send(command)
            return await loop.run_in_executor(None, parent.recv)

        yield await loop.run_in_executor(None, parent.recv), ask
    finally:
        parent.send("stop")
        process.join(10)


@asynccontextmanager
async def inline_fake(
    url: str | None, secret: str | None, plan: dict[str, Any]
) -> AsyncIterator[tuple[str, Callable[[str], Awaitable[Any]]]]:
    """The fake in this process and loop; yields its base URL and ``ask(command)``."""
    async with FakeVideosAPI(queue_seconds=0, webhook_url=url, webhook_secret=secret) as api:
        _seed(api, plan)

        async def ask(command: str) -> Any:
            if command == "clear":
                api.clear_requests()
                return "ok"
            return _count(api, plan)

        yield api.base_url, ask


async def run_once(
    mode: str, *, jobs: int, lead: float, spread: float, fake: str = "child"
) -> Result:
    """One wait over ``jobs`` jobs in ``mode``; the fake in a child process or inline."""
    webhooks = mode == "webhooks"
    secret = FakeVideosAPI.generate_webhook_secret()
    receiver = WebhookReceiver(secret)
    async with AsyncExitStack() as stack:
        url = await stack.enter_async_context(receiving(receiver)) if webhooks else None
        start = time.time() + SETUP_SECONDS
        finish = {
            f"video_bench_{index:05d}": start + lead + spread * index / jobs
            for index in range(jobs)
        }
        plan = {"created": int(start) - 1, "finish": finish}
        serving = child_fake if fake == "child" else inline_fake
        base_url, ask = await stack.enter_async_context(
            serving(url, secret if webhooks else None, plan)
        )
        client: AsyncVideos = await stack.enter_async_context(
            AsyncVideos(
                api_key=DEFAULT_API_KEY,
                base_url=base_url,
                webhooks=receiver if webhooks else None,
            )
        )
        videos = [Video(id=video_id, status="in_progress") for video_id in finish]
        await ask("clear")
        delays: list[float] = []
        cpu = time.process_time()
        began = time.monotonic()
        async for result in client.wait_many(videos, wait_timeout=lead + spread + 120):
            delays.append(time.time() - finish[result.video_id])
            if not result.ok or result.video.status != "completed":
                raise RuntimeError(f"{result.video_id}: {result.error or result.video}")
        wall = time.monotonic() - began
        cpu = time.process_time() - cpu
        requests, events, late = await ask("count")
    if len(delays) != jobs:
        raise RuntimeError(f"{len(delays)} results for {jobs} jobs")
    sent_ms = statistics.median(late) * 1000 if late else None
    return Result(mode, jobs, requests, tuple(delays), wall, cpu, events, sent_ms)


def table(results: list[Result]) -> str:
    lines = [
        "| mode | requests | requests per job | delay median ms | p95 ms | max ms "
        "| wall s | client CPU s | events | event sent after, median ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        sent = "-" if r.sent_ms is None else f"{r.sent_ms:,.1f}"
        lines.append(
            f"| {r.mode} | {r.requests:,} | {r.requests / r.jobs:.2f} | {r.median_ms:,.1f} "
            f"| {r.p95_ms:,.1f} | {r.max_ms:,.1f} | {r.wall:.1f} | {r.cpu:.2f} | {r.events:,} "
            f"| {sent} |"
        )
    return "\n".join(lines)


def verdict(results: list[Result]) -> str:
    polling = [r for r in results if r.mode == "polling"]
    hooks = [r for r in results if r.mode == "webhooks"]
    lines = []
    if polling and hooks:
        worst = max(h.requests for h in hooks) / min(p.requests for p in polling)
        lines.append(
            f"- requests, webhooks ÷ polling (worst pair): {worst:.1%} "
            f"(goal ≤ 10%: {'PASS' if worst <= 0.10 else 'MISS'})"
        )
    if hooks:
        median = max(h.median_ms for h in hooks)
        lines.append(
            f"- delay median with webhooks (worst run): {median:.1f} ms "
            f"(goal < 50 ms: {'PASS' if median < 50 else 'MISS'})"
        )
    if polling:
        lines.append(
            f"- delay median with polling: {statistics.median(p.median_ms for p in polling):.0f} ms"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[Result]:
    results: list[Result] = []
    if args.warm_up:
        # First runs in a process pay one-time costs (lazy imports, first
        # connections) that a running service has long paid: not measured.
        for mode in args.modes:
            await run_once(mode, jobs=min(args.jobs, 100), lead=1.0, spread=0.5, fake=args.fake)
    for repetition in range(args.repeat):
        for mode in args.modes:
            result = await run_once(
                mode, jobs=args.jobs, lead=args.lead, spread=args.spread, fake=args.fake
            )
            print(
                f"# {repetition + 1}/{args.repeat} {mode}: {result.requests:,} requests, "
                f"median delay {result.median_ms:.1f} ms",
                file=sys.stderr,
                flush=True,
            )
            results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.webhooks_vs_polling", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--jobs", type=int, default=1000, help="jobs waited on (1000)")
    parser.add_argument("--lead", type=float, default=30.0, help="s before the first ends (30)")
    parser.add_argument("--spread", type=float, default=5.0, help="s over which they end (5)")
    parser.add_argument("--repeat", type=int, default=1, help="repetitions of both modes (1)")
    parser.add_argument(
        "--mode", dest="modes", action="append", choices=MODES, help="one mode only"
    )
    parser.add_argument(
        "--fake",
        choices=("child", "inline"),
        default="child",
        help="serve the fake from a child process (default) or in the client's loop",
    )
    parser.add_argument(
        "--no-warm-up", dest="warm_up", action="store_false", help="skip the warm-up run"
    )
    args = parser.parse_args(argv)
    args.modes = args.modes or list(MODES)
    results = asyncio.run(main_async(args))
    print(table(results))
    print()
    print(verdict(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
