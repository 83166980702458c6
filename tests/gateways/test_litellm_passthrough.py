"""What gateways need from the client (issue 11), through the LiteLLM proxy: raw
responses, ``extra_body``, and the request-id and ``x-should-retry`` fallbacks."""

from __future__ import annotations

import pytest
from litellm_support import require_litellm, upstream_id

from asyncvideos import AsyncVideos, BadRequestError, InternalServerError, Video
from asyncvideos.testing import FakeVideosAPI, Fault

require_litellm()
pytestmark = pytest.mark.asyncio(loop_scope="session")

MODEL = "sora-2"


class TestRawResponses:
    async def test_retrieve_raw(self, videos: AsyncVideos) -> None:
        """A raw retrieve exposes LiteLLM's headers; the request id is its call id (a
        success carries neither x-request-id nor request-id)."""
        created = await videos.create("raw", model=MODEL)
        raw = await videos.with_raw_response.retrieve(created.id)
        assert raw.status_code == 200
        assert raw.headers["x-litellm-version"]
        assert raw.request_id == raw.headers["x-litellm-call-id"]
        assert raw.retries == 0
        video = raw.parse()
        assert isinstance(video, Video)
        assert video.id == created.id

    async def test_create_raw(self, videos: AsyncVideos, upstream: FakeVideosAPI) -> None:
        """A raw create gives the job and LiteLLM's cost and model headers."""
        raw = await videos.with_raw_response.create("raw create", model=MODEL)
        assert raw.status_code == 200
        assert raw.headers["x-litellm-model-group"] == MODEL
        assert raw.request_id == raw.headers["x-litellm-call-id"]
        assert upstream_id(raw.parse().id) in upstream.videos

    async def test_content_raw_has_no_request_id(
        self, videos: AsyncVideos, upstream: FakeVideosAPI
    ) -> None:
        """LiteLLM's content answers carry no request id header of any kind."""
        created = await videos.create_and_wait("raw content", model=MODEL, poll_interval=0.05)
        raw = await videos.with_raw_response.download_content(created.id)
        assert raw.status_code == 200
        assert raw.headers["content-type"] == "video/mp4"
        assert raw.request_id is None
        assert raw.parse() == upstream.content_bytes(upstream_id(created.id), "video")

    async def test_list_page_raw(self, videos: AsyncVideos) -> None:
        """A raw page (with the provider header) has LiteLLM's call id as request id."""
        raw = await videos.with_raw_response.list_page(
            extra_headers={"custom-llm-provider": "hosted_vllm"}
        )
        assert raw.status_code == 200
        assert raw.request_id == raw.headers["x-litellm-call-id"]
        assert raw.parse().data


class TestExtraBody:
    async def test_json_create_extra_body_reaches_upstream(
        self, videos: AsyncVideos, upstream: FakeVideosAPI
    ) -> None:
        """LiteLLM forwards unknown body fields upstream (as form fields); the fake
        rejects them by name, which proves they arrived."""
        with pytest.raises(BadRequestError) as caught:
            await videos.create("extra", model=MODEL, extra_body={"custom_field": "x"})
        assert "custom_field" in caught.value.message
        assert upstream.requests[-1].form == {
            "model": MODEL,
            "prompt": "extra",
            "custom_field": "x",
        }

    async def test_multipart_create_extra_body_reaches_upstream(
        self, videos: AsyncVideos, upstream: FakeVideosAPI
    ) -> None:
        """``extra_body`` on a create with a file becomes extra form fields."""
        with pytest.raises(BadRequestError):
            await videos.create(
                "extra with file",
                model=MODEL,
                input_reference=b"\x89PNG\r\n\x1a\n" + bytes(64),
                extra_body={"custom_field": "y"},
            )
        form = upstream.requests[-1].form
        assert form is not None
        assert form["custom_field"] == "y"


class TestFallbacks:
    async def test_error_request_id_falls_back(
        self, videos: AsyncVideos, upstream: FakeVideosAPI
    ) -> None:
        """Behind LiteLLM an error's request id is the upstream's, sent as request-id."""
        created = await videos.create("request id", model=MODEL)
        upstream.inject(
            Fault(status=503, headers={"x-request-id": "req_upstream_42"}), times=1, method="GET"
        )
        with pytest.raises(InternalServerError) as caught:
            await videos.retrieve(created, max_retries=0)
        assert caught.value.request_id == "req_upstream_42"
        assert "req_upstream_42" in str(caught.value)

    async def test_should_retry_false_is_read_behind_litellm(
        self, videos: AsyncVideos, upstream: FakeVideosAPI
    ) -> None:
        """An upstream ``x-should-retry: false`` (arriving as llm_provider-x-should-retry)
        stops the client's retries of a GET that would otherwise be retried."""
        created = await videos.create("should retry", model=MODEL)
        upstream.clear_requests()
        upstream.inject(
            Fault(status=503, headers={"x-should-retry": "false"}), times=3, method="GET"
        )
        with pytest.raises(InternalServerError) as caught:
            await videos.retrieve(created, max_retries=2)
        assert caught.value.retries == 0
        assert len(upstream.requests) == 1
