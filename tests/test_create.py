"""Creating, remixing, editing, extending and deleting jobs; characters; POST retry safety.

Every test goes through real HTTP to ``FakeVideosAPI`` on loopback and checks what the
fake recorded. Retries do not sleep (the autouse fixture in conftest).
"""

from __future__ import annotations

import io
import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from asyncvideos import (
    APIConnectionError,
    APITimeoutError,
    AsyncVideos,
    BadRequestError,
    Character,
    DeletedVideo,
    InternalServerError,
    NotFoundError,
    QuotaExceededError,
    RateLimitError,
    Video,
)
from asyncvideos.testing import FakeVideosAPI, Fault, RecordedRequest

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 64
MP4 = b"\x00\x00\x00\x20ftypisom" + b"\x02" * 64

Call = Callable[[AsyncVideos], Awaitable[Any]]


def posts(api: FakeVideosAPI) -> list[RecordedRequest]:
    """The POST requests the fake received, in order."""
    return [req for req in api.requests if req.method == "POST"]


def only_request(api: FakeVideosAPI) -> RecordedRequest:
    """The one request the fake received (fails if there were more or fewer)."""
    assert len(api.requests) == 1, api.requests
    return api.requests[0]


def closed_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def png_file(tmp_path: Path) -> Path:
    path = tmp_path / "reference.png"
    path.write_bytes(PNG)
    return path


@pytest.fixture
def mp4_file(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(MP4)
    return path


@pytest.fixture
def completed_id(api: FakeVideosAPI) -> str:
    """The id of a completed job, usable as a source for remix/edit/extend."""
    (video_id,) = api.seed(1)
    api.clear_requests()
    return video_id


class TestCreate:
    """``create()``: ``POST /videos`` as JSON or multipart."""

    async def test_sends_only_the_prompt_when_only_the_prompt_is_given(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """A bare create sends a JSON body holding just the prompt, and returns the new job."""
        video = await client.create("A cat on a piano")
        req = only_request(api)
        assert (req.method, req.path) == ("POST", "/v1/videos")
        assert req.header("content-type") == "application/json"
        assert req.json == {"prompt": "A cat on a piano"}
        assert isinstance(video, Video)
        assert video.id in api.videos
        assert video.status == "queued"
        assert video.is_pending
        assert not video.is_finished
        assert video.prompt == "A cat on a piano"

    @pytest.mark.parametrize("seconds", [8, "8", "08"])
    async def test_sends_every_argument_given_with_seconds_as_a_string(
        self, api: FakeVideosAPI, client: AsyncVideos, seconds: int | str
    ) -> None:
        """model, size and seconds are sent; seconds as the string the API wants."""
        video = await client.create("p", model="sora-2-pro", seconds=seconds, size="1280x720")
        assert only_request(api).json == {
            "prompt": "p",
            "model": "sora-2-pro",
            "seconds": "8",
            "size": "1280x720",
        }
        assert (video.model, video.seconds, video.size) == ("sora-2-pro", "8", "1280x720")

    async def test_prompt_of_the_maximum_length_is_accepted(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """A prompt of exactly 32,000 characters is sent."""
        await client.create("x" * 32_000)
        assert len(only_request(api).json["prompt"]) == 32_000

    @pytest.mark.parametrize(
        "reference",
        [{"image_url": "https://example.com/cat.png"}, {"file_id": "file-abc123"}],
    )
    async def test_reference_mapping_is_sent_as_json(
        self, api: FakeVideosAPI, client: AsyncVideos, reference: dict[str, str]
    ) -> None:
        """A mapping with image_url or file_id goes in a JSON body, not multipart."""
        await client.create("p", input_reference=reference)
        req = only_request(api)
        assert req.header("content-type") == "application/json"
        assert req.form is None
        assert req.json == {"prompt": "p", "input_reference": reference}

    async def test_path_is_sent_as_multipart_with_its_name_and_type(
        self, api: FakeVideosAPI, client: AsyncVideos, png_file: Path
    ) -> None:
        """A path is uploaded as multipart/form-data, named and typed from its file name."""
        video = await client.create("p", seconds=4, size="720x1280", input_reference=png_file)
        req = only_request(api)
        assert (req.header("content-type") or "").startswith("multipart/form-data; boundary=")
        assert req.json is None
        assert req.form == {
            "prompt": "p",
            "seconds": "4",
            "size": "720x1280",
            "input_reference": {
                "filename": "reference.png",
                "content_type": "image/png",
                "size": len(PNG),
            },
        }
        assert PNG in req.body
        assert video.id in api.videos

    async def test_str_path_is_a_file(
        self, api: FakeVideosAPI, client: AsyncVideos, png_file: Path
    ) -> None:
        """For create, a str input_reference is a path to upload."""
        await client.create("p", input_reference=str(png_file))
        form = only_request(api).form
        assert form is not None
        assert form["input_reference"]["filename"] == "reference.png"

    @pytest.mark.parametrize(
        ("data", "filename", "content_type"),
        [
            (PNG, "input_reference.png", "image/png"),
            (JPEG, "input_reference.jpg", "image/jpeg"),
            (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "input_reference.webp", "image/webp"),
            (b"GIF89a" + b"\x00" * 8, "input_reference.gif", "image/gif"),
            (b"\x00\x00\x00\x14ftypqt  ", "input_reference.mov", "video/quicktime"),
            (MP4, "input_reference.mp4", "video/mp4"),
            (b"\x1aE\xdf\xa3" + b"\x00" * 8, "input_reference.webm", "video/webm"),
            (b"no magic here", "input_reference", "application/octet-stream"),
        ],
    )
    async def test_bytes_get_a_filename_and_type_from_their_content(
        self,
        api: FakeVideosAPI,
        client: AsyncVideos,
        data: bytes,
        filename: str,
        content_type: str,
    ) -> None:
        """Nameless bytes are named and typed from their magic number."""
        await client.create("p", input_reference=bytearray(data))
        req = only_request(api)
        assert req.form is not None
        part = req.form["input_reference"]
        assert part == {"filename": filename, "content_type": content_type, "size": len(data)}
        assert data in req.body

    async def test_file_object_is_read_and_named_after_its_file(
        self, api: FakeVideosAPI, client: AsyncVideos, png_file: Path
    ) -> None:
        """An open binary file is sent under its base name, with the type of that name."""
        with png_file.open("rb") as file:
            await client.create("p", input_reference=file)
        form = only_request(api).form
        assert form is not None
        assert form["input_reference"] == {
            "filename": "reference.png",
            "content_type": "image/png",
            "size": len(PNG),
        }

    async def test_nameless_file_object_is_typed_from_its_content(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """A BytesIO has no name: the part is named and typed from the bytes."""
        await client.create("p", input_reference=io.BytesIO(JPEG))
        form = only_request(api).form
        assert form is not None
        assert form["input_reference"]["filename"] == "input_reference.jpg"
        assert form["input_reference"]["content_type"] == "image/jpeg"

    async def test_per_call_options_reach_the_request(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """extra_headers and extra_query are sent with this call alone."""
        await client.create(
            "p",
            timeout=30,
            max_retries=0,
            extra_headers={"X-Trace": "abc"},
            extra_query={"debug": "1"},
        )
        await client.create("q")
        first, second = api.requests
        assert first.header("x-trace") == "abc"
        assert first.query == {"debug": "1"}
        assert second.header("x-trace") is None
        assert second.query == {}

    async def test_server_rejection_raises_bad_request(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """A size the API does not offer comes back as BadRequestError naming the param."""
        with pytest.raises(BadRequestError) as info:
            await client.create("p", size="640x480")
        assert info.value.param == "size"
        assert info.value.retries == 0
        assert len(api.requests) == 1


class TestRemix:
    """``remix()``: ``POST /videos/{id}/remix``."""

    async def test_remix_sends_the_prompt_as_json(
        self, api: FakeVideosAPI, client: AsyncVideos, completed_id: str
    ) -> None:
        """A remix of a completed job is a new job linked to it."""
        video = await client.remix(completed_id, "Now in watercolour")
        req = only_request(api)
        assert req.path == f"/v1/videos/{completed_id}/remix"
        assert req.header("content-type") == "application/json"
        assert req.json == {"prompt": "Now in watercolour"}
        assert req.header("idempotency-key")
        assert video.remixed_from_video_id == completed_id
        assert video.id != completed_id

    async def test_remix_accepts_a_video_object(
        self, api: FakeVideosAPI, client: AsyncVideos, completed_id: str
    ) -> None:
        """A Video stands for its id."""
        source = await client.retrieve(completed_id)
        api.clear_requests()
        video = await client.remix(source, "again")
        assert only_request(api).path == f"/v1/videos/{completed_id}/remix"
        assert video.remixed_from_video_id == completed_id

    async def test_id_is_one_path_segment(self, api: FakeVideosAPI, client: AsyncVideos) -> None:
        """An id with a slash is percent-encoded, so it cannot reach another route."""
        with pytest.raises(NotFoundError):
            await client.remix("a/b", "p")
        assert only_request(api).raw_path == "/v1/videos/a%2Fb/remix"


class TestEdit:
    """``edit()``: ``POST /videos/edits`` from a job or an uploaded file."""

    async def test_job_id_is_sent_as_a_reference_object(
        self, api: FakeVideosAPI, client: AsyncVideos, completed_id: str
    ) -> None:
        """A str is a job id, sent as {"video": {"id": ...}} in JSON."""
        video = await client.edit(completed_id, "brighter")
        req = only_request(api)
        assert req.path == "/v1/videos/edits"
        assert req.json == {"video": {"id": completed_id}, "prompt": "brighter"}
        assert video.id != completed_id

    async def test_video_object_is_sent_by_id(
        self, api: FakeVideosAPI, client: AsyncVideos, completed_id: str
    ) -> None:
        """A Video is sent by its id."""
        source = Video(id=completed_id, status="completed")
        await client.edit(source, "brighter")
        assert only_request(api).json == {"video": {"id": completed_id}, "prompt": "brighter"}

    @pytest.mark.parametrize("kind", ["path", "bytes", "file"])
    async def test_uploaded_video_is_sent_as_multipart(
        self, api: FakeVideosAPI, client: AsyncVideos, mp4_file: Path, kind: str
    ) -> None:
        """A path, bytes or file object is uploaded as the video part."""
        with mp4_file.open("rb") as file:
            source: Any = {"path": mp4_file, "bytes": MP4, "file": file}[kind]
            await client.edit(source, "brighter")
        req = only_request(api)
        assert req.form is not None
        assert req.form["prompt"] == "brighter"
        part = req.form["video"]
        assert part["content_type"] == "video/mp4"
        assert part["filename"] == ("clip.mp4" if kind != "bytes" else "video.mp4")
        assert part["size"] == len(MP4)
        assert MP4 in req.body

    async def test_unfinished_source_is_rejected_by_the_server(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """The API refuses to edit a job that is not completed (and the POST is not retried)."""
        queued = await client.create("p")
        with pytest.raises(BadRequestError) as info:
            await client.edit(queued, "brighter")
        assert info.value.code == "invalid_video_state"
        assert len(posts(api)) == 2


class TestExtend:
    """``extend()``: ``POST /videos/extensions``."""

    @pytest.mark.parametrize("seconds", [8, "8"])
    async def test_job_is_extended_by_seconds(
        self, api: FakeVideosAPI, client: AsyncVideos, completed_id: str, seconds: int | str
    ) -> None:
        """The source job goes by id, the seconds as a string."""
        video = await client.extend(completed_id, "and then it rains", seconds)
        req = only_request(api)
        assert req.path == "/v1/videos/extensions"
        assert req.json == {
            "video": {"id": completed_id},
            "prompt": "and then it rains",
            "seconds": "8",
        }
        assert video.seconds == "12"  # the fake's source is 4 s; the total is reported

    async def test_longer_segments_than_a_new_clip(
        self, api: FakeVideosAPI, client: AsyncVideos, completed_id: str
    ) -> None:
        """An extension's segment may be 16 or 20 s; extend() checks only that a length
        is a positive whole number, and the server refuses what it does not take."""
        await client.extend(completed_id, "and then it rains", 20)
        assert only_request(api).json["seconds"] == "20"
        with pytest.raises(BadRequestError) as info:
            await client.extend(completed_id, "p", 10)
        assert info.value.param == "seconds"
        assert len(api.requests) == 2

    @pytest.mark.parametrize("model", ["sora-2", "sora-2-pro", "SORA-2"])
    async def test_a_sora_model_takes_the_spec_lengths_only(
        self, api: FakeVideosAPI, client: AsyncVideos, model: str
    ) -> None:
        """For OpenAI's Sora models a length the spec does not allow is refused before
        the (paid) request, naming the lengths allowed."""
        with pytest.raises(ValueError, match="one of 4, 8, 12 for"):
            await client.create("p", model=model, seconds=16)
        with pytest.raises(ValueError, match="one of 4, 8, 12 for"):
            await client.create_and_wait("p", model=model, seconds="7")
        assert api.requests == []
        await client.create("p", model=model, seconds=12)
        assert only_request(api).json["seconds"] == "12"

    @pytest.mark.parametrize("model", [None, "veo-3", "kling-v2", "sorabot"])
    async def test_another_model_gets_any_length_sent(
        self, api: FakeVideosAPI, client: AsyncVideos, model: str | None
    ) -> None:
        """Behind a gateway another provider takes lengths of its own: for any model but
        a Sora one (or none) the length is sent, and the server decides."""
        with pytest.raises(BadRequestError) as info:  # the fake, like OpenAI, refuses 10
            await client.create("p", model=model, seconds=10)
        assert only_request(api).json["seconds"] == "10"
        assert info.value.param in ("seconds", "model")

    async def test_a_gateway_gets_other_lengths_through_extra_body(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """``extra_body`` replaces the field as sent."""
        with pytest.raises(BadRequestError) as info:  # the fake, like OpenAI, refuses 10
            await client.create("p", seconds=4, extra_body={"seconds": "10"})
        assert only_request(api).json == {"prompt": "p", "seconds": "10"}
        assert info.value.param == "seconds"

    async def test_uploaded_video_is_extended(
        self, api: FakeVideosAPI, client: AsyncVideos, mp4_file: Path
    ) -> None:
        """An uploaded file goes as multipart with prompt and seconds fields."""
        await client.extend(mp4_file, "more", 4)
        form = only_request(api).form
        assert form is not None
        assert form["prompt"] == "more"
        assert form["seconds"] == "4"
        assert form["video"]["filename"] == "clip.mp4"


class TestCharacters:
    """``create_character()`` and ``retrieve_character()``."""

    async def test_create_then_retrieve(
        self, api: FakeVideosAPI, client: AsyncVideos, mp4_file: Path
    ) -> None:
        """A character is created from an uploaded video and can be read back."""
        created = await client.create_character("Mochi", mp4_file)
        assert isinstance(created, Character)
        assert created.name == "Mochi"
        assert created.id is not None
        assert created.created_at is not None
        req = only_request(api)
        assert req.path == "/v1/videos/characters"
        assert req.header("idempotency-key")
        assert req.form == {
            "name": "Mochi",
            "video": {"filename": "clip.mp4", "content_type": "video/mp4", "size": len(MP4)},
        }
        fetched = await client.retrieve_character(created.id)
        assert fetched == created
        assert api.requests[-1].path == f"/v1/videos/characters/{created.id}"

    async def test_unknown_character_is_not_found(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """An unknown id raises NotFoundError, without retries."""
        with pytest.raises(NotFoundError) as info:
            await client.retrieve_character("char_missing")
        assert info.value.code == "character_not_found"
        assert len(api.requests) == 1


class TestDelete:
    """``delete()``: ``DELETE /videos/{id}``."""

    async def test_delete_by_id_and_by_video(self, api: FakeVideosAPI, client: AsyncVideos) -> None:
        """The job is gone and the answer says so; a Video stands for its id."""
        first, second = api.seed(2)
        deleted = await client.delete(first)
        assert deleted == DeletedVideo(id=first, object="video.deleted", deleted=True)
        await client.delete(Video(id=second))
        assert [req.method for req in api.requests] == ["DELETE", "DELETE"]
        assert api.requests[1].path == f"/v1/videos/{second}"
        assert first not in api.videos
        assert second not in api.videos

    async def test_delete_is_retried_on_a_server_error(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """DELETE is safe to repeat, so unlike a POST it is retried after a 500."""
        (video_id,) = api.seed(1)
        api.inject(Fault(status=500), method="DELETE")
        deleted = await client.delete(video_id)
        assert deleted.deleted
        assert len(api.requests) == 2
        assert all(req.header("idempotency-key") is None for req in api.requests)

    async def test_unknown_job_is_not_found(self, api: FakeVideosAPI, client: AsyncVideos) -> None:
        """Deleting a job that does not exist raises NotFoundError."""
        with pytest.raises(NotFoundError):
            await client.delete("video_missing")


# Each POST method, for the retry rules that hold for all of them.
async def _create(client: AsyncVideos, **kw: Any) -> Any:
    return await client.create("p", **kw)


async def _remix(client: AsyncVideos, **kw: Any) -> Any:
    return await client.remix("video_src", "p", **kw)


async def _edit(client: AsyncVideos, **kw: Any) -> Any:
    return await client.edit("video_src", "p", **kw)


async def _extend(client: AsyncVideos, **kw: Any) -> Any:
    return await client.extend("video_src", "p", 4, **kw)


async def _character(client: AsyncVideos, **kw: Any) -> Any:
    return await client.create_character("Mochi", MP4, **kw)


async def _upload(client: AsyncVideos, **kw: Any) -> Any:
    return await client.create("p", input_reference=PNG, **kw)


POST_CALLS = pytest.mark.parametrize(
    "call", [_create, _remix, _edit, _extend, _character, _upload], ids=lambda f: f.__name__[1:]
)


class TestPostRetries:
    """A POST may start a paid job: it is retried only where the server certainly did not act."""

    @pytest.fixture(autouse=True)
    def _source(self, api: FakeVideosAPI) -> None:
        api.add_videos({"id": "video_src"})

    @POST_CALLS
    async def test_every_post_sends_an_idempotency_key(
        self, api: FakeVideosAPI, client: AsyncVideos, call: Any
    ) -> None:
        """Each call gets its own fresh key."""
        await call(client)
        await call(client)
        first, second = (req.header("idempotency-key") for req in posts(api))
        assert first
        assert second
        assert first != second

    @POST_CALLS
    async def test_caller_key_is_sent(
        self, api: FakeVideosAPI, client: AsyncVideos, call: Any
    ) -> None:
        """idempotency_key= is sent as the Idempotency-Key header."""
        await call(client, idempotency_key="order-42")
        assert only_request(api).header("idempotency-key") == "order-42"

    @POST_CALLS
    async def test_server_error_is_not_retried(
        self, api: FakeVideosAPI, client: AsyncVideos, call: Any
    ) -> None:
        """A 500 is ambiguous for a POST: raised at once, carrying the key."""
        api.inject(Fault(status=500), times=5, method="POST")
        with pytest.raises(InternalServerError) as info:
            await call(client)
        req = only_request(api)
        assert info.value.idempotency_key == req.header("idempotency-key")
        assert info.value.idempotency_key
        assert info.value.retries == 0

    @POST_CALLS
    async def test_rate_limit_is_retried_with_the_same_key(
        self, api: FakeVideosAPI, client: AsyncVideos, call: Any
    ) -> None:
        """A 429 means the server did nothing: retried, with the very same key and body."""
        api.inject(Fault(status=429), times=2, method="POST")
        result = await call(client)
        assert result.id is not None
        first, second, third = posts(api)
        assert first.header("idempotency-key") == second.header("idempotency-key")
        assert second.header("idempotency-key") == third.header("idempotency-key")
        # Same content (a multipart boundary is fresh per attempt, the parts are not).
        assert (first.json, first.form) == (second.json, second.form) == (third.json, third.form)

    async def test_rate_limit_retries_run_out(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """After max_retries retries the 429 is raised, with the count and the key."""
        api.inject(Fault(status=429), times=10, method="POST")
        with pytest.raises(RateLimitError) as info:
            await client.create("p", max_retries=3, idempotency_key="k-1")
        assert len(posts(api)) == 4
        assert info.value.retries == 3
        assert info.value.idempotency_key == "k-1"

    async def test_spent_quota_is_not_retried(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """A 429 whose code says the quota is spent cannot be helped by a retry."""
        body = {"error": {"message": "quota", "type": "insufficient_quota", "code": None}}
        api.inject(Fault(status=429, body=body), times=5, method="POST")
        with pytest.raises(QuotaExceededError):
            await client.create("p")
        assert len(posts(api)) == 1

    async def test_should_retry_header_allows_a_retry(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """x-should-retry: true says the server did not act: even a 500 is retried."""
        api.inject(Fault(status=500, headers={"x-should-retry": "true"}), method="POST")
        video = await client.create("p")
        first, second = posts(api)
        assert first.header("idempotency-key") == second.header("idempotency-key")
        assert set(api.videos) == {"video_src", video.id}

    async def test_should_retry_false_forbids_a_retry(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """x-should-retry: false wins over the 429 rule."""
        api.inject(Fault(status=429, headers={"x-should-retry": "false"}), method="POST")
        with pytest.raises(RateLimitError):
            await client.create("p")
        assert len(posts(api)) == 1

    async def test_dropped_connection_is_not_retried(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """A connection dropped after the request was sent is ambiguous: raised at once."""
        api.inject(Fault(drop=True), times=5, method="POST")
        with pytest.raises(APIConnectionError) as info:
            await client.create("p")
        req = only_request(api)
        assert info.value.idempotency_key == req.header("idempotency-key")
        assert info.value.request_sent

    async def test_timeout_after_sending_is_not_retried(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """A timeout while waiting for the answer is ambiguous: raised at once."""
        api.inject(Fault(delay=2.0), times=5, method="POST")
        with pytest.raises(APITimeoutError) as info:
            await client.create("p", timeout=0.2)
        assert len(api.requests) == 1
        assert info.value.idempotency_key == api.requests[0].header("idempotency-key")

    async def test_unopened_connection_is_retried(self, caplog: pytest.LogCaptureFixture) -> None:
        """Nothing reached a closed port, so even a POST is retried, max_retries times."""
        port = closed_port()
        caplog.set_level(logging.INFO, logger="asyncvideos")
        async with AsyncVideos(api_key="sk-test-key", base_url=f"http://127.0.0.1:{port}/v1") as c:
            with pytest.raises(APIConnectionError) as info:
                await c.create("p", max_retries=3)
        assert info.value.retries == 3
        assert not info.value.request_sent
        assert info.value.idempotency_key
        assert sum("Retrying POST /videos" in r.getMessage() for r in caplog.records) == 3

    async def test_truncated_answer_is_not_retried_and_reconciles(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """The server created the job but the answer was cut: not retried; the key finds it."""
        api.inject(Fault(truncate=True), method="POST")
        with pytest.raises(APIConnectionError) as info:
            await client.create("p", seconds=8)
        assert len(posts(api)) == 1
        key = info.value.idempotency_key
        assert key == api.requests[0].header("idempotency-key")
        # The job exists although the client never saw it.
        (created_id,) = set(api.videos) - {"video_src"}
        assert key is not None
        video = await client.create("p", seconds=8, idempotency_key=key)
        assert video.id == created_id
        assert set(api.videos) == {"video_src", created_id}
        assert len(posts(api)) == 2

    async def test_get_is_retried_where_a_post_is_not(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """The same 500 that stops a POST is retried for a GET, which is safe to repeat."""
        api.inject(Fault(status=500), method="GET")
        video = await client.retrieve("video_src")
        assert video.id == "video_src"
        assert len(api.requests) == 2


class TestIdempotency:
    """The fake honours Idempotency-Key the way the client relies on."""

    async def test_repeated_key_returns_the_first_job(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """Two creates with one key make one job."""
        first = await client.create("p", idempotency_key="same")
        second = await client.create("p", idempotency_key="same")
        assert first == second
        assert len(api.videos) == 1

    async def test_different_keys_make_different_jobs(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """Without a shared key, two creates are two jobs."""
        first = await client.create("p")
        second = await client.create("p")
        assert first.id != second.id
        assert len(api.videos) == 2
