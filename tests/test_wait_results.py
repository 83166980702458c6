"""``wait_many``'s results and sources: typed results, ``on_progress`` errors kept
to their job, and jobs fed from an async iterable (a queue) while the wait runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from asyncvideos import (
    AsyncVideos,
    NotFoundError,
    Video,
    WaitFailure,
    WaitResult,
    WaitSuccess,
    WaitTimeoutError,
)
from asyncvideos.testing import FakeVideosAPI, ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def frozen(clock: ManualClock) -> AsyncIterator[tuple[FakeVideosAPI, AsyncVideos]]:
    """A fake on a manual clock (jobs stay put until the test moves time), and a client."""
    async with FakeVideosAPI(clock=clock, poll_after_ms=10) as api, api.client() as client:
        yield api, client


def queued(api: FakeVideosAPI, n: int) -> list[str]:
    return [video["id"] for video in api.add_videos(*({"status": "queued"} for _ in range(n)))]


async def collect(results: AsyncIterator[WaitResult]) -> list[WaitResult]:
    return [result async for result in results]


async def from_queue(queue: asyncio.Queue[Any]) -> AsyncIterator[Any]:
    while (item := await queue.get()) is not None:
        yield item


class TestResultTypes:
    """A result is a ``WaitSuccess`` (``ok``, a ``video``) or a ``WaitFailure`` (``error``)."""

    async def test_success_and_failure(self, api: FakeVideosAPI, client: AsyncVideos) -> None:
        (done,) = api.seed(1)
        results = {r.video_id: r async for r in client.wait_many([done, "video_missing"])}
        success, failure = results[done], results["video_missing"]
        assert isinstance(success, WaitSuccess)
        assert (success.ok, success.error) == (True, None)
        assert success.video.status == "completed"
        assert isinstance(failure, WaitFailure)
        assert failure.ok is False
        assert isinstance(failure.error, NotFoundError)
        assert failure.video is None
        assert isinstance(success, WaitResult)
        assert isinstance(failure, WaitResult)

    def test_ok_narrows(self) -> None:
        """``if result.ok:`` leaves ``result.video`` a ``Video`` (checked by mypy in
        tests/typing_check.py; here, the runtime side of the same promise)."""
        results: list[WaitResult] = [
            WaitSuccess("video_1", Video(id="video_1", status="completed")),
            WaitFailure("video_2", None, RuntimeError("x")),
        ]
        statuses = [r.video.status if r.ok else type(r.error).__name__ for r in results]
        assert statuses == ["completed", "RuntimeError"]


class TestOnProgressErrors:
    """An exception raised by ``on_progress`` is that job's error, not the run's."""

    async def test_async_callback_raising(
        self, frozen: tuple[FakeVideosAPI, AsyncVideos], clock: ManualClock
    ) -> None:
        api, client = frozen
        ids = queued(api, 4)

        async def callback(video: Video) -> None:
            if video.id == ids[1] and video.status == "in_progress":
                raise KeyError("callback bug")

        results = client.wait_many(ids, on_progress=callback, wait_timeout=10)
        clock.advance(2)  # in progress
        first = await anext(results)
        assert first.video_id == ids[1]
        assert isinstance(first, WaitFailure)
        assert isinstance(first.error, KeyError)
        assert first.video is not None
        assert first.video.status == "in_progress"
        clock.advance(10)
        rest = await collect(results)
        assert sorted(r.video_id for r in rest) == sorted([ids[0], ids[2], ids[3]])
        assert all(r.ok for r in rest)


class TestAsyncIterable:
    """``wait_many`` over an async iterable: each job from when it arrives."""

    async def test_jobs_arriving_while_it_runs(
        self, frozen: tuple[FakeVideosAPI, AsyncVideos], clock: ManualClock
    ) -> None:
        api, client = frozen
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        first = queued(api, 2)
        for video_id in first:
            queue.put_nowait(video_id)
        results = client.wait_many(from_queue(queue), wait_timeout=10)
        waiting = asyncio.ensure_future(anext(results))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        clock.advance(10)  # the first two complete
        reported = [(await waiting).video_id, (await anext(results)).video_id]
        assert sorted(reported) == sorted(first)
        later = api.add_videos({"status": "queued", "created_at": int(clock.now())})[0]["id"]
        queue.put_nowait(later)
        queue.put_nowait(Video(id=first[0], status="completed"))  # known final: no request
        queue.put_nowait(None)
        pending = asyncio.ensure_future(collect(results))
        await asyncio.sleep(0.05)
        clock.advance(10)
        rest = await pending
        assert sorted(r.video_id for r in rest) == sorted([later, first[0]])
        assert all(r.ok for r in rest)

    async def test_empty_source(self, api: FakeVideosAPI, client: AsyncVideos) -> None:
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        queue.put_nowait(None)
        assert await collect(client.wait_many(from_queue(queue))) == []
        assert api.requests == []

    async def test_a_bad_id_in_the_source_raises(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        (done,) = api.seed(1)

        async def source() -> AsyncIterator[Any]:
            yield done
            yield ".."

        with pytest.raises(ValueError, match=r"videos\[\]"):
            await collect(client.wait_many(source()))

    async def test_the_source_failing_ends_the_run(
        self, frozen: tuple[FakeVideosAPI, AsyncVideos]
    ) -> None:
        api, client = frozen
        ids = queued(api, 2)

        async def source() -> AsyncIterator[str]:
            for video_id in ids:
                yield video_id
            raise ConnectionResetError("the queue broke")

        with pytest.raises(ConnectionResetError, match="the queue broke"):
            await collect(client.wait_many(source()))
        sent = len(api.requests)
        await asyncio.sleep(0.05)
        assert len(api.requests) == sent  # no poll left running

    async def test_timeout_stops_reading_the_source(
        self, frozen: tuple[FakeVideosAPI, AsyncVideos]
    ) -> None:
        """When the timeout passes, jobs started are reported timed out and the
        source is read no further."""
        api, client = frozen
        ids = queued(api, 2)
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        for video_id in ids:
            queue.put_nowait(video_id)
        results = await asyncio.wait_for(
            collect(client.wait_many(from_queue(queue), wait_timeout=0.2)), 5
        )
        assert sorted(r.video_id for r in results) == sorted(ids)
        assert all(isinstance(r.error, WaitTimeoutError) for r in results)

    async def test_leaving_early_stops_everything(
        self, frozen: tuple[FakeVideosAPI, AsyncVideos]
    ) -> None:
        api, client = frozen
        (done,) = api.seed(1)
        ids = queued(api, 3)
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        for video_id in [done, *ids]:
            queue.put_nowait(video_id)
        results = client.wait_many(from_queue(queue), poll_interval=0.01)
        assert (await anext(results)).video_id == done
        await results.aclose()
        sent = len(api.requests)
        await asyncio.sleep(0.05)
        assert len(api.requests) == sent

    @pytest.mark.parametrize("videos", ["video_1", Video(id="video_1"), 5, None])
    async def test_not_an_iterable(self, client: AsyncVideos, videos: Any) -> None:
        with pytest.raises(TypeError, match="videos must be an iterable"):
            client.wait_many(videos)
