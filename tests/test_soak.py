"""A soak test: 50,000 mixed calls with ~5% faults, 64 in flight; nothing lost,
nothing failed, and memory flat.

The fake API runs in a child process: the memory measured is then the client's
alone (the fake's job store grows with every create), and the server gets the
machine's other core. Memory is measured two ways after the first 5,000 calls
and again at the end: the process's resident set size, and the number of
objects the garbage collector tracks (one leaked object per call would add
45,000 of them). Both must stay within 10%.

``tracemalloc`` would be more exact but slows the client several times over.
Runs in about 40-60 s on a busy two-core machine; marked ``slow``, so it is not in
the default run: ``pytest -m slow`` runs it, and CI runs it once.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from asyncvideos import AsyncVideos

TOTAL_CALLS = 50_000
WARM_UP_CALLS = 5_000
IN_FLIGHT = 64
THUMBNAIL_SIZE = 2048

# The fake, in a child process. GET requests meet 503s, 429s, dropped connections
# and bodies cut short; POSTs meet only faults after which the server certainly did
# not act (a retry of those is safe), so that every call must succeed in the end.
SERVER = f"""
import asyncio, json, sys
from asyncvideos.testing import FakeVideosAPI, Fault

async def main():
    async with FakeVideosAPI(
        content_sizes={{"thumbnail": {THUMBNAIL_SIZE}}}, poll_after_ms=None
    ) as api:
        ids = api.seed(30, start=1_000_000)
        api.inject_random(
            rate=0.05,
            faults=[
                Fault(status=503),
                Fault(status=429, headers={{"retry-after-ms": "0"}}),
                Fault(drop=True),
                Fault(truncate=True),
            ],
            seed=1,
            method="GET",
        )
        api.inject_random(rate=0.05, faults=[Fault(status=429)], seed=2, method="POST")
        print(json.dumps({{"base_url": api.base_url, "api_key": api.api_key, "ids": ids}}))
        sys.stdout.flush()
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def gc_objects() -> int:
    gc.collect()
    return len(gc.get_objects())


@pytest.fixture
async def remote_fake() -> AsyncIterator[dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SERVER,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        yield json.loads(line)
    finally:
        process.stdin.close()  # the child's stdin.read() returns and it shuts down
        try:
            await asyncio.wait_for(process.wait(), 10)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()


class Mix:
    """Runs calls from a seeded mix, checking each answer."""

    def __init__(self, videos: AsyncVideos, ids: list[str]) -> None:
        self.videos = videos
        self.ids = ids
        self.rng = random.Random(2024)
        self.done: dict[str, int] = {}

    async def one(self) -> None:
        videos, ids, roll = self.videos, self.ids, self.rng.random()
        if roll < 0.35:
            wanted = self.rng.choice(ids)
            assert (await videos.retrieve(wanted)).id == wanted
            kind = "retrieve"
        elif roll < 0.55:
            page = await videos.list_page(limit=5)
            assert [v.id for v in page.data] == ids[:5]
            kind = "list_page"
        elif roll < 0.60:
            # Newest first from the 21st seeded job: 20 jobs over 2 pages, whatever
            # the creates add (they are all newer).
            listed = [
                v.id async for v in videos.list(all=True, order="desc", limit=10, after=ids[20])
            ]
            assert listed == ids[19::-1]
            kind = "list_all"
        elif roll < 0.85:
            body = await videos.download_content(self.rng.choice(ids), variant="thumbnail")
            assert len(body) == THUMBNAIL_SIZE
            kind = "download_content"
        else:
            assert (await videos.create("soak", seconds=4)).status == "queued"
            kind = "create"
        self.done[kind] = self.done.get(kind, 0) + 1

    async def run(self, calls: int) -> None:
        remaining = iter(range(calls))

        async def worker() -> None:
            for _ in remaining:
                await self.one()

        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))


@pytest.mark.slow
async def test_fifty_thousand_calls_under_faults_keep_memory_flat(
    remote_fake: dict[str, Any],
) -> None:
    """50,000 calls, 64 at a time, ~5% faulty: all succeed; memory stays within 10%."""
    async with AsyncVideos(
        api_key=remote_fake["api_key"], base_url=remote_fake["base_url"], max_retries=10
    ) as videos:
        mix = Mix(videos, remote_fake["ids"])
        await mix.run(WARM_UP_CALLS)
        rss_warm, objects_warm = resident_bytes(), gc_objects()
        await mix.run(TOTAL_CALLS - WARM_UP_CALLS)
        rss_end, objects_end = resident_bytes(), gc_objects()
    assert sum(mix.done.values()) == TOTAL_CALLS
    assert set(mix.done) == {"retrieve", "list_page", "list_all", "download_content", "create"}
    assert rss_end <= rss_warm * 1.10, (rss_warm, rss_end)
    assert objects_end <= objects_warm * 1.10, (objects_warm, objects_end)
