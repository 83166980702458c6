"""What gateways need passed through, and what callers need back from a response.

``extra_body`` on every POST, raw responses with their headers and request id,
request ids and retry hints under a gateway's header names, an ``on_retry``
hook, and unknown keywords reported against the public method.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from asyncvideos import (
    AsyncVideos,
    InternalServerError,
    NotFoundError,
    RawResponse,
    RetryDetails,
    Video,
    VideoFailedError,
)
from asyncvideos.testing import FakeVideosAPI, Fault

KEY = "sk-passthrough-0123456789"


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[str, list[web.Request]]]:
    """A gateway-like server: LiteLLM's header names, no OpenAI ones."""
    seen: list[web.Request] = []
    failures = {"count": 0}

    async def job(request: web.Request) -> web.Response:
        seen.append(request)
        if request.match_info["id"] == "flaky" and failures["count"] < 1:
            failures["count"] += 1
            return web.json_response(
                {"error": {"message": "upstream hiccup", "code": "500"}},
                status=500,
                headers={"llm_provider-x-should-retry": "false", "x-litellm-call-id": "call-1"},
            )
        if request.match_info["id"] == "missing":
            return web.json_response(
                {"error": {"message": "not found", "code": "404"}},
                status=404,
                headers={"request-id": "req-generic", "x-litellm-call-id": "call-2"},
            )
        return web.json_response(
            {"id": request.match_info["id"], "object": "video", "status": "queued"},
            headers={"x-litellm-call-id": "call-3", "llm_provider-x-request-id": "up-3"},
        )

    app = web.Application()
    app.router.add_get("/v1/videos/{id}", job)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1", seen
    finally:
        await runner.cleanup()


#: The fake answers like OpenAI (400 for an unknown field), so these tests have it
#: answer as a tolerant gateway would, with a finished job, and look at what it got.
ACCEPTED = Fault(status=200, body={"id": "video_gw", "object": "video", "status": "completed"})


class TestExtraBody:
    async def test_json_posts_merge_extra_body(
        self, client: AsyncVideos, api: FakeVideosAPI
    ) -> None:
        api.inject(ACCEPTED, times=2)
        video = await client.create("a cat", extra_body={"custom_llm_provider": "vertex"})
        await client.remix(api.seed(1, status="completed")[0], "again", extra_body={"n": 2})
        first, second = (r for r in api.requests if r.method == "POST")
        assert first.json == {"prompt": "a cat", "custom_llm_provider": "vertex"}
        assert second.json == {"prompt": "again", "n": 2}
        assert video.status == "completed"

    async def test_multipart_posts_add_fields(
        self, client: AsyncVideos, api: FakeVideosAPI
    ) -> None:
        api.inject(ACCEPTED)
        png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
        await client.create(
            "a cat",
            input_reference=png,
            extra_body={"flag": True, "n": 3, "meta": {"a": [1]}, "none": None, "s": "x"},
        )
        (sent,) = api.requests
        assert sent.form is not None
        assert sent.form["flag"] == "true"
        assert sent.form["n"] == "3"
        assert json.loads(sent.form["meta"]) == {"a": [1]}
        assert sent.form["s"] == "x"

    async def test_create_and_wait_passes_it_to_the_create(
        self, client: AsyncVideos, api: FakeVideosAPI
    ) -> None:
        api.inject(ACCEPTED)
        video = await client.create_and_wait("a cat", extra_body={"tier": "fast"}, wait_timeout=30)
        assert api.requests[0].json == {"prompt": "a cat", "tier": "fast"}
        assert video.id == "video_gw"

    @pytest.mark.parametrize(
        ("value", "error"),
        [
            ("x", TypeError),
            ({1: "x"}, TypeError),
            ({"a": object()}, TypeError),
            ({"": 1}, TypeError),
        ],
    )
    async def test_bad_extra_body_fails_before_any_request(
        self, client: AsyncVideos, api: FakeVideosAPI, value: object, error: type[Exception]
    ) -> None:
        with pytest.raises(error, match="extra_body"):
            await client.create("a cat", extra_body=value)  # type: ignore[arg-type]
        assert api.requests == []

    async def test_a_get_does_not_take_extra_body(
        self, client: AsyncVideos, api: FakeVideosAPI
    ) -> None:
        """An unknown keyword names the public method, not a private helper."""
        with pytest.raises(TypeError, match=r"retrieve\(\) got an unexpected keyword .*extra_body"):
            await client.retrieve("video_1", extra_body={"a": 1})  # type: ignore[call-arg]
        with pytest.raises(TypeError, match=r"create\(\) got an unexpected keyword .*extra_bodyy"):
            await client.create("x", extra_bodyy={})  # type: ignore[call-arg]
        assert api.requests == []


class TestRawResponses:
    async def test_every_request_method_has_a_raw_form(
        self, client: AsyncVideos, api: FakeVideosAPI
    ) -> None:
        video_id = api.seed(1, status="completed")[0]
        raw = await client.with_raw_response.retrieve(video_id)
        assert isinstance(raw, RawResponse)
        assert raw.status_code == 200
        assert raw.request_id == api.requests[-1].header("x-request-id") or raw.request_id
        assert raw.headers["content-type"].startswith("application/json")
        assert raw.retries == 0
        parsed = raw.parse()
        assert isinstance(parsed, Video)
        assert parsed.id == video_id
        page = await client.with_raw_response.list_page(limit=5)
        assert page.parse().data[0].id == video_id
        created = await client.with_raw_response.create("a cat")
        assert created.parse().status == "queued"
        content = await client.with_raw_response.download_content(video_id)
        assert content.headers["content-type"] == "video/mp4"
        assert isinstance(content.parse(), bytes)
        deleted = await client.with_raw_response.delete(video_id)
        assert deleted.parse().deleted is True

    async def test_the_raw_form_counts_retries(
        self, client: AsyncVideos, api: FakeVideosAPI
    ) -> None:
        video_id = api.seed(1)[0]
        api.inject(Fault(status=503), times=2)
        raw = await client.with_raw_response.retrieve(video_id)
        assert raw.retries == 2
        assert raw.parse().id == video_id

    async def test_the_fake_sends_a_request_id(
        self, client: AsyncVideos, api: FakeVideosAPI
    ) -> None:
        video_id = api.seed(1)[0]
        raw = await client.with_raw_response.retrieve(video_id)
        assert raw.request_id
        assert raw.request_id == raw.headers["x-request-id"]


class TestGatewayHeaders:
    async def test_request_ids_fall_back_to_gateway_headers(
        self, gateway: tuple[str, list[web.Request]]
    ) -> None:
        base_url, _ = gateway
        async with AsyncVideos(api_key=KEY, base_url=base_url, max_retries=0) as videos:
            with pytest.raises(NotFoundError) as caught:
                await videos.retrieve("missing")
            raw = await videos.with_raw_response.retrieve("video_1")
        assert caught.value.request_id == "req-generic"
        assert raw.request_id == "call-3"

    async def test_forwarded_should_retry_is_obeyed(
        self, gateway: tuple[str, list[web.Request]]
    ) -> None:
        """``llm_provider-x-should-retry: false`` stops the retry a 500 would get."""
        base_url, seen = gateway
        async with AsyncVideos(api_key=KEY, base_url=base_url, max_retries=3) as videos:
            with pytest.raises(InternalServerError) as caught:
                await videos.retrieve("flaky")
        assert len(seen) == 1
        assert caught.value.request_id == "call-1"


class TestOnRetry:
    async def test_on_retry_is_told_each_retry(self, api: FakeVideosAPI) -> None:
        video_id = api.seed(1)[0]
        api.inject(Fault(status=500), times=2)
        told: list[RetryDetails] = []
        async with api.client(on_retry=told.append) as videos:
            await videos.retrieve(video_id, max_retries=4)
        assert [d.retry for d in told] == [1, 2]
        assert all(d.method == "GET" and d.path == f"/videos/{video_id}" for d in told)
        assert all(isinstance(d.error, InternalServerError) for d in told)
        assert all(d.max_retries == 4 and d.wait > 0 for d in told)

    def test_on_retry_must_be_callable(self) -> None:
        with pytest.raises(TypeError, match="on_retry"):
            AsyncVideos(api_key=KEY, on_retry="print")  # type: ignore[arg-type]


class TestGatewayStatuses:
    @pytest.mark.parametrize(
        ("status", "fails"),
        [("expired", True), ("cancelled", True), ("succeeded", False), ("archived", False)],
    )
    async def test_statuses_seen_in_the_wild(
        self, client: AsyncVideos, api: FakeVideosAPI, status: str, fails: bool
    ) -> None:
        """``expired``/``cancelled`` are failures for ``raise_on_failure``; others are not."""
        api.inject(Fault(status=200, body={"id": "video_gw", "object": "video", "status": status}))
        if fails:
            with pytest.raises(VideoFailedError):
                await client.wait("video_gw", raise_on_failure=True, wait_timeout=5)
        else:
            video = await client.wait("video_gw", raise_on_failure=True, wait_timeout=5)
            assert video.status == status
            assert video.is_completed is (status == "succeeded")
