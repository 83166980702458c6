"""The fake is a drop-in for users of the official ``openai`` client.

Each test drives ``FakeVideosAPI`` with ``openai.AsyncOpenAI(base_url=fake.base_url,
api_key=fake.api_key).videos``, over real HTTP on loopback, as a user of that client
would in their own tests. ``openai`` comes with the test extra; without it (or with a
release that has no ``videos`` resource) these tests skip, saying why.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from typing import Any

import pytest

from asyncvideos.testing import FakeVideosAPI, Fault

if importlib.util.find_spec("openai") is None:
    pytest.skip(
        "the official openai client is not installed (pip install -e '.[test]' brings it)",
        allow_module_level=True,
    )
import openai

if not hasattr(openai.AsyncOpenAI, "videos"):
    pytest.skip(
        f"openai {openai.__version__} has no videos resource (2.2 or newer has)",
        allow_module_level=True,
    )

# openai warns on every Videos call that OpenAI's hosted Sora API shuts down in 2026;
# the fake (and any gateway) is not that API.
pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")

MP4 = b"\x00\x00\x00\x18ftypmp42" + bytes(64)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(32)


@pytest.fixture
async def fake() -> AsyncIterator[FakeVideosAPI]:
    """Jobs that finish in about 60 ms of real time."""
    async with FakeVideosAPI(speed=100.0, poll_after_ms=10) as api:
        yield api


@pytest.fixture
async def videos(fake: FakeVideosAPI) -> AsyncIterator[Any]:
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key=fake.api_key) as client:
        yield client.videos


class TestJobs:
    async def test_create_then_retrieve(self, fake: FakeVideosAPI, videos: Any) -> None:
        created = await videos.create(prompt="a paper boat", model="sora-2", seconds="8")
        assert (created.status, created.seconds, created.model) == ("queued", "8", "sora-2")
        again = await videos.retrieve(created.id)
        assert again.id == created.id
        sent = fake.requests[0].json or fake.requests[0].form  # releases differ
        assert sent == {"prompt": "a paper boat", "model": "sora-2", "seconds": "8"}

    async def test_create_with_a_file_reference(self, fake: FakeVideosAPI, videos: Any) -> None:
        created = await videos.create(prompt="p", input_reference=("first.png", PNG, "image/png"))
        assert created.status == "queued"
        form = fake.requests[0].form
        assert form is not None
        assert form["input_reference"]["filename"] == "first.png"

    async def test_create_and_poll(self, videos: Any) -> None:
        done = await videos.create_and_poll(prompt="a paper boat", poll_interval_ms=10)
        assert (done.status, done.progress) == ("completed", 100)

    async def test_poll_follows_the_fakes_progress(self, fake: FakeVideosAPI, videos: Any) -> None:
        created = await videos.create(prompt="p")
        done = await videos.poll(created.id, poll_interval_ms=10)
        assert done.status == "completed"
        assert len(fake.requests) >= 3  # the create, then polls until it finished

    async def test_remix(self, fake: FakeVideosAPI, videos: Any) -> None:
        (source,) = fake.seed(1)
        remixed = await videos.remix(source, prompt="now in winter")
        assert remixed.remixed_from_video_id == source
        assert remixed.prompt == "now in winter"

    async def test_delete(self, fake: FakeVideosAPI, videos: Any) -> None:
        (video_id,) = fake.seed(1)
        deleted = await videos.delete(video_id)
        assert (deleted.id, deleted.deleted) == (video_id, True)
        assert video_id not in fake.videos

    async def test_errors_are_openais_typed_errors(self, videos: Any) -> None:
        with pytest.raises(openai.NotFoundError) as caught:
            await videos.retrieve("video_missing")
        assert caught.value.code == "video_not_found"
        assert caught.value.request_id is not None
        with pytest.raises(openai.BadRequestError) as refused:
            await videos.create(prompt="p", seconds="5")
        assert refused.value.param == "seconds"

    async def test_a_429_is_retried_at_the_fakes_word(
        self, fake: FakeVideosAPI, videos: Any
    ) -> None:
        (video_id,) = fake.seed(1)
        fake.inject(Fault(status=429, headers={"retry-after-ms": "10"}), times=1)
        assert (await videos.retrieve(video_id)).id == video_id
        assert len(fake.requests) == 2


class TestListing:
    async def test_one_page(self, fake: FakeVideosAPI, videos: Any) -> None:
        ids = fake.seed(25)
        page = await videos.list(limit=10, order="asc")
        assert [video.id for video in page.data] == ids[:10]
        assert page.has_more is True

    async def test_every_page(self, fake: FakeVideosAPI, videos: Any) -> None:
        """openai's paginator follows last_id until has_more is false: each job once."""
        ids = fake.seed(25)
        listed = [video.id async for video in videos.list(limit=10, order="asc")]
        assert listed == ids
        afters = [r.query.get("after") for r in fake.requests]
        assert afters == [None, ids[9], ids[19]]

    async def test_limit_zero_is_refused(self, fake: FakeVideosAPI, videos: Any) -> None:
        """Not a page of none that says has_more with no cursor (the paginator would loop)."""
        fake.seed(1)
        with pytest.raises(openai.BadRequestError) as caught:
            await videos.list(limit=0)
        assert caught.value.param == "limit"


class TestContent:
    async def test_download_content(self, fake: FakeVideosAPI, videos: Any) -> None:
        (video_id,) = fake.seed(1)
        video = await videos.download_content(video_id)
        assert video.content == fake.content_bytes(video_id)
        thumbnail = await videos.download_content(video_id, variant="thumbnail")
        assert thumbnail.content == fake.content_bytes(video_id, "thumbnail")
        assert thumbnail.response.headers["content-type"] == "image/webp"

    async def test_streamed_download(self, fake: FakeVideosAPI, videos: Any) -> None:
        (video_id,) = fake.seed(1)
        async with videos.with_streaming_response.download_content(video_id) as response:
            body = b"".join([chunk async for chunk in response.iter_bytes()])
        assert body == fake.content_bytes(video_id)

    async def test_content_of_a_job_not_done_is_a_404(
        self, fake: FakeVideosAPI, videos: Any
    ) -> None:
        created = await videos.create(prompt="p")
        with pytest.raises(openai.NotFoundError) as caught:
            await videos.download_content(created.id)
        assert caught.value.code == "video_not_ready"
