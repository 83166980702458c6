"""Nothing leaks: no unclosed session, connection or response, no orphaned task
exception, and cancelling a long operation part way gives every connection back
and leaves no temporary file.

The suite already runs with warnings as errors; the first tests here go further
and run a mix of operations in their own event loop in asyncio debug mode,
recording every warning and every call of the loop's exception handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conditions import tasks_started_since, until

from asyncvideos import AsyncVideos, Video, WaitResult
from asyncvideos.testing import FakeVideosAPI, Fault

Main = Callable[[], Coroutine[Any, Any, None]]


def run_in_debug_loop(main: Main) -> tuple[list[str], list[str]]:
    """Run ``main`` under ``asyncio.run(debug=True)``; return (warnings, loop errors)."""
    handler_calls: list[str] = []

    async def wrapper() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: handler_calls.append(str(context)))
        await main()
        # Collect inside the loop too, so a leaked task or session reports to our handler.
        gc.collect()
        await asyncio.sleep(0)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(wrapper(), debug=True)
        gc.collect()
    shown = [f"{w.category.__name__}: {w.message}" for w in caught]
    return shown, handler_calls


def connections_in_use(client: AsyncVideos) -> int:
    """Connections the client's own pool has handed out and not yet got back."""
    session = client._transport._session
    assert session is not None
    connector = session.connector
    assert isinstance(connector, aiohttp.TCPConnector)
    return len(connector._acquired)


async def a_mix_of_operations(tmp: Path) -> None:
    async with FakeVideosAPI(speed=100.0, poll_after_ms=10) as api:
        ids = api.seed(30)
        api.inject_random(
            rate=0.2,
            faults=[Fault(status=503), Fault(drop=True), Fault(truncate=True), Fault(delay=1.0)],
            seed=3,
        )
        # A delayed answer times out; 0.5 s leaves room for a busy machine in debug mode,
        # where a 0.1 s limit timed out answers that were not delayed at all.
        async with api.client(max_retries=10, timeout=0.5) as videos:
            assert [v.id async for v in videos.list(all=True, limit=7)] == ids
            await videos.retrieve(ids[0])
            await videos.download(ids[1], tmp / "a.mp4")
            await videos.download_content(ids[2], variant="thumbnail")
            created = await videos.create("a cat", seconds=4)
            await videos.wait(created, wait_timeout=20)
            async for result in videos.wait_many(ids[:5]):
                assert result.ok
            # Abandoned part way, the supported ways: break, aclose, a cancelled task.
            async for _ in videos.list(all=True, limit=3):
                break
            chunks = videos.iter_content(ids[3])
            await chunks.__anext__()
            await chunks.aclose()  # type: ignore[attr-defined]
            task = asyncio.ensure_future(videos.download(ids[4], tmp / "b.mp4"))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # Errors that the caller handles.
            with pytest.raises(Exception, match="not found"):
                await videos.retrieve("video_missing")
        api.clear_faults()


def test_a_mix_of_operations_in_debug_mode_leaks_nothing(tmp_path: Path) -> None:
    """No ResourceWarning, no unclosed session/connector/response, no lost task exception."""
    shown, handler_calls = run_in_debug_loop(lambda: a_mix_of_operations(tmp_path))
    assert shown == []
    assert handler_calls == []
    assert sorted(os.listdir(tmp_path)) == ["a.mp4"]


def test_the_leak_detector_can_fail() -> None:
    """The harness above does see an unclosed session and a never-retrieved task error."""

    async def leaky() -> None:
        session = aiohttp.ClientSession()
        del session

        async def boom() -> None:
            raise RuntimeError("lost")

        task = asyncio.ensure_future(boom())
        await asyncio.wait({task})  # done, its exception never retrieved
        del task

    shown, handler_calls = run_in_debug_loop(leaky)
    assert any("Unclosed client session" in text for text in shown + handler_calls)
    assert any("never retrieved" in text for text in handler_calls)


# -- cancellation part way -------------------------------------------------------------


@pytest.fixture
async def slow_api() -> AsyncIterator[FakeVideosAPI]:
    """Jobs that never finish while a test runs, and an 8 MiB video."""
    async with FakeVideosAPI(
        speed=1.0, run_seconds=3600, poll_after_ms=5, content_sizes={"video": 8 * 1024 * 1024}
    ) as fake:
        yield fake


async def cancel_when_busy(
    videos: AsyncVideos, operation: Awaitable[Any], *, busy: Callable[[], bool]
) -> None:
    """Start ``operation``, wait until ``busy()`` (a connection in use), cancel it."""
    task = asyncio.ensure_future(operation)
    for _ in range(2_000):
        await asyncio.sleep(0.001)
        if busy() or task.done():
            break
    assert not task.done(), task
    assert connections_in_use(videos) > 0, "cancel while a connection is in use"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def consume(iterator: AsyncIterator[Any]) -> None:
    async for _ in iterator:
        pass


class TestCancellation:
    """Cancelling a long operation part way gives every connection back."""

    async def _check_pool_and_reuse(self, api: FakeVideosAPI, videos: AsyncVideos) -> None:
        assert connections_in_use(videos) == 0
        api.clear_faults()
        # The pool is not poisoned: the next calls work.
        page = await videos.list_page(limit=100)
        assert len(page.data) == len(api.videos)
        assert connections_in_use(videos) == 0

    async def test_list_all(self, slow_api: FakeVideosAPI) -> None:
        """list(all=True), cancelled while a later page is in flight."""
        slow_api.seed(50)
        async with slow_api.client() as videos:
            await videos.list_page(limit=1)  # opens the pool
            slow_api.inject(Fault(delay=30), times=1, path=r"^/v1/videos$")
            slow_api.clear_requests()
            await cancel_when_busy(
                videos,
                consume(videos.list(all=True, limit=10)),
                busy=lambda: len(slow_api.requests) >= 1,
            )
            await self._check_pool_and_reuse(slow_api, videos)

    async def test_list_all_between_pages(self, slow_api: FakeVideosAPI) -> None:
        """list(all=True), cancelled while the caller is busy with an item."""
        slow_api.seed(50)
        async with slow_api.client() as videos:
            started = asyncio.Event()

            async def slow_consumer() -> None:
                async for _ in videos.list(all=True, limit=10):
                    started.set()
                    await asyncio.sleep(30)

            task = asyncio.ensure_future(slow_consumer())
            await asyncio.wait_for(started.wait(), 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await self._check_pool_and_reuse(slow_api, videos)

    async def test_download(self, slow_api: FakeVideosAPI, tmp_path: Path) -> None:
        """download(), cancelled mid-stream: the pool is clean and no file is left."""
        (video_id,) = slow_api.seed(1)
        progressed = asyncio.Event()

        async def on_progress(done: int, total: int | None) -> None:
            progressed.set()
            await asyncio.sleep(0.05)  # a slow writer keeps the stream open

        async with slow_api.client() as videos:
            await cancel_when_busy(
                videos,
                videos.download(video_id, tmp_path / "v.mp4", on_progress=on_progress),
                busy=progressed.is_set,
            )
            assert os.listdir(tmp_path) == []
            await self._check_pool_and_reuse(slow_api, videos)

    async def test_download_waiting_for_headers(
        self, slow_api: FakeVideosAPI, tmp_path: Path
    ) -> None:
        """download(), cancelled before the first byte: no temporary file is left."""
        (video_id,) = slow_api.seed(1)
        slow_api.inject(Fault(delay=30), path=r"/content$")
        async with slow_api.client() as videos:
            await cancel_when_busy(
                videos,
                videos.download(video_id, tmp_path / "sub" / "v.mp4"),
                busy=lambda: len(slow_api.requests) >= 1,
            )
            assert not (tmp_path / "sub").exists()  # nothing is created before the body
            await self._check_pool_and_reuse(slow_api, videos)

    @pytest.mark.parametrize("closing", [True, False], ids=["aclosing", "dropped"])
    async def test_iter_content(self, slow_api: FakeVideosAPI, closing: bool) -> None:
        """iter_content(), cancelled while the caller holds a chunk.

        With ``contextlib.aclosing`` (the documented way to hold a stream) the
        connection is back at once; an iterator merely dropped is closed by the
        event loop's async-generator finalizer within a few loop turns.
        """
        (video_id,) = slow_api.seed(1)
        async with slow_api.client() as videos:
            got = asyncio.Event()

            async def reader() -> None:
                chunks = videos.iter_content(video_id, chunk_size=1024)
                if closing:
                    async with contextlib.aclosing(chunks):  # type: ignore[type-var]
                        async for _ in chunks:
                            got.set()
                            await asyncio.sleep(30)
                else:
                    async for _ in chunks:
                        got.set()
                        await asyncio.sleep(30)

            task = asyncio.ensure_future(reader())
            await asyncio.wait_for(got.wait(), 5)
            assert connections_in_use(videos) == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            del task
            if not closing:
                # The finalizer closes each layer of the stream in turn; how many
                # loop turns that takes varies with the Python version.
                for turn in range(200):
                    if connections_in_use(videos) == 0:
                        break
                    if turn == 20:
                        gc.collect()  # a traceback cycle may still hold the generator
                    await asyncio.sleep(0)
            await self._check_pool_and_reuse(slow_api, videos)

    async def test_wait(self, slow_api: FakeVideosAPI) -> None:
        """wait(), cancelled while a poll is in flight."""
        video_id = slow_api.add_videos({"status": "in_progress"})[0]["id"]
        slow_api.inject(Fault(delay=30), times=1, method="GET")
        async with slow_api.client() as videos:
            await cancel_when_busy(
                videos, videos.wait(video_id), busy=lambda: len(slow_api.requests) >= 1
            )
            await self._check_pool_and_reuse(slow_api, videos)

    async def test_wait_many(self, slow_api: FakeVideosAPI) -> None:
        """wait_many() over 40 jobs, cancelled with polls in flight and others sleeping."""
        ids = [job["id"] for job in slow_api.add_videos(*({"status": "queued"} for _ in range(40)))]
        slow_api.inject(Fault(delay=30), times=8, method="GET")
        results: list[WaitResult] = []

        async def gather() -> None:
            async for result in videos.wait_many(ids, concurrency=8):
                results.append(result)

        async with slow_api.client() as videos:
            await cancel_when_busy(videos, gather(), busy=lambda: len(slow_api.requests) >= 8)
            assert results == []
            await self._check_pool_and_reuse(slow_api, videos)
        # Every poller task is gone, not left running against a closed client.
        await asyncio.sleep(0)
        pollers = [
            t for t in asyncio.all_tasks() if t.get_coro().__qualname__.startswith("wait_many.")
        ]
        assert pollers == []

    async def test_breaking_out_of_wait_many(self, slow_api: FakeVideosAPI) -> None:
        """Leaving wait_many after the first result stops the other polls."""
        done = slow_api.seed(1)
        ids = done + [j["id"] for j in slow_api.add_videos(*({"status": "queued"},) * 10)]
        async with slow_api.client() as videos:
            before = asyncio.all_tasks()
            first: list[Video | None] = []
            results = videos.wait_many(ids)
            async for result in results:
                first.append(result.video)
                break
            await results.aclose()  # type: ignore[attr-defined]
            assert [v.id for v in first if v] == done
            # Nothing is left that could poll.
            await until(lambda: not tasks_started_since(before), "the pollers ending")
            assert slow_api.in_flight == 0
            await self._check_pool_and_reuse(slow_api, videos)
