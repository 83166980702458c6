"""``list(all=True, prefetch=1)`` / ``pages(prefetch=1)``: one page of look-ahead, opt-in."""

from __future__ import annotations

import asyncio

import pytest
from conditions import tasks_started_since, until

from asyncvideos import AsyncVideos, InternalServerError
from asyncvideos.testing import FakeVideosAPI, Fault


def list_afters(api: FakeVideosAPI) -> list[str | None]:
    """The ``after`` of each list request the fake received, in order."""
    return [
        r.query.get("after") for r in api.requests if r.method == "GET" and r.path == "/v1/videos"
    ]


async def test_next_page_is_requested_while_the_current_one_is_consumed(
    api: FakeVideosAPI, client: AsyncVideos
) -> None:
    ids = api.seed(5)
    jobs = client.list(all=True, limit=2, prefetch=1)
    first = await anext(jobs)
    # Still on the first job of the first page: the second page is on its way.
    await until(lambda: len(list_afters(api)) == 2, "the second page's request")
    rest = [video.id async for video in jobs]
    assert [first.id, *rest] == ids
    assert list_afters(api) == [None, ids[1], ids[3]]


async def test_default_stays_lazy(api: FakeVideosAPI, client: AsyncVideos) -> None:
    ids = api.seed(5)
    jobs = client.list(all=True, limit=2)
    assert (await anext(jobs)).id == ids[0]
    before = asyncio.all_tasks()
    assert (await anext(jobs)).id == ids[1]
    # No look-ahead task was started, so no request can show later.
    assert tasks_started_since(before) == set()
    assert list_afters(api) == [None]
    await jobs.aclose()


async def test_breaking_out_cancels_the_pending_fetch(
    api: FakeVideosAPI, client: AsyncVideos
) -> None:
    api.seed(5)
    jobs = client.list(all=True, limit=2, prefetch=1)
    await anext(jobs)
    # The look-ahead was scheduled as the page was yielded and has not run yet.
    api.inject(Fault(delay=30.0), method="GET")
    await until(lambda: api.in_flight == 1, "the look-ahead reaching the server")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(jobs.aclose(), 5.0)
    assert loop.time() - started < 5.0
    assert len(list_afters(api)) == 2
    # The client is still usable: the cancelled request gave its connection back.
    assert (await client.list_page(limit=1)).data


async def test_breaking_out_of_a_for_loop_leaves_nothing_running(
    api: FakeVideosAPI, client: AsyncVideos
) -> None:
    api.seed(7)
    before = asyncio.all_tasks()
    pages = client.pages(limit=2, prefetch=1)
    async for page in pages:
        assert len(page.data) == 2
        look_ahead = [
            task
            for task in asyncio.all_tasks() - before
            if "_page_fetcher" in task.get_coro().__qualname__  # type: ignore[union-attr]
        ]
        break
    assert len(look_ahead) == 1
    await pages.aclose()
    assert all(task.done() for task in look_ahead)
    assert tasks_started_since(before) == set()
    assert len(list_afters(api)) <= 2


async def test_a_failed_look_ahead_surfaces_when_its_page_is_reached(
    api: FakeVideosAPI,
) -> None:
    ids = api.seed(5)
    async with api.client(max_retries=0) as client:
        jobs = client.list(all=True, limit=2, prefetch=1)
        assert (await anext(jobs)).id == ids[0]
        api.inject(Fault(status=500), method="GET")
        await until(lambda: len(list_afters(api)) == 2, "the failed look-ahead")
        # The rest of the current page is still handed out.
        assert (await anext(jobs)).id == ids[1]
        with pytest.raises(InternalServerError) as caught:
            await anext(jobs)
        assert caught.value.resume_after == ids[1]
        resumed = [v.id async for v in client.list(all=True, limit=2, after=ids[1])]
        assert resumed == ids[2:]


async def test_pages_with_prefetch_match_pages_without(
    api: FakeVideosAPI, client: AsyncVideos
) -> None:
    api.seed(9)
    lazy = [page async for page in client.pages(limit=4)]
    eager = [page async for page in client.pages(limit=4, prefetch=1)]
    assert eager == lazy
    assert [len(page.data) for page in eager] == [4, 4, 1]


def test_prefetch_needs_all(api: FakeVideosAPI, client: AsyncVideos) -> None:
    """A single page has nothing to look ahead to: asking for it is an error, not ignored."""
    with pytest.raises(ValueError, match="prefetch"):
        client.list(prefetch=1)
    assert api.requests == []
