"""The client: configuration, headers, retrieve, per-call options, lifecycle, timeouts."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from asyncvideos import (
    APIConnectionError,
    APITimeoutError,
    AsyncVideos,
    AuthenticationError,
    NotFoundError,
    Video,
    __version__,
)
from asyncvideos.testing import FakeVideosAPI, Fault

KEY = "sk-test-0123456789abcdefXY"


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_API_BASE",
        "OPENAI_ORG_ID",
        "OPENAI_ORGANIZATION",
        "OPENAI_PROJECT_ID",
    ):
        monkeypatch.delenv(name, raising=False)


class TestConfiguration:
    def test_missing_key_names_the_variable(self, no_env: None) -> None:
        """Without a key anywhere, construction fails and says where to put one."""
        with pytest.raises(ValueError, match="OPENAI_API_KEY"):
            AsyncVideos()

    async def test_environment(self, no_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
        """Key, base URL, organization and project come from the environment."""
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_API_BASE", "https://gateway.example/v1/")
        monkeypatch.setenv("OPENAI_ORGANIZATION", "org-1")
        monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-1")
        async with AsyncVideos() as videos:
            assert videos.base_url == "https://gateway.example/v1"
            assert videos._settings.organization == "org-1"
            assert videos._settings.project == "proj-1"
        monkeypatch.setenv("OPENAI_BASE_URL", "https://first.example/v1")
        monkeypatch.setenv("OPENAI_ORG_ID", "org-2")
        async with AsyncVideos() as videos:
            assert videos.base_url == "https://first.example/v1"
            assert videos._settings.organization == "org-2"

    async def test_default_base_url(self, no_env: None) -> None:
        async with AsyncVideos(api_key=KEY) as videos:
            assert videos.base_url == "https://api.openai.com/v1"

    def test_http_to_a_remote_host_warns(self, caplog: pytest.LogCaptureFixture) -> None:
        """Plain http anywhere but loopback logs a warning; loopback does not."""
        with caplog.at_level(logging.WARNING, logger="asyncvideos"):
            AsyncVideos(api_key=KEY, base_url="http://127.0.0.1:9/v1")
            AsyncVideos(api_key=KEY, base_url="http://localhost:9/v1")
            assert not caplog.records
            AsyncVideos(api_key=KEY, base_url="http://gateway.internal/v1")
        assert "plain http" in caplog.text
        assert KEY not in caplog.text

    def test_repr_masks_the_key(self) -> None:
        """The key never shows in repr or str; a masked form does."""
        videos = AsyncVideos(api_key=KEY, base_url="https://h/v1")
        for text in (repr(videos), str(videos), repr(videos._settings)):
            assert KEY not in text
        assert "sk-...XY" in repr(videos)
        assert "<callable>" in repr(AsyncVideos(api_key=lambda: KEY, base_url="https://h/v1"))


class TestHeaders:
    async def test_standard_headers(self, api: FakeVideosAPI) -> None:
        """Bearer key, User-Agent, Accept, organization and project are sent."""
        api.add_videos({"id": "video_fb4e"})
        async with api.client(organization="org-9", project="proj-9") as videos:
            await videos.retrieve("video_fb4e")
        headers = api.requests[-1].headers
        assert headers["authorization"] == f"Bearer {api.api_key}"
        assert headers["user-agent"].startswith(f"asyncvideos/{__version__}")
        assert headers["accept"] == "application/json"
        assert headers["openai-organization"] == "org-9"
        assert headers["openai-project"] == "proj-9"
        assert "idempotency-key" not in headers

    async def test_azure_style_api_key_header(self, api: FakeVideosAPI) -> None:
        """auth_scheme='api-key' sends the key in an api-key header, without Bearer."""
        api.add_videos({"id": "v1"})
        async with api.client(auth_scheme="api-key") as videos:
            assert (await videos.retrieve("v1")).id == "v1"
        headers = api.requests[-1].headers
        assert headers["api-key"] == api.api_key
        assert "authorization" not in headers

    async def test_default_and_extra_headers_and_query(self, api: FakeVideosAPI) -> None:
        """Client defaults apply to every call; per-call extras add to and override them."""
        api.add_videos({"id": "v1"})
        async with api.client(
            default_headers={"X-Team": "a", "X-Keep": "k"},
            default_query={"api-version": "preview"},
        ) as videos:
            await videos.retrieve("v1")
            await videos.retrieve("v1", extra_headers={"X-Team": "b"}, extra_query={"trace": "1"})
        first, second = api.requests[-2:]
        assert first.headers["x-team"] == "a"
        assert first.query == {"api-version": "preview"}
        assert second.headers["x-team"] == "b"
        assert second.headers["x-keep"] == "k"
        assert second.query == {"api-version": "preview", "trace": "1"}

    @pytest.mark.parametrize("is_async", [False, True])
    async def test_key_callable_called_per_request(
        self, api: FakeVideosAPI, is_async: bool
    ) -> None:
        """A sync or async callable gives the key for each request (rotating credentials)."""
        api.add_videos({"id": "v1"})
        calls = 0

        def sync_key() -> str:
            nonlocal calls
            calls += 1
            return api.api_key

        async def async_key() -> str:
            return sync_key()

        async with AsyncVideos(
            api_key=async_key if is_async else sync_key, base_url=api.base_url
        ) as videos:
            await videos.retrieve("v1")
            await videos.retrieve("v1")
        assert calls == 2

    @pytest.mark.parametrize("scheme", ["bearer", "api-key"])
    async def test_a_rotated_key_is_the_one_sent(self, scheme: str) -> None:
        """The headers of a plain GET are made once per key, not once per client: each
        request carries the key the callable gave for it, back and forth."""
        keys = iter(["sk-rotated-first-0123456789", "sk-rotated-second-012345678"] * 2)
        given: list[str] = []

        def key() -> str:
            given.append(next(keys))
            return given[-1]

        async with FakeVideosAPI(require_auth=False) as fake:
            fake.add_videos({"id": "v1"})
            async with AsyncVideos(
                api_key=key,
                base_url=fake.base_url,
                auth_scheme=scheme,  # type: ignore[arg-type]
            ) as videos:
                for _ in range(4):
                    await videos.retrieve("v1")
            sent = [
                request.headers["authorization"].removeprefix("Bearer ")
                if scheme == "bearer"
                else request.headers["api-key"]
                for request in fake.requests
            ]
        assert sent == given
        assert len(set(sent)) == 2

    async def test_a_plain_request_has_every_header_of_one_with_its_own(
        self, api: FakeVideosAPI
    ) -> None:
        """A GET with no header of its own (its headers made once and reused) sends the
        same headers as one that adds a header, but that one."""
        api.add_videos({"id": "v1"})
        async with api.client(
            organization="org-9", project="proj-9", default_headers={"X-Team": "a"}
        ) as videos:
            await videos.retrieve("v1")
            await videos.retrieve("v1")
            await videos.retrieve("v1", extra_headers={"X-Extra": "1"})
        first, second, extra = (dict(request.headers) for request in api.requests[-3:])
        assert first == second
        del extra["x-extra"]
        assert first == extra
        assert {"authorization", "openai-organization", "openai-project", "x-team"} <= set(first)

    @pytest.mark.parametrize(
        ("kwargs", "name"),
        [({"extra_headers": []}, "extra_headers"), ({"extra_query": ""}, "extra_query")],
    )
    async def test_empty_options_of_the_wrong_type(
        self, client: AsyncVideos, api: FakeVideosAPI, kwargs: dict[str, object], name: str
    ) -> None:
        """An empty value of the wrong type is still a TypeError, before any request."""
        with pytest.raises(TypeError, match=name):
            await client.retrieve("v1", **kwargs)  # type: ignore[arg-type]
        assert not api.requests

    async def test_key_callable_must_return_a_string(self, api: FakeVideosAPI) -> None:
        async with AsyncVideos(api_key=lambda: None, base_url=api.base_url) as videos:  # type: ignore[arg-type,return-value]
            with pytest.raises(TypeError, match="api_key"):
                await videos.retrieve("v1")
        assert not api.requests


class TestRetrieve:
    async def test_psopenai_example(self, client: AsyncVideos, api: FakeVideosAPI) -> None:
        """Get-Video -VideoId 'video_fb4e' gets the job details."""
        api.add_videos({"id": "video_fb4e", "status": "completed", "prompt": "a cat"})
        video = await client.retrieve("video_fb4e")
        assert isinstance(video, Video)
        assert (video.id, video.status, video.prompt) == ("video_fb4e", "completed", "a cat")
        assert api.requests[-1].method == "GET"
        assert api.requests[-1].path == "/v1/videos/video_fb4e"

    async def test_accepts_a_video(self, client: AsyncVideos, api: FakeVideosAPI) -> None:
        """A listed Video can be passed straight back."""
        api.seed(3)
        async for video in client.list(limit=1):
            assert (await client.retrieve(video)).id == video.id

    async def test_unknown_id(self, client: AsyncVideos, api: FakeVideosAPI) -> None:
        """A 404 is a NotFoundError with the API's message and request id, not retried."""
        with pytest.raises(NotFoundError) as info:
            await client.retrieve("video_nope")
        error = info.value
        assert error.status_code == 404
        assert error.request_id is not None
        assert error.request_id.startswith("req_")
        assert error.retries == 0
        assert len(api.requests) == 1

    async def test_id_with_slash_stays_one_segment(
        self, client: AsyncVideos, api: FakeVideosAPI
    ) -> None:
        """An id cannot reach another route: '../x' and 'a/b' are encoded."""
        api.add_videos({"id": "a/b"}, {"id": "../content"})
        assert (await client.retrieve("a/b")).id == "a/b"
        assert (await client.retrieve("../content")).id == "../content"
        assert [r.raw_path for r in api.requests] == [
            "/v1/videos/a%2Fb",
            "/v1/videos/..%2Fcontent",
        ]

    async def test_wrong_key(self, api: FakeVideosAPI) -> None:
        """A wrong key is an AuthenticationError whose message does not hold the key."""
        wrong = "sk-wrong-key-abcdefghijkl"
        async with AsyncVideos(api_key=wrong, base_url=api.base_url) as videos:
            with pytest.raises(AuthenticationError) as info:
                await videos.retrieve("v1")
        assert wrong not in str(info.value)
        assert wrong not in repr(info.value.body)


class TestLifecycle:
    async def test_close_then_use(self, api: FakeVideosAPI) -> None:
        """A closed client refuses requests clearly; close() is idempotent."""
        videos = api.client()
        await videos.close()
        await videos.close()
        assert videos.closed
        with pytest.raises(RuntimeError, match="closed"):
            await videos.retrieve("v1")
        with pytest.raises(RuntimeError, match="closed"):
            async with videos:
                pass

    async def test_without_async_with(self, api: FakeVideosAPI) -> None:
        api.add_videos({"id": "v1"})
        videos = api.client()
        try:
            assert (await videos.retrieve("v1")).id == "v1"
        finally:
            await videos.close()

    async def test_borrowed_session_is_not_closed(self, api: FakeVideosAPI) -> None:
        """A session the caller passes is used, never closed."""
        api.add_videos({"id": "v1"})
        async with aiohttp.ClientSession() as session:
            async with api.client(session=session) as videos:
                await videos.retrieve("v1")
            assert not session.closed
            assert session.connector is not None
        assert session.closed

    async def test_closed_borrowed_session(self, api: FakeVideosAPI) -> None:
        session = aiohttp.ClientSession()
        await session.close()
        async with api.client(session=session) as videos:
            with pytest.raises(RuntimeError, match="ClientSession"):
                await videos.retrieve("v1")

    async def test_one_pool_for_all_requests(self, client: AsyncVideos, api: FakeVideosAPI) -> None:
        """Concurrent requests share one session and reuse its connections."""
        api.seed(5)
        await asyncio.gather(*(client.list_page(limit=1) for _ in range(20)))
        session = client._transport._session
        assert session is not None
        await asyncio.gather(*(client.list_page(limit=1) for _ in range(20)))
        assert client._transport._session is session


class TestTimeouts:
    async def test_timeout_raises_after_retries(self, api: FakeVideosAPI) -> None:
        """A response slower than the timeout is APITimeoutError after its retries."""
        api.add_videos({"id": "v1"})
        api.inject(Fault(delay=0.5), times=3)
        async with api.client(timeout=0.05, max_retries=2) as videos:
            with pytest.raises(APITimeoutError) as info:
                await videos.retrieve("v1")
        assert info.value.retries == 2
        assert isinstance(info.value, APIConnectionError)
        assert isinstance(info.value.__cause__, asyncio.TimeoutError)

    async def test_per_call_timeout_overrides(self, api: FakeVideosAPI) -> None:
        """timeout= on a call applies to that call only; a retry then succeeds."""
        api.add_videos({"id": "v1"})
        # The retry must beat the limit too: 0.5 s, which a plain answer meets on a busy
        # machine (0.05 s did not), against an answer 60 s away.
        api.inject(Fault(delay=60), times=1)
        async with api.client(timeout=None) as videos:
            video = await videos.retrieve("v1", timeout=aiohttp.ClientTimeout(total=0.5))
        assert video.id == "v1"
        assert len(api.requests) == 2

    async def test_caller_deadline_cancels_cleanly(self, api: FakeVideosAPI) -> None:
        """A deadline over a whole listing is asyncio.wait_for / asyncio.timeout."""
        api.seed(50)
        api.inject(Fault(delay=5.0), times=1, path=r"/videos$")
        async with api.client() as videos:

            async def consume() -> int:
                return len([v async for v in videos.list(all=True, limit=10)])

            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(consume(), 0.1)
            session = videos._transport._session
            assert session is not None
            connector = session.connector
            assert connector is not None
            await asyncio.sleep(0)
            assert not connector._acquired  # the cancelled request gave its connection back

    async def test_connection_refused(self, unused_tcp_port: int) -> None:
        """Nothing listening is an APIConnectionError with the aiohttp error as cause."""
        async with AsyncVideos(
            api_key=KEY, base_url=f"http://127.0.0.1:{unused_tcp_port}/v1", max_retries=1
        ) as videos:
            with pytest.raises(APIConnectionError) as info:
                await videos.retrieve("v1")
        assert info.value.retries == 1
        assert isinstance(info.value.__cause__, aiohttp.ClientError)
        assert info.value.request_sent is False
