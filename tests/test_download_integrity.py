"""A download is whole and correct, or absent, whatever the server sends.

Most tests run against a hostile content endpoint on loopback (``Script``): each
request is answered by the next scripted handler, which may cut the body, answer
a resume with the wrong bytes, change the content between attempts, send a 206
nobody asked for, or label a video as an image. The rest use the fake API's
faults. Every finished file is compared byte for byte with the content; every
failure must leave no file behind.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import re
import socket
import stat
import sys
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict

from asyncvideos import (
    APIConnectionError,
    APIResponseValidationError,
    AsyncVideos,
    ContentMismatchError,
    ResponseTooLargeError,
)
from asyncvideos._ranges import (
    ContentRange,
    accepts_byte_ranges,
    content_length,
    if_range_validator,
    parse_content_range,
)
from asyncvideos.testing import FakeVideosAPI, Fault

SIZE = 1_024_000
V1 = hashlib.shake_256(b"version 1").digest(SIZE)
V2 = hashlib.shake_256(b"version 2").digest(SIZE)
CUT = 100_000
CONTENT = r"/content$"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def send(
    request: web.Request,
    body: bytes,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    cut: int | None = None,
    chunked: bool = False,
) -> web.StreamResponse:
    """Answer with ``body``; ``cut``: hang up after that many bytes; ``chunked``:
    no Content-Length, so only the server's own headers say how long the body is."""
    response = web.StreamResponse(status=status, headers=headers or {})
    if chunked:
        response.enable_chunked_encoding()
    else:
        response.content_length = len(body)
    await response.prepare(request)
    if cut is not None:
        await response.write(body[:cut])
        assert request.transport is not None
        request.transport.close()
        return response
    await response.write(body)
    await response.write_eof()
    return response


def range_start(request: web.Request) -> int | None:
    match = re.fullmatch(r"bytes=(\d+)-", request.headers.get("Range", ""))
    return int(match.group(1)) if match else None


def whole(
    body: bytes = V1,
    *,
    etag: str | None = '"v1"',
    cut: int | None = None,
    content_type: str = "video/mp4",
    headers: dict[str, str] | None = None,
) -> Handler:
    """A 200 with the whole body, ranges accepted (unless ``headers`` say otherwise)."""
    sent = {"Accept-Ranges": "bytes", "Content-Type": content_type, **(headers or {})}
    if etag is not None:
        sent["ETag"] = etag

    async def handler(request: web.Request) -> web.StreamResponse:
        return await send(request, body, headers=sent, cut=cut)

    return handler


def ranged(
    body: bytes = V1,
    *,
    etag: str | None = '"v1"',
    shift: int = 0,
    total: int | str | None = None,
    extra: bytes = b"",
    chunked: bool = False,
) -> Handler:
    """A 206 for ``Range: bytes=N-`` (ignoring If-Range): from N + ``shift``,
    claiming ``total`` (default: the body's size), with ``extra`` bytes after."""

    async def handler(request: web.Request) -> web.StreamResponse:
        start = (range_start(request) or 0) + shift
        headers = {
            "Content-Type": "video/mp4",
            "Content-Range": f"bytes {start}-{len(body) - 1}/{total or len(body)}",
        }
        if etag is not None:
            headers["ETag"] = etag
        return await send(
            request, body[start:] + extra, status=206, headers=headers, chunked=chunked
        )

    return handler


def honest(body: bytes, etag: str) -> Handler:
    """Today's version of the content, with Range and If-Range as RFC 9110 says."""

    async def handler(request: web.Request) -> web.StreamResponse:
        start = range_start(request)
        if start is None or request.headers.get("If-Range", etag) != etag:
            return await whole(body, etag=etag)(request)
        return await ranged(body, etag=etag)(request)

    return handler


class Script:
    """A content endpoint answering the n-th request with ``answers[n]`` (the
    last answer repeats), recording each request's headers."""

    def __init__(self) -> None:
        self.answers: list[Handler] = []
        self.requests: list[CIMultiDict[str]] = []
        self.base_url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(CIMultiDict(request.headers))
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        try:
            return await answer(request)
        except ConnectionError:  # the client hung up first
            return web.Response()

    def ranges(self) -> list[str | None]:
        return [headers.get("Range") for headers in self.requests]


@pytest.fixture
async def script() -> AsyncIterator[Script]:
    server = Script()
    app = web.Application()
    app.router.add_get("/v1/videos/{video_id}/content", server.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    try:
        yield server
    finally:
        await runner.cleanup()


@pytest.fixture
async def client(script: Script) -> AsyncIterator[AsyncVideos]:
    async with AsyncVideos(api_key="sk-test", base_url=script.base_url) as videos:
        yield videos


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


async def read_all(chunks: AsyncIterable[bytes], into: list[bytes]) -> bytes:
    async for chunk in chunks:
        into.append(chunk)
    return b"".join(into)


class TestResumeChecks:
    """A resumed body is used only when it is exactly the bytes asked for."""

    async def test_misranged_resume_starts_over_in_a_download(
        self, script: Script, client: AsyncVideos, tmp_path: Path
    ) -> None:
        """A 206 from another offset is not stitched in: the download starts over
        without Range, and the file is the content."""
        script.answers = [whole(cut=CUT), ranged(shift=500), whole()]
        target = await client.download("video_1", tmp_path / "v.mp4")
        assert target.read_bytes() == V1
        first, resumed, restarted = script.ranges()
        assert first is None
        assert resumed is not None
        assert restarted is None
        assert leftovers(tmp_path) == ["v.mp4"]

    async def test_misranged_resume_raises_in_iter_content(
        self, script: Script, client: AsyncVideos
    ) -> None:
        """iter_content cannot take back what it yielded: it raises, and yields
        none of the misranged bytes."""
        script.answers = [whole(cut=CUT), ranged(shift=-500)]
        received: list[bytes] = []
        with pytest.raises(ContentMismatchError, match=r"at byte \d+.*bytes from \d+"):
            await read_all(client.iter_content("video_1"), received)
        assert V1.startswith(b"".join(received))
        assert len(script.requests) == 2

    async def test_misranged_resumes_are_bounded(
        self, script: Script, client: AsyncVideos, tmp_path: Path
    ) -> None:
        """A server that answers every resume and restart badly ends in
        ContentMismatchError after max_retries new requests, with no file."""
        script.answers = [whole(cut=CUT), ranged(shift=7), whole(cut=CUT), ranged(shift=7)]
        with pytest.raises(ContentMismatchError) as info:
            await client.download("video_1", tmp_path / "v.mp4", max_retries=3)
        assert info.value.retries == 3
        assert len(script.requests) == 4
        assert leftovers(tmp_path) == []

    async def test_a_206_without_content_range_is_not_used(
        self, script: Script, client: AsyncVideos
    ) -> None:
        """A 206 that does not say which bytes it holds is refused."""

        async def no_range(request: web.Request) -> web.StreamResponse:
            return await send(request, V1[CUT:], status=206)

        script.answers = [whole(cut=CUT), no_range]
        with pytest.raises(ContentMismatchError, match="Content-Range '\\(none\\)'"):
            await read_all(client.iter_content("video_1"), [])

    async def test_resume_sends_range_and_if_range(
        self, script: Script, client: AsyncVideos, tmp_path: Path
    ) -> None:
        """The resume asks for the bytes from where it stopped, of the version held."""
        script.answers = [whole(cut=CUT), ranged()]
        await client.download("video_1", tmp_path / "v.mp4")
        first, resume = script.requests
        assert "If-Range" not in first
        assert "Range" not in first
        assert resume["Range"] == f"bytes={CUT}-"
        assert resume["If-Range"] == '"v1"'
        for headers in script.requests:
            assert headers["Accept"].startswith("video/*")
            assert headers["Accept-Encoding"] == "identity"

    @pytest.mark.parametrize(
        ("headers", "sent"),
        [
            ({"ETag": 'W/"weak"', "Last-Modified": "Tue, 01 Sep 2026 10:00:00 GMT"}, True),
            ({"Last-Modified": "Tue, 01 Sep 2026 10:00:00 GMT"}, True),
            ({"ETag": 'W/"weak"'}, False),
        ],
    )
    async def test_if_range_falls_back_to_last_modified(
        self,
        script: Script,
        client: AsyncVideos,
        tmp_path: Path,
        headers: dict[str, str],
        sent: bool,
    ) -> None:
        """Without a strong ETag, If-Range carries Last-Modified; a weak ETag alone
        gives no If-Range at all (and the resume is still checked by its range)."""
        script.answers = [whole(cut=CUT, etag=None, headers=headers), ranged(etag=None)]
        await client.download("video_1", tmp_path / "v.mp4")
        assert (tmp_path / "v.mp4").read_bytes() == V1
        if_range = script.requests[1].get("If-Range")
        assert if_range == ("Tue, 01 Sep 2026 10:00:00 GMT" if sent else None)


async def not_satisfiable(request: web.Request) -> web.StreamResponse:
    """A 416 to any Range, as from a server whose content shrank or lost track."""
    return web.json_response(
        {"error": {"message": "Requested range not satisfiable.", "type": "invalid_request"}},
        status=416,
        headers={"Content-Range": f"bytes */{SIZE}"},
    )


class TestRangeNotSatisfiable:
    """A resume answered 416 starts over without Range, as a misranged 206 does."""

    async def test_a_download_starts_over(
        self, script: Script, client: AsyncVideos, tmp_path: Path
    ) -> None:
        script.answers = [whole(cut=CUT), not_satisfiable, whole()]
        target = await client.download("video_1", tmp_path / "v.mp4")
        assert target.read_bytes() == V1
        assert script.ranges() == [None, f"bytes={CUT}-", None]
        assert leftovers(tmp_path) == ["v.mp4"]

    async def test_iter_content_raises_the_mismatch(
        self, script: Script, client: AsyncVideos
    ) -> None:
        script.answers = [whole(cut=CUT), not_satisfiable]
        received: list[bytes] = []
        with pytest.raises(ContentMismatchError, match="416"):
            await read_all(client.iter_content("video_1"), received)
        assert V1.startswith(b"".join(received))
        assert len(script.requests) == 2

    async def test_starting_over_is_bounded(
        self, script: Script, client: AsyncVideos, tmp_path: Path
    ) -> None:
        script.answers = [whole(cut=CUT), not_satisfiable, whole(cut=CUT), not_satisfiable]
        with pytest.raises(ContentMismatchError, match="416") as info:
            await client.download("video_1", tmp_path / "v.mp4", max_retries=3)
        assert info.value.retries == 3
        assert len(script.requests) == 4
        assert leftovers(tmp_path) == []

    async def test_on_the_fake(self, api: FakeVideosAPI, tmp_path: Path) -> None:
        """The same through the fake's faults: a drop, then a 416 to the resume."""
        (video_id,) = api.seed(1)
        size = len(api.content_bytes(video_id))
        api.inject(Fault(drop_after_bytes=100_000), path=CONTENT)
        refused = Fault(status=416, headers={"Content-Range": f"bytes */{size}"})
        api.inject(refused, path=CONTENT)
        async with api.client() as videos:
            target = await videos.download(video_id, tmp_path / "v.mp4")
        assert target.read_bytes() == api.content_bytes(video_id)
        assert [r.header("range") for r in api.requests] == [None, "bytes=100000-", None]


async def endless(request: web.Request) -> web.StreamResponse:
    """A chunked body with no length that never ends (until the client hangs up)."""
    response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    piece = bytes(64 * 1024)
    for _ in range(16 * 1024):  # 1 GiB at most, in case the client never hangs up
        await response.write(piece)
    return response


CEILING = 300_000


@pytest.fixture
async def capped(script: Script) -> AsyncIterator[AsyncVideos]:
    async with AsyncVideos(
        api_key="sk-test", base_url=script.base_url, max_download_bytes=CEILING
    ) as videos:
        yield videos


class TestDownloadCeiling:
    """``max_download_bytes``: no content stream hands over a byte past it."""

    async def test_an_endless_download_ends_with_no_file(
        self, script: Script, capped: AsyncVideos, tmp_path: Path
    ) -> None:
        script.answers = [endless]
        with pytest.raises(ResponseTooLargeError, match="max_download_bytes=300000"):
            await capped.download("video_1", tmp_path / "v.mp4")
        assert leftovers(tmp_path) == []
        assert len(script.requests) == 1  # not retried, not resumed

    async def test_an_endless_iter_content_stops_at_the_ceiling(
        self, script: Script, capped: AsyncVideos
    ) -> None:
        script.answers = [endless]
        received: list[bytes] = []
        with pytest.raises(ResponseTooLargeError):
            await read_all(capped.iter_content("video_1"), received)
        assert 0 < sum(map(len, received)) <= CEILING

    async def test_an_endless_open_content_stops_at_the_ceiling(
        self, script: Script, capped: AsyncVideos
    ) -> None:
        script.answers = [endless]
        received: list[bytes] = []
        async with capped.open_content("video_1") as body:
            assert body.content_length is None
            with pytest.raises(ResponseTooLargeError):
                await read_all(body, received)
        assert 0 < sum(map(len, received)) <= CEILING

    @pytest.mark.parametrize("method", ["download", "iter_content", "open_content"])
    async def test_an_announced_size_over_the_ceiling_fails_before_reading(
        self, script: Script, capped: AsyncVideos, tmp_path: Path, method: str
    ) -> None:
        script.answers = [whole()]  # SIZE bytes, announced

        async def opened() -> None:
            async with capped.open_content("video_1"):
                pass

        calls = {
            "download": lambda: capped.download("video_1", tmp_path / "v.mp4"),
            "iter_content": lambda: read_all(capped.iter_content("video_1"), []),
            "open_content": opened,
        }
        with pytest.raises(ResponseTooLargeError, match=f"is {SIZE} bytes"):
            await calls[method]()
        assert leftovers(tmp_path) == []

    async def test_a_resume_cannot_grow_past_it(
        self, script: Script, capped: AsyncVideos, tmp_path: Path
    ) -> None:
        """A chunked body cut short, then a 206 announcing the whole size: refused."""
        script.answers = [chunked_then_cut, ranged()]
        with pytest.raises(ResponseTooLargeError, match=f"is {SIZE} bytes"):
            await capped.download("video_1", tmp_path / "v.mp4")
        assert leftovers(tmp_path) == []

    async def test_content_up_to_the_ceiling_is_whole(self, script: Script, tmp_path: Path) -> None:
        script.answers = [whole()]
        async with AsyncVideos(
            api_key="sk-test", base_url=script.base_url, max_download_bytes=SIZE
        ) as videos:
            target = await videos.download("video_1", tmp_path / "v.mp4")
        assert target.read_bytes() == V1


async def chunked_then_cut(request: web.Request) -> web.StreamResponse:
    """No length announced; the body stops after CUT bytes."""
    headers = {"Accept-Ranges": "bytes", "Content-Type": "video/mp4", "ETag": '"v1"'}
    return await send(request, V1, headers=headers, cut=CUT, chunked=True)


class TestChangedContent:
    """A download never mixes two versions of the content."""

    async def test_a_changed_etag_starts_the_download_over(
        self, script: Script, client: AsyncVideos, tmp_path: Path
    ) -> None:
        """The content changed between the attempts: the server answers the
        If-Range resume with the whole new version, which is the file."""
        script.answers = [whole(cut=CUT), honest(V2, '"v2"')]
        target = await client.download("video_1", tmp_path / "v.mp4")
        assert target.read_bytes() == V2
        assert script.requests[1]["If-Range"] == '"v1"'

    async def test_a_changed_etag_raises_in_iter_content(
        self, script: Script, client: AsyncVideos
    ) -> None:
        """iter_content has yielded version 1's bytes: it raises rather than go on
        with version 2."""
        script.answers = [whole(cut=CUT), honest(V2, '"v2"')]
        received: list[bytes] = []
        with pytest.raises(ContentMismatchError, match="changed"):
            await read_all(client.iter_content("video_1"), received)
        assert V1.startswith(b"".join(received))

    async def test_a_server_ignoring_if_range_is_caught_by_the_etag(
        self, script: Script, client: AsyncVideos, tmp_path: Path
    ) -> None:
        """A 206 of another version (its ETag says so) is not stitched in."""
        script.answers = [whole(cut=CUT), ranged(V2, etag='"v2"'), whole(V2, etag='"v2"')]
        target = await client.download("video_1", tmp_path / "v.mp4")
        assert target.read_bytes() == V2
        assert script.ranges()[2] is None

    async def test_a_changed_size_is_caught_by_content_range(
        self, script: Script, client: AsyncVideos
    ) -> None:
        """A 206 whose Content-Range total differs from the first answer's size is
        another version, even with the same ETag."""
        script.answers = [whole(cut=CUT), ranged(total=SIZE + 1)]
        with pytest.raises(ContentMismatchError, match=f"{SIZE + 1} bytes instead of {SIZE}"):
            await read_all(client.iter_content("video_1"), [])

    async def test_range_ignored_with_same_etag_is_a_connection_error(
        self, script: Script, client: AsyncVideos
    ) -> None:
        """A 200 with the same version to a resume: the server cannot resume."""
        script.answers = [whole(cut=CUT), whole()]
        with pytest.raises(APIConnectionError, match="cannot resume"):
            await read_all(client.iter_content("video_1"), [])


class TestAnnouncedSize:
    """The finished body has the size the server announced, or it is an error."""

    async def test_a_206_to_a_plain_get_is_completed_with_range(
        self, script: Script, client: AsyncVideos, tmp_path: Path
    ) -> None:
        """A 206 from byte 0 with the whole size is the start of the body: the rest
        is asked for, and the file has the whole size."""

        async def first_thousand(request: web.Request) -> web.StreamResponse:
            headers = {"Content-Range": f"bytes 0-999/{SIZE}", "ETag": '"v1"'}
            return await send(request, V1[:1000], status=206, headers=headers)

        script.answers = [first_thousand, ranged()]
        target = await client.download("video_1", tmp_path / "v.mp4")
        assert target.read_bytes() == V1
        assert script.ranges() == [None, "bytes=1000-"]

    async def test_a_206_to_a_plain_get_is_never_saved_as_the_file(
        self, script: Script, client: AsyncVideos, tmp_path: Path
    ) -> None:
        """1,000 of 1,024,000 bytes, and no way to get the rest: an error, no file."""

        async def first_thousand(request: web.Request) -> web.StreamResponse:
            headers = {"Content-Range": f"bytes 0-999/{SIZE}"}
            return await send(request, V1[:1000], status=206, headers=headers)

        script.answers = [first_thousand]
        with pytest.raises(ContentMismatchError, match=f"{SIZE} bytes; it ended at byte 1000"):
            await client.download("video_1", tmp_path / "v.mp4", max_retries=0)
        assert leftovers(tmp_path) == []

    @pytest.mark.parametrize("content_range", ["bytes 0-999/*", "bytes 5-999/2000", None])
    async def test_a_206_to_a_plain_get_that_cannot_be_whole_raises(
        self,
        script: Script,
        client: AsyncVideos,
        tmp_path: Path,
        content_range: str | None,
    ) -> None:
        """A 206 not from byte 0, or without the whole size, is refused at once."""

        async def partial(request: web.Request) -> web.StreamResponse:
            headers = {} if content_range is None else {"Content-Range": content_range}
            return await send(request, V1[:995], status=206, headers=headers)

        script.answers = [partial]
        with pytest.raises(ContentMismatchError, match="Asked for the whole body"):
            await client.download("video_1", tmp_path / "v.mp4")
        assert leftovers(tmp_path) == []
        assert len(script.requests) == 1

    async def test_a_short_chunked_body_is_resumed(
        self, script: Script, client: AsyncVideos, tmp_path: Path
    ) -> None:
        """A resumed 206 that ends before its Content-Range end (chunked, so no
        Content-Length catches it) is resumed again from where it stopped."""

        async def short(request: web.Request) -> web.StreamResponse:
            start = range_start(request) or 0
            headers = {"Content-Range": f"bytes {start}-{SIZE - 1}/{SIZE}", "ETag": '"v1"'}
            return await send(
                request, V1[start : start + 1000], status=206, headers=headers, chunked=True
            )

        script.answers = [whole(cut=CUT), short, ranged()]
        target = await client.download("video_1", tmp_path / "v.mp4")
        assert target.read_bytes() == V1
        assert script.ranges() == [None, f"bytes={CUT}-", f"bytes={CUT + 1000}-"]

    async def test_the_size_is_learnt_from_a_resume(
        self, script: Script, client: AsyncVideos, tmp_path: Path
    ) -> None:
        """A first body of unknown length, cut: the resume's Content-Range gives the
        size, and progress reports it from then on."""

        async def unsized(request: web.Request) -> web.StreamResponse:
            headers = {"Accept-Ranges": "bytes", "ETag": '"v1"'}
            return await send(request, V1, headers=headers, chunked=True, cut=CUT)

        script.answers = [unsized, ranged()]
        seen: list[tuple[int, int | None]] = []
        target = await client.download(
            "video_1", tmp_path / "v.mp4", on_progress=lambda *done_total: seen.append(done_total)
        )
        assert target.read_bytes() == V1
        assert seen[0][1] is None
        assert seen[-1] == (SIZE, SIZE)

    async def test_a_body_longer_than_announced_is_refused(
        self, script: Script, client: AsyncVideos, tmp_path: Path
    ) -> None:
        """Bytes past the announced end are never written."""
        script.answers = [whole(cut=CUT), ranged(extra=b"junk", chunked=True)]
        with pytest.raises(ContentMismatchError, match=f"Expected {SIZE} bytes"):
            await client.download("video_1", tmp_path / "v.mp4")
        assert leftovers(tmp_path) == []

    async def test_a_short_body_with_content_length_leaves_no_file(
        self, script: Script, client: AsyncVideos, tmp_path: Path
    ) -> None:
        """A body cut before its Content-Length, with no retry left: an error, no file."""
        script.answers = [whole(cut=CUT, etag=None, headers={"Accept-Ranges": "none"})]
        with pytest.raises(APIConnectionError):
            await client.download("video_1", tmp_path / "v.mp4", max_retries=0)
        assert leftovers(tmp_path) == []

    async def test_a_compressed_body_is_refused(
        self, script: Script, client: AsyncVideos, tmp_path: Path
    ) -> None:
        """A server that compresses although asked not to (``identity``): refused
        before any file or folder is made, as it could inflate to any size."""
        packed = gzip.compress(V1[:50_000])

        async def compressed(request: web.Request) -> web.StreamResponse:
            headers = {"Content-Encoding": "gzip", "Content-Type": "video/mp4"}
            return await send(request, packed, headers=headers)

        script.answers = [compressed]
        with pytest.raises(ContentMismatchError, match="'gzip' encoding"):
            await client.download("video_1", tmp_path / "new" / "v.mp4")
        assert leftovers(tmp_path) == []
        assert script.requests[0]["Accept-Encoding"] == "identity"


class TestMediaType:
    """A variant that comes back as the wrong kind of media is an error, not a file."""

    @pytest.mark.parametrize(
        ("variant", "content_type"),
        [
            ("thumbnail", "video/mp4"),
            ("spritesheet", "VIDEO/MP4; codecs=avc1"),
            ("video", "image/webp"),
            (None, "image/jpeg"),
        ],
    )
    async def test_wrong_kind_raises_and_writes_nothing(
        self,
        api: FakeVideosAPI,
        tmp_path: Path,
        variant: Any,
        content_type: str,
    ) -> None:
        """A gateway that ignores variant: download, iter_content and
        download_content all refuse the body."""
        (video_id,) = api.seed(1)
        api.inject(Fault(headers={"Content-Type": content_type}), path=CONTENT, times=3)
        kwargs = {} if variant is None else {"variant": variant}
        async with api.client() as videos:
            with pytest.raises(ContentMismatchError, match=content_type.split(";")[0].lower()):
                await videos.download(video_id, tmp_path / "x", **kwargs)
            with pytest.raises(ContentMismatchError):
                await read_all(videos.iter_content(video_id, **kwargs), [])
            with pytest.raises(ContentMismatchError, match="variant"):
                await videos.download_content(video_id, **kwargs)
        assert leftovers(tmp_path) == []
        assert issubclass(ContentMismatchError, APIResponseValidationError)

    @pytest.mark.parametrize(
        "content_type", ["application/octet-stream", "binary/octet-stream", "", "image/webp"]
    )
    async def test_generic_or_missing_types_are_accepted(
        self, script: Script, client: AsyncVideos, tmp_path: Path, content_type: str
    ) -> None:
        """Only the wrong kind is refused; a generic or absent type is fine."""

        async def untyped(request: web.Request) -> web.StreamResponse:
            return await send(request, V1[:5000], headers={"Content-Type": content_type})

        script.answers = [untyped]
        target = await client.download("video_1", tmp_path / "t.webp", variant="thumbnail")
        assert target.read_bytes() == V1[:5000]
        assert await client.download_content("video_1", variant="thumbnail") == V1[:5000]


class TestKeyInServerText:
    """Server text quoted in a ContentMismatchError never carries the key."""

    KEY = "sk-downloads-0123456789abcdefghij"

    async def test_an_echoed_key_is_masked_in_every_content_method(
        self, script: Script, tmp_path: Path
    ) -> None:
        """A gateway that puts the key in Content-Type and ETag: masked in the
        error of download, iter_content, open_content and download_content."""
        headers = {"ETag": f'"{self.KEY}"'}
        script.answers = [whole(cut=CUT, headers=headers), ranged(etag=f'"{self.KEY}-2"')]

        async def echo(request: web.Request) -> web.StreamResponse:
            sent = {"Content-Type": f"video/{self.KEY}"}
            return await send(request, V1[:100], headers=sent)

        errors: list[BaseException] = []
        async with AsyncVideos(api_key=self.KEY, base_url=script.base_url) as videos:
            with pytest.raises(ContentMismatchError) as caught:
                await read_all(videos.iter_content("video_1"), [])
            errors.append(caught.value)
            script.requests.clear()
            script.answers = [echo]
            for call in (
                videos.download("video_1", tmp_path / "t.webp", variant="thumbnail"),
                videos.download_content("video_1", variant="thumbnail"),
                read_all(videos.iter_content("video_1", variant="thumbnail"), []),
            ):
                with pytest.raises(ContentMismatchError) as caught:
                    await call
                errors.append(caught.value)
            with pytest.raises(ContentMismatchError) as caught:
                async with videos.open_content("video_1", variant="spritesheet"):
                    pass  # pragma: no cover - not reached
            errors.append(caught.value)
        for error in errors:
            assert self.KEY not in str(error)
            assert self.KEY not in repr(error)
            assert "sk-" in str(error)  # the echo was quoted, masked
        assert leftovers(tmp_path) == []


class TestDownloadContentRange:
    """``download_content()`` refuses a part where the whole was asked for."""

    async def test_a_partial_body_raises(self, script: Script, client: AsyncVideos) -> None:
        async def first_thousand(request: web.Request) -> web.StreamResponse:
            headers = {"Content-Range": f"bytes 0-999/{SIZE}"}
            return await send(request, V1[:1000], status=206, headers=headers)

        script.answers = [first_thousand]
        with pytest.raises(ContentMismatchError, match="1000 bytes"):
            await client.download_content("video_1")

    async def test_a_206_without_content_range_raises(
        self, script: Script, client: AsyncVideos
    ) -> None:
        async def unlabelled(request: web.Request) -> web.StreamResponse:
            return await send(request, V1[:1000], status=206)

        script.answers = [unlabelled]
        with pytest.raises(ContentMismatchError, match="206 of 1000 bytes"):
            await client.download_content("video_1")
        assert len(script.requests) == 1  # not retried: the server will not change its mind

    async def test_a_whole_range_is_accepted(self, script: Script, client: AsyncVideos) -> None:
        async def all_of_it(request: web.Request) -> web.StreamResponse:
            headers = {"Content-Range": "bytes 0-999/1000"}
            return await send(request, V1[:1000], status=206, headers=headers)

        script.answers = [all_of_it]
        assert await client.download_content("video_1") == V1[:1000]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file types and permissions")
class TestTarget:
    """overwrite=True replaces regular files only, and keeps their permissions."""

    @pytest.mark.parametrize("kind", ["fifo", "socket", "device", "directory"])
    async def test_a_special_file_is_refused_before_any_request(
        self, api: FakeVideosAPI, client_on_fake: AsyncVideos, tmp_path: Path, kind: str
    ) -> None:
        """A FIFO, socket, device (a link to /dev/null) or folder at the target is a
        ValueError naming what is there, with or without overwrite; nothing is sent."""
        (video_id,) = api.seed(1)
        target = tmp_path / "clip.mp4"
        words = {"fifo": "a FIFO", "socket": "a socket", "device": "character device"}
        holder = None
        if kind == "fifo":
            os.mkfifo(target)
        elif kind == "socket":
            holder = socket.socket(socket.AF_UNIX)
            holder.bind(str(target))
        elif kind == "device":
            target.symlink_to("/dev/null")
        else:
            target.mkdir()
        try:
            for overwrite in (True, False):
                with pytest.raises(ValueError, match=words.get(kind, "directory")):
                    await client_on_fake.download(video_id, target, overwrite=overwrite)
        finally:
            if holder is not None:
                holder.close()
        assert api.requests == []
        assert leftovers(tmp_path) == ["clip.mp4"]

    async def test_a_fifo_that_appears_meanwhile_is_not_replaced(
        self, api: FakeVideosAPI, client_on_fake: AsyncVideos, tmp_path: Path
    ) -> None:
        """Checked again at the final move: a FIFO made during the download stays."""
        (video_id,) = api.seed(1)
        target = tmp_path / "clip.mp4"
        target.write_bytes(b"old")

        def swap(done: int, total: int | None) -> None:
            if target.is_file():
                target.unlink()
                os.mkfifo(target)

        with pytest.raises(ValueError, match="FIFO"):
            await client_on_fake.download(video_id, target, overwrite=True, on_progress=swap)
        assert stat.S_ISFIFO(os.stat(target).st_mode)
        assert leftovers(tmp_path) == ["clip.mp4"]

    async def test_overwrite_on_a_new_path_writes_it(
        self, api: FakeVideosAPI, client_on_fake: AsyncVideos, tmp_path: Path
    ) -> None:
        (video_id,) = api.seed(1)
        target = await client_on_fake.download(video_id, tmp_path / "new.mp4", overwrite=True)
        assert target.read_bytes() == api.content_bytes(video_id)

    async def test_the_replaced_files_mode_is_kept(
        self, api: FakeVideosAPI, client_on_fake: AsyncVideos, tmp_path: Path
    ) -> None:
        """A private file stays private (and an executable one executable)."""
        (video_id,) = api.seed(1)
        for mode in (0o600, 0o750):
            target = tmp_path / f"clip-{mode:o}.mp4"
            target.write_bytes(b"old")
            target.chmod(mode)
            await client_on_fake.download(video_id, target, overwrite=True)
            assert target.read_bytes() == api.content_bytes(video_id)
            assert stat.S_IMODE(target.stat().st_mode) == mode


@pytest.fixture
async def client_on_fake(api: FakeVideosAPI) -> AsyncIterator[AsyncVideos]:
    async with api.client() as videos:
        yield videos


class TestOpenContent:
    """``open_content()``: the body's size and type first, then its chunks."""

    async def test_headers_then_chunks(
        self, api: FakeVideosAPI, client_on_fake: AsyncVideos
    ) -> None:
        """content_length and content_type are known before any byte is read."""
        (video_id,) = api.seed(1)
        async with client_on_fake.open_content(video_id, variant="thumbnail") as body:
            expected = api.content_bytes(video_id, "thumbnail")
            assert body.content_length == len(expected)
            assert body.content_type == "image/webp"
            assert b"".join([chunk async for chunk in body]) == expected
        (request,) = api.requests
        assert request.query == {"variant": "thumbnail"}

    async def test_a_drop_is_resumed(self, api: FakeVideosAPI, client_on_fake: AsyncVideos) -> None:
        """The same resume rules as iter_content: Range from the bytes received."""
        (video_id,) = api.seed(1)
        api.inject(Fault(drop_after_bytes=100_000), path=CONTENT)
        async with client_on_fake.open_content(video_id, chunk_size=4096) as body:
            chunks = [chunk async for chunk in body]
        assert max(len(chunk) for chunk in chunks) <= 4096
        assert b"".join(chunks) == api.content_bytes(video_id)
        assert api.requests[1].header("range") is not None

    async def test_a_misranged_resume_raises(self, script: Script, client: AsyncVideos) -> None:
        script.answers = [whole(cut=CUT), ranged(shift=1)]
        async with client.open_content("video_1") as body:
            assert body.content_length == SIZE
            with pytest.raises(ContentMismatchError):
                await read_all(body, [])

    async def test_unknown_length_is_none(self, script: Script, client: AsyncVideos) -> None:
        """A chunked body has no length to pass on."""

        async def chunked(request: web.Request) -> web.StreamResponse:
            headers = {"Content-Type": "video/mp4"}
            return await send(request, V1[:3000], headers=headers, chunked=True)

        script.answers = [chunked]
        async with client.open_content("video_1") as body:
            assert body.content_length is None
            assert body.content_type == "video/mp4"
            assert await read_all(body, []) == V1[:3000]

    async def test_an_error_status_raises_on_entry(
        self, api: FakeVideosAPI, client_on_fake: AsyncVideos
    ) -> None:
        """Nothing to enter for a job whose content is missing."""
        from asyncvideos import NotFoundError

        with pytest.raises(NotFoundError):
            async with client_on_fake.open_content("video_missing"):
                pass  # pragma: no cover - not reached

    async def test_leaving_early_releases_the_connection(
        self, api: FakeVideosAPI, client_on_fake: AsyncVideos
    ) -> None:
        """Breaking out, or not reading at all, gives the connection back."""
        (video_id,) = api.seed(1)
        async with client_on_fake.open_content(video_id, chunk_size=1024) as body:
            async for _ in body:
                break
        async with client_on_fake.open_content(video_id):
            pass
        assert await client_on_fake.download_content(video_id, variant="thumbnail")

    async def test_cancelled_mid_body_gives_the_connection_back(
        self, api: FakeVideosAPI, client_on_fake: AsyncVideos
    ) -> None:
        """A task cancelled while it holds a chunk leaves the pool usable."""
        (video_id,) = api.seed(1)
        holding = asyncio.Event()

        async def proxy() -> None:
            async with client_on_fake.open_content(video_id, chunk_size=1024) as body:
                async for _ in body:
                    holding.set()
                    await asyncio.Event().wait()

        task = asyncio.create_task(proxy())
        await asyncio.wait_for(holding.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await client_on_fake.download_content(video_id, variant="thumbnail")

    async def test_a_body_is_read_once(
        self, api: FakeVideosAPI, client_on_fake: AsyncVideos
    ) -> None:
        (video_id,) = api.seed(1)
        async with client_on_fake.open_content(video_id, variant="thumbnail") as body:
            await read_all(body, [])
            with pytest.raises(RuntimeError, match="read once"):
                body.__aiter__()

    @pytest.mark.parametrize(
        ("kwargs", "exc", "words"),
        [
            ({"variant": "hd"}, ValueError, "variant"),
            ({"chunk_size": 0}, ValueError, "chunk_size"),
            ({"timeout": "1"}, TypeError, "timeout"),
        ],
    )
    async def test_bad_arguments_raise_at_the_call(
        self,
        api: FakeVideosAPI,
        client_on_fake: AsyncVideos,
        kwargs: dict[str, Any],
        exc: type[Exception],
        words: str,
    ) -> None:
        with pytest.raises(exc, match=words):
            client_on_fake.open_content("video_1", **kwargs)
        assert api.requests == []


class TestRangeHeaders:
    """The pure readers of the range headers, on what servers really send."""

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("bytes 0-499/1234", ContentRange(0, 500, 1234)),
            ("BYTES  10-10/11", ContentRange(10, 11, 11)),
            (" bytes 5-9/* ", ContentRange(5, 10, None)),
            ("bytes */1234", None),
            ("bytes 9-5/20", None),
            ("bytes 0-20/20", None),
            ("bytes 0-1/2, bytes 3-4/5", None),
            ("items 0-1/2", None),
            ("bytes 0-" + "9" * 30 + "/*", None),
            ("", None),
            (None, None),
        ],
    )
    def test_content_range(self, value: str | None, expected: ContentRange | None) -> None:
        assert parse_content_range(value) == expected

    @pytest.mark.parametrize(
        ("value", "expected"),
        [("bytes", True), ("none", False), ("Bytes, other", True), ("", False), (None, False)],
    )
    def test_accept_ranges(self, value: str | None, expected: bool) -> None:
        assert accepts_byte_ranges(value) is expected

    @pytest.mark.parametrize(
        ("value", "expected"),
        [("12", 12), (" 7 ", 7), ("-1", None), ("1e3", None), ("", None), (None, None)],
    )
    def test_content_length(self, value: str | None, expected: int | None) -> None:
        assert content_length(value) == expected

    @pytest.mark.parametrize(
        ("headers", "expected"),
        [
            ({"ETag": '"abc"'}, '"abc"'),
            ({"ETag": 'W/"abc"', "Last-Modified": "Mon, 1 Jan 2024"}, "Mon, 1 Jan 2024"),
            ({"ETag": '"a\r\nInjected: 1"'}, None),
            ({"Last-Modified": "x" * 200}, None),
            ({}, None),
        ],
    )
    def test_if_range_validator(self, headers: dict[str, str], expected: str | None) -> None:
        assert if_range_validator(headers) == expected
