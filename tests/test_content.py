"""Reading a job's content: whole (``download_content``), in chunks (``iter_content``),
and to a file (``download``), including resumed, restarted and cancelled downloads.

Drops are injected with ``Fault(drop_after_bytes=...)`` on the content route; every
result is compared byte for byte with ``api.content_bytes()``.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from asyncvideos import APIConnectionError, APITimeoutError, AsyncVideos, NotFoundError, Video
from asyncvideos.testing import FakeVideosAPI, Fault, RecordedRequest

CONTENT = r"/content$"
VIDEO_SIZE = 256 * 1024  # the fake's default size of the "video" variant


@pytest.fixture
def video_id(api: FakeVideosAPI) -> str:
    """A completed job on the fake, with no request recorded yet."""
    (video_id,) = api.seed(1)
    return video_id


@pytest.fixture
async def no_ranges_api() -> AsyncIterator[FakeVideosAPI]:
    """A fake whose content endpoint ignores Range and does not advertise Accept-Ranges."""
    async with FakeVideosAPI(speed=100.0, poll_after_ms=10, accept_ranges=False) as fake:
        yield fake


@pytest.fixture
async def no_ranges_client(no_ranges_api: FakeVideosAPI) -> AsyncIterator[AsyncVideos]:
    async with no_ranges_api.client() as videos:
        yield videos


def content_requests(api: FakeVideosAPI) -> list[RecordedRequest]:
    return [req for req in api.requests if req.path.endswith("/content")]


def resumed_from(req: RecordedRequest) -> int:
    """The offset of a ``Range: bytes=N-`` request."""
    match = re.fullmatch(r"bytes=(\d+)-", req.header("range") or "")
    assert match is not None, req.header("range")
    return int(match.group(1))


async def consume(chunks: AsyncIterator[bytes], sink: list[bytes]) -> None:
    """Read an iterator to the end (or its error), keeping the chunks."""
    async for chunk in chunks:
        sink.append(chunk)


def leftovers(folder: Path) -> list[str]:
    """Names of everything in ``folder`` (temporary files included)."""
    return sorted(path.name for path in folder.iterdir())


class TestDownloadContent:
    """``download_content()``: the whole body in memory."""

    async def test_default_variant_is_not_sent(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str
    ) -> None:
        """Without variant, no query is sent and the video bytes come back."""
        body = await client.download_content(video_id)
        assert body == api.content_bytes(video_id)
        (req,) = api.requests
        assert req.path == f"/v1/videos/{video_id}/content"
        assert req.query == {}
        assert req.header("accept") == "video/*, application/octet-stream;q=0.9, */*;q=0.8"

    @pytest.mark.parametrize("variant", ["video", "thumbnail", "spritesheet"])
    async def test_variant_is_sent_when_given(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str, variant: Any
    ) -> None:
        """A given variant goes in the query and selects the asset."""
        body = await client.download_content(Video(id=video_id), variant=variant)
        assert body == api.content_bytes(video_id, variant)
        assert api.requests[0].query == {"variant": variant}
        # The Accept header asks for the variant's media type, for servers that negotiate.
        wanted = "video/*" if variant == "video" else "image/*"
        assert (api.requests[0].header("accept") or "").startswith(wanted)

    async def test_per_call_options_are_sent(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str
    ) -> None:
        """extra_query joins the variant; extra_headers are sent."""
        await client.download_content(
            video_id,
            variant="thumbnail",
            extra_query={"trace": "1"},
            extra_headers={"X-Trace": "t"},
            timeout=10,
            max_retries=0,
        )
        req = api.requests[0]
        assert req.query == {"variant": "thumbnail", "trace": "1"}
        assert req.header("x-trace") == "t"

    async def test_server_error_is_retried(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str
    ) -> None:
        """A GET is safe to repeat: a 503 is retried."""
        api.inject(Fault(status=503), path=CONTENT)
        assert await client.download_content(video_id) == api.content_bytes(video_id)
        assert len(api.requests) == 2

    async def test_unfinished_job_is_not_found(
        self, api: FakeVideosAPI, client: AsyncVideos
    ) -> None:
        """Content of a job still running is a 404 with the not-ready code."""
        (video,) = api.seed(1, status="queued", start=int(api.clock.now()) + 3600)
        with pytest.raises(NotFoundError) as info:
            await client.download_content(video)
        assert info.value.code == "video_not_ready"


class TestStalls:
    """The per-attempt timeout bounds each wait for bytes of a content stream."""

    async def test_a_stall_mid_body_is_resumed(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str
    ) -> None:
        """A server that stops sending is given up on after the timeout, and the
        body is asked for again from the bytes received."""
        api.inject(Fault(stall_after_bytes=100_000), path=CONTENT)
        start = time.monotonic()
        # 1 s: each wait for bytes of the resumed body must stay under it, on a busy
        # machine too, or a third request would be made.
        chunks = [c async for c in client.iter_content(video_id, timeout=1.0)]
        elapsed = time.monotonic() - start
        assert b"".join(chunks) == api.content_bytes(video_id)
        # The stall was waited out (a timer never fires early); that it was then given
        # up on is the second request: the stalled one would have held on until close.
        assert elapsed >= 1.0
        first, second = content_requests(api)
        assert first.header("range") is None
        assert 0 < resumed_from(second) <= 100_000

    async def test_a_server_that_keeps_stalling_times_out(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str, tmp_path: Path
    ) -> None:
        """Stalls on every attempt: APITimeoutError after the retries, and no file."""
        api.inject(Fault(stall_after_bytes=1000), path=CONTENT, times=10)
        with pytest.raises(APITimeoutError, match=r"no data for 0\.2 s"):
            await client.download(video_id, tmp_path / "v.mp4", timeout=0.2, max_retries=1)
        assert len(content_requests(api)) == 2
        assert leftovers(tmp_path) == []

    async def test_slow_headers_time_out_and_are_retried(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str
    ) -> None:
        """The wait for the response headers counts as a wait for bytes."""
        api.inject(Fault(delay=60.0), path=CONTENT)
        body = b"".join([c async for c in client.iter_content(video_id, timeout=1.0)])
        assert body == api.content_bytes(video_id)
        # Two requests: the first, whose headers were 60 s away, was given up on (had
        # it been waited for, it would have been answered, and alone).
        assert len(content_requests(api)) == 2

    async def test_the_task_is_not_left_cancelled(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str
    ) -> None:
        """The stall watch takes back the cancellation it used, inside a caller's deadline."""
        api.inject(Fault(stall_after_bytes=1000), path=CONTENT)

        async def read_all() -> bytes:
            body = b"".join([c async for c in client.iter_content(video_id, timeout=0.2)])
            task = asyncio.current_task()
            assert task is not None
            if sys.version_info >= (3, 11):
                assert task.cancelling() == 0
            return body

        assert await asyncio.wait_for(read_all(), 10) == api.content_bytes(video_id)

    async def test_a_slow_consumer_is_not_a_stall(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str
    ) -> None:
        """Time the caller spends between chunks never counts against the timeout."""
        chunks = []
        async for chunk in client.iter_content(
            video_id, variant="thumbnail", chunk_size=2048, timeout=0.1
        ):
            chunks.append(chunk)
            await asyncio.sleep(0.15)
        assert b"".join(chunks) == api.content_bytes(video_id, "thumbnail")
        assert len(chunks) >= 4
        assert len(content_requests(api)) == 1


class TestIterContent:
    """``iter_content()``: the body in bounded chunks."""

    async def test_chunks_are_bounded_and_whole(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str
    ) -> None:
        """No chunk is larger than chunk_size, and together they are the whole body."""
        chunks = [chunk async for chunk in client.iter_content(video_id, chunk_size=10_000)]
        assert max(len(chunk) for chunk in chunks) <= 10_000
        assert len(chunks) >= VIDEO_SIZE // 10_000
        assert b"".join(chunks) == api.content_bytes(video_id)

    async def test_variant_is_sent(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str
    ) -> None:
        """variant selects the asset, as for download_content."""
        chunks = [c async for c in client.iter_content(video_id, variant="spritesheet")]
        assert b"".join(chunks) == api.content_bytes(video_id, "spritesheet")
        assert api.requests[0].query == {"variant": "spritesheet"}

    async def test_drop_is_resumed_with_range(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str
    ) -> None:
        """A body cut mid-way is asked for again from the bytes already yielded."""
        api.inject(Fault(drop_after_bytes=100_000), path=CONTENT)
        chunks = [chunk async for chunk in client.iter_content(video_id, chunk_size=4096)]
        assert b"".join(chunks) == api.content_bytes(video_id)
        first, second = content_requests(api)
        assert first.header("range") is None
        assert 0 < resumed_from(second) <= 100_000

    async def test_drop_without_ranges_raises(
        self, no_ranges_api: FakeVideosAPI, no_ranges_client: AsyncVideos
    ) -> None:
        """When the server cannot resume, the drop is raised rather than repeating bytes."""
        (video_id,) = no_ranges_api.seed(1)
        no_ranges_api.inject(Fault(drop_after_bytes=100_000), path=CONTENT)
        received: list[bytes] = []
        with pytest.raises(APIConnectionError):
            await consume(no_ranges_client.iter_content(video_id), received)
        assert len(b"".join(received)) <= 100_000
        assert len(content_requests(no_ranges_api)) == 1

    async def test_range_ignored_by_the_server_raises(
        self, no_ranges_api: FakeVideosAPI, no_ranges_client: AsyncVideos
    ) -> None:
        """A server that said Accept-Ranges but answers 200 to Range is caught, not trusted."""
        (video_id,) = no_ranges_api.seed(1)
        lying = Fault(drop_after_bytes=100_000, headers={"Accept-Ranges": "bytes"})
        no_ranges_api.inject(lying, path=CONTENT)
        with pytest.raises(APIConnectionError, match="cannot resume"):
            await consume(no_ranges_client.iter_content(video_id), [])
        _first, second = content_requests(no_ranges_api)
        assert resumed_from(second) > 0

    async def test_resumes_are_bounded_by_max_retries(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str
    ) -> None:
        """After max_retries resumes the drop is raised, with the count."""
        api.inject(Fault(drop_after_bytes=1000), times=10, path=CONTENT)
        with pytest.raises(APIConnectionError) as info:
            await consume(client.iter_content(video_id, max_retries=2), [])
        assert len(content_requests(api)) == 3
        assert info.value.retries == 2

    async def test_breaking_out_releases_the_connection(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str
    ) -> None:
        """Stopping early closes the response; the client keeps working."""
        async for _ in client.iter_content(video_id, chunk_size=1024):
            break
        assert await client.download_content(video_id, variant="thumbnail")


class TestDownload:
    """``download()``: stream to a file, atomically, resuming where it can."""

    async def test_writes_the_whole_file_and_creates_folders(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str, tmp_path: Path
    ) -> None:
        """Missing parent folders are made; the file is the exact body; the path is returned."""
        target = tmp_path / "a" / "b" / "clip.mp4"
        result = await client.download(video_id, str(target))
        assert result == target
        assert target.read_bytes() == api.content_bytes(video_id)
        assert leftovers(target.parent) == ["clip.mp4"]

    async def test_an_error_response_creates_nothing(
        self, api: FakeVideosAPI, client: AsyncVideos, tmp_path: Path
    ) -> None:
        """A 404 is raised before any folder or file is made."""
        with pytest.raises(NotFoundError):
            await client.download("video_missing", tmp_path / "new" / "clip.mp4")
        assert not (tmp_path / "new").exists()

    async def test_a_file_that_appears_meanwhile_is_not_clobbered(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str, tmp_path: Path
    ) -> None:
        """Without overwrite, a file created while the body downloads is kept, not replaced."""
        target = tmp_path / "clip.mp4"

        def someone_else_writes(done: int, total: int | None) -> None:
            if not target.exists():
                target.write_bytes(b"theirs")

        with pytest.raises(FileExistsError, match="overwrite"):
            await client.download(video_id, target, on_progress=someone_else_writes)
        assert target.read_bytes() == b"theirs"
        assert leftovers(tmp_path) == ["clip.mp4"]

    async def test_progress_is_reported_per_chunk(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str, tmp_path: Path
    ) -> None:
        """on_progress gets (done, total) as chunks arrive, ending at (size, size)."""
        seen: list[tuple[int, int | None]] = []
        await client.download(
            video_id,
            tmp_path / "clip.mp4",
            chunk_size=16 * 1024,
            on_progress=lambda done, total: seen.append((done, total)),
        )
        assert len(seen) >= VIDEO_SIZE // (16 * 1024)
        assert [done for done, _ in seen] == sorted({done for done, _ in seen})
        assert {total for _, total in seen} == {VIDEO_SIZE}
        assert seen[-1] == (VIDEO_SIZE, VIDEO_SIZE)

    async def test_async_progress_callback_is_awaited(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str, tmp_path: Path
    ) -> None:
        """An async on_progress is awaited for each chunk."""
        seen: list[int] = []

        async def on_progress(done: int, total: int | None) -> None:
            await asyncio.sleep(0)
            seen.append(done)

        await client.download(
            video_id, tmp_path / "t.webp", variant="thumbnail", on_progress=on_progress
        )
        assert seen[-1] == len(api.content_bytes(video_id, "thumbnail"))
        assert api.requests[0].query == {"variant": "thumbnail"}

    async def test_drop_is_resumed_with_range(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str, tmp_path: Path
    ) -> None:
        """A drop mid-body resumes from the bytes written, and the file is identical."""
        api.inject(Fault(drop_after_bytes=100_000), path=CONTENT)
        seen: list[tuple[int, int | None]] = []
        target = tmp_path / "clip.mp4"
        await client.download(
            video_id,
            target,
            chunk_size=8192,
            on_progress=lambda done, total: seen.append((done, total)),
        )
        assert target.read_bytes() == api.content_bytes(video_id)
        first, second = content_requests(api)
        assert first.header("range") is None
        offset = resumed_from(second)
        assert 0 < offset <= 100_000
        dones = [done for done, _ in seen]
        assert offset in dones
        assert dones == sorted(dones)  # resumed, never started over
        assert seen[-1] == (VIDEO_SIZE, VIDEO_SIZE)  # the 206's Content-Range gives the total
        assert leftovers(tmp_path) == ["clip.mp4"]

    async def test_unknown_total_in_content_range_falls_back_to_length(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str, tmp_path: Path
    ) -> None:
        """A 206 whose Content-Range total is "*" still reports the total, from Content-Length."""
        api.inject(Fault(drop_after_bytes=50_000), path=CONTENT)
        seen: list[tuple[int, int | None]] = []

        def on_progress(done: int, total: int | None) -> None:
            seen.append((done, total))
            # Whatever offset the resume will ask for, its answer hides the total.
            api.clear_faults()
            unknown = f"bytes {done}-{VIDEO_SIZE - 1}/*"
            api.inject(Fault(headers={"Content-Range": unknown}), path=CONTENT)

        target = tmp_path / "clip.mp4"
        await client.download(video_id, target, chunk_size=8192, on_progress=on_progress)
        assert target.read_bytes() == api.content_bytes(video_id)
        _, second = content_requests(api)
        assert resumed_from(second) > 0
        assert seen[-1] == (VIDEO_SIZE, VIDEO_SIZE)

    @pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
    async def test_file_permissions_follow_the_umask(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str, tmp_path: Path
    ) -> None:
        """The downloaded file gets the permissions of any new file, not a private temp's."""
        umask = os.umask(0o022)
        os.umask(umask)
        target = await client.download(video_id, tmp_path / "clip.mp4")
        assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask

    async def test_per_call_options_reach_every_request(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str, tmp_path: Path
    ) -> None:
        """extra_query and extra_headers go with the first request and the resume."""
        api.inject(Fault(drop_after_bytes=100_000), path=CONTENT)
        await client.download(
            video_id,
            tmp_path / "clip.mp4",
            variant="video",
            extra_query={"trace": "1"},
            extra_headers={"X-Trace": "d"},
            timeout=30,
        )
        requests = content_requests(api)
        assert len(requests) == 2
        assert all(req.query == {"variant": "video", "trace": "1"} for req in requests)
        assert all(req.header("x-trace") == "d" for req in requests)

    async def test_drop_without_ranges_restarts(
        self, no_ranges_api: FakeVideosAPI, no_ranges_client: AsyncVideos, tmp_path: Path
    ) -> None:
        """A server without ranges is asked for the whole body again; the file is identical,
        and the progress of the second body counts from its own first byte."""
        (video_id,) = no_ranges_api.seed(1)
        no_ranges_api.inject(Fault(drop_after_bytes=100_000), path=CONTENT)
        # Each report is tagged with the body it belongs to (the requests the fake has
        # seen so far), so nothing depends on how the network cuts the bodies in chunks.
        seen: list[tuple[int, int]] = []
        target = tmp_path / "clip.mp4"
        await no_ranges_client.download(
            video_id,
            target,
            chunk_size=16 * 1024,
            on_progress=lambda done, _: seen.append((len(content_requests(no_ranges_api)), done)),
        )
        assert target.read_bytes() == no_ranges_api.content_bytes(video_id)
        requests = content_requests(no_ranges_api)
        assert len(requests) == 2
        assert all(req.header("range") is None for req in requests)
        first = [done for body, done in seen if body == 1]
        second = [done for body, done in seen if body == 2]
        assert all(done <= 100_000 for done in first)
        assert second[0] <= 16 * 1024  # started over: its first chunk, not the bytes kept
        assert second == sorted(second)
        assert second[-1] == VIDEO_SIZE
        assert leftovers(tmp_path) == ["clip.mp4"]

    async def test_range_ignored_by_the_server_restarts(
        self, no_ranges_api: FakeVideosAPI, no_ranges_client: AsyncVideos, tmp_path: Path
    ) -> None:
        """A 200 to a Range request is not mistaken for the rest: the file starts over."""
        (video_id,) = no_ranges_api.seed(1)
        lying = Fault(drop_after_bytes=100_000, headers={"Accept-Ranges": "bytes"})
        no_ranges_api.inject(lying, path=CONTENT)
        target = tmp_path / "clip.mp4"
        await no_ranges_client.download(video_id, target)
        assert target.read_bytes() == no_ranges_api.content_bytes(video_id)
        _, second = content_requests(no_ranges_api)
        assert resumed_from(second) > 0

    async def test_too_many_drops_leave_nothing(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str, tmp_path: Path
    ) -> None:
        """When the drops outlast max_retries, the error is raised and no file is left."""
        api.inject(Fault(drop_after_bytes=5000), times=10, path=CONTENT)
        with pytest.raises(APIConnectionError) as info:
            await client.download(video_id, tmp_path / "clip.mp4", max_retries=1)
        assert info.value.retries == 1
        assert len(content_requests(api)) == 2
        assert leftovers(tmp_path) == []

    async def test_failure_leaves_an_existing_file_untouched(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str, tmp_path: Path
    ) -> None:
        """With overwrite=True, a failed download keeps the old file as it was."""
        target = tmp_path / "clip.mp4"
        target.write_bytes(b"old contents")
        api.inject(Fault(drop_after_bytes=5000), times=10, path=CONTENT)
        with pytest.raises(APIConnectionError):
            await client.download(video_id, target, overwrite=True, max_retries=0)
        assert target.read_bytes() == b"old contents"
        assert leftovers(tmp_path) == ["clip.mp4"]

    async def test_overwrite_replaces_an_existing_file(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str, tmp_path: Path
    ) -> None:
        """With overwrite=True, a complete download replaces the file."""
        target = tmp_path / "clip.mp4"
        target.write_bytes(b"old contents")
        await client.download(video_id, target, overwrite=True)
        assert target.read_bytes() == api.content_bytes(video_id)

    async def test_existing_file_raises_before_any_request(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str, tmp_path: Path
    ) -> None:
        """overwrite=False (the default) refuses an existing path, sending nothing."""
        target = tmp_path / "clip.mp4"
        target.write_bytes(b"mine")
        with pytest.raises(FileExistsError, match="overwrite"):
            await client.download(video_id, target)
        assert target.read_bytes() == b"mine"
        assert api.requests == []

    async def test_cancelled_download_leaves_nothing(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str, tmp_path: Path
    ) -> None:
        """Cancelling the task mid-body removes the temporary file; no target appears."""
        mid_body = asyncio.Event()

        async def stall(done: int, total: int | None) -> None:
            mid_body.set()
            await asyncio.Event().wait()  # hold the download mid-body until cancelled

        target = tmp_path / "clip.mp4"
        task = asyncio.create_task(
            client.download(video_id, target, chunk_size=4096, on_progress=stall)
        )
        await asyncio.wait_for(mid_body.wait(), 5)
        assert any(name.endswith(".part") for name in leftovers(tmp_path))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert leftovers(tmp_path) == []
        # The connection was given back cleanly: the client still works.
        assert await client.download_content(video_id, variant="thumbnail")

    async def test_cancelled_download_keeps_an_existing_file(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str, tmp_path: Path
    ) -> None:
        """A cancelled overwrite leaves the previous file whole."""
        target = tmp_path / "clip.mp4"
        target.write_bytes(b"old contents")

        def cancel_self(done: int, total: int | None) -> None:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()

        task = asyncio.create_task(
            client.download(video_id, target, overwrite=True, on_progress=cancel_self)
        )
        with pytest.raises(asyncio.CancelledError):
            await task
        assert target.read_bytes() == b"old contents"
        assert leftovers(tmp_path) == ["clip.mp4"]

    async def test_callback_error_leaves_nothing(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str, tmp_path: Path
    ) -> None:
        """An exception from on_progress propagates and the temporary file is removed."""

        def broken(done: int, total: int | None) -> None:
            raise RuntimeError("bug in the callback")

        with pytest.raises(RuntimeError, match="bug in the callback"):
            await client.download(video_id, tmp_path / "clip.mp4", on_progress=broken)
        assert leftovers(tmp_path) == []

    async def test_unfinished_job_leaves_no_file(
        self, api: FakeVideosAPI, client: AsyncVideos, tmp_path: Path
    ) -> None:
        """A 404 for content not ready yet raises and creates no file."""
        (video,) = api.seed(1, status="queued", start=int(api.clock.now()) + 3600)
        with pytest.raises(NotFoundError):
            await client.download(video, tmp_path / "clip.mp4")
        assert leftovers(tmp_path) == []

    async def test_directory_path_raises_before_any_request(
        self, api: FakeVideosAPI, client: AsyncVideos, video_id: str, tmp_path: Path
    ) -> None:
        """A folder is not a file path."""
        with pytest.raises(ValueError, match="directory"):
            await client.download(video_id, tmp_path, overwrite=True)
        assert api.requests == []
