"""Under injected faults the client keeps working, loses nothing and repeats nothing.

Every fault is served by the FakeVideosAPI over loopback: error statuses, dropped
connections, bodies cut short, answers slower than the client's timeout.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conditions import until

from asyncvideos import (
    APIConnectionError,
    APIStatusError,
    AsyncVideosError,
    RateLimitError,
    Video,
)
from asyncvideos import _retry as retry_module
from asyncvideos.testing import FakeVideosAPI, Fault, ManualClock

# An answer that never comes in time (the fake wakes it when it closes), against a
# per-call limit that a normal answer meets however loaded the machine: a 0.2 s limit
# timed out ordinary polls when 64 of them shared one loop on a busy machine.
CALL_TIMEOUT = 1.0
SLOW = Fault(delay=60.0)

# One of each kind of failure the brief names; ~20% of requests meet one.
MIXED_FAULTS = (
    Fault(status=429, headers={"retry-after-ms": "5"}),
    Fault(status=500),
    Fault(status=502),
    Fault(status=503),
    Fault(drop=True),
    Fault(truncate=True),
    SLOW,
)


async def collect(iterator: AsyncIterator[object]) -> list[object]:
    return [item async for item in iterator]


@pytest.fixture
async def big_api() -> AsyncIterator[FakeVideosAPI]:
    async with FakeVideosAPI(speed=100.0, poll_after_ms=10) as fake:
        yield fake


class TestListUnderFaults:
    async def test_enough_retries_yield_every_id_once_in_order(
        self, big_api: FakeVideosAPI
    ) -> None:
        """list(all=True) over 10,000 jobs with 20% faulty answers yields each id once, in order."""
        expected = big_api.seed(10_000)
        big_api.inject_random(rate=0.2, faults=MIXED_FAULTS, seed=11, path=r"^/v1/videos$")
        async with big_api.client(timeout=CALL_TIMEOUT, max_retries=12) as videos:
            ids = [video.id async for video in videos.list(all=True)]
        assert ids == expected
        statuses = {r.path for r in big_api.requests}
        assert statuses == {"/v1/videos"}
        # The faults really happened: more requests than the 100 pages.
        assert len(big_api.requests) > 110

    async def test_no_retries_raise_with_a_cursor_that_resumes_exactly(
        self, big_api: FakeVideosAPI
    ) -> None:
        """With max_retries=0 each failure carries resume_after; resuming completes the set."""
        expected = big_api.seed(10_000)
        big_api.inject_random(rate=0.2, faults=MIXED_FAULTS, seed=12, path=r"^/v1/videos$")
        ids: list[str] = []
        failures: list[AsyncVideosError] = []
        cursors: list[str | None] = []
        after: str | None = None
        async with big_api.client(timeout=CALL_TIMEOUT, max_retries=0) as videos:
            while True:
                try:
                    async for video in videos.list(all=True, after=after):
                        ids.append(video.id)
                except (APIConnectionError, APIStatusError) as error:
                    failures.append(error)
                    cursors.append(ids[-1] if ids else None)
                    after = error.resume_after
                else:
                    break
        assert ids == expected  # no gap, no repeat, same order
        assert len(failures) >= 10
        # Each cursor is the last id handed out (None before the first); no retries taken.
        assert [error.resume_after for error in failures] == cursors
        assert {error.retries for error in failures} == {0}
        kinds = {type(error).__name__ for error in failures}
        assert {"RateLimitError", "InternalServerError", "APITimeoutError"} <= kinds


class TestWaitManyUnderFaults:
    async def test_every_job_reported_once_with_its_final_status(self) -> None:
        """wait_many over 500 jobs with 20% faulty polls reports each job once, finished."""
        # The clock moves 10 s per 200 requests answered, not with real time, so every job
        # is polled while it runs however busy the machine is (a real-time clock let
        # them all finish before the first poll on a loaded machine).
        clock = ManualClock()
        async with FakeVideosAPI(
            clock=clock, queue_seconds=10.0, run_seconds=40.0, poll_after_ms=20
        ) as fake:

            async def drive_clock() -> None:
                while True:
                    mark = len(fake.requests) + 200
                    await until(
                        lambda mark=mark: len(fake.requests) >= mark, "more polls", timeout=60
                    )
                    clock.advance(10.0)

            driver = asyncio.create_task(drive_clock())
            try:
                await self._check(fake)
            finally:
                driver.cancel()
                await asyncio.gather(driver, return_exceptions=True)

    async def _check(self, big_api: FakeVideosAPI) -> None:
        jobs = big_api.add_videos(*({"status": "queued"} for _ in range(500)))
        ids = [job["id"] for job in jobs]
        rng = random.Random(5)
        failing = set(rng.sample(ids, 60))
        for video_id in failing:
            big_api.set_outcome(video_id, "failed", error={"code": "moderation", "message": "no"})
        big_api.inject_random(rate=0.2, faults=MIXED_FAULTS, seed=13, method="GET")
        seen: dict[str, str | None] = {}
        unfinished: set[str] = set()

        def on_progress(video: Video) -> None:
            if video.status in ("queued", "in_progress"):
                unfinished.add(video.id)

        async with big_api.client(max_retries=12) as videos:
            async for result in videos.wait_many(
                ids,
                concurrency=64,
                request_timeout=CALL_TIMEOUT,
                wait_timeout=60,
                on_progress=on_progress,
                poll_interval=0.02,  # as often as the fake's hint says, under the 0.1 s floor
            ):
                assert result.video_id not in seen, "reported twice"
                assert result.ok, result.error
                assert result.video is not None
                assert result.video.id == result.video_id
                seen[result.video_id] = result.video.status
        assert set(seen) == set(ids)
        # Jobs were really polled while running (how many depends on the machine's speed).
        assert len(unfinished) >= 20
        for video_id, status in seen.items():
            assert status == ("failed" if video_id in failing else "completed")

    async def test_without_retries_each_job_is_still_reported_once(self) -> None:
        """With max_retries=0 some polls fail: those jobs carry the error, none is lost."""
        async with FakeVideosAPI(
            speed=100.0, queue_seconds=20.0, run_seconds=40.0, poll_after_ms=20
        ) as fake:
            jobs = fake.add_videos(*({"status": "queued"} for _ in range(200)))
            ids = [job["id"] for job in jobs]
            fake.inject_random(rate=0.2, faults=MIXED_FAULTS, seed=14, method="GET")
            reported: list[str] = []
            failed: list[AsyncVideosError] = []
            async with fake.client(max_retries=0) as videos:
                async for result in videos.wait_many(
                    ids,
                    concurrency=64,
                    request_timeout=CALL_TIMEOUT,
                    wait_timeout=60,
                    poll_interval=0.02,  # the fake's hint, under the 0.1 s floor
                ):
                    reported.append(result.video_id)
                    if result.error is not None:
                        failed.append(result.error)
                    else:
                        assert result.video is not None
                        assert result.video.status == "completed"
        assert sorted(reported) == sorted(ids)
        assert len(reported) == len(set(reported))
        assert failed  # 20% faults, no retries: some jobs must have failed to poll
        assert all(isinstance(e, (APIConnectionError, APIStatusError)) for e in failed)


class TestDownloadUnderFaults:
    SIZE = 8 * 1024 * 1024

    @pytest.mark.parametrize("accept_ranges", [True, False], ids=["resume", "restart"])
    async def test_dropped_streams_give_a_byte_identical_file(
        self, tmp_path: Path, accept_ranges: bool
    ) -> None:
        """Three mid-stream drops: the file is whole and identical; no partial file remains."""
        async with FakeVideosAPI(
            content_sizes={"video": self.SIZE}, accept_ranges=accept_ranges
        ) as fake:
            (video_id,) = fake.seed(1)
            fake.inject(Fault(drop_after_bytes=1_500_000), times=3, path=r"/content$")
            target = tmp_path / "out" / "clip.mp4"
            async with fake.client(max_retries=3) as videos:
                result = await videos.download(video_id, target)
            assert result == target
            assert len(fake.content_bytes(video_id)) == self.SIZE
            assert target.read_bytes() == fake.content_bytes(video_id)
            assert os.listdir(target.parent) == ["clip.mp4"]
            ranges = [r.header("range") for r in fake.requests]
        assert len(ranges) == 4
        if accept_ranges:
            assert ranges == [None, "bytes=1500000-", "bytes=3000000-", "bytes=4500000-"]
        else:
            assert ranges == [None, None, None, None]

    async def test_too_many_drops_leave_no_file_at_all(self, tmp_path: Path) -> None:
        """When the drops outlast the retry budget, the destination folder stays empty."""
        async with FakeVideosAPI(content_sizes={"video": self.SIZE}) as fake:
            (video_id,) = fake.seed(1)
            fake.inject(Fault(drop_after_bytes=1_000_000), times=3, path=r"/content$")
            async with fake.client(max_retries=2) as videos:
                with pytest.raises(APIConnectionError):
                    await videos.download(video_id, tmp_path / "clip.mp4")
        assert os.listdir(tmp_path) == []


class TestListWhileJobsChange:
    @pytest.mark.parametrize("order", ["asc", "desc"])
    async def test_jobs_present_throughout_are_yielded_exactly_once(
        self, big_api: FakeVideosAPI, order: str
    ) -> None:
        """Adding and deleting jobs between pages never skips or repeats a stable job."""
        rng = random.Random(order)
        start = int(big_api.clock.now()) - 10_000
        initial = big_api.seed(300, start=start)
        removed: set[str] = set()
        added: set[str] = set()
        yielded: list[str] = []
        page = 10
        async with big_api.client() as videos:
            async for video in videos.list(all=True, limit=page, order=order):  # type: ignore[arg-type]
                yielded.append(video.id)
                if len(yielded) % page:
                    continue
                # Between pages: delete the cursor itself, a job already seen and one
                # not seen yet; add jobs before, inside and after the listed range.
                alive = [i for i in initial if i not in removed]
                for victim in {yielded[-1], rng.choice(yielded), rng.choice(alive)}:
                    if victim not in removed and big_api.remove_video(victim):
                        removed.add(victim)
                for created_at in (start - 5, start + rng.randrange(300), start + 400):
                    job = big_api.add_videos({"created_at": created_at})[0]
                    added.add(job["id"])
        assert len(yielded) == len(set(yielded)), "a job was yielded twice"
        stable = [i for i in initial if i not in removed]
        assert set(stable) <= set(yielded), "a job present throughout was skipped"
        assert set(yielded) <= set(initial) | added
        # Stable jobs come out in listing order.
        listed_stable = [i for i in yielded if i in set(stable)]
        assert listed_stable == (stable if order == "asc" else stable[::-1])
        assert removed
        assert added


class TestLongServerWaits:
    @pytest.mark.parametrize(
        "headers",
        [{"retry-after": "600"}, {"retry-after-ms": "600000"}],
        ids=["retry-after", "retry-after-ms"],
    )
    async def test_ten_minute_retry_after_raises_at_once(
        self, api: FakeVideosAPI, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A 429 asking for 10 minutes is raised at once (waits enabled), not slept through."""
        monkeypatch.setattr(retry_module, "_waits_enabled", True)
        (video_id,) = api.seed(1)
        api.inject(Fault(status=429, headers=headers), times=5)
        retried: list[object] = []
        async with api.client(max_retries=5, on_retry=retried.append) as videos:
            with pytest.raises(RateLimitError) as caught:
                # Ten minutes, had it slept: the bound only keeps a broken build from hanging.
                await asyncio.wait_for(videos.retrieve(video_id), 60)
        assert retried == []  # no retry was announced, so no retry wait was started
        assert caught.value.retry_after == 600
        assert caught.value.retries == 0
        assert len(api.requests) == 1

    async def test_short_retry_after_is_slept_when_waits_are_enabled(
        self, api: FakeVideosAPI, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The counterpart: a short server wait is honoured, so the test above can fail."""
        monkeypatch.setattr(retry_module, "_waits_enabled", True)
        (video_id,) = api.seed(1)
        api.inject(Fault(status=429, headers={"retry-after-ms": "200"}), times=1)
        async with api.client(max_retries=1) as videos:
            began = time.monotonic()
            video = await videos.retrieve(video_id)
            elapsed = time.monotonic() - began
        assert video.id == video_id
        assert elapsed >= 0.2
        assert len(api.requests) == 2
