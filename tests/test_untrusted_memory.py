"""What a hostile answer builds is bounded, not only its bytes: a hostile server on loopback.

Per public method, with both readers (the stdlib ``json`` one, and msgspec's
where the ``speedups`` extra is installed):

- a 2xx body whose parse could build too much (a few MiB of ``{},``, of deep
  arrays, short strings, numbers, tiny jobs, or a long string with an astral
  escape) raises ``ResponseTooLargeError`` without being parsed;
- a body as large that is mostly one string, and a page of 100 jobs with big
  extras, are read;
- a page of more jobs than the ``limit`` asked for is cut to that limit (one
  WARNING per client), the listing going on after the last job kept;
- an id or cursor over 4,096 characters raises ``APIResponseValidationError``
  and is never sent back;
- content in an encoding that was not asked for raises ``ContentMismatchError``
  before a byte of it is handed over or written.

And, marked ``slow``, each hostile case of ``benchmarks/hostile_memory.py`` in
a fresh process: under 256 MiB of peak RSS growth for any one response at
default settings.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import sys
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from asyncvideos import (
    APIResponseValidationError,
    AsyncVideos,
    ContentMismatchError,
    ResponseTooLargeError,
    Video,
    _speedups,
)

ROOT = Path(__file__).resolve().parent.parent
HAS_MSGSPEC = importlib.util.find_spec("msgspec") is not None
MIB = 1024 * 1024
JOB = (
    b'{"id":"video_1","object":"video","status":"completed","progress":100,'
    b'"created_at":1760000000,"model":"sora-2"'
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def repeated(item: bytes, size: int) -> bytes:
    """``item`` comma-separated, about ``size`` bytes of it."""
    return b",".join([item] * (size // (len(item) + 1)))


def job(extra: bytes = b"", job_id: bytes = b"video_1") -> bytes:
    """A completed job; ``extra`` goes in as more fields (``,"x":...``)."""
    return JOB.replace(b"video_1", job_id) + extra + b"}"


def page(*jobs: bytes, tail: bytes = b'"has_more":false') -> bytes:
    return b'{"object":"list","data":[' + b",".join(jobs) + b"]," + tail + b"}"


class Hostile:
    """An ``aiohttp.web`` app on loopback: its routes answer what the test sets."""

    def __init__(self) -> None:
        self.job = job()
        self.job_headers = {"Content-Type": "application/json"}
        self.page: Callable[[web.Request], bytes] = lambda request: page(self.job)
        self.content: Handler | None = None
        self.seen: list[str] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def _job(self, request: web.Request) -> web.Response:
        self.seen.append(request.path_qs)
        return web.Response(body=self.job, headers=self.job_headers)

    async def _page(self, request: web.Request) -> web.Response:
        self.seen.append(request.path_qs)
        return web.Response(body=self.page(request), content_type="application/json")

    async def _content(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request.path_qs)
        assert self.content is not None
        return await self.content(request)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/videos", self._page)
        app.router.add_get("/v1/videos/{id}", self._job)
        app.router.add_delete("/v1/videos/{id}", self._job)
        app.router.add_get("/v1/videos/characters/{id}", self._job)
        app.router.add_get("/v1/videos/{id}/content", self._content)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/v1"


@pytest.fixture
async def hostile() -> AsyncIterator[Hostile]:
    server = Hostile()
    await server.start()
    yield server
    assert server.runner is not None
    await server.runner.cleanup()


@pytest.fixture
async def videos(hostile: Hostile) -> AsyncIterator[AsyncVideos]:
    async with AsyncVideos(api_key="sk-test", base_url=hostile.url, max_retries=0) as client:
        yield client


@pytest.fixture(params=["json", "msgspec"])
def reader(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test runs with the stdlib reader and, where installed, msgspec's."""
    if request.param == "msgspec" and not HAS_MSGSPEC:
        pytest.skip("the speedups extra (msgspec) is not installed")
    _speedups.use(request.param == "msgspec")
    yield request.param
    _speedups.use(True)


async def first_of(iterator: AsyncIterator[Any]) -> Any:
    async for item in iterator:
        return item
    return None


async def every(iterator: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in iterator]


async def wait_many_one(videos: AsyncVideos) -> Video:
    result = await first_of(videos.wait_many(["video_1"], wait_timeout=30))
    if result.error is not None:
        raise result.error
    video: Video = result.video
    return video


#: The methods that read a job (the server's job route) and what each returns.
JOB_METHODS: dict[str, Callable[[AsyncVideos], Awaitable[Video]]] = {
    "retrieve": lambda videos: videos.retrieve("video_1"),
    "wait": lambda videos: videos.wait("video_1", wait_timeout=30),
    "wait_many": wait_many_one,
}


async def list_page_first(videos: AsyncVideos) -> Video:
    return (await videos.list_page(limit=100)).data[0]


async def pages_first(videos: AsyncVideos) -> Video:
    pages = await every(videos.pages(limit=100))
    return pages[0].data[0]  # type: ignore[no-any-return]


#: The methods that read a page (the server's list route), each giving its first
#: job; each asks for pages of 100.
PAGE_METHODS: dict[str, Callable[[AsyncVideos], Awaitable[Video]]] = {
    "list_page": list_page_first,
    "list": lambda videos: first_of(videos.list(limit=100)),
    "list_all": lambda videos: first_of(videos.list(all=True, limit=100)),
    "pages": pages_first,
}
METHODS = {**JOB_METHODS, **PAGE_METHODS}

#: Extra fields (a job's; in a page, its only job's) that would build far more
#: than their bytes: each just a few MiB, over the default parse budget.
TOO_MUCH = {
    "empty_objects": b',"x":[' + repeated(b"{}", 3 * MIB) + b"]",
    "deep_arrays": b',"x":[' + repeated(b"[" * 64 + b"]" * 64, 3 * MIB) + b"]",
    "short_strings": b',"x":[' + repeated(b'"ab"', 4 * MIB) + b"]",
    "numbers": b',"x":[' + repeated(b"7", 7 * MIB) + b"]",
    # 4 bytes a character once decoded, as the escaped emoji at its end makes it.
    "astral_string": b',"pad":"' + b"x" * 13 * MIB + b'\\ud83d\\ude00"',
}
HUGE_STRING = b',"pad":"' + b"x" * 4 * MIB + b'"'


class TestWhatABodyBuilds:
    """A body is weighed before it is parsed: too heavy is an error, not a peak.

    The weighing comes before either reader; the tests without ``reader`` run
    with the one installed (CI runs the suite without msgspec, then with it).
    """

    @pytest.mark.parametrize("shape", sorted(TOO_MUCH))
    @pytest.mark.parametrize("method", sorted(METHODS))
    async def test_a_body_that_would_build_too_much_is_refused_unparsed(
        self, hostile: Hostile, videos: AsyncVideos, method: str, shape: str
    ) -> None:
        hostile.job = job(TOO_MUCH[shape])
        with pytest.raises(ResponseTooLargeError, match="it was not parsed"):
            await asyncio.wait_for(METHODS[method](videos), 30)

    @pytest.mark.parametrize("method", sorted(PAGE_METHODS))
    async def test_a_page_of_tiny_jobs_is_refused_unparsed(
        self, hostile: Hostile, videos: AsyncVideos, reader: str, method: str
    ) -> None:
        """The issue's page of ``{"id":1}`` items, a few MiB of them."""
        tiny = page(repeated(b'{"id":1}', 4 * MIB))
        hostile.page = lambda request: tiny
        with pytest.raises(ResponseTooLargeError, match="it was not parsed"):
            await asyncio.wait_for(PAGE_METHODS[method](videos), 30)

    @pytest.mark.parametrize("method", sorted(METHODS))
    async def test_a_huge_string_extra_is_read(
        self, hostile: Hostile, videos: AsyncVideos, method: str
    ) -> None:
        """Tolerant reading stays: MiB of text in an extra field are no threat (the
        slow test reads 31 MiB of it, a body just under max_response_bytes)."""
        hostile.job = job(HUGE_STRING)
        video = await asyncio.wait_for(METHODS[method](videos), 30)
        assert video.id == "video_1"
        assert len(video.raw["pad"]) == 4 * MIB

    async def test_both_readers_read_it(
        self, hostile: Hostile, videos: AsyncVideos, reader: str
    ) -> None:
        hostile.job = job(HUGE_STRING)
        video = await videos.retrieve("video_1")
        assert len(video.raw["pad"]) == 4 * MIB

    @pytest.mark.parametrize("method", sorted(PAGE_METHODS))
    async def test_a_page_of_jobs_with_big_extras_is_read(
        self, hostile: Hostile, videos: AsyncVideos, reader: str, method: str
    ) -> None:
        """100 jobs with 70 KiB of extras each: a text, 200 keys, 2,000 numbers."""
        text = b'"' + b"the quick brown fox jumps over the lazy dog, " * 1300 + b'"'
        keys = b"{" + b",".join(b'"key_%d":"value %d"' % (k, k) for k in range(200)) + b"}"
        numbers = b"[" + b",".join(b"%d" % (k * 7 % 1000) for k in range(2000)) + b"]"
        extras = b',"transcript":' + text + b',"metadata":' + keys + b',"samples":' + numbers
        body = page(*(job(extras, b"video_%d" % n) for n in range(100)))
        assert len(body) > 6 * MIB
        hostile.page = lambda request: body
        video = await asyncio.wait_for(PAGE_METHODS[method](videos), 30)
        assert video.id == "video_0"
        assert len(video.raw["metadata"]) == 200
        assert len(video.raw["samples"]) == 2000


class TestJobsPerPage:
    """A page never yields more jobs than the ``limit`` asked for: a server that
    sends more (LiteLLM's proxy drops ``limit``) gives the page's first ``limit``
    jobs, with the cursor after the last of them, and one WARNING per client."""

    async def test_list_page_holds_no_more_than_its_limit(
        self,
        hostile: Hostile,
        videos: AsyncVideos,
        reader: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        eleven = page(*(job(job_id=b"video_%d" % n) for n in range(11)))
        hostile.page = lambda request: eleven
        with caplog.at_level(logging.WARNING, logger="asyncvideos"):
            cut = await videos.list_page(limit=10)
            again = await videos.list_page(limit=10)
        assert [v.id for v in cut.data] == [f"video_{n}" for n in range(10)]
        assert (cut.last_id, cut.has_more) == ("video_9", True)
        assert again == cut
        warned = [r.getMessage() for r in caplog.records if "ignores limit" in r.getMessage()]
        assert warned == [
            "Asked for at most 10 jobs a page; the server sent 11: the page holds the "
            "first 10 and the listing goes on after them (the server, or a gateway in "
            "front of it, ignores limit; this is logged once per client)"
        ]
        whole = await videos.list_page(limit=11)
        assert (len(whole.data), whole.has_more) == (11, False)

    @pytest.mark.parametrize("method", ["list", "list_all", "pages"])
    async def test_listings_hold_to_their_limit_and_lose_nothing(
        self, hostile: Hostile, videos: AsyncVideos, reader: str, method: str
    ) -> None:
        """25 jobs from a server that honours ``after`` but sends every job after it."""

        def after_cursor(request: web.Request) -> bytes:
            start = int(request.query.get("after", "video_-1").removeprefix("video_")) + 1
            return page(*(job(job_id=b"video_%d" % n) for n in range(start, 25)))

        hostile.page = after_cursor
        if method == "pages":
            pages = await every(videos.pages(limit=10))
            assert [len(p.data) for p in pages] == [10, 10, 5]
            found = [v.id for p in pages for v in p.data]
        else:
            found = [v.id async for v in videos.list(limit=10, all=method == "list_all")]
        expected = 25 if method != "list" else 10
        assert found == [f"video_{n}" for n in range(expected)]

    async def test_200_000_jobs_for_a_limit_of_10_is_an_error(
        self, hostile: Hostile, videos: AsyncVideos, reader: str
    ) -> None:
        """The issue's page: refused before 200,000 jobs are built."""
        many = page(repeated(b'{"id":"v"}', 200_000 * 11))
        hostile.page = lambda request: many
        with pytest.raises(APIResponseValidationError):
            await asyncio.wait_for(videos.list_page(limit=10), 30)

    async def test_a_limit_sent_in_extra_query_is_the_one_held_to(
        self, hostile: Hostile, videos: AsyncVideos, reader: str
    ) -> None:
        """A gateway's own limit, passed as ``extra_query``, is the one that counts."""
        many = page(*(job(job_id=b"video_%d" % n) for n in range(500)))
        hostile.page = lambda request: many
        found = await videos.list_page(limit=10, extra_query={"limit": "500"})
        assert len(found.data) == 500
        assert "limit=500" in hostile.seen[-1]
        cut = await videos.list_page(extra_query={"limit": "400"})
        assert (len(cut.data), cut.last_id) == (400, "video_399")

    async def test_no_page_of_more_than_10_000_jobs_is_read(
        self, hostile: Hostile, videos: AsyncVideos, reader: str
    ) -> None:
        """Whatever limit was sent, a page of more than 10,000 jobs is refused."""
        many = page(repeated(b'{"id":"v"}', 10_001 * 11))
        hostile.page = lambda request: many
        with pytest.raises(APIResponseValidationError, match="a page may have 10000"):
            await videos.list_page(extra_query={"limit": "20000"})


LONG = b"v" * 4097


class TestIdsAndCursors:
    """An id or cursor over 4,096 characters is an error, and never sent back."""

    @pytest.mark.parametrize("method", sorted(METHODS))
    async def test_a_job_id_too_long_is_an_error(
        self, hostile: Hostile, videos: AsyncVideos, reader: str, method: str
    ) -> None:
        hostile.job = job(job_id=LONG)
        with pytest.raises(APIResponseValidationError, match="4097 characters long"):
            await METHODS[method](videos)

    @pytest.mark.parametrize("method", sorted(METHODS))
    async def test_an_id_of_4096_characters_is_read(
        self, hostile: Hostile, videos: AsyncVideos, reader: str, method: str
    ) -> None:
        hostile.job = job(job_id=LONG[:-1])
        assert (await METHODS[method](videos)).id == LONG[:-1].decode()

    async def test_a_deleted_id_or_character_id_too_long_is_an_error(
        self, hostile: Hostile, videos: AsyncVideos
    ) -> None:
        hostile.job = b'{"id":"' + LONG + b'","deleted":true}'
        with pytest.raises(APIResponseValidationError, match="4097 characters long"):
            await videos.delete("video_1")
        with pytest.raises(APIResponseValidationError, match="4097 characters long"):
            await videos.retrieve_character("char_1")

    @pytest.mark.parametrize("cursor", ["first_id", "last_id"])
    @pytest.mark.parametrize("method", sorted(PAGE_METHODS))
    async def test_a_cursor_too_long_is_an_error_and_not_sent_back(
        self, hostile: Hostile, videos: AsyncVideos, reader: str, method: str, cursor: str
    ) -> None:
        more = b'"has_more":true,"%s":"%s"' % (cursor.encode(), LONG)
        hostile.page = lambda request: page(job(), tail=more)
        with pytest.raises(APIResponseValidationError, match=f"'{cursor}' is 4097 characters"):
            await PAGE_METHODS[method](videos)
        assert len(hostile.seen) == 1
        assert all(len(seen) < 100 for seen in hostile.seen)

    async def test_a_listing_follows_cursors_of_4096_characters(
        self, hostile: Hostile, videos: AsyncVideos, reader: str
    ) -> None:
        def cursored(request: web.Request) -> bytes:
            after = request.query.get("after")
            if after is None:
                return page(job(), tail=b'"has_more":true,"last_id":"' + LONG[:-1] + b'"')
            assert after == LONG[:-1].decode()
            return page(job(job_id=b"video_2"))

        hostile.page = cursored
        found = [video.id async for video in videos.list(all=True)]
        assert found == ["video_1", "video_2"]


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


async def collect(chunks: AsyncIterator[bytes], into: list[bytes]) -> None:
    async for chunk in chunks:
        into.append(chunk)


@functools.cache
def compressed_zeros(encoding: str) -> bytes:
    """16 MiB of zeros as 16 KiB of gzip, or deflate."""
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    squeeze = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return squeeze.compress(bytes(16 * MIB)) + squeeze.flush()


class TestContentEncodings:
    """Content is asked for unencoded: a compressed answer is refused, not inflated."""

    @pytest.fixture
    def compressed(self, hostile: Hostile, request: pytest.FixtureRequest) -> bytes:
        """The content route answers with ``compressed_zeros`` (gzip by default)."""
        encoding = getattr(request, "param", "gzip")
        body = compressed_zeros(encoding)

        async def answer(request: web.Request) -> web.Response:
            headers = {"Content-Type": "video/mp4", "Content-Encoding": encoding}
            return web.Response(body=body, headers=headers)

        hostile.content = answer
        return body

    @pytest.mark.parametrize("compressed", ["gzip", "deflate"], indirect=True)
    async def test_download_writes_nothing(
        self, compressed: bytes, videos: AsyncVideos, tmp_path: Path
    ) -> None:
        with pytest.raises(ContentMismatchError, match="encoding"):
            await videos.download("video_1", tmp_path / "new" / "video.mp4")
        assert leftovers(tmp_path) == []

    async def test_iter_content_yields_nothing(
        self, compressed: bytes, videos: AsyncVideos
    ) -> None:
        chunks: list[bytes] = []
        with pytest.raises(ContentMismatchError, match="'gzip' encoding"):
            await collect(videos.iter_content("video_1"), chunks)
        assert chunks == []

    async def test_open_content_refuses_on_opening(
        self, compressed: bytes, videos: AsyncVideos
    ) -> None:
        with pytest.raises(ContentMismatchError, match="'gzip' encoding"):
            async with videos.open_content("video_1"):
                pytest.fail("the body was opened")

    async def test_download_content_reads_nothing(
        self, compressed: bytes, videos: AsyncVideos
    ) -> None:
        with pytest.raises(ContentMismatchError, match="not asked for: 'gzip'"):
            await videos.download_content("video_1", variant="thumbnail")

    async def test_the_content_was_asked_for_unencoded(
        self, compressed: bytes, videos: AsyncVideos, hostile: Hostile
    ) -> None:
        with pytest.raises(ContentMismatchError):
            await videos.download_content("video_1")
        assert len(hostile.seen) == 1

    async def test_json_in_an_encoding_not_asked_for_is_refused(
        self, hostile: Hostile, videos: AsyncVideos
    ) -> None:
        """JSON is asked for as gzip or deflate; brotli (say) is not inflated."""

        hostile.job = b"\x0b\x01\x80{}\x03"
        hostile.job_headers = {"Content-Type": "application/json", "Content-Encoding": "br"}
        with pytest.raises(ContentMismatchError, match="not asked for: 'br'"):
            await videos.retrieve("video_1")


@pytest.mark.slow  # about a minute: each case in a fresh process, both readers
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs /proc (Linux)")
def test_peak_memory_per_response_stays_under_256_mib() -> None:
    """Every case of ``python -m benchmarks.hostile_memory`` at default settings, in a
    fresh client process against a server process: under 256 MiB of peak RSS growth
    for one response; 16 pollers of ``wait_many`` within what 16 bodies in flight take."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import hostile_memory
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    readers = ["json", "msgspec"] if HAS_MSGSPEC else ["json"]
    results = hostile_memory.run_cases(list(hostile_memory.CASES), readers, None, print)
    read = {"huge_string", "big_extras", "edge_objects", "edge_deep_arrays", "edge_astral"}
    for result in results:
        case, outcome, growth = result["case"], result["outcome"], result["growth_mib"]
        if case == "wait_many_16":
            # 16 bodies of 31 MiB in flight, each up to twice that while it is read.
            assert growth < 16 * 64 + 256, result
            assert outcome == "ResponseTooLargeError x16", result
            continue
        assert growth < 256, result
        if case in read:
            assert outcome.startswith("read"), result
        else:
            assert not outcome.startswith("read"), result
