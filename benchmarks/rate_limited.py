"""Benchmark ``rate_limited``: many pollers against a server that enforces a rate limit.

``wait_many`` over 1,000 jobs, 64 polls in flight, against the bundled fake limited
to 100 requests per second (``RateLimit(requests=100, per=1)``: a token bucket, 429
with ``retry-after-ms`` beyond it, ``x-ratelimit-*`` headers on every response). The
jobs are queued when each run starts and finish 5 s later; the fake asks for a poll
every second (``openai-poll-after-ms: 1000``), so the pollers want ten times the limit.

Four runs, one after the other, against the same server process:

- asyncvideos with pacing (the default);
- asyncvideos with ``pacing=False`` (each task meets its own 429s, as before);
- asyncvideos with pacing against a second fake in the same process that enforces the
  same limit but sends no ``x-ratelimit-*`` headers (a gateway that only answers 429);
- the official ``openai`` client: ``client.videos.retrieve`` in one task per job, 64
  calls in flight, a 1 s sleep between polls (it does not read the poll hint).

Reported: the share of requests answered 429, jobs that ended in an error (retries
spent), and wall time against the ideal ``requests / limit`` (the useful requests, the
ones not answered 429, at exactly the limit). Goals: 429s <= 2 % and wall <= 1.15x the
ideal, with pacing.

    python -m benchmarks.rate_limited                       # prints the table
    python -m benchmarks.rate_limited --output benchmarks/RESULTS.md   # and keeps it there
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

JOBS = 1000
CONCURRENCY = 64
LIMIT = 100  # requests per second
QUEUE_SECONDS = 0.5
RUN_SECONDS = 4.5
POLL_SECONDS = 1.0
GOAL_SHARE = 0.02
GOAL_RATIO = 1.15
BEGIN = "<!-- rate_limited -->"
END = "<!-- /rate_limited -->"


# -- the server process ------------------------------------------------------------------


async def _serve() -> None:
    """Two fakes with the same limit, with and without its headers, and a control app
    (new jobs, counters) on another port."""
    from asyncvideos.testing import FakeVideosAPI, RateLimit

    fakes = {
        headers: FakeVideosAPI(
            rate_limit=RateLimit(requests=LIMIT, per=1.0, headers=headers),
            queue_seconds=QUEUE_SECONDS,
            run_seconds=RUN_SECONDS,
            poll_after_ms=int(POLL_SECONDS * 1000),
        )
        for headers in (True, False)
    }

    async def new_jobs(request: web.Request) -> web.Response:
        api = fakes[request.query["headers"] == "1"]
        api.clear_requests()
        api.rate_limited = 0
        n = int(request.query["n"])
        # Whole seconds, as the API's created_at: the jobs end 5 s after that second.
        now = int(api.clock.now())
        jobs = api.add_videos(*({"status": "queued", "created_at": now},) * n)
        ids = [job["id"] for job in jobs]
        return web.json_response({"base_url": api.base_url, "key": api.api_key, "ids": ids})

    async def stats(request: web.Request) -> web.Response:
        api = fakes[request.query["headers"] == "1"]
        return web.json_response({"requests": len(api.requests), "rate_limited": api.rate_limited})

    control = web.Application()
    control.router.add_post("/jobs", new_jobs)
    control.router.add_get("/stats", stats)
    runner = web.AppRunner(control, access_log=None)
    async with fakes[True], fakes[False]:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        print(json.dumps({"control": f"http://127.0.0.1:{port}"}), flush=True)
        # Until the parent closes our stdin.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await runner.cleanup()


# -- the clients -------------------------------------------------------------------------


async def _asyncvideos(base_url: str, key: str, ids: list[str], *, pacing: bool) -> int:
    from asyncvideos import AsyncVideos

    errors = 0
    async with AsyncVideos(api_key=key, base_url=base_url, pacing=pacing) as videos:
        async for result in videos.wait_many(ids, concurrency=CONCURRENCY):
            errors += not result.ok
    return errors


async def _openai(base_url: str, key: str, ids: list[str]) -> int:
    import openai

    # openai warns on each call that the Sora API is to be retired: not what is measured.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=__name__)
    gate = asyncio.Semaphore(CONCURRENCY)
    errors = 0

    async def one(client: openai.AsyncOpenAI, video_id: str) -> None:
        nonlocal errors
        while True:
            try:
                async with gate:
                    video = await client.videos.retrieve(video_id)
            except openai.APIError:
                errors += 1
                return
            if video.status not in ("queued", "in_progress"):
                return
            await asyncio.sleep(POLL_SECONDS)

    async with openai.AsyncOpenAI(api_key=key, base_url=base_url) as client:
        await asyncio.gather(*(one(client, video_id) for video_id in ids))
    return errors


Client = Callable[[str, str, list[str]], Coroutine[Any, Any, int]]
#: Name, the client, and whether the server sends its x-ratelimit-* headers.
Variant = tuple[str, Client, bool]


async def _paced(base_url: str, key: str, ids: list[str]) -> int:
    return await _asyncvideos(base_url, key, ids, pacing=True)


async def _unpaced(base_url: str, key: str, ids: list[str]) -> int:
    return await _asyncvideos(base_url, key, ids, pacing=False)


def _variants() -> list[Variant]:
    variants: list[Variant] = [
        ("asyncvideos (pacing)", _paced, True),
        ("asyncvideos (pacing=False)", _unpaced, True),
        ("asyncvideos (pacing), no x-ratelimit headers", _paced, False),
    ]
    try:
        import openai  # noqa: F401
    except ImportError:
        print("openai is not installed: skipped (pip install openai)", file=sys.stderr)
    else:
        variants.append(("openai", _openai, True))
    return variants


class _PauseCounter(logging.Handler):
    """Counts asyncvideos' "pausing every request" lines: one per pause, not per task."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "pausing" in record.getMessage():
            self.count += 1


async def _one_run(
    session: aiohttp.ClientSession, control: str, variant: Variant, jobs: int
) -> dict[str, float]:
    _, client, headers = variant
    which = {"headers": "1" if headers else "0"}
    async with session.post(f"{control}/jobs", params={"n": str(jobs), **which}) as response:
        server = await response.json()
    await asyncio.sleep(1.2)  # the bucket refills (1 s) after the previous run
    pauses = _PauseCounter()
    logger = logging.getLogger("asyncvideos")
    logger.addHandler(pauses)
    logger.setLevel(logging.INFO)
    began = time.perf_counter()
    try:
        errors = await client(server["base_url"], server["key"], server["ids"])
    finally:
        wall = time.perf_counter() - began
        logger.removeHandler(pauses)
    async with session.get(f"{control}/stats", params=which) as response:
        seen = await response.json()
    useful = seen["requests"] - seen["rate_limited"]
    ideal = useful / LIMIT
    return {
        "wall": wall,
        "requests": seen["requests"],
        "rate_limited": seen["rate_limited"],
        "share": seen["rate_limited"] / seen["requests"],
        "errors": errors,
        "rate": useful / wall,
        "ideal": ideal,
        "ratio": wall / ideal,
        "pauses": pauses.count,
    }


async def _bench(
    control: str, reps: int, jobs: int, only: list[str] | None
) -> dict[str, list[dict[str, float]]]:
    variants = [v for v in _variants() if not only or v[0].split()[0] in only]
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in variants}
    async with aiohttp.ClientSession() as session:
        for rep in range(reps):
            for variant in variants:
                result = await _one_run(session, control, variant, jobs)
                results[variant[0]].append(result)
                print(
                    f"rep {rep + 1}/{reps} {variant[0]}: {result['wall']:.2f} s, "
                    f"{int(result['requests'])} requests, {result['share']:.1%} 429, "
                    f"{int(result['errors'])} jobs in error, {result['ratio']:.2f}x ideal",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def _run(reps: int, jobs: int, only: list[str] | None) -> dict[str, list[dict[str, float]]]:
    """Start the server process, run every variant against it, stop it."""
    server_process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.rate_limited", "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server_process.stdout is not None
    assert server_process.stdin is not None
    try:
        control = json.loads(server_process.stdout.readline())["control"]
        return asyncio.run(_bench(control, reps, jobs, only))
    finally:
        server_process.stdin.close()
        server_process.wait(10)


# -- the report --------------------------------------------------------------------------


def _cell(values: list[float], fmt: str) -> str:
    middle = statistics.median(values)
    if len(values) == 1:
        return format(middle, fmt)
    return f"{format(middle, fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def report(results: dict[str, list[dict[str, float]]], jobs: int, seconds: float) -> str:
    """The Markdown section for RESULTS.md."""
    from asyncvideos import __version__

    try:
        import openai

        openai_version = openai.__version__
    except ImportError:
        openai_version = "not installed"
    reps = len(next(iter(results.values()))) if results else 0
    lines = [
        BEGIN,
        "## rate_limited: wait_many over 1,000 jobs against a limit of 100 requests/s",
        "",
        f"- date: {time.strftime('%Y-%m-%d')}; whole run: {seconds:.0f} s; "
        f"{reps} repetition(s), cells are median (min-max)",
        f"- machine: {platform.machine()}, Python {platform.python_version()}, "
        f"aiohttp {aiohttp.__version__}, openai {openai_version}, asyncvideos {__version__}",
        "- command: `python -m benchmarks.rate_limited --output benchmarks/RESULTS.md`",
        f"- {jobs:,} jobs queued at the start and done 5 s later, poll hint 1 s, "
        f"{CONCURRENCY} polls in flight; the fake (one process for the whole run) allows "
        f"{LIMIT} requests/s in a token bucket of {LIMIT}; a second fake in the same process "
        "enforces the same limit without x-ratelimit headers; each client's default "
        "retries (2).",
        "- ideal = requests not answered 429 / limit; wall / ideal is what the "
        "client made of the budget.",
        "",
        "| client | wall s | requests | 429 share | jobs in error | useful req/s "
        "| wall / ideal | pause log lines |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in results.items():

        def col(key: str, runs: list[dict[str, float]] = runs) -> list[float]:
            return [run[key] for run in runs]

        lines.append(
            f"| {name} | {_cell(col('wall'), '.2f')} | {_cell(col('requests'), ',.0f')} "
            f"| {_cell([100 * s for s in col('share')], '.1f')} % "
            f"| {_cell(col('errors'), '.0f')} | {_cell(col('rate'), '.0f')} "
            f"| {_cell(col('ratio'), '.2f')} | {_cell(col('pauses'), '.0f')} |"
        )
    paced = results.get("asyncvideos (pacing)")
    if paced:
        worst_share = max(run["share"] for run in paced)
        worst_ratio = max(run["ratio"] for run in paced)
        lines += [
            "",
            "| goal (asyncvideos with pacing, worst repetition) | value | result |",
            "|---|---|---|",
            f"| 429 share <= {GOAL_SHARE:.0%} | {worst_share:.2%} "
            f"| {'PASS' if worst_share <= GOAL_SHARE else 'MISS'} |",
            f"| wall <= {GOAL_RATIO}x ideal | {worst_ratio:.2f}x "
            f"| {'PASS' if worst_ratio <= GOAL_RATIO else 'MISS'} |",
        ]
    lines.append(END)
    return "\n".join(lines) + "\n"


def _write(path: Path, section: str) -> None:
    """Replace this benchmark's section of ``path``, or append it."""
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rate_limited")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (3)")
    parser.add_argument("--jobs", type=int, default=JOBS, help=f"jobs ({JOBS})")
    parser.add_argument("--only", action="append", help="asyncvideos or openai (repeatable)")
    parser.add_argument("--output", type=Path, help="write the section into this Markdown file")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve())
        return 0
    began = time.perf_counter()
    results = _run(args.reps, args.jobs, args.only)
    section = report(results, args.jobs, time.perf_counter() - began)
    print(section)
    if args.output:
        _write(args.output, section)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
