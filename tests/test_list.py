"""Listing: one page, every page lazily, page by page, and resuming after a failure."""

from __future__ import annotations

import contextlib

import pytest

from asyncvideos import (
    AsyncVideos,
    InternalServerError,
    PaginationError,
    Video,
    VideoPage,
)
from asyncvideos.testing import FakeVideosAPI, Fault


def listing_requests(api: FakeVideosAPI) -> list[dict[str, str]]:
    return [r.query for r in api.requests if r.path == "/v1/videos" and r.method == "GET"]


class TestOnePage:
    async def test_five_most_recent(self, client: AsyncVideos, api: FakeVideosAPI) -> None:
        """Get-Video -Limit 5 -Order desc lists the five most recent jobs."""
        ids = api.seed(12)
        got = [v.id async for v in client.list(limit=5, order="desc")]
        assert got == ids[::-1][:5]
        assert listing_requests(api) == [{"limit": "5", "order": "desc"}]

    async def test_defaults_follow_psopenai(self, client: AsyncVideos, api: FakeVideosAPI) -> None:
        """Without arguments: 20 jobs, oldest first, one request."""
        ids = api.seed(25)
        got = [v.id async for v in client.list()]
        assert got == ids[:20]
        assert listing_requests(api) == [{"limit": "20", "order": "asc"}]

    async def test_a_bare_list_hints_once_that_there_are_more(
        self, client: AsyncVideos, api: FakeVideosAPI, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Someone used to openai-python's list() is told, once, that it was one page."""
        api.seed(25)
        for _ in range(2):
            assert len([v async for v in client.list()]) == 20
        hints = [r for r in caplog.records if "list() gave one page" in r.getMessage()]
        assert [r.levelname for r in hints] == ["WARNING"]
        assert "20 jobs" in hints[0].getMessage()
        assert "all=True" in hints[0].getMessage()

    @pytest.mark.parametrize("how", ["limit", "all", "short", "broken"])
    async def test_no_hint_when_one_page_is_meant_or_all_there_is(
        self, client: AsyncVideos, api: FakeVideosAPI, caplog: pytest.LogCaptureFixture, how: str
    ) -> None:
        """An explicit limit=, all=True, a last page, or a loop left early: no hint."""
        api.seed(25 if how != "short" else 5)
        if how == "limit":
            [v async for v in client.list(limit=20)]
        elif how == "all":
            [v async for v in client.list(all=True)]
        elif how == "short":
            [v async for v in client.list()]
        else:
            async with contextlib.aclosing(client.list()) as videos:
                async for _ in videos:
                    break
        assert not [r for r in caplog.records if "list() gave one page" in r.getMessage()]

    async def test_list_page(self, client: AsyncVideos, api: FakeVideosAPI) -> None:
        """list_page returns the page with its cursors; after= continues from a cursor."""
        ids = api.seed(7)
        page = await client.list_page(limit=3)
        assert isinstance(page, VideoPage)
        assert [v.id for v in page.data] == ids[:3]
        assert (page.first_id, page.last_id, page.has_more) == (ids[0], ids[2], True)
        rest = await client.list_page(limit=100, after=page.last_id)
        assert [v.id for v in rest.data] == ids[3:]
        assert rest.has_more is False
        assert listing_requests(api)[-1] == {"limit": "100", "order": "asc", "after": ids[2]}

    async def test_nothing_fetched_before_iteration(
        self, client: AsyncVideos, api: FakeVideosAPI
    ) -> None:
        """Calling list() makes no request until the first item is asked for."""
        api.seed(3)
        iterator = client.list(all=True)
        single = client.list()
        assert not api.requests
        assert (await anext(iterator)).id
        assert len(api.requests) == 1
        await iterator.aclose()
        await single.aclose()


class TestAll:
    async def test_every_job_across_pages(self, client: AsyncVideos, api: FakeVideosAPI) -> None:
        """Get-Video -All lists every job by paging; pages of 100 by default."""
        ids = api.seed(250)
        got = [v.id async for v in client.list(all=True)]
        assert got == ids
        assert listing_requests(api) == [
            {"limit": "100", "order": "asc"},
            {"limit": "100", "order": "asc", "after": ids[99]},
            {"limit": "100", "order": "asc", "after": ids[199]},
        ]

    async def test_descending_with_limit(self, client: AsyncVideos, api: FakeVideosAPI) -> None:
        ids = api.seed(23)
        got = [v.id async for v in client.list(all=True, limit=10, order="desc")]
        assert got == ids[::-1]
        assert len(listing_requests(api)) == 3

    async def test_lazy_page_by_page(self, client: AsyncVideos, api: FakeVideosAPI) -> None:
        """The next page is fetched only when the current one is used up."""
        api.seed(30)
        iterator = client.list(all=True, limit=10)
        for _ in range(10):
            await anext(iterator)
        assert len(listing_requests(api)) == 1
        await anext(iterator)
        assert len(listing_requests(api)) == 2
        await iterator.aclose()

    async def test_break_makes_no_further_request(
        self, client: AsyncVideos, api: FakeVideosAPI
    ) -> None:
        """Breaking out of the loop stops it: no more requests, connection released."""
        api.seed(30)
        async for video in client.list(all=True, limit=10):
            if video.id:
                break
        assert len(listing_requests(api)) == 1
        session = client._transport._session
        assert session is not None
        assert session.connector is not None
        assert not session.connector._acquired

    async def test_empty(self, client: AsyncVideos, api: FakeVideosAPI) -> None:
        assert [v async for v in client.list(all=True)] == []
        assert len(api.requests) == 1

    async def test_resume_after_failure(self, client: AsyncVideos, api: FakeVideosAPI) -> None:
        """A page that fails after its retries raises with the cursor to resume from."""
        ids = api.seed(35)
        # The third listing request (page 2) fails for all of its attempts.
        api.inject(Fault(), times=1, path=r"/videos$")
        api.inject(Fault(), times=1, path=r"/videos$")
        api.inject(Fault(status=500), times=3, path=r"/videos$")
        seen: list[str] = []

        async def consume() -> None:
            async for video in client.list(all=True, limit=10):
                seen.append(video.id)

        with pytest.raises(InternalServerError) as info:
            await consume()
        assert seen == ids[:20]
        assert info.value.retries == 2
        assert info.value.resume_after == ids[19]
        seen += [v.id async for v in client.list(all=True, limit=10, after=info.value.resume_after)]
        assert seen == ids

    async def test_first_page_failure_resumes_from_start(
        self, client: AsyncVideos, api: FakeVideosAPI
    ) -> None:
        api.seed(3)
        api.inject(Fault(status=500), times=3)
        with pytest.raises(InternalServerError) as info:
            [v async for v in client.list(all=True)]
        assert info.value.resume_after is None

    async def test_cursor_from_last_item_when_last_id_missing(self, api: FakeVideosAPI) -> None:
        """A provider that omits last_id is followed by the last item's id."""
        ids = api.seed(3)
        page1 = {"object": "list", "data": [{"id": ids[0]}, {"id": ids[1]}], "has_more": True}
        api.inject(Fault(status=200, body=page1), times=1)
        async with api.client() as videos:
            got = [v.id async for v in videos.list(all=True, limit=2)]
        assert got == ids[:2] + ids[2:]
        assert listing_requests(api)[-1]["after"] == ids[1]

    @pytest.mark.parametrize(
        "page",
        [
            {"data": [], "has_more": True, "last_id": None},
            {"data": [{"id": "x"}], "has_more": True, "last_id": "x"},
        ],
    )
    async def test_no_way_forward(self, api: FakeVideosAPI, page: dict[str, object]) -> None:
        """has_more with no cursor, or the same cursor again, is a PaginationError."""
        api.inject(Fault(status=200, body=page), times=5)
        async with api.client() as videos:
            with pytest.raises(PaginationError) as info:
                [v async for v in videos.list(all=True, after="x")]
        assert info.value.resume_after == "x"
        assert len(listing_requests(api)) == 1

    async def test_cycle_is_caught(self, api: FakeVideosAPI) -> None:
        """A cursor that comes back after a detour is caught too."""
        a = {"data": [{"id": "b"}], "has_more": True, "last_id": "b"}
        b = {"data": [{"id": "a"}], "has_more": True, "last_id": "a"}
        api.inject(Fault(status=200, body=a), times=1)
        api.inject(Fault(status=200, body=b), times=1)
        api.inject(Fault(status=200, body=a), times=1)
        async with api.client() as videos:
            with pytest.raises(PaginationError):
                [v async for v in videos.list(all=True, after="a")]


class TestPages:
    async def test_page_by_page_checkpointing(
        self, client: AsyncVideos, api: FakeVideosAPI
    ) -> None:
        """pages() yields VideoPages; a saved last_id resumes the walk."""
        ids = api.seed(25)
        checkpoint = None
        async for page in client.pages(limit=10):
            checkpoint = page.last_id
            break
        assert checkpoint == ids[9]
        rest: list[Video] = []
        async for page in client.pages(limit=10, after=checkpoint):
            rest.extend(page.data)
        assert [v.id for v in rest] == ids[10:]

    async def test_same_arguments_as_list_all(
        self, client: AsyncVideos, api: FakeVideosAPI
    ) -> None:
        ids = api.seed(5)
        sizes = [len(page.data) async for page in client.pages(order="desc", limit=2)]
        assert sizes == [2, 2, 1]
        assert listing_requests(api)[0] == {"limit": "2", "order": "desc"}
        assert [v.id async for v in client.list(all=True, order="desc")] == ids[::-1]
