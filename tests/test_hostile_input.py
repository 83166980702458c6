"""Hostile and wrong input is refused before any I/O, or sent exactly as meant.

Ids are the one piece of caller input that lands in a URL path, so they get a
property-based test: any string either fails the argument check (no request is
made) or travels as exactly one percent-encoded path segment that the server
decodes back to the same string. Every other bad argument is in the table of
``tests/test_arguments.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from asyncvideos import AsyncVideos, NotFoundError
from asyncvideos.testing import FakeVideosAPI

# Every async test here shares the module's event loop with the shared fake.
in_module_loop = pytest.mark.asyncio(loop_scope="module")

T = TypeVar("T")

# One fake server and one client for the whole module, so hypothesis examples are cheap.


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared_api() -> AsyncIterator[FakeVideosAPI]:
    async with FakeVideosAPI(content_sizes={"thumbnail": 64}) as fake:
        yield fake


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared_client(shared_api: FakeVideosAPI) -> AsyncIterator[AsyncVideos]:
    async with shared_api.client(max_retries=0) as videos:
        yield videos


# Every unicode category, including surrogates (Cs): a lone surrogate has no UTF-8
# form, so it cannot be sent in a URL at all and must be refused by the argument
# check rather than blow up in the encoder. Path-significant pieces are mixed in.
_PIECES = st.sampled_from(["/", "?", "#", "%", "%2F", "..", ".", " ", "\\", ";", "&", "=", "+"])
IDS = st.lists(st.one_of(st.text(max_size=12), _PIECES), max_size=6).map("".join)

# As many examples as the profile says (tests/conftest.py).
HYPOTHESIS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


async def _outcome(call: Awaitable[T]) -> tuple[T | None, Exception | None]:
    """The result or the exception of a call, for asserting outside an except block."""
    try:
        return await call, None
    except Exception as error:
        return None, error


@in_module_loop
@HYPOTHESIS
@given(video_id=IDS)
@example(video_id="a/b")
@example(video_id="../characters/char_1")
@example(video_id="..")
@example(video_id="%2e%2e")
@example(video_id="x?limit=1#frag")
@example(video_id="\ud800")
@example(video_id="\x00")
@example(video_id=" ")
@example(video_id="🎬 ünïcødé")
@example(video_id="characters")
async def test_any_id_is_refused_or_sent_as_one_segment(
    shared_api: FakeVideosAPI, shared_client: AsyncVideos, video_id: str
) -> None:
    """An id is refused before I/O or reaches exactly /v1/videos/{id} and round-trips."""
    shared_api.clear_requests()
    try:
        stored = shared_api.add_videos({"id": video_id})
    except (UnicodeError, ValueError):
        stored = []  # the fake cannot even hold it; the client must still refuse it
    try:
        video, error = await _outcome(shared_client.retrieve(video_id))
    finally:
        if stored:
            shared_api.remove_video(video_id)
    if error is not None:
        assert isinstance(error, (ValueError, TypeError)), repr(error)
        assert "video" in str(error)
        assert shared_api.requests == []
        return
    assert video is not None
    assert video.id == video_id
    (request,) = shared_api.requests
    assert request.method == "GET"
    assert request.path == "/v1/videos/" + video_id
    segments = request.raw_path.split("/")
    assert segments[:3] == ["", "v1", "videos"]
    assert len(segments) == 4, request.raw_path  # the id is exactly one segment
    assert request.query == {}  # '?' and '#' never start a query or fragment


@in_module_loop
@HYPOTHESIS
@given(video_id=IDS)
@example(video_id="characters")
async def test_ids_keep_their_route_for_sub_resources(
    shared_api: FakeVideosAPI, shared_client: AsyncVideos, video_id: str
) -> None:
    """``/content`` after any id stays that id's content route (or the id is refused)."""
    shared_api.clear_requests()
    data, error = await _outcome(shared_client.download_content(video_id, variant="thumbnail"))
    if isinstance(error, (ValueError, TypeError)):
        assert "video" in str(error)
        assert shared_api.requests == []
        return
    # No such job: the fake's own 404, from the content route, not "Invalid URL".
    assert isinstance(error, NotFoundError), repr(error)
    assert error.code == "video_not_found"
    assert data is None
    (request,) = shared_api.requests
    segments = request.raw_path.split("/")
    assert len(segments) == 5
    assert segments[4] == "content"
    assert request.path == f"/v1/videos/{video_id}/content"
