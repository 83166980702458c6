"""asyncvideos through a real LiteLLM proxy in front of ``FakeVideosAPI``.

What works is asserted; what LiteLLM does not support is pinned as a strict
expected failure that proves the limitation with a real request, so a LiteLLM
release that fixes one shows up as XPASS (and fails the run until the pin and
the compatibility tables, docs/guide/gateways.md and the README's, are updated).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import aiohttp
import pytest
from litellm_support import MASTER_KEY, Gateway, decode_litellm_id, require_litellm, upstream_id

from asyncvideos import (
    APIStatusError,
    AsyncVideos,
    BadRequestError,
    ContentMismatchError,
    InternalServerError,
    NotFoundError,
    PaginationError,
    QuotaExceededError,
    Video,
)
from asyncvideos.testing import FakeVideosAPI, Fault

require_litellm()
pytestmark = pytest.mark.asyncio(loop_scope="session")

MODEL = "sora-2"
#: LiteLLM's hint for routing ``GET /videos``, which carries no model to route by.
LIST_HEADERS = {"custom-llm-provider": "hosted_vllm"}
#: LiteLLM sends no ``openai-poll-after-ms``: poll briskly, the fake's jobs take ~0.1 s.
POLL = 0.05
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


async def completed_job(videos: AsyncVideos, prompt: str = "a paper boat") -> Video:
    """A job created through the proxy and waited on until it completed."""
    video = await videos.create_and_wait(prompt, model=MODEL, poll_interval=POLL, wait_timeout=30)
    assert video.status == "completed"
    return video


def posts(upstream: FakeVideosAPI, path: str = "/v1/videos") -> list[object]:
    return [r for r in upstream.requests if r.method == "POST" and r.path == path]


class TestCreate:
    async def test_json_create_reaches_upstream_once(
        self, videos: AsyncVideos, upstream: FakeVideosAPI
    ) -> None:
        """A JSON create becomes one upstream create with every field, sent as a form."""
        video = await videos.create("a paper boat", model=MODEL, seconds=8, size="1280x720")
        assert video.status == "queued"
        assert (video.model, video.seconds, video.size) == (MODEL, "8", "1280x720")
        [sent] = upstream.requests
        assert (sent.method, sent.path) == ("POST", "/v1/videos")
        assert sent.form == {
            "model": MODEL,
            "prompt": "a paper boat",
            "seconds": "8",
            "size": "1280x720",
        }
        assert upstream_id(video.id) in upstream.videos

    async def test_multipart_create_forwards_the_file(
        self, videos: AsyncVideos, upstream: FakeVideosAPI
    ) -> None:
        """An ``input_reference`` file arrives upstream whole, as a file part."""
        video = await videos.create("the same boat at sea", model=MODEL, input_reference=PNG)
        [sent] = upstream.requests
        assert sent.form is not None
        assert sent.form["prompt"] == "the same boat at sea"
        part = sent.form["input_reference"]
        assert isinstance(part, dict)
        assert part["size"] == len(PNG)
        assert upstream_id(video.id) in upstream.videos

    async def test_create_and_wait(self, videos: AsyncVideos, upstream: FakeVideosAPI) -> None:
        """create_and_wait polls the wrapped id until the upstream job completes."""
        video = await completed_job(videos)
        assert upstream.videos[upstream_id(video.id)]["status"] == "completed"
        assert len(posts(upstream)) == 1

    async def test_upstream_error_without_retry_with_num_retries_0(
        self, videos: AsyncVideos, upstream: FakeVideosAPI
    ) -> None:
        """With ``num_retries: 0`` a create that fails upstream is sent upstream once."""
        upstream.inject(Fault(status=500), times=3, method="POST", path="/v1/videos")
        with pytest.raises(InternalServerError) as caught:
            await videos.create("once only", model=MODEL)
        assert caught.value.status_code == 500
        assert len(posts(upstream)) == 1

    @pytest.mark.xfail(
        strict=True,
        raises=AssertionError,
        reason="LiteLLM retries a failed upstream create on its own (num_retries, "
        "default 2 per deployment here) without an Idempotency-Key: a create can "
        "start up to three jobs; set num_retries: 0 on video deployments",
    )
    async def test_create_reaches_upstream_once_with_litellm_retries(
        self, videos: AsyncVideos, upstream: FakeVideosAPI
    ) -> None:
        upstream.inject(Fault(status=500), times=3, method="POST", path="/v1/videos")
        with pytest.raises(InternalServerError):
            await videos.create("once only", model="sora-2-retrying")
        assert len(posts(upstream)) == 1

    @pytest.mark.xfail(
        strict=True,
        raises=AssertionError,
        reason="LiteLLM does not forward Idempotency-Key upstream, so the upstream "
        "cannot recognise a repeated create",
    )
    async def test_idempotency_key_reaches_upstream(
        self, videos: AsyncVideos, upstream: FakeVideosAPI
    ) -> None:
        await videos.create("keyed", model=MODEL, idempotency_key="gateway-key-1")
        [sent] = upstream.requests
        assert sent.headers.get("idempotency-key") == "gateway-key-1"

    @pytest.mark.xfail(
        strict=True,
        raises=AssertionError,
        reason="LiteLLM drops `prompt` from the job objects of create and retrieve "
        "(listing keeps it)",
    )
    async def test_prompt_is_kept(self, videos: AsyncVideos) -> None:
        video = await videos.create("a prompt to keep", model=MODEL)
        assert video.prompt == "a prompt to keep"
        assert (await videos.retrieve(video)).prompt == "a prompt to keep"


class TestIds:
    async def test_ids_wrap_provider_model_and_upstream_id(
        self, videos: AsyncVideos, upstream: FakeVideosAPI
    ) -> None:
        """Ids are ``video_`` + base64 of ``litellm:custom_llm_provider:...;model_id:...;
        video_id:<upstream id>;deployment_id:...``; only ``id`` is rewritten."""
        video = await videos.create("an id", model=MODEL)
        fields = decode_litellm_id(video.id)
        assert fields["custom_llm_provider"] == "openai"
        assert fields["model_id"] == MODEL
        assert fields["video_id"] in upstream.videos
        assert fields["deployment_id"]
        # LiteLLM adds its own usage block; the model keeps it in ``raw``.
        assert video.raw["usage"] == {"duration_seconds": float(video.seconds or 0)}

    @pytest.mark.xfail(
        strict=True,
        raises=AssertionError,
        reason="LiteLLM passes remixed_from_video_id through as the upstream's raw id, "
        "which the proxy does not route (it sends a bare id to api.openai.com)",
    )
    async def test_remixed_from_is_a_proxy_id(self, videos: AsyncVideos) -> None:
        source = await completed_job(videos)
        remix = await videos.remix(source, "now in winter")
        assert remix.remixed_from_video_id == source.id


class TestRetrieveAndWait:
    async def test_retrieve(self, videos: AsyncVideos, upstream: FakeVideosAPI) -> None:
        """retrieve() gives the upstream job's state under the proxy's id."""
        created = await videos.create("to retrieve", model=MODEL)
        await videos.wait(created, poll_interval=POLL, wait_timeout=30)
        video = await videos.retrieve(created.id)
        job = upstream.videos[upstream_id(created.id)]
        assert video.id == created.id
        assert (video.status, video.progress, video.size, video.seconds) == (
            job["status"],
            job["progress"],
            job["size"],
            job["seconds"],
        )
        assert int(video.completed_at.timestamp()) == job["completed_at"]  # type: ignore[union-attr]

    async def test_wait(self, videos: AsyncVideos) -> None:
        """wait() follows a job from queued to completed through the proxy."""
        created = await videos.create("to wait on", model=MODEL)
        seen: list[str | None] = []
        video = await videos.wait(
            created,
            poll_interval=POLL,
            wait_timeout=30,
            on_progress=lambda v: seen.append(v.status),
        )
        assert video.status == "completed"
        assert seen[-1] == "completed"

    async def test_wait_many(self, videos: AsyncVideos, upstream: FakeVideosAPI) -> None:
        """wait_many reports each job once, completed, and a failed job as failed."""
        upstream.set_outcome(None, "failed", error={"code": "moderation", "message": "no"})
        try:
            failing = await videos.create("fails", model=MODEL)
        finally:
            upstream.set_outcome(None, "completed")
        created = [await videos.create(f"job {n}", model=MODEL) for n in range(3)]
        async with contextlib.aclosing(
            videos.wait_many([*created, failing], poll_interval=POLL, wait_timeout=30)
        ) as results:
            outcome = {result.video_id: result async for result in results}
        assert set(outcome) == {v.id for v in [*created, failing]}
        assert all(outcome[v.id].video.status == "completed" for v in created)  # type: ignore[union-attr]
        failed = outcome[failing.id].video
        assert failed is not None
        assert failed.status == "failed"
        assert failed.error is not None
        assert failed.error.code == "moderation"

    @pytest.mark.xfail(
        strict=True,
        raises=AssertionError,
        reason="LiteLLM does not forward openai-poll-after-ms, so wait() falls back "
        "to its own interval",
    )
    async def test_poll_hint_is_forwarded(self, gateway: Gateway, videos: AsyncVideos) -> None:
        created = await videos.create("hinted", model=MODEL)
        headers, _ = await raw_get(gateway, "/videos/" + created.id)
        assert "openai-poll-after-ms" in headers


class TestContent:
    async def test_download_is_byte_identical(
        self, videos: AsyncVideos, upstream: FakeVideosAPI, tmp_path: Path
    ) -> None:
        """download() writes exactly the bytes the upstream serves."""
        video = await completed_job(videos)
        target = await videos.download(video, tmp_path / "boat.mp4")
        expected = upstream.content_bytes(upstream_id(video.id), "video")
        assert len(expected) > 0
        assert target.read_bytes() == expected

    async def test_iter_content_and_download_content(
        self, videos: AsyncVideos, upstream: FakeVideosAPI
    ) -> None:
        """iter_content() and download_content() give the same bytes as the upstream."""
        video = await completed_job(videos)
        expected = upstream.content_bytes(upstream_id(video.id), "video")
        async with contextlib.aclosing(videos.iter_content(video, chunk_size=4096)) as chunks:
            streamed = b"".join([chunk async for chunk in chunks])
        assert streamed == expected
        assert await videos.download_content(video) == expected

    async def test_content_of_unfinished_job_is_not_found(self, videos: AsyncVideos) -> None:
        """The upstream's 404 for content not ready arrives as a NotFoundError, wrapped."""
        video = await videos.create("not yet", model=MODEL)
        with pytest.raises(NotFoundError) as caught:
            await videos.download_content(video)
        assert "video_not_ready" in caught.value.message

    async def test_variant_not_forwarded_is_detected(
        self, videos: AsyncVideos, upstream: FakeVideosAPI
    ) -> None:
        """LiteLLM drops ``variant`` and sends the video; asyncvideos sees the media
        type is not an image and raises rather than return the wrong bytes."""
        video = await completed_job(videos)
        upstream.clear_requests()
        with pytest.raises(ContentMismatchError) as caught:
            await videos.download_content(video, variant="thumbnail")
        assert "video/mp4" in caught.value.message
        assert upstream.requests[-1].query == {}

    @pytest.mark.xfail(
        strict=True,
        raises=ContentMismatchError,
        reason="LiteLLM does not forward `variant`: a thumbnail or spritesheet request "
        "returns the video",
    )
    async def test_variant_is_forwarded(self, videos: AsyncVideos, upstream: FakeVideosAPI) -> None:
        video = await completed_job(videos)
        thumbnail = await videos.download_content(video, variant="thumbnail")
        assert thumbnail == upstream.content_bytes(upstream_id(video.id), "thumbnail")

    @pytest.mark.xfail(
        strict=True,
        raises=AssertionError,
        reason="LiteLLM buffers the whole content body and ignores Range (200 with the "
        "full body), so an interrupted download starts over",
    )
    async def test_range_is_honoured(self, gateway: Gateway, videos: AsyncVideos) -> None:
        video = await completed_job(videos)
        _, status = await raw_get(
            gateway, f"/videos/{video.id}/content", headers={"Range": "bytes=10-"}
        )
        assert status == 206


class TestRemix:
    async def test_remix(self, videos: AsyncVideos, upstream: FakeVideosAPI) -> None:
        """remix() reaches the upstream job's remix route with the new prompt."""
        source = await completed_job(videos)
        upstream.clear_requests()
        remix = await videos.remix(source, "now in winter")
        [sent] = upstream.requests
        assert sent.path == f"/v1/videos/{upstream_id(source.id)}/remix"
        assert sent.json == {"prompt": "now in winter"}
        assert remix.status == "queued"
        assert upstream.videos[upstream_id(remix.id)]["remixed_from_video_id"] == upstream_id(
            source.id
        )
        finished = await videos.wait(remix, poll_interval=POLL, wait_timeout=30)
        assert finished.status == "completed"


MP4 = b"\x00\x00\x00 ftypisom" + bytes(100)


class TestEditsExtensionsCharacters:
    async def test_edit_and_extend_by_id(
        self, videos: AsyncVideos, upstream: FakeVideosAPI
    ) -> None:
        """edit() and extend() of a job reach the upstream with its own id."""
        source = await completed_job(videos)
        upstream.clear_requests()
        edited = await videos.edit(source, "edited")
        extended = await videos.extend(source, "and then", 4)
        first, second = upstream.requests
        source_ref = {"id": upstream_id(source.id)}
        assert (first.path, first.json) == (
            "/v1/videos/edits",
            {"prompt": "edited", "video": source_ref},
        )
        assert (second.path, second.json) == (
            "/v1/videos/extensions",
            {"prompt": "and then", "seconds": "4", "video": source_ref},
        )
        assert upstream_id(edited.id) in upstream.videos
        assert upstream_id(extended.id) in upstream.videos

    async def test_edit_upload_with_provider_header(
        self, videos: AsyncVideos, upstream: FakeVideosAPI
    ) -> None:
        """An uploaded video has no id to route by: with the provider header it works."""
        edited = await videos.edit(MP4, "edited", extra_headers=LIST_HEADERS)
        [sent] = upstream.requests
        assert sent.path == "/v1/videos/edits"
        assert sent.form is not None
        assert sent.form["video"]["size"] == len(MP4)
        assert upstream_id(edited.id) in upstream.videos

    @pytest.mark.xfail(
        strict=True,
        raises=InternalServerError,
        reason="Without custom-llm-provider, LiteLLM sends an uploaded edit to "
        "api.openai.com rather than the configured api_base",
    )
    async def test_edit_upload_without_header(
        self, videos: AsyncVideos, upstream: FakeVideosAPI
    ) -> None:
        await videos.edit(MP4, "edited")
        assert len(upstream.requests) == 1

    @pytest.mark.xfail(
        strict=True,
        raises=BadRequestError,
        reason="LiteLLM turns an uploaded extension into JSON with video {'id': ''}: "
        "extend() of a file fails upstream",
    )
    async def test_extend_upload(self, videos: AsyncVideos, upstream: FakeVideosAPI) -> None:
        extended = await videos.extend(MP4, "and then", 4, extra_headers=LIST_HEADERS)
        assert upstream_id(extended.id) in upstream.videos

    async def test_characters_with_provider_header(
        self, videos: AsyncVideos, upstream: FakeVideosAPI
    ) -> None:
        """Characters work with the provider header; their ids are not rewritten."""
        character = await videos.create_character("Bob", MP4, extra_headers=LIST_HEADERS)
        again = await videos.retrieve_character(character.id, extra_headers=LIST_HEADERS)
        assert (again.id, again.name) == (character.id, "Bob")
        assert [(r.method, r.path) for r in upstream.requests] == [
            ("POST", "/v1/videos/characters"),
            ("GET", f"/v1/videos/characters/{character.id}"),
        ]


class TestList:
    async def test_list_needs_a_provider_hint(self, videos: AsyncVideos) -> None:
        """Without a model to route by, LiteLLM answers GET /videos with a 400 of its
        own, whose request id is LiteLLM's call id."""
        with pytest.raises(BadRequestError) as caught:
            await videos.list_page()
        assert "LLM Provider NOT provided" in caught.value.message
        assert caught.value.request_id == caught.value.headers["x-litellm-call-id"]

    async def test_list_page_with_provider_header(
        self, videos: AsyncVideos, upstream: FakeVideosAPI
    ) -> None:
        """With ``custom-llm-provider: hosted_vllm`` (and HOSTED_VLLM_API_BASE set on the
        proxy) a page lists upstream jobs under ids the proxy can retrieve."""
        created = await videos.create("listed", model=MODEL)
        page = await videos.list_page(limit=100, order="desc", extra_headers=LIST_HEADERS)
        assert page.data
        upstream_ids = [upstream_id(v.id) for v in page.data]
        assert upstream_id(created.id) in upstream_ids
        assert all(i in upstream.videos for i in upstream_ids)
        assert {decode_litellm_id(v.id)["custom_llm_provider"] for v in page.data} == {
            "hosted_vllm"
        }
        listed = next(v for v in page.data if upstream_id(v.id) == upstream_id(created.id))
        assert listed.prompt == "listed"
        again = await videos.retrieve(listed.id)
        assert upstream_id(again.id) == upstream_id(created.id)

    async def test_list_all_raises_rather_than_looping(
        self, videos: AsyncVideos, upstream: FakeVideosAPI
    ) -> None:
        """Page 2 repeats page 1 (the cursor is dropped): list(all=True) raises
        PaginationError with the cursor to resume from, after one repeat."""
        assert len(upstream.videos) > 20  # the upstream's default page size
        seen: list[str] = []

        async def walk() -> None:
            async for video in videos.list(all=True, extra_headers=LIST_HEADERS):
                seen.append(video.id)

        with pytest.raises(PaginationError) as caught:
            await walk()
        assert len(seen) == len(set(seen)) == 20
        assert caught.value.resume_after == seen[-1]
        assert len([r for r in upstream.requests if r.path == "/v1/videos"]) == 2

    @pytest.mark.xfail(
        strict=True,
        raises=AssertionError,
        reason="LiteLLM drops limit, order and after from GET /videos: the upstream's "
        "defaults apply (20, desc) and page 2 repeats page 1",
    )
    async def test_list_query_is_forwarded(
        self, videos: AsyncVideos, upstream: FakeVideosAPI
    ) -> None:
        first = await videos.list_page(limit=2, order="asc", extra_headers=LIST_HEADERS)
        assert upstream.requests[-1].query == {"limit": "2", "order": "asc"}
        assert len(first.data) == 2
        second = await videos.list_page(
            limit=2, order="asc", after=first.last_id, extra_headers=LIST_HEADERS
        )
        assert not {v.id for v in first.data} & {v.id for v in second.data}

    @pytest.mark.xfail(
        strict=True,
        raises=BadRequestError,
        reason="LiteLLM's GET /videos needs custom-llm-provider (header, query or "
        "body): a plain list gives 400 'LLM Provider NOT provided'",
    )
    async def test_list_without_hint(self, videos: AsyncVideos) -> None:
        page = await videos.list_page()
        assert page.data


class TestDelete:
    @pytest.mark.xfail(
        strict=True,
        raises=APIStatusError,
        reason="LiteLLM has no DELETE /videos/{id} route (405 Method Not Allowed)",
    )
    async def test_delete(self, videos: AsyncVideos, upstream: FakeVideosAPI) -> None:
        video = await completed_job(videos)
        deleted = await videos.delete(video)
        assert deleted.deleted
        assert upstream_id(video.id) not in upstream.videos

    async def test_delete_is_405(self, videos: AsyncVideos, upstream: FakeVideosAPI) -> None:
        """The 405 reaches the caller as an APIStatusError; nothing reaches the upstream."""
        video = await videos.create("kept", model=MODEL)
        upstream.clear_requests()
        with pytest.raises(APIStatusError) as caught:
            await videos.delete(video)
        assert caught.value.status_code == 405
        assert caught.value.request_id is None  # FastAPI's own 405: no LiteLLM headers
        assert upstream.requests == []


class TestErrors:
    async def test_upstream_error_is_wrapped(
        self, videos: AsyncVideos, upstream: FakeVideosAPI
    ) -> None:
        """LiteLLM keeps the status, puts the status as a string in ``code`` and the
        upstream's JSON inside ``message``; the upstream request id comes back as
        ``request-id`` and ``llm_provider-x-request-id``, LiteLLM's own as
        ``x-litellm-call-id``."""
        created = await videos.create("to fail", model=MODEL)
        upstream.inject(
            Fault(status=503, headers={"x-request-id": "req_upstream_503"}), times=1, method="GET"
        )
        with pytest.raises(InternalServerError) as caught:
            await videos.retrieve(created)
        error = caught.value
        assert error.status_code == 503
        assert error.code == "503"
        assert error.message.startswith("litellm.ServiceUnavailableError: ")
        upstream_json = error.message.split(" - ", 1)[1].split("\n\nLiteLLM: ", 1)[0]
        assert json.loads(upstream_json)["error"]["type"] == "server_error"
        assert error.headers["request-id"] == "req_upstream_503"
        assert error.headers["llm_provider-x-request-id"] == "req_upstream_503"
        assert "x-litellm-call-id" in error.headers
        assert "x-request-id" not in error.headers

    async def test_upstream_headers_are_prefixed(
        self, videos: AsyncVideos, upstream: FakeVideosAPI
    ) -> None:
        """Every upstream header of an error arrives prefixed with ``llm_provider-``."""
        created = await videos.create("prefixed", model=MODEL)
        upstream.inject(
            Fault(
                status=503,
                headers={"x-should-retry": "false", "retry-after": "1", "retry-after-ms": "5"},
            ),
            times=1,
            method="GET",
        )
        with pytest.raises(InternalServerError) as caught:
            await videos.retrieve(created, max_retries=0)
        headers = caught.value.headers
        assert headers["llm_provider-x-should-retry"] == "false"
        assert headers["llm_provider-retry-after"] == "1"
        assert headers["llm_provider-retry-after-ms"] == "5"
        assert not {"x-should-retry", "retry-after", "retry-after-ms"} & set(headers)

    async def test_quota_is_recognised(self, videos: AsyncVideos, upstream: FakeVideosAPI) -> None:
        """LiteLLM replaces the upstream's ``insufficient_quota`` code with "429"; the
        client finds it in the message: a QuotaExceededError, not retried."""
        created = await videos.create("quota", model=MODEL)
        upstream.clear_requests()
        upstream.inject(
            Fault(
                status=429,
                body={
                    "error": {
                        "message": "You exceeded your current quota",
                        "type": "insufficient_quota",
                        "code": "insufficient_quota",
                        "param": None,
                    }
                },
            ),
            times=1,
            method="GET",
        )
        with pytest.raises(QuotaExceededError) as caught:
            await videos.retrieve(created, max_retries=2)
        assert caught.value.code == "429"
        assert caught.value.retries == 0
        assert len(upstream.requests) == 1

    async def test_unknown_model_is_bad_request(self, videos: AsyncVideos) -> None:
        """A model the proxy does not serve is LiteLLM's own 400, not the upstream's."""
        with pytest.raises(BadRequestError) as caught:
            await videos.create("nowhere", model="sora-9")
        assert "Invalid model name" in caught.value.message

    async def test_key_is_the_proxy_key(self, gateway: Gateway, upstream: FakeVideosAPI) -> None:
        """Clients send the proxy's key; the upstream sees only its own key."""
        async with gateway.client() as videos:
            upstream.clear_requests()
            await videos.create("keys", model=MODEL)
        [sent] = upstream.requests
        assert MASTER_KEY not in json.dumps(sent.headers)
        async with gateway.client(api_key="sk-not-the-master-key-000") as stranger:
            # Without a database (as here) LiteLLM cannot look a key up: 400, not 401.
            with pytest.raises(BadRequestError) as caught:
                await stranger.retrieve("video_x")
        assert caught.value.type == "no_db_connection"


class TestProxy:
    async def test_version_header_matches(self, gateway: Gateway, videos: AsyncVideos) -> None:
        """The proxy reports the version the test log names, and a call id per request."""
        created = await videos.create("version", model=MODEL)
        headers, status = await raw_get(gateway, "/videos/" + created.id)
        assert status == 200
        assert headers["x-litellm-version"] == gateway.version
        assert len(headers["x-litellm-call-id"]) == 36  # a UUID
        assert "x-request-id" not in headers
        assert "request-id" not in headers


async def raw_get(
    gateway: Gateway, path: str, headers: dict[str, str] | None = None
) -> tuple[dict[str, str], int]:
    """A plain GET on the proxy: its headers (lower-cased) and status."""
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {MASTER_KEY}"}) as session,
        session.get(gateway.base_url + path, headers=headers) as response,
    ):
        await response.read()
        return {k.lower(): v for k, v in response.headers.items()}, response.status
