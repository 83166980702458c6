"""``asyncvideos demo``: the library's main job, end to end, on an in-process fake API.

It creates a batch of jobs at once, waits on them together, streams the whole
list page by page, and downloads one video, while the fake injects faults a
real API shows now and then (429s with ``retry-after-ms``, 500s, a connection
cut mid-download), so that retries and a resumed download really happen. It
needs no key and no network, and checks the downloaded bytes. The temporary
folder it downloads into is removed at the end, unless ``--keep``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ..testing import FakeVideosAPI, Fault
from ._commands import Context
from ._progress import download_display, wait_display

SEEDED_JOBS = 300
VIDEO_BYTES = 8 * 1024 * 1024
PROMPTS = (
    "A paper boat drifting down a rain-soaked street at dusk",
    "Time-lapse of a city skyline as fog rolls in",
    "A red fox trotting through fresh snow, slow motion",
    "Close-up of coffee being poured, morning light",
    "A lighthouse beam sweeping over a stormy sea",
    "Hot air balloons rising over a valley at sunrise",
)


class _RetryCount(logging.Handler):
    """Counts the library's "Retrying ..." log records: one per retry taken."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.retries = 0

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, str) and record.msg.startswith("Retrying"):
            self.retries += 1


def _inject_faults(api: FakeVideosAPI, video_bytes: int) -> None:
    # Short server-given waits keep the demo quick while the retries are real.
    wait = {"retry-after-ms": "150"}
    api.inject(Fault(status=429, headers=wait), times=2, method="POST", path=r"/videos$")
    api.inject(Fault(status=500, headers=wait), method="GET", path=r"/videos/[^/]+$")
    api.inject(Fault(status=500, headers=wait), method="GET", path=r"/videos$")
    api.inject(Fault(drop_after_bytes=video_bytes // 3), method="GET", path=r"/content$")


def _megabytes(size: int) -> str:
    # Decimal, as the live display's byte counter and rate (rich's) are: one unit system.
    return f"{size / 1_000_000:.1f} MB"


async def demo(ctx: Context) -> int:
    """Run the tour; print each step and a summary."""
    started = time.perf_counter()
    out = ctx.out.stream
    jobs = ctx.args.jobs

    # The tour is for people: text, even in a CI log, unless --json asks for the summary.
    as_json = bool(ctx.args.json)

    def say(line: str) -> None:
        if not as_json:
            out.write(line + "\n")
            out.flush()

    temporary = not ctx.args.output
    folder = Path(tempfile.mkdtemp(prefix="avdemo-")) if temporary else Path(ctx.args.output)
    counter = _RetryCount()
    library_log = logging.getLogger("asyncvideos")
    previous_level = library_log.level
    library_log.addHandler(counter)
    if library_log.getEffectiveLevel() > logging.INFO:
        library_log.setLevel(logging.INFO)
    # The fake's own throwaway key: never the caller's, never printed.
    api = FakeVideosAPI(
        api_key=f"sk-demo-{secrets.token_hex(12)}",
        speed=ctx.args.speed,
        queue_seconds=1.0,
        run_seconds=4.0,
        poll_after_ms=100,
        content_sizes={"video": VIDEO_BYTES},
        seed=7,
    )
    try:
        async with api, api.client(max_retries=3) as videos:
            api.seed(SEEDED_JOBS)
            _inject_faults(api, VIDEO_BYTES)
            say(f"Fake Videos API on {api.base_url} (in this process: no key, no network).")
            say("Faults injected: two 429s, two 500s, one connection cut mid-download.")

            # 1. A batch of jobs, created concurrently.
            created = await asyncio.gather(
                *(videos.create(PROMPTS[n % len(PROMPTS)], seconds=4) for n in range(jobs))
            )
            for n, video in enumerate(created):  # staggered, so the bars move apart
                api.set_outcome(video.id, "completed", duration=2.0 + 0.5 * (n % 5))
            say(f"1. Created {len(created)} jobs concurrently.")

            # 2. Waited on together, with the live display on a terminal.
            finished: dict[str, int] = {}
            ids = [video.id for video in created]
            with ctx.live(wait_display(ctx.console, ids)) as display:
                async for waited in videos.wait_many(ids, on_progress=display.job):
                    status = waited.video.status if waited.video else "error"
                    finished[str(status)] = finished.get(str(status), 0) + 1
            summary = ", ".join(f"{count} {status}" for status, count in sorted(finished.items()))
            say(f"2. Waited on {len(ids)} jobs together: {summary}.")

            # 3. The whole list, streamed: the first job arrives before the last page.
            listed = 0
            pages_at_first = 0
            async for _ in videos.list(all=True):
                listed += 1
                if listed == 1:
                    pages_at_first = _pages_fetched(api)
            pages = _pages_fetched(api)
            say(
                f"3. Listed {listed} jobs in {pages} pages, streamed: the first job was in hand "
                f"after {pages_at_first} page, before the other {pages - pages_at_first} "
                "were fetched."
            )

            # 4. One video, to a file, resumed after the cut.
            target = folder / f"{created[0].id}.mp4"
            with ctx.live(download_display(ctx.console, f"{created[0].id} video")) as display:
                path = await videos.download(
                    created[0], target, overwrite=True, on_progress=display.bytes
                )
            size = path.stat().st_size
            intact = path.read_bytes() == api.content_bytes(created[0].id)
            resumes = sum(
                1 for r in api.requests if r.path.endswith("/content") and r.header("range")
            )
            say(
                f"4. Downloaded {_megabytes(size)} to {path} (resumed {resumes} time(s) after "
                f"the cut; bytes {'match' if intact else 'DIFFER'})."
            )
            requests_made = len(api.requests)
    finally:
        library_log.removeHandler(counter)
        library_log.setLevel(previous_level)
        removed = temporary and not ctx.args.keep
        if removed:
            shutil.rmtree(folder, ignore_errors=True)

    elapsed = time.perf_counter() - started
    result: dict[str, Any] = {
        "jobs_created": len(created),
        "jobs_listed": listed,
        "requests": requests_made,
        "retries": counter.retries,
        "resumed_downloads": resumes,
        "bytes_downloaded": size,
        "path": None if removed else str(path),
        "seconds": round(elapsed, 2),
    }
    if as_json:
        ctx.out.record(result)
    else:
        say(
            f"Summary: {len(created)} jobs created, {listed} listed, {requests_made} requests, "
            f"{counter.retries} retries, {resumes} resumed download, {_megabytes(size)} "
            f"in {elapsed:.1f} s."
        )
        if removed:
            say("The temporary folder is removed; `asyncvideos demo --keep` keeps the video.")
        else:
            say(f"The video is at {path}")
    return 0 if intact else 1  # the demo checks itself: a mismatch is a bug


def _pages_fetched(api: FakeVideosAPI) -> int:
    """Distinct pages of ``GET /videos`` asked for (a retried page counts once)."""
    cursors = {
        r.query.get("after")
        for r in api.requests
        if r.method == "GET" and r.path.endswith("/videos")
    }
    return len(cursors)
