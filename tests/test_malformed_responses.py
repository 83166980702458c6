"""A response the client cannot understand raises a typed error: never a hang,
never a bare ``KeyError``/``RecursionError``, never a silently wrong answer.

Bodies are crafted with ``Fault(status=..., body=..., headers=...)`` and served
by the fake over real HTTP.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from asyncvideos import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    AsyncVideos,
    AsyncVideosError,
    BadRequestError,
    InternalServerError,
    PaginationError,
)
from asyncvideos.testing import FakeVideosAPI, Fault

JSON = {"Content-Type": "application/json"}
# A hang is a failure too: every call here must finish well within this.
LIMIT = 10.0


def ok(body: bytes | str | dict[str, Any], headers: dict[str, str] | None = None) -> Fault:
    """A 200 whose body is ``body`` instead of the endpoint's answer."""
    return Fault(status=200, body=body, headers=headers if headers is not None else JSON)


def video(video_id: str) -> dict[str, Any]:
    return {"id": video_id, "object": "video", "status": "completed", "created_at": 1}


def page(ids: list[str], *, has_more: bool, last_id: str | None = "auto") -> dict[str, Any]:
    return {
        "object": "list",
        "data": [video(i) for i in ids],
        "first_id": ids[0] if ids else None,
        "last_id": (ids[-1] if ids else None) if last_id == "auto" else last_id,
        "has_more": has_more,
    }


@pytest.fixture
async def videos(api: FakeVideosAPI) -> AsyncIterator[AsyncVideos]:
    """A client that does not retry, so each crafted answer is met exactly once."""
    async with api.client(max_retries=0) as client:
        yield client


async def bounded(awaitable: Any) -> Any:
    return await asyncio.wait_for(awaitable, LIMIT)


BAD_VIDEO_BODIES = [
    pytest.param(ok("hello, not json", {"Content-Type": "text/plain"}), id="text"),
    pytest.param(ok(b"", JSON), id="empty-body"),
    pytest.param(ok(b'{"id": "vid', JSON), id="json-cut-short"),
    pytest.param(ok(b"\xff\xfe\x00garbage", JSON), id="not-utf8"),
    pytest.param(ok(b"[" * 200_000 + b"]" * 200_000, JSON), id="nested-200k-deep"),
    pytest.param(ok(b"[]", JSON), id="a-list"),
    pytest.param(ok(b'"video"', JSON), id="a-string"),
    pytest.param(ok(b"null", JSON), id="null"),
    pytest.param(ok({"object": "video", "status": "completed"}), id="video-without-id"),
    pytest.param(ok({"id": 42, "object": "video"}), id="numeric-id"),
    pytest.param(ok({"id": "vid", "created_at": "yesterday"}), id="bad-timestamp"),
    pytest.param(ok({"id": "vid", "created_at": 1e300}), id="timestamp-out-of-range"),
    pytest.param(ok(b'{"id": "vid", "progress": Infinity}', JSON), id="progress-infinity"),
    pytest.param(ok(b'{"id": "vid", "progress": NaN}', JSON), id="progress-nan"),
    pytest.param(ok({"id": "vid", "progress": [1]}), id="progress-list"),
    pytest.param(ok({"id": "vid", "status": {"nested": True}}), id="status-object"),
    pytest.param(ok({"id": "vid", "error": 7}), id="error-number"),
]


@pytest.mark.parametrize("fault", BAD_VIDEO_BODIES)
async def test_unreadable_video_raises_validation_error(
    api: FakeVideosAPI, videos: AsyncVideos, fault: Fault
) -> None:
    """retrieve() of a body that is not a video raises APIResponseValidationError."""
    api.inject(fault)
    with pytest.raises(APIResponseValidationError) as caught:
        await bounded(videos.retrieve("vid"))
    assert caught.value.status_code in (None, 200)
    assert len(str(caught.value)) < 2_000  # a message, not the whole body
    assert len(api.requests) == 1


BAD_PAGE_BODIES = [
    pytest.param(ok({"object": "list"}), id="data-missing"),
    pytest.param(ok({"object": "list", "data": None, "has_more": False}), id="data-null"),
    pytest.param(ok({"object": "list", "data": {"0": video("a")}}), id="data-object"),
    pytest.param(ok({"data": [video("a"), "b"], "has_more": False}), id="item-a-string"),
    pytest.param(ok({"data": [video("a"), {"object": "video"}]}), id="item-without-id"),
    pytest.param(ok({"data": [], "has_more": "yes"}), id="has-more-a-string"),
    pytest.param(ok(b"[]", JSON), id="a-list"),
]


@pytest.mark.parametrize("fault", BAD_PAGE_BODIES)
async def test_unreadable_page_raises_validation_error(
    api: FakeVideosAPI, videos: AsyncVideos, fault: Fault
) -> None:
    """list_page() and list(all=True) of a body that is not a page raise, yielding nothing."""
    api.inject(fault, times=2)
    with pytest.raises(APIResponseValidationError):
        await bounded(videos.list_page())
    yielded: list[str] = []

    async def walk() -> None:
        async for item in videos.list(all=True):
            yielded.append(item.id)

    with pytest.raises(APIResponseValidationError) as caught:
        await bounded(walk())
    assert yielded == []
    assert caught.value.resume_after is None


class TestPagination:
    async def test_has_more_with_an_empty_page_and_no_cursor(
        self, api: FakeVideosAPI, videos: AsyncVideos
    ) -> None:
        """``has_more: true`` on an empty page with no cursor is a PaginationError, not a loop."""
        api.inject(ok(page([], has_more=True)), times=1000)
        with pytest.raises(PaginationError) as caught:
            await bounded(_ids(videos))
        assert caught.value.resume_after is None
        assert len(api.requests) == 1

    async def test_a_cursor_that_repeats_itself(
        self, api: FakeVideosAPI, videos: AsyncVideos
    ) -> None:
        """A server that ignores ``after`` (same page again) raises; nothing is yielded twice."""
        api.inject(ok(page(["a", "b"], has_more=True)), times=1000)
        yielded: list[str] = []
        with pytest.raises(PaginationError) as caught:
            await bounded(_ids(videos, into=yielded))
        assert yielded == ["a", "b"]
        assert caught.value.resume_after == "b"
        assert len(api.requests) == 2

    async def test_a_cursor_cycle_over_several_pages(
        self, api: FakeVideosAPI, videos: AsyncVideos
    ) -> None:
        """Cursors that come back round (a, b, a) raise; nothing is yielded twice."""
        api.inject(ok(page(["a"], has_more=True)), times=1)
        api.inject(ok(page(["b"], has_more=True)), times=1)
        api.inject(ok(page(["a"], has_more=True)), times=1000)
        yielded: list[str] = []
        with pytest.raises(PaginationError):
            await bounded(_ids(videos, into=yielded))
        assert yielded == ["a", "b"]
        assert len(yielded) == len(set(yielded))
        assert len(api.requests) == 3

    async def test_last_id_missing_falls_back_to_the_last_item(
        self, api: FakeVideosAPI, videos: AsyncVideos
    ) -> None:
        """A provider that leaves ``last_id`` out still pages correctly (not malformed)."""
        ids = api.seed(5)
        body = page(ids[:3], has_more=True, last_id=None)
        api.inject(ok(body), times=1)
        assert await bounded(_ids(videos)) == ids
        assert api.requests[1].query["after"] == ids[2]


async def _ids(videos: AsyncVideos, *, into: list[str] | None = None) -> list[str]:
    collected = [] if into is None else into
    async for item in videos.list(all=True):
        collected.append(item.id)
    return collected


class TestContent:
    async def test_a_body_shorter_than_its_content_length(
        self, api: FakeVideosAPI, videos: AsyncVideos
    ) -> None:
        """download_content() of a body cut short raises APIConnectionError, not short bytes."""
        (video_id,) = api.seed(1)
        api.inject(Fault(truncate=True), path=r"/content$")
        with pytest.raises(APIConnectionError):
            await bounded(videos.download_content(video_id))

    async def test_iter_content_of_a_cut_body_without_retries(
        self, api: FakeVideosAPI, videos: AsyncVideos
    ) -> None:
        """iter_content() with no retry budget raises instead of ending early."""
        (video_id,) = api.seed(1)
        api.inject(Fault(truncate=True), path=r"/content$")
        received = bytearray()

        async def read() -> None:
            async for chunk in videos.iter_content(video_id):
                received.extend(chunk)

        with pytest.raises(APIConnectionError):
            await bounded(read())
        assert len(received) < len(api.content_bytes(video_id))

    async def test_a_cut_body_is_fetched_again_when_retries_allow(self, api: FakeVideosAPI) -> None:
        """The counterpart: with retries, the whole and exact body comes back."""
        (video_id,) = api.seed(1)
        api.inject(Fault(truncate=True), path=r"/content$")
        async with api.client(max_retries=1) as client:
            assert await client.download_content(video_id) == api.content_bytes(video_id)


ODD_ERRORS = [
    pytest.param(
        502,
        "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
        {"Content-Type": "text/html"},
        InternalServerError,
        "502 Bad Gateway",
        id="html-502",
    ),
    pytest.param(400, {"detail": "Not allowed"}, JSON, BadRequestError, "Not allowed", id="detail"),
    pytest.param(400, {"message": "Plain message"}, JSON, BadRequestError, "Plain", id="message"),
    pytest.param(400, {"error": "just a string"}, JSON, BadRequestError, "just a", id="error-str"),
    pytest.param(400, {"error": 12345}, JSON, BadRequestError, "12345", id="error-number"),
    pytest.param(400, b"", JSON, BadRequestError, "HTTP 400", id="empty"),
    pytest.param(418, b"\xff\xfe\xfa", {}, APIStatusError, "HTTP 418", id="binary"),
    pytest.param(
        400, b"[" * 200_000, JSON, BadRequestError, "HTTP 400", id="deeply-nested-json-error"
    ),
    pytest.param(
        500, "x" * 100_000, {"Content-Type": "text/plain"}, InternalServerError, "xxx", id="huge"
    ),
]


@pytest.mark.parametrize(("status", "body", "headers", "error", "text"), ODD_ERRORS)
async def test_error_bodies_that_are_not_openai_shaped(
    api: FakeVideosAPI,
    videos: AsyncVideos,
    status: int,
    body: Any,
    headers: dict[str, str],
    error: type[AsyncVideosError],
    text: str,
) -> None:
    """Any error body gives the status's typed error with a short, telling message."""
    api.inject(Fault(status=status, body=body, headers=headers))
    with pytest.raises(error) as caught:
        await bounded(videos.retrieve("vid"))
    assert isinstance(caught.value, APIStatusError)
    assert caught.value.status_code == status
    message = str(caught.value)
    assert text in message
    assert f"Error code: {status}" in message
    assert len(message) < 1_000
    assert caught.value.request_id  # the fake's x-request-id is kept for support


async def test_an_openai_shaped_error_keeps_its_fields(
    api: FakeVideosAPI, videos: AsyncVideos
) -> None:
    """The normal case, for contrast: message, code and param come from the body."""
    body = {"error": {"message": "Bad size", "type": "invalid_request_error", "param": "size"}}
    api.inject(Fault(status=400, body=body))
    with pytest.raises(BadRequestError) as caught:
        await videos.retrieve("vid")
    assert caught.value.message == "Bad size"
    assert caught.value.param == "size"
    assert json.loads(json.dumps(caught.value.body)) == body
